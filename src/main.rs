//! The `switchyard` command line: serve, demo, certs, import and export.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use switchyard::api::auth::{Role, TokenConfig};
use switchyard::config::{Config, LogFormat};
use switchyard::{app, demo, pki, registry};

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
}

#[derive(Subcommand)]
enum ImportWhat {
    /// Import an asset CSV (all rows or none; columns in docs/operator-api.md).
    Assets { file: PathBuf },
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
    }
    Ok(())
}
