//! The `switchyard` command line: serve, demo, certs, import, export and conformance.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use switchyard::api::auth::{Role, TokenConfig};
use switchyard::config::{Config, LogFormat};
use switchyard::protocol::sep2::xml::CsipAusVersion;
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
    /// Play standard conformance procedures against a server and report PASS/FAIL per
    /// procedure (exit status 1 when any fails, 2 when the run cannot start).
    Conformance {
        #[command(subcommand)]
        suite: ConformanceSuite,
    },
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
    }
    Ok(())
}
