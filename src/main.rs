//! The `switchboard` binary: parse the command line, load settings, run the node (or check one's health).

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use switchboard::health_check::{self, Verdict};

/// Clustered realtime WebSocket server speaking WAMP v2 and v1.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// TOML configuration file (keys absent from it keep the embedded default; SWITCHBOARD_* variables win).
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Asks a running node's /health/ready (within 2 s): exit 0 when ready, 1 otherwise with the reason.
    /// For container healthchecks: the default URL is this configuration's server.bind (SWITCHBOARD_BIND),
    /// asked on loopback when bound to 0.0.0.0 or [::].
    Health {
        /// The readiness URL to ask instead, e.g. http://10.0.0.5:8080/health/ready.
        #[arg(long, value_name = "URL")]
        url: Option<String>,
    },
}

/// Exit code for bad settings and failed starts (the README's contract).
const EXIT_START: i32 = 2;

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = match switchboard::Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("switchboard: {e}");
            std::process::exit(EXIT_START);
        }
    };
    if let Some(Command::Health { url }) = cli.command {
        let url = match url {
            Some(url) => url,
            None => match settings.bind_addr() {
                Ok(bind) => health_check::url_for_bind(bind),
                Err(e) => {
                    eprintln!("switchboard health: {e}");
                    std::process::exit(EXIT_START);
                }
            },
        };
        match health_check::check(&url) {
            Verdict::Ready(reason) => println!("{reason}"),
            Verdict::NotReady(reason) => {
                eprintln!("switchboard health: {reason}");
                std::process::exit(1);
            }
        }
        return Ok(());
    }
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let app = match switchboard::Application::build(settings).await {
        Ok(app) => app,
        Err(e) => {
            eprintln!("switchboard: {e}");
            std::process::exit(EXIT_START);
        }
    };
    app.run_with_graceful_shutdown().await?;
    Ok(())
}
