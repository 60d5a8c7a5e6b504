//! The `switchboard` binary: parse the command line, load settings, run the node (or check one's health, or
//! diagnose a session cookie).

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
    /// Explains, step by step, why a browser's session cookie resolves to a user or to anonymous, with the
    /// settings the server would use (--config, SWITCHBOARD_*). Reads only; exit 0 when it resolves to a user,
    /// 1 when not.
    Doctor {
        /// The browser's Cookie header as sent to the web app (developer tools → Network → a request → Cookie);
        /// `-` reads it from standard input, keeping the session out of the process list.
        #[arg(long, value_name = "HEADER")]
        cookie: String,
        /// The page's origin as the browser sends it on the upgrade, e.g. https://app.example: checked against
        /// server.allowed_origins.
        #[arg(long, value_name = "ORIGIN")]
        origin: Option<String>,
        /// The Host header the browser sends to switchboard (default: server.bind), for the Origin check.
        #[arg(long, value_name = "HOST")]
        host: Option<String>,
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
    if let Some(Command::Doctor { mut cookie, origin, host }) = cli.command {
        if cookie == "-" {
            cookie.clear();
            if let Err(e) = std::io::stdin().read_line(&mut cookie) {
                eprintln!("switchboard doctor: cannot read the cookie from standard input: {e}");
                std::process::exit(EXIT_START);
            }
            cookie = cookie.trim().to_owned();
        }
        let host = host.unwrap_or_else(|| settings.server.bind.clone());
        let report = switchboard::doctor::diagnose(&settings, &cookie, origin.as_deref(), &host).await;
        print!("{}", report.render(&settings));
        let resolved = matches!(report.verdict, switchboard::doctor::Verdict::User(..));
        std::process::exit(if resolved { 0 } else { 1 });
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
