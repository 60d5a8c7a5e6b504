//! `switchboard-load`: load scenarios against one or more switchboard nodes (or a load balancer).
//!
//! ```text
//! switchboard-load <fanout|direct|connect|churn> --url ws://HOST:PORT/ws [--url ...] --connections N
//!   --rate R --duration 30s [--payload BYTES] [--protocol v2|v1] [--json]
//! ```
//!
//! Latency is measured from a timestamp in each payload to its arrival (same machine clock) into an HDR
//! histogram. Every loop is bounded in count and time; targets must be loopback (127.0.0.0/8, [::1],
//! localhost) unless `--allow-remote` is given.

mod report;
mod scenarios;

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};

/// Hard caps: a load test must end by itself and fit this machine.
const MAX_DURATION: Duration = Duration::from_secs(3600);
const MAX_CONNECTIONS: usize = 60_000;
const MAX_RATE: u64 = 2_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// N subscribers on one or more topics, publishers at R msg/s in total.
    Fanout,
    /// N logged-in users on random nodes send targeted messages (eligible_authid) to random other users.
    Direct,
    /// A connection storm with real session cookies: connects/s and handshake latency.
    Connect,
    /// Connections opening and closing while fan-out traffic flows to steady subscribers.
    Churn,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ProtocolArg {
    V2,
    V1,
}

/// Load generator for switchboard.
#[derive(Parser, Debug, Clone)]
#[command(version, about)]
struct Cli {
    /// The scenario to run.
    #[arg(value_enum)]
    scenario: Scenario,
    /// WebSocket URL of a node or load balancer (repeat for several; connections are spread round robin).
    #[arg(long = "url", required = true)]
    urls: Vec<String>,
    /// Connections: subscribers (fanout, churn), users (direct), or connections to open (connect).
    #[arg(long, default_value_t = 100)]
    connections: usize,
    /// Messages per second in total (fanout, direct, churn publishers); connects per second for `connect`
    /// (0 = as fast as `--concurrency` allows).
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// How long traffic flows, e.g. 30s.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Padding bytes added to each message.
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// WAMP version of the subscribing connections (publishers in `direct` always use v2).
    #[arg(long, value_enum, default_value_t = ProtocolArg::V2)]
    protocol: ProtocolArg,
    /// Topics the fan-out subscribers are spread over.
    #[arg(long, default_value_t = 1)]
    topics: usize,
    /// Publishing connections (fanout, churn).
    #[arg(long, default_value_t = 1)]
    publishers: usize,
    /// Connections opened and closed per second (churn).
    #[arg(long, default_value_t = 50)]
    churn_rate: u64,
    /// Connections being set up at once.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Log users in through the node's /login (demo) and use their cookies (connect); direct always logs in.
    #[arg(long)]
    login: bool,
    /// Keep the connections of `connect` open this long after the last one opened (to measure memory).
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    hold: Duration,
    /// PID of the (single, local) server: its CPU time during traffic and its memory are reported.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
    /// Allow targets outside loopback.
    #[arg(long)]
    allow_remote: bool,
}

/// The host of a ws:// or http:// URL.
fn host_of(url: &str) -> anyhow::Result<String> {
    let rest = url.split_once("://").map(|(_, r)| r).context("URL needs a scheme, e.g. ws://127.0.0.1:8080/ws")?;
    let authority = rest.split('/').next().unwrap_or("");
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or("").to_owned()
    } else {
        authority.rsplit_once(':').map(|(h, _)| h).unwrap_or(authority).to_owned()
    };
    if host.is_empty() {
        bail!("no host in '{url}'");
    }
    Ok(host)
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn validate(cli: &Cli) -> anyhow::Result<()> {
    for url in &cli.urls {
        if !(url.starts_with("ws://") || url.starts_with("wss://")) {
            bail!("--url {url}: expected ws://HOST:PORT/ws");
        }
        let host = host_of(url)?;
        if !cli.allow_remote && !is_loopback(&host) {
            bail!(
                "--url {url}: {host} is not loopback (127.0.0.0/8, [::1], localhost); pass --allow-remote to load it"
            );
        }
    }
    if cli.hold > MAX_DURATION {
        bail!("--hold must be at most {}", humantime::format_duration(MAX_DURATION));
    }
    if cli.duration.is_zero() || cli.duration > MAX_DURATION {
        bail!("--duration must be between 1s and {}", humantime::format_duration(MAX_DURATION));
    }
    if cli.connections == 0 || cli.connections > MAX_CONNECTIONS {
        bail!("--connections must be between 1 and {MAX_CONNECTIONS}");
    }
    if cli.rate > MAX_RATE {
        bail!("--rate must be at most {MAX_RATE}");
    }
    if cli.topics == 0 || cli.publishers == 0 || cli.concurrency == 0 {
        bail!("--topics, --publishers and --concurrency must be at least 1");
    }
    if cli.scenario == Scenario::Direct && cli.connections < 2 {
        bail!("direct needs at least 2 connections (users)");
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Err(e) = validate(&cli) {
        eprintln!("switchboard-load: {e}");
        std::process::exit(2);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let report = runtime.block_on(async {
        match cli.scenario {
            Scenario::Fanout => scenarios::fanout(&cli).await,
            Scenario::Direct => scenarios::direct(&cli).await,
            Scenario::Connect => scenarios::connect(&cli).await,
            Scenario::Churn => scenarios::churn(&cli).await,
        }
    })?;
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&report.to_json())?);
    } else {
        print!("{}", report.human());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("switchboard-load").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn only_loopback_targets_unless_allowed() {
        assert!(validate(&cli(&["fanout", "--url", "ws://127.0.0.1:8080/ws"])).is_ok());
        assert!(validate(&cli(&["fanout", "--url", "ws://127.9.9.9:8080/ws"])).is_ok());
        assert!(validate(&cli(&["fanout", "--url", "ws://[::1]:8080/ws"])).is_ok());
        assert!(validate(&cli(&["fanout", "--url", "ws://localhost:8080/ws"])).is_ok());
        assert!(validate(&cli(&["fanout", "--url", "ws://10.0.0.1:8080/ws"])).is_err());
        assert!(validate(&cli(&["fanout", "--url", "ws://example.com/ws"])).is_err());
        assert!(validate(&cli(&["fanout", "--url", "ws://10.0.0.1:8080/ws", "--allow-remote"])).is_ok());
        assert!(validate(&cli(&["fanout", "--url", "http://127.0.0.1:8080/ws"])).is_err());
    }

    #[test]
    fn bounds_are_enforced() {
        assert!(validate(&cli(&["fanout", "--url", "ws://127.0.0.1:1/ws", "--duration", "2h"])).is_err());
        assert!(validate(&cli(&["fanout", "--url", "ws://127.0.0.1:1/ws", "--connections", "0"])).is_err());
        assert!(validate(&cli(&["direct", "--url", "ws://127.0.0.1:1/ws", "--connections", "1"])).is_err());
    }
}
