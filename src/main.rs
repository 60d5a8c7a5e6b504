//! The `switchboard` binary: parse the command line, load settings, run the node.

use std::path::PathBuf;

use clap::Parser;

/// Clustered realtime WebSocket server speaking WAMP v2 and v1.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// TOML configuration file (keys absent from it keep the embedded default; SWITCHBOARD_* variables win).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    let settings = match switchboard::Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("switchboard: {e}");
            std::process::exit(2);
        }
    };
    let app = match switchboard::Application::build(settings).await {
        Ok(app) => app,
        Err(e) => {
            eprintln!("switchboard: {e}");
            std::process::exit(2);
        }
    };
    app.run_with_graceful_shutdown().await?;
    Ok(())
}
