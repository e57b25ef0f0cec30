//! The `switchyard` command line: serve, demo, certs, import, export, dispatch,
//! accounts, conformance, simulators and the SunSpec installer tools.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use switchyard::api::auth::{Role, TokenConfig};
use switchyard::config::{Config, LogFormat};
use switchyard::protocol::sep2::xml::CsipAusVersion;
use switchyard::protocol::sunspec;
use switchyard::{app, conformance, demo, pki, registry};

#[derive(Parser)]
#[command(name = "switchyard", version, about = "DER interoperability server")]
struct Cli {
    /// Configuration file (TOML); every key is optional, see docs/configuration.md.
    #[arg(long, short, global = true, env = "SWITCHYARD_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve,
    /// Load the demo portfolio (once) and run the server with a printed operator token.
    Demo,
    /// Create a development PKI: CA, server certificate, device and aggregator certificates.
    Certs {
        /// Output directory; an existing CA there is reused.
        #[arg(long, default_value = "certs/dev")]
        out: PathBuf,
        /// Extra server DNS names or IP addresses (localhost and 127.0.0.1 are included).
        #[arg(long = "server-name")]
        server_names: Vec<String>,
        /// A device certificate to issue (repeatable).
        #[arg(long = "device")]
        devices: Vec<String>,
        /// An aggregator certificate to issue (repeatable).
        #[arg(long = "aggregator")]
        aggregators: Vec<String>,
    },
    /// Import data into the registry.
    Import {
        #[command(subcommand)]
        what: ImportWhat,
    },
    /// Export data from the registry.
    Export {
        #[command(subcommand)]
        what: ExportWhat,
    },
    /// Plan dispatch and forecast flexible capacity over the registry (prints JSON).
    Dispatch {
        #[command(subcommand)]
        what: DispatchWhat,
    },
    /// Play standard conformance procedures against a server and report PASS/FAIL per
    /// procedure (exit status 1 when any fails, 2 when the run cannot start).
    Conformance {
        #[command(subcommand)]
        suite: ConformanceSuite,
    },
    /// Virtual metering accounts: consolidate member intervals and allocate credits.
    Accounts {
        #[command(subcommand)]
        what: AccountsWhat,
    },
    /// Run simulations.
    Sim {
        #[command(subcommand)]
        what: SimWhat,
    },
    /// SunSpec over Modbus TCP: read a device, apply a control (docs/sunspec.md).
    Sunspec {
        #[command(subcommand)]
        what: SunspecWhat,
    },
    /// Settlement: baselines, event performance, reconciliation of statements
    /// (docs/settlement.md).
    Settlement {
        #[command(subcommand)]
        what: SettlementWhat,
    },
    /// Green Button Connect My Data: authorize at a Data Custodian, fetch interval data
    /// (`[greenbutton]` configuration; docs/greenbutton.md).
    Greenbutton {
        #[command(subcommand)]
        what: GreenbuttonWhat,
    },
    /// Telemetry quality reports (docs/telemetry.md).
    Telemetry {
        #[command(subcommand)]
        what: TelemetryWhat,
    },
}

#[derive(Subcommand)]
enum SettlementWhat {
    /// One revenue meter's baseline over a window; nothing is stored.
    Baseline {
        #[arg(long)]
        meter: String,
        /// Window start, epoch seconds.
        #[arg(long)]
        start: i64,
        /// Window end, epoch seconds (exclusive).
        #[arg(long)]
        end: i64,
        /// Baseline settings, JSON (the `baseline` object of docs/settlement.md).
        #[arg(long)]
        baseline: Option<PathBuf>,
        /// An extra event day to leave out, YYYY-MM-DD (repeatable).
        #[arg(long = "exclude-day")]
        exclude_days: Vec<String>,
        /// Print the JSON result instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Compute and store an event's performance: a dispatch plan (--plan) or an ad hoc
    /// event (--event FILE, the `event` object of docs/settlement.md).
    Performance {
        #[arg(long, conflicts_with = "event", required_unless_present = "event")]
        plan: Option<String>,
        #[arg(long)]
        event: Option<PathBuf>,
        #[arg(long)]
        baseline: Option<PathBuf>,
        #[arg(long = "exclude-day")]
        exclude_days: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Match a settlement statement (CSV) against stored performance; the report is stored.
    Reconcile {
        /// The statement; `-` reads standard input.
        file: PathBuf,
        #[arg(long, default_value_t = 0.1)]
        tolerance_kwh: f64,
        #[arg(long, default_value_t = 1.0)]
        tolerance_pct: f64,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum TelemetryWhat {
    /// Gap and lateness report per source: expected interval, missing intervals, late
    /// readings and how late (exit status 0 whatever it finds).
    Gaps {
        /// Range start: epoch seconds or RFC 3339.
        #[arg(long, value_parser = parse_instant)]
        from: i64,
        /// Range end (exclusive): epoch seconds or RFC 3339; clipped to now.
        #[arg(long, value_parser = parse_instant)]
        to: i64,
        /// Only this source.
        #[arg(long)]
        source: Option<String>,
        /// Only the DERs of this group, including those that sent nothing.
        #[arg(long)]
        group: Option<String>,
        /// Expected interval for every source, seconds (default: configured, else inferred).
        #[arg(long)]
        interval_s: Option<i64>,
        /// Late when it arrived more than this after its instant, seconds (default: the
        /// expected interval).
        #[arg(long)]
        late_after_s: Option<i64>,
        /// Leave out sources with no gap and no late reading.
        #[arg(long)]
        problems_only: bool,
        /// Print the report as JSON (the API's shape) instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum GreenbuttonWhat {
    /// The OAuth2 Third Party client.
    Connect {
        #[command(subcommand)]
        what: ConnectWhat,
    },
}

#[derive(Subcommand)]
enum ConnectWhat {
    /// Without --code: print the URL to send the customer to. With --code (from the
    /// redirect to the redirect URI): trade it for tokens, stored under --name.
    Authorize {
        /// Local name of the authorization (one per customer subscription).
        #[arg(long, default_value = "default")]
        name: String,
        /// The `code` the Data Custodian put on the redirect.
        #[arg(long)]
        code: Option<String>,
        /// The `state` to put on the authorization URL (default: 256 random bits; a chosen
        /// one must be as unguessable, as it is all that protects the redirect endpoint).
        #[arg(long)]
        state: Option<String>,
    },
    /// Fetch what is new (all stored authorizations, or --name, or a --bulk id with a
    /// client-credentials token) and store it; each fetch all or nothing.
    Fetch {
        #[arg(long, conflicts_with = "bulk")]
        name: Option<String>,
        /// A Batch/Bulk id.
        #[arg(long)]
        bulk: Option<String>,
        /// Print one JSON object per UsagePoint instead of the table.
        #[arg(long)]
        json: bool,
    },
}

/// Epoch seconds or an RFC 3339 instant.
fn parse_instant(s: &str) -> Result<i64, String> {
    if let Ok(n) = s.parse::<i64>() {
        return Ok(n);
    }
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|e| format!("expected epoch seconds or RFC 3339 (2026-01-31T00:00:00Z): {e}"))
}

#[derive(Subcommand)]
enum AccountsWhat {
    /// Consolidate a virtual account's member readings and allocate its credits; prints
    /// each interval's audit (see docs/aggregation.md).
    Consolidate {
        /// The account, as JSON (id, interval_s, credit_rate_millicents_per_kwh, rule,
        /// members).
        #[arg(long)]
        account: PathBuf,
        /// Member readings, CSV with the header member,start,load_wh,generation_wh.
        #[arg(long)]
        readings: PathBuf,
        /// Print one JSON audit per interval instead of the table.
        #[arg(long)]
        json: bool,
        /// Also store the account (created if new) and the audits in the configured
        /// store; an interval whose allocation changed gets a new revision.
        #[arg(long)]
        record: bool,
    },
}

#[derive(Subcommand)]
enum SimWhat {
    /// A SunSpec PV inverter with battery over Modbus TCP (models 1, 103, 120, 123, 124,
    /// 701, 702, 704, 705, 713, 802), honouring control writes.
    Sunspec(SimSunspecArgs),
    /// Monte Carlo simulation of control-room aggregate metering during a dispatch: every
    /// estimator side by side over a grid of ramps and read intervals (see
    /// docs/aggregation.md).
    Metering(Box<MeteringSimArgs>),
}

#[derive(clap::Args)]
struct SimSunspecArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:1502")]
    listen: SocketAddr,
    /// Seed of the simulated variations (same seed, same values).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Unit ids served (comma separated).
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    units: Vec<u8>,
    /// Inverter rating, W.
    #[arg(long, default_value_t = 5000.0)]
    rated_w: f64,
    /// Never end the model chain (to test clients against a broken device).
    #[arg(long)]
    endless_chain: bool,
}

#[derive(Subcommand)]
enum SunspecWhat {
    /// Discover a device's SunSpec map and print every decoded point in SI units.
    Read {
        /// HOST:PORT of the device or gateway.
        target: String,
        /// Modbus unit id.
        #[arg(long, default_value_t = 1)]
        unit: u8,
        /// Print one JSON object keyed by model id, then point name.
        #[arg(long)]
        json: bool,
        /// Bound on connecting and on each request, milliseconds.
        #[arg(long, default_value_t = 3000)]
        timeout_ms: u64,
    },
    /// Apply one control and verify it by reading back.
    #[command(group(clap::ArgGroup::new("control").required(true).args([
        "limit_pct", "fixed_w", "charge_pct", "discharge_pct", "connect", "disconnect", "release"
    ])))]
    Write {
        /// HOST:PORT of the device or gateway.
        target: String,
        #[arg(long, default_value_t = 1)]
        unit: u8,
        /// Limit active power to this percent of the maximum (704, else 123).
        #[arg(long)]
        limit_pct: Option<f64>,
        /// Hold active power at this many W, positive exporting (704).
        #[arg(long, allow_hyphen_values = true)]
        fixed_w: Option<f64>,
        /// Charge at this percent of the maximum charge rate (124).
        #[arg(long)]
        charge_pct: Option<f64>,
        /// Discharge at this percent of the maximum rate (124).
        #[arg(long)]
        discharge_pct: Option<f64>,
        /// Connect to the grid (123, else 802).
        #[arg(long)]
        connect: bool,
        /// Disconnect from the grid (123, else 802).
        #[arg(long)]
        disconnect: bool,
        /// End the power limit and fixed set point.
        #[arg(long)]
        release: bool,
        #[arg(long, default_value_t = 3000)]
        timeout_ms: u64,
    },
}

#[derive(clap::Args)]
struct MeteringSimArgs {
    /// Number of assets in the portfolio.
    #[arg(long, default_value_t = 1000)]
    assets: usize,
    /// Rated power of each asset, kW.
    #[arg(long, default_value_t = 5.0)]
    asset_kw: f64,
    /// Read intervals of the device meters, seconds (comma separated: one grid column each).
    #[arg(long, value_delimiter = ',', default_value = "10,30,60")]
    read_s: Vec<f64>,
    /// Dispatch ramps: `simultaneous` or `staggered:T` (T seconds), comma separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "simultaneous,staggered:60,staggered:120"
    )]
    ramp: Vec<String>,
    /// Telemetry latency: reading taken to reading received, seconds.
    #[arg(long, default_value_t = 0.0)]
    latency_s: f64,
    /// One asset's ramp from 0 to full output, seconds.
    #[arg(long, default_value_t = 2.0)]
    asset_ramp_s: f64,
    /// Response delay of every asset after a command, seconds.
    #[arg(long, default_value_t = 0.0)]
    delay_s: f64,
    /// Extra response delay, uniform in [0, this] per asset, seconds.
    #[arg(long, default_value_t = 0.0)]
    delay_jitter_s: f64,
    /// Share of assets that ignore the command (0..=1).
    #[arg(long, default_value_t = 0.0)]
    non_compliance: f64,
    /// Compliance rate schedule-aware is configured with (default: the true rate).
    #[arg(long)]
    assumed_compliance: Option<f64>,
    /// Weight, in assets, of the assumed compliance rate against the compliance seen in
    /// readings since the command (schedule-aware).
    #[arg(long, default_value_t = 200.0)]
    compliance_prior_weight: f64,
    /// Standard deviation of each reading's error, % of the asset's rating.
    #[arg(long, default_value_t = 0.0)]
    sensor_error_pct: f64,
    /// Simulation step, seconds.
    #[arg(long, default_value_t = 0.5)]
    step_s: f64,
    /// Monte Carlo runs per grid cell.
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// Seed of the random source (same seed and options, same numbers).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Estimators to run, comma separated (default: all).
    #[arg(long, value_delimiter = ',')]
    estimators: Vec<String>,
    /// Print one JSON object per cell and estimator instead of the table.
    #[arg(long)]
    json: bool,
    /// Also write an SVG plot of error over time per estimator to this file.
    #[arg(long)]
    svg: Option<PathBuf>,
}

#[derive(Subcommand)]
enum ConformanceSuite {
    /// IEEE 2030.5 server procedures (CSIP-AUS and CSIP), over mutual TLS.
    Sep2(Box<Sep2ConformanceArgs>),
}

#[derive(clap::Args)]
struct Sep2ConformanceArgs {
    /// Base URL of the 2030.5 server, e.g. https://127.0.0.1:8443.
    #[arg(long)]
    target: String,
    /// CA certificates (PEM) the server's certificate chains to.
    #[arg(long)]
    ca: PathBuf,
    /// Device client certificate (PEM).
    #[arg(long)]
    cert: PathBuf,
    /// Its private key (PEM).
    #[arg(long)]
    key: PathBuf,
    /// Aggregator client certificate, for procedures played by an aggregator.
    #[arg(long, requires = "aggregator_key")]
    aggregator_cert: Option<PathBuf>,
    #[arg(long, requires = "aggregator_cert")]
    aggregator_key: Option<PathBuf>,
    /// A second device certificate, for procedures with two unrelated clients.
    #[arg(long, requires = "second_key")]
    second_cert: Option<PathBuf>,
    #[arg(long, requires = "second_cert")]
    second_key: Option<PathBuf>,
    /// Switchyard operator API base URL, to prepare the server for each procedure;
    /// without it, procedures that need set-up are reported NEEDS-SETUP.
    #[arg(long, requires = "operator_token")]
    operator_url: Option<String>,
    /// Operator-role bearer token for --operator-url.
    #[arg(long, env = "SWITCHYARD_OPERATOR_TOKEN", hide_env_values = true)]
    operator_token: Option<String>,
    /// Run only these procedure ids (repeatable or comma separated).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Skip procedures, steps and checks that require this feature tag (repeatable or
    /// comma separated), e.g. mirror, subscription, response, long-running.
    #[arg(long = "skip-tag", value_delimiter = ',')]
    skip_tags: Vec<String>,
    /// Read procedures from this directory instead of the embedded set.
    #[arg(long)]
    procedures: Option<PathBuf>,
    /// Print one JSON object per procedure instead of the table.
    #[arg(long)]
    json: bool,
    /// List the procedures (id, profile, tags, title) and exit.
    #[arg(long)]
    list: bool,
    /// Path of the DeviceCapability.
    #[arg(long, default_value = "/dcap")]
    dcap_path: String,
    /// Rating of the DER the operator set-up creates, W.
    #[arg(long, default_value_t = 10_000.0)]
    rating_w: f64,
    /// Registration PIN the operator set-up gives EndDevices.
    #[arg(long, default_value_t = 111_115)]
    pin: u32,
    /// CSIP-AUS version of request bodies: v1.2 or v1.3.
    #[arg(long, default_value = "v1.3", value_parser = ["v1.2", "v1.3"])]
    csipaus: String,
    /// Listen here (plain HTTP) for notifications, e.g. 127.0.0.1:0.
    #[arg(long)]
    notify_listen: Option<SocketAddr>,
    /// URL the server should send notifications to (default http://<listen address>).
    #[arg(long, requires = "notify_listen")]
    notify_url: Option<String>,
    /// Per-request timeout, seconds.
    #[arg(long, default_value_t = 15)]
    timeout_s: u64,
    /// Multiply procedure waits and the timing of controls the operator set-up creates by
    /// this (e.g. 0.05 runs an hour-long procedure in three minutes; 1 is real time).
    #[arg(long, default_value_t = 1.0)]
    time_scale: f64,
    /// Run a repeated step at most this many times (the 72-hour procedure repeats 4320).
    #[arg(long)]
    max_repeats: Option<u32>,
}

#[derive(Subcommand)]
enum ImportWhat {
    /// Import an asset CSV (all rows or none; columns in docs/operator-api.md).
    Assets { file: PathBuf },
    /// Import Green Button (ESPI) Download-My-Data files as meter interval readings; all
    /// files or nothing, and importing again changes nothing (docs/greenbutton.md).
    Greenbutton {
        /// ESPI Atom feeds (XML).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// CSV of `usage_point,meter` rows (UsagePoint Atom id -> meter id or MPID); without
        /// it, a UsagePoint maps to the meter whose MPID is its Atom id.
        #[arg(long)]
        mapping: Option<PathBuf>,
        /// Print one JSON object per UsagePoint instead of the summary table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum DispatchWhat {
    /// Plan a request: the file holds the body of `POST /api/v1/dispatch`
    /// (`{"request": ..., "assumptions": ...}`). Nothing is stored or sent.
    Plan {
        /// The request file (JSON); `-` reads standard input.
        file: PathBuf,
    },
    /// Forecast a group's baseline load and flex up / down with P10/P50/P90.
    Forecast {
        #[arg(long)]
        group: String,
        /// Window start, epoch seconds (default now).
        #[arg(long)]
        start: Option<i64>,
        /// Window end, epoch seconds (default start + 4 h).
        #[arg(long)]
        end: Option<i64>,
        #[arg(long, default_value_t = 900)]
        step_s: i64,
        #[arg(long, default_value_t = 14)]
        lookback_days: u32,
        #[arg(long, default_value_t = 0.5)]
        self_consumption: f64,
        #[arg(long, default_value_t = 50.0)]
        default_soc_pct: f64,
    },
}

#[derive(Subcommand)]
enum ExportWhat {
    /// The ISO/RTO enrolment inventory.
    Inventory {
        #[arg(long, default_value = "csv", value_parser = ["csv", "json"])]
        format: String,
        /// Only DERs enrolled in this program.
        #[arg(long)]
        program: Option<String>,
        /// Write here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// Runs `switchyard accounts consolidate`.
async fn accounts_consolidate(
    config: &Config,
    account: &Path,
    readings: &Path,
    json: bool,
    record: bool,
) -> Result<()> {
    use switchyard::aggregation::{accounts, accounts_store};
    let mut account: accounts::VirtualAccount = serde_json::from_str(&read(account)?)
        .with_context(|| format!("parsing {}", account.display()))?;
    let file =
        std::fs::File::open(readings).with_context(|| format!("reading {}", readings.display()))?;
    let rows = accounts::readings_from_csv(file)?;
    let audits = accounts::consolidate(&account, &rows)?;
    if json {
        for a in &audits {
            println!("{}", serde_json::to_string(a)?);
        }
    } else {
        println!(
            "{:<12} {:<16} {:<10} {:>12} {:>12} {:>12} {:>12}",
            "start", "member", "role", "load_wh", "gen_wh", "credit_wh", "credit_cents"
        );
        for a in &audits {
            for l in &a.lines {
                println!(
                    "{:<12} {:<16} {:<10} {:>12} {:>12} {:>12} {:>12}",
                    a.start,
                    l.member,
                    l.role.as_str(),
                    l.load_wh,
                    l.generation_wh,
                    l.credit_wh,
                    l.credit_cents
                );
            }
            println!(
                "{:<12} {:<16} {:<10} {:>12} {:>12} {:>12} {:>12}{}",
                a.start,
                "(virtual)",
                "",
                a.total_load_wh,
                a.total_generation_wh,
                a.credit_wh,
                a.credit_cents,
                a.fallback
                    .as_ref()
                    .map_or(String::new(), |f| format!("  {f}"))
            );
        }
    }
    if record {
        let registry = app::open_registry(config).await?;
        let store = registry.store();
        account.members.sort_by(|a, b| a.id.cmp(&b.id));
        match accounts_store::get(store, &account.id).await? {
            None => {
                accounts_store::create(store, &account, switchyard::domain::now_epoch()).await?
            }
            Some(stored) if stored == account => {}
            Some(_) => bail!(
                "virtual account {:?} is stored with other settings or members; nothing recorded",
                account.id
            ),
        }
        let out =
            accounts_store::record(store, &account.id, &audits, switchyard::domain::now_epoch())
                .await?;
        store.close().await;
        eprintln!(
            "recorded: {} new, {} revised, {} unchanged intervals",
            out.new, out.revised, out.unchanged
        );
    }
    Ok(())
}

/// Runs `switchyard sim metering`.
fn sim_metering(a: MeteringSimArgs) -> Result<()> {
    use switchyard::aggregation::{EstimatorKind, sim, sim_report};
    let estimators = if a.estimators.is_empty() {
        EstimatorKind::ALL.to_vec()
    } else {
        a.estimators
            .iter()
            .map(|e| e.parse::<EstimatorKind>())
            .collect::<Result<Vec<_>, _>>()?
    };
    let ramps = a
        .ramp
        .iter()
        .map(|r| r.parse::<sim::Ramp>())
        .collect::<Result<Vec<_>, _>>()?;
    let cells: Vec<(sim::Ramp, f64)> = ramps
        .iter()
        .flat_map(|r| a.read_s.iter().map(move |s| (*r, *s)))
        .collect();
    let base = sim::Scenario {
        assets: a.assets,
        asset_kw: a.asset_kw,
        latency_s: a.latency_s,
        asset_ramp_s: a.asset_ramp_s,
        delay_s: a.delay_s,
        delay_jitter_s: a.delay_jitter_s,
        non_compliance: a.non_compliance,
        assumed_compliance: a.assumed_compliance,
        sensor_error: a.sensor_error_pct / 100.0,
        compliance_prior_weight: a.compliance_prior_weight,
        step_s: a.step_s,
        runs: a.runs,
        seed: a.seed,
        ..sim::Scenario::default()
    };
    let results = sim::run_grid(&base, &cells, &estimators)?;
    if a.json {
        print!("{}", sim_report::json_lines(&results));
    } else {
        print!("{}", sim_report::table(&results));
    }
    if let Some(path) = a.svg {
        std::fs::write(&path, sim_report::svg(&results))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log.filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// Runs `switchyard greenbutton connect ...`.
async fn greenbutton_connect(config: &Config, what: ConnectWhat) -> Result<()> {
    use switchyard::protocol::greenbutton::connect::{self, Client};
    let registry = app::open_registry(config).await?;
    let store = registry.store().clone();
    let client = Client::new(config.greenbutton.clone(), store.clone())?;
    let result: Result<()> = async {
        match what {
            ConnectWhat::Authorize {
                name,
                code: None,
                state,
            } => {
                let (url, state) = client
                    .start_authorization(&name, state, switchyard::domain::now_epoch())
                    .await?;
                println!("{url}");
                eprintln!(
                    "Send the customer to this URL within {} s. The Data Custodian redirects to {} \
                     with code=... and state={state}; `switchyard serve` completes the authorization \
                     there, or run:\n  \
                     switchyard greenbutton connect authorize --name {name} --code CODE",
                    config.greenbutton.authorization_timeout_seconds,
                    config.greenbutton.redirect_uri
                );
            }
            ConnectWhat::Authorize {
                name,
                code: Some(code),
                ..
            } => {
                let auth = client
                    .exchange_code(&name, &code, switchyard::domain::now_epoch())
                    .await?;
                println!(
                    "authorized '{name}': subscription {} (scope {})",
                    auth.resource_uri,
                    auth.scope.as_deref().unwrap_or("-")
                );
            }
            ConnectWhat::Fetch { name, bulk, json } => {
                let mut reports = Vec::new();
                if let Some(id) = bulk {
                    reports.push(client.fetch_bulk(&id).await?);
                } else {
                    let names = match name {
                        Some(n) => vec![n],
                        None => connect::authorization_names(&store).await?,
                    };
                    if names.is_empty() {
                        bail!("no authorization stored: run `switchyard greenbutton connect authorize` first");
                    }
                    for n in names {
                        reports.push(
                            client
                                .fetch(&n)
                                .await
                                .with_context(|| format!("fetching '{n}'"))?,
                        );
                    }
                }
                for r in &reports {
                    if json {
                        for (s, _) in &r.usage_points {
                            println!("{}", serde_json::to_string(s)?);
                        }
                        continue;
                    }
                    println!(
                        "{}: {} pages, {} entries, {} readings stored, {} already present",
                        r.url, r.pages, r.entries, r.outcome.inserted, r.outcome.duplicates
                    );
                    for (s, meter) in &r.usage_points {
                        println!(
                            "  {:<45} {:<20} {:>9} intervals {:>12.3} kWh in {:>12.3} kWh out",
                            s.usage_point,
                            meter,
                            s.intervals,
                            s.wh_delivered / 1000.0,
                            s.wh_received / 1000.0
                        );
                    }
                }
            }
        }
        Ok(())
    }
    .await;
    store.close().await;
    result
}

/// Runs `switchyard import greenbutton`: parses and checks every file first, then stores
/// everything in one transaction.
async fn import_greenbutton(
    config: &Config,
    files: &[PathBuf],
    mapping: Option<&Path>,
    json: bool,
) -> Result<()> {
    use switchyard::protocol::greenbutton::{import, parse_feed, series};
    let mapping = match mapping {
        Some(p) => import::read_mapping(&read(p)?).map_err(anyhow::Error::msg)?,
        None => Default::default(),
    };
    let total: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).map(|m| m.len()))
        .sum::<std::io::Result<u64>>()
        .context("reading the files' sizes")?;
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {bar:40} {bytes}/{total_bytes} {bytes_per_sec} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut all = Vec::new();
    for f in files {
        bar.set_message(f.display().to_string());
        let file = std::fs::File::open(f).with_context(|| format!("opening {}", f.display()))?;
        let feed = parse_feed(std::io::BufReader::with_capacity(
            256 * 1024,
            bar.wrap_read(file),
        ))
        .with_context(|| format!("{}: nothing was imported", f.display()))?;
        let s = series::build(&feed)
            .with_context(|| format!("{}: nothing was imported", f.display()))?;
        all.extend(s);
    }
    bar.finish_and_clear();
    let registry = app::open_registry(config).await?;
    let result = import::import_series(
        registry.store(),
        &all,
        &mapping,
        switchyard::domain::now_epoch(),
    )
    .await;
    registry.store().close().await;
    let report = result.context("nothing was imported")?;
    if json {
        for (s, _) in &report.usage_points {
            println!("{}", serde_json::to_string(s)?);
        }
    } else {
        println!(
            "{:<45} {:<20} {:>9} {:>12} {:>12} {:>5}",
            "usage point", "meter", "intervals", "kWh in", "kWh out", "gaps"
        );
        for (s, meter) in &report.usage_points {
            println!(
                "{:<45} {:<20} {:>9} {:>12.3} {:>12.3} {:>5}",
                s.usage_point,
                meter,
                s.intervals,
                s.wh_delivered / 1000.0,
                s.wh_received / 1000.0,
                s.gaps
            );
        }
        eprintln!(
            "{} usage points from {} files: {} readings stored, {} already present",
            report.usage_points.len(),
            files.len(),
            report.outcome.inserted,
            report.outcome.duplicates
        );
    }
    Ok(())
}

/// Runs `switchyard conformance sep2`; returns whether any procedure failed.
async fn conformance_sep2(a: Sep2ConformanceArgs) -> Result<bool> {
    let procedures = match &a.procedures {
        Some(dir) => conformance::procedure::from_dir(dir)?,
        None => conformance::procedure::embedded()?,
    };
    if a.list {
        for p in &procedures {
            let tags: Vec<&str> = p.requires.iter().map(String::as_str).collect();
            println!(
                "{:<10} {:<9} {:<28} {}",
                p.id,
                p.profile.to_string(),
                tags.join(","),
                p.title
            );
        }
        return Ok(false);
    }
    let pair =
        |c: &Option<PathBuf>, k: &Option<PathBuf>| -> Result<Option<conformance::Credentials>> {
            match (c, k) {
                (Some(c), Some(k)) => Ok(Some(conformance::Credentials {
                    cert_pem: read(c)?,
                    key_pem: read(k)?,
                })),
                _ => Ok(None),
            }
        };
    let device = conformance::Credentials {
        cert_pem: read(&a.cert)?,
        key_pem: read(&a.key)?,
    };
    let mut config = conformance::RunnerConfig::new(a.target.clone(), read(&a.ca)?, device);
    config.second_device = pair(&a.second_cert, &a.second_key)?;
    config.aggregator = pair(&a.aggregator_cert, &a.aggregator_key)?;
    config.operator = match (a.operator_url, a.operator_token) {
        (Some(url), Some(token)) => Some(conformance::OperatorConfig { url, token }),
        _ => None,
    };
    config.only = a.only;
    config.skip_tags = a.skip_tags;
    config.dcap_path = a.dcap_path;
    config.rating_w = a.rating_w;
    config.pin = a.pin;
    config.csipaus = if a.csipaus == "v1.2" {
        CsipAusVersion::V1_2
    } else {
        CsipAusVersion::V1_3
    };
    config.request_timeout = std::time::Duration::from_secs(a.timeout_s.max(1));
    config.notify_listen = a.notify_listen;
    config.notify_url = a.notify_url;
    if !(a.time_scale.is_finite() && a.time_scale > 0.0) {
        bail!("--time-scale must be a positive number");
    }
    config.time_scale = a.time_scale;
    config.max_repeats = a.max_repeats;
    if !config.only.is_empty() {
        let unknown: Vec<&String> = config
            .only
            .iter()
            .filter(|o| !procedures.iter().any(|p| p.id.eq_ignore_ascii_case(o)))
            .collect();
        if !unknown.is_empty() {
            bail!("no procedure with id {unknown:?}; see --list");
        }
    }
    let runner = conformance::Runner::new(config).await?;
    let outcomes = runner.run(&procedures).await;
    if a.json {
        print!("{}", conformance::report::json_lines(&outcomes));
    } else {
        print!("{}", conformance::report::table(&outcomes));
    }
    Ok(outcomes
        .iter()
        .any(|o| o.status == conformance::Status::Fail))
}

/// Resolves HOST:PORT (a name or an address).
async fn resolve(target: &str) -> Result<SocketAddr> {
    tokio::net::lookup_host(target)
        .await
        .with_context(|| format!("resolving {target}"))?
        .next()
        .with_context(|| format!("{target} resolves to no address"))
}

/// `switchyard sunspec read`: every decoded point, as text or JSON.
async fn sunspec_read(target: &str, unit: u8, json: bool, timeout_ms: u64) -> Result<()> {
    let addr = resolve(target).await?;
    let timeout = std::time::Duration::from_millis(timeout_ms.max(1));
    let mut device = sunspec::Device::connect(addr, unit, timeout).await?;
    let map = device.discover().await?;
    let mut out = serde_json::Map::new();
    let mut text = String::new();
    for entry in &map.models {
        let Some(model) = device.read_model(entry).await? else {
            eprintln!(
                "model {} at {} ({} registers): no definition in this build, skipped",
                entry.id, entry.address, entry.length
            );
            continue;
        };
        if json {
            let mut key = model.id.to_string();
            let mut n = 2;
            while out.contains_key(&key) {
                key = format!("{}#{n}", model.id);
                n += 1;
            }
            out.insert(key, model.tree.clone());
            continue;
        }
        let name = sunspec::model::definition(model.id)
            .map(|d| d.group.name.as_str())
            .unwrap_or("");
        text.push_str(&format!("model {} {name} at {}\n", model.id, model.address));
        for (path, p) in &model.points {
            let value = match &p.value {
                None => "-".to_string(),
                Some(sunspec::Value::Text(t)) => format!("{t:?}"),
                Some(v) => serde_json::to_string(v)?,
            };
            let unit = p.unit.map(|u| format!(" {u}")).unwrap_or_default();
            let symbol = p
                .symbol
                .as_ref()
                .map(|s| format!(" ({s})"))
                .unwrap_or_default();
            text.push_str(&format!("  {path:<24} {value}{unit}{symbol}\n"));
        }
    }
    if json {
        text = serde_json::to_string_pretty(&out)? + "\n";
    }
    // A reader that stops early (`| head`) is not an error.
    use std::io::Write as _;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let mut config = Config::load(cli.config.as_deref(), |k| std::env::var(k).ok())
        .context("loading configuration")?;
    init_logging(&config);
    match cli.command {
        Command::Serve => {
            if config.api.tokens.is_empty() {
                tracing::warn!("no API tokens configured: every operator API call will get 401");
            }
            let registry = app::open_registry(&config).await?;
            app::run_until(&config, registry, app::shutdown_signal()).await?;
        }
        Command::Demo => {
            let registry = app::open_registry(&config).await?;
            let pki_dir = config.store.data_dir.join("pki");
            let summary = demo::load(&registry, &pki_dir).await?;
            let token = match config.api.tokens.iter().find(|t| t.role == Role::Operator) {
                Some(t) => t.token.clone(),
                None => {
                    let t = format!("demo-{}", uuid::Uuid::new_v4().simple());
                    config.api.tokens.push(TokenConfig {
                        name: "demo-operator".into(),
                        token: t.clone(),
                        role: Role::Operator,
                    });
                    t
                }
            };
            // The demo serves IEEE 2030.5 with the development PKI it wrote, unless the
            // configuration already set the 2030.5 server up.
            if !config.sep2.enabled {
                config.sep2.enabled = true;
                config.sep2.ca_cert = pki_dir.join("ca.pem");
                config.sep2.server_cert = pki_dir.join("server.pem");
                config.sep2.server_key = pki_dir.join("server.key");
            }
            let server = app::start(&config, registry).await?;
            let base = format!("http://{}", server.addr);
            println!();
            println!("Switchyard demo is running.");
            if summary.loaded {
                println!("  Loaded the demo portfolio (8 sites, 2 feeders, 1 substation).");
            } else {
                println!("  The demo portfolio was already in the store.");
            }
            if let Some(pki) = &summary.pki {
                println!("  Development certificates:\n{pki}");
            }
            println!("  Operator token:  {token}");
            println!("  OpenAPI:         {base}/openapi.json");
            println!(
                "  Try:             curl -H 'Authorization: Bearer {token}' {base}/api/v1/groups/grp-feeder-f1/aggregate"
            );
            if let Some(sep2) = server.sep2_addr {
                let p = pki_dir.display();
                println!("  IEEE 2030.5:     https://{sep2}/dcap (mutual TLS)");
                println!(
                    "  Try:             curl --cacert {p}/ca.pem --cert {p}/demo-battery-1.pem --key {p}/demo-battery-1.key https://{sep2}/dcap"
                );
            }
            println!("  Stop with Ctrl-C.");
            app::shutdown_signal().await;
            server.stop().await?;
        }
        Command::Certs {
            out,
            server_names,
            devices,
            aggregators,
        } => {
            if devices.is_empty() && aggregators.is_empty() && out.join("ca.pem").exists() {
                bail!("nothing to issue: name at least one --device or --aggregator");
            }
            let report = pki::write_bundle(&pki::BundleSpec {
                out_dir: out,
                server_names,
                devices,
                aggregators,
            })
            .map_err(anyhow::Error::from)?;
            println!("{report}");
        }
        Command::Import {
            what:
                ImportWhat::Greenbutton {
                    files,
                    mapping,
                    json,
                },
        } => import_greenbutton(&config, &files, mapping.as_deref(), json).await?,
        Command::Import {
            what: ImportWhat::Assets { file },
        } => {
            let registry = app::open_registry(&config).await?;
            let text =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let lines = text.iter().filter(|b| **b == b'\n').count() as u64;
            let bar = ProgressBar::new(lines.saturating_sub(1));
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} {bar:40} {pos}/{len} rows {per_sec} {eta} {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            let started = std::time::Instant::now();
            let report = registry::import::import_csv(&registry, &text[..], Some(&bar)).await?;
            bar.finish_and_clear();
            registry.store().close().await;
            if !report.rejected.is_empty() {
                for r in &report.rejected {
                    eprintln!("line {}: {}: {}", r.line, r.column, r.reason);
                }
                bail!(
                    "{} of {} rows rejected; nothing was imported",
                    report.rejected.len(),
                    report.rows
                );
            }
            println!(
                "imported {} rows in {:.2?}: {} accounts, {} sites, {} meters, {} DERs created",
                report.rows,
                started.elapsed(),
                report.accounts_created,
                report.sites_created,
                report.meters_created,
                report.ders_created
            );
        }
        Command::Export {
            what:
                ExportWhat::Inventory {
                    format,
                    program,
                    out,
                },
        } => {
            let registry = app::open_registry(&config).await?;
            let rows = registry::inventory::collect(registry.store(), program.as_deref()).await?;
            let text = if format == "json" {
                serde_json::to_string_pretty(&rows)?
            } else {
                registry::inventory::to_csv(&rows)?
            };
            match out {
                Some(path) => std::fs::write(&path, text)
                    .with_context(|| format!("writing {}", path.display()))?,
                None => print!("{text}"),
            }
            registry.store().close().await;
        }
        Command::Sim {
            what: SimWhat::Sunspec(a),
        } => {
            let cfg = sunspec::sim::SimConfig {
                seed: a.seed,
                units: a.units.clone(),
                rated_w: a.rated_w,
                chain: if a.endless_chain {
                    sunspec::sim::ChainMode::Endless
                } else {
                    sunspec::sim::ChainMode::Normal
                },
                ..Default::default()
            };
            let listener = tokio::net::TcpListener::bind(a.listen)
                .await
                .with_context(|| format!("binding {}", a.listen))?;
            let addr = listener.local_addr()?;
            let units: Vec<String> = a.units.iter().map(u8::to_string).collect();
            println!(
                "SunSpec simulator listening on {addr} (units {}, seed {})",
                units.join(","),
                a.seed
            );
            tokio::select! {
                r = sunspec::sim::Simulator::new(&cfg).serve(listener) => r?,
                _ = app::shutdown_signal() => {}
            }
        }
        Command::Sunspec {
            what:
                SunspecWhat::Read {
                    target,
                    unit,
                    json,
                    timeout_ms,
                },
        } => sunspec_read(&target, unit, json, timeout_ms).await?,
        Command::Sunspec {
            what:
                SunspecWhat::Write {
                    target,
                    unit,
                    limit_pct,
                    fixed_w,
                    charge_pct,
                    discharge_pct,
                    connect,
                    disconnect,
                    release,
                    timeout_ms,
                },
        } => {
            use sunspec::control::Command as C;
            let command = match (limit_pct, fixed_w, charge_pct, discharge_pct) {
                (Some(p), ..) => C::LimitPct(p),
                (_, Some(w), ..) => C::FixedW(w),
                (_, _, Some(p), _) => C::ChargeRatePct(p),
                (.., Some(p)) => C::DischargeRatePct(p),
                _ if connect => C::Connect(true),
                _ if disconnect => C::Connect(false),
                _ if release => C::Release,
                _ => bail!("name one control"),
            };
            // Refuse a bad argument before opening a connection.
            command.validate()?;
            let addr = resolve(&target).await?;
            let timeout = std::time::Duration::from_millis(timeout_ms.max(1));
            let mut device = sunspec::Device::connect(addr, unit, timeout).await?;
            let map = device.discover().await?;
            let applied = sunspec::control::apply(&mut device, &map, command).await?;
            println!("{command}: applied and verified");
            for (w, read) in &applied.writes {
                println!(
                    "  model {} {} = {} (read back {read})",
                    w.model, w.point, w.value
                );
            }
        }
        Command::Greenbutton {
            what: GreenbuttonWhat::Connect { what },
        } => greenbutton_connect(&config, what).await?,
        Command::Dispatch { what } => {
            use switchyard::api::envelopes::RANDOMIZATION_SEED;
            use switchyard::dispatch::portfolio::{self, Assumptions, ForecastQuery};
            let registry = app::open_registry(&config).await?;
            let now = switchyard::domain::now_epoch();
            let out = match what {
                DispatchWhat::Plan { file } => {
                    let text = if file.as_os_str() == "-" {
                        std::io::read_to_string(std::io::stdin())?
                    } else {
                        std::fs::read_to_string(&file)
                            .with_context(|| format!("reading {}", file.display()))?
                    };
                    let body: switchyard::api::dispatch::DispatchBody =
                        serde_json::from_str(&text).context("the request file")?;
                    let (problem, plan, loaded) = portfolio::plan(
                        &registry,
                        &body.request,
                        now,
                        &body.assumptions,
                        RANDOMIZATION_SEED,
                    )
                    .await?;
                    let offsets =
                        switchyard::dispatch::activation_offsets(&plan, body.request.ramp);
                    serde_json::json!({
                        "request_id": plan.request_id,
                        "feasible": plan.feasible(),
                        "shortfall_kwh": plan.shortfall_kwh(),
                        "loaded": loaded,
                        "steps": plan.report,
                        "schedules": switchyard::dispatch::schedules(&plan, &problem, &offsets),
                    })
                }
                DispatchWhat::Forecast {
                    group,
                    start,
                    end,
                    step_s,
                    lookback_days,
                    self_consumption,
                    default_soc_pct,
                } => {
                    let start = start.unwrap_or(now);
                    let q = ForecastQuery {
                        group_id: group,
                        start,
                        end: end.unwrap_or(start + 4 * 3600),
                        lookback_days,
                    };
                    let assumptions = Assumptions {
                        step_s,
                        self_consumption,
                        default_soc_pct,
                        ..Assumptions::default()
                    };
                    let f = portfolio::forecast_group(
                        &registry,
                        &q,
                        now,
                        &assumptions,
                        RANDOMIZATION_SEED,
                    )
                    .await?;
                    serde_json::to_value(f)?
                }
            };
            println!("{}", serde_json::to_string_pretty(&out)?);
            registry.store().close().await;
        }
        Command::Conformance {
            suite: ConformanceSuite::Sep2(args),
        } => {
            // Exit status: 0 no procedure failed, 1 one or more failed, 2 the run could not
            // start (bad arguments, unreadable files, invalid procedures).
            let code = match conformance_sep2(*args).await {
                Ok(false) => 0,
                Ok(true) => 1,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    2
                }
            };
            if code != 0 {
                use std::io::Write as _;
                let _ = std::io::stdout().flush();
                std::process::exit(code);
            }
        }
        Command::Accounts {
            what:
                AccountsWhat::Consolidate {
                    account,
                    readings,
                    json,
                    record,
                },
        } => accounts_consolidate(&config, &account, &readings, json, record).await?,
        Command::Sim {
            what: SimWhat::Metering(args),
        } => sim_metering(*args)?,
        Command::Settlement { what } => settlement_cmd(&config, what).await?,
        Command::Telemetry {
            what:
                TelemetryWhat::Gaps {
                    from,
                    to,
                    source,
                    group,
                    interval_s,
                    late_after_s,
                    problems_only,
                    json,
                },
        } => {
            use switchyard::telemetry::gaps;
            let registry = app::open_registry(&config).await?;
            let mut q = gaps::GapQuery {
                from,
                to,
                source_id: source,
                interval_s,
                late_after_s,
                problems_only,
                ..Default::default()
            };
            gaps::validate(&q)?;
            if let Some(g) = group {
                registry
                    .get::<switchyard::registry::model::Group>(&g)
                    .await?;
                let mut after: Option<String> = None;
                loop {
                    let page = registry
                        .group_members(&g, after.as_deref(), switchyard::registry::MAX_PAGE)
                        .await?;
                    q.expected_sources
                        .extend(page.items.into_iter().map(|d| d.id));
                    match page.next_after {
                        Some(n) => after = Some(n),
                        None => break,
                    }
                }
                q.only_expected = true;
            }
            let report =
                gaps::report(registry.store(), &q, switchyard::domain::now_epoch()).await?;
            registry.store().close().await;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_gap_report(&report);
            }
        }
    }
    Ok(())
}

/// Runs `switchyard settlement ...`.
async fn settlement_cmd(config: &Config, what: SettlementWhat) -> Result<()> {
    use switchyard::settlement::{self, BaselineConfig, BaselineRequest, PerformanceRequest};
    let read_input = |file: &Path| -> Result<Vec<u8>> {
        if file.as_os_str() == "-" {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)?;
            Ok(buf)
        } else {
            std::fs::read(file).with_context(|| format!("reading {}", file.display()))
        }
    };
    let baseline_cfg = |file: Option<PathBuf>| -> Result<BaselineConfig> {
        match file {
            None => Ok(BaselineConfig::default()),
            Some(f) => serde_json::from_str(&read(&f)?)
                .with_context(|| format!("the baseline settings in {}", f.display())),
        }
    };
    let registry = app::open_registry(config).await?;
    let store = registry.store();
    let now = switchyard::domain::now_epoch();
    let kwh = |wh: f64| format!("{:.3}", wh / 1000.0);
    match what {
        SettlementWhat::Baseline {
            meter,
            start,
            end,
            baseline,
            exclude_days,
            json,
        } => {
            let req = BaselineRequest {
                meter_id: meter,
                start,
                end,
                baseline: baseline_cfg(baseline)?,
                exclude_days,
            };
            let b = settlement::baseline_for_meter(store, &req).await?;
            if json {
                println!("{}", serde_json::to_string(&b)?);
            } else {
                println!("days averaged: {}", b.selected_dates().join(", "));
                println!(
                    "adjustment: {:?} raw {:.4} applied {:.4}{}",
                    b.adjustment.kind,
                    b.adjustment.raw,
                    b.adjustment.applied,
                    if b.adjustment.capped { " (capped)" } else { "" }
                );
                println!(
                    "{:>12} {:>14} {:>14}",
                    "start", "unadjusted_kwh", "baseline_kwh"
                );
                for i in &b.intervals {
                    println!(
                        "{:>12} {:>14} {:>14}",
                        i.start,
                        kwh(i.unadjusted_wh),
                        kwh(i.baseline_wh)
                    );
                }
            }
        }
        SettlementWhat::Performance {
            plan,
            event,
            baseline,
            exclude_days,
            json,
        } => {
            let event = match event {
                Some(f) => Some(
                    serde_json::from_slice(&read_input(&f)?)
                        .with_context(|| format!("the event in {}", f.display()))?,
                ),
                None => None,
            };
            let req = PerformanceRequest {
                plan_id: plan,
                event,
                baseline: baseline_cfg(baseline)?,
                exclude_days,
            };
            let p = settlement::performance(store, &req, now).await?;
            if json {
                println!("{}", serde_json::to_string(&p)?);
            } else {
                println!(
                    "event {} ({}) {}: [{}, {}) {:?}",
                    p.event_id, p.source, p.target, p.window.start, p.window.end, p.direction
                );
                println!(
                    "{:<24} {:<16} {:>12} {:>12} {:>13}",
                    "resource", "site", "baseline_kwh", "metered_kwh", "delivered_kwh"
                );
                for r in &p.resources {
                    println!(
                        "{:<24} {:<16} {:>12.3} {:>12.3} {:>13.3}",
                        r.resource_id, r.site_id, r.baseline_kwh, r.metered_kwh, r.delivered_kwh
                    );
                }
                for f in &p.failed {
                    println!(
                        "{:<24} {:<16} {:?}: {}",
                        f.resource_id, f.site_id, f.kind, f.detail
                    );
                }
                println!(
                    "{:<24} {:<16} {:>12.3} {:>12.3} {:>13.3}",
                    "total", "", p.baseline_kwh, p.metered_kwh, p.delivered_kwh
                );
                if let Some(r) = p.requested_kwh {
                    println!(
                        "requested {r:.3} kWh, performance {:.1} %",
                        p.performance_ratio.unwrap_or(0.0) * 100.0
                    );
                }
            }
        }
        SettlementWhat::Reconcile {
            file,
            tolerance_kwh,
            tolerance_pct,
            json,
        } => {
            let tolerance = settlement::Tolerance {
                abs_kwh: tolerance_kwh,
                pct: tolerance_pct,
            };
            let r =
                settlement::reconcile_statement(store, &read_input(&file)?, tolerance, now).await?;
            if json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!(
                    "reconciliation {}: {} line(s), {} matched, {} flagged",
                    r.id, r.lines, r.matched, r.flagged
                );
                for d in &r.discrepancies {
                    let line = d.line.map(|l| format!("line {l}")).unwrap_or("-".into());
                    let reasons: Vec<String> = d
                        .reasons
                        .iter()
                        .map(|x| {
                            serde_json::to_value(x).map(|v| v.as_str().unwrap_or("").to_string())
                        })
                        .collect::<Result<_, _>>()?;
                    println!(
                        "{line:<9} {:<20} {:<20} {:<30} {}",
                        d.event_id,
                        d.resource_id,
                        reasons.join(","),
                        d.detail
                    );
                }
            }
        }
    }
    store.close().await;
    Ok(())
}

fn print_gap_report(r: &switchyard::telemetry::gaps::GapReport) {
    println!(
        "{:<32} {:>10} {:>9} {:>8} {:>8} {:>6} {:>12}",
        "source", "interval_s", "readings", "missing", "gaps", "late", "max_late_s"
    );
    for s in &r.sources {
        let interval = match (s.expected_interval_s, s.interval_origin) {
            (Some(i), switchyard::telemetry::gaps::IntervalOrigin::Inferred) => format!("~{i}"),
            (Some(i), _) => i.to_string(),
            (None, _) => "?".to_string(),
        };
        println!(
            "{:<32} {:>10} {:>9} {:>8} {:>8} {:>6} {:>12}",
            s.source_id,
            interval,
            s.readings,
            s.missing_readings,
            s.gaps.len(),
            s.late_readings,
            s.max_lateness_s.map_or("-".to_string(), |m| m.to_string())
        );
        for g in &s.gaps {
            println!(
                "    gap {} .. {}: {} missing",
                g.from, g.to, g.missing_readings
            );
        }
    }
    println!(
        "{} sources, {} with gaps ({} readings missing), {} with late readings ({} late); range {} .. {} (~ = inferred interval)",
        r.sources.len(),
        r.sources_with_gaps,
        r.missing_readings,
        r.sources_with_late_readings,
        r.late_readings,
        r.from,
        r.to
    );
}
