//! `switchboard-load`: load scenarios against one or more switchboard nodes (or a load balancer).
//!
//! ```text
//! switchboard-load <fanout|direct|connect|churn> --url ws://HOST:PORT/ws [--url ...] [scenario flags]
//! switchboard-load <scenario> --help        # the flags that scenario takes
//! ```
//!
//! Each scenario is a subcommand with its own flags ([`ScenarioCmd`]); they are flattened into one [`Cli`]
//! value the scenarios read. Latency is measured from a timestamp in each payload to its arrival (same machine
//! clock) into an HDR histogram. Every loop is bounded in count and time; targets must be loopback
//! (127.0.0.0/8, [::1], localhost) unless `--allow-remote` is given.

mod raw;
mod report;
mod scenarios;

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand, ValueEnum};

/// Hard caps: a load test must end by itself and fit this machine.
const MAX_DURATION: Duration = Duration::from_secs(3600);
const MAX_CONNECTIONS: usize = 60_000;
const MAX_RATE: u64 = 2_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scenario {
    Fanout,
    Direct,
    Connect,
    Churn,
    Resume,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ProtocolArg {
    /// WAMP v2, `wamp.2.json`.
    V2,
    /// WAMP v1, `wamp`.
    V1,
    /// WAMP v2, `wamp.2.msgpack`.
    Msgpack,
    /// WAMP v2, `wamp.2.cbor`.
    Cbor,
    /// Subscribers take turns: `wamp.2.json`, `wamp.2.msgpack`, `wamp.2.cbor`, `wamp`.
    Mixed,
}

impl ProtocolArg {
    /// What subscriber `i` speaks (`Mixed` takes turns).
    fn for_subscriber(self, i: usize) -> ProtocolArg {
        match self {
            ProtocolArg::Mixed => [ProtocolArg::V2, ProtocolArg::Msgpack, ProtocolArg::Cbor, ProtocolArg::V1][i % 4],
            one => one,
        }
    }
}

/// Load generator for switchboard: `switchboard-load <scenario> --help` lists a scenario's flags.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Command {
    #[command(subcommand)]
    scenario: ScenarioCmd,
}

#[derive(Subcommand, Debug)]
enum ScenarioCmd {
    /// N subscribers on one or more topics; publishers send --rate msg/s in total. Measures delivery latency,
    /// loss and (with --server-pid) server CPU per delivery.
    Fanout(FanoutArgs),
    /// N users log in through the node's demo /login, connect to random nodes and send to random other users
    /// (eligible_authid) at --rate msg/s in total.
    Direct(DirectArgs),
    /// A connection storm (with real session cookies given --login): connects/s and handshake latency;
    /// --hold keeps the connections open to measure the server's memory per connection.
    Connect(ConnectArgs),
    /// Connections opening and closing (--churn-rate per second) while fan-out traffic flows to steady
    /// subscribers; loss is counted for the steady ones.
    Churn(ChurnArgs),
    /// Recovery after a reconnect: --events publications on `load.resume` (the node needs a [[history]] rule
    /// for it), then --connections clients subscribe with resume_after the one before them; the latency is the
    /// time from each SUBSCRIBE to its last replayed event.
    Resume(ResumeArgs),
}

/// `resume` flags.
#[derive(Args, Debug)]
struct ResumeArgs {
    #[command(flatten)]
    common: Common,
    /// Clients resuming at once.
    #[arg(long, default_value_t = 100)]
    connections: usize,
    /// Events each client missed.
    #[arg(long, default_value_t = 1000)]
    events: u64,
    /// Padding bytes added to each message.
    #[arg(long, default_value_t = 64)]
    payload: usize,
}

/// Flags every scenario takes.
#[derive(Args, Debug, Clone)]
struct Common {
    /// WebSocket URL of a node or load balancer (repeat for several; connections are spread round robin).
    #[arg(long = "url", required = true, value_name = "ws://HOST:PORT/ws")]
    urls: Vec<String>,
    /// How long traffic flows (connect: the longest time spent opening), e.g. 30s.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Connections being set up at once.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// PID of the (single, local) server: its CPU time during traffic and its memory are reported.
    #[arg(long, value_name = "PID")]
    server_pid: Option<u32>,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
    /// Allow targets outside loopback.
    #[arg(long)]
    allow_remote: bool,
}

/// `fanout` flags.
#[derive(Args, Debug)]
struct FanoutArgs {
    #[command(flatten)]
    common: Common,
    /// Subscribing connections, spread over --topics and the URLs.
    #[arg(long, default_value_t = 100)]
    connections: usize,
    /// Messages published per second in total.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Topics the subscribers are spread over (publishers go round robin over them).
    #[arg(long, default_value_t = 1)]
    topics: usize,
    /// Publishing connections.
    #[arg(long, default_value_t = 1)]
    publishers: usize,
    /// Padding bytes added to each message.
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// WAMP version and serializer of the subscribers (publishers use v2 JSON).
    #[arg(long, value_enum, default_value_t = ProtocolArg::V2)]
    protocol: ProtocolArg,
}

/// `direct` flags.
#[derive(Args, Debug)]
struct DirectArgs {
    #[command(flatten)]
    common: Common,
    /// Users (at least 2); each has a receiving and a sending connection.
    #[arg(long, default_value_t = 100)]
    connections: usize,
    /// Messages sent per second in total.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Padding bytes added to each message.
    #[arg(long, default_value_t = 64)]
    payload: usize,
}

/// `connect` flags.
#[derive(Args, Debug)]
struct ConnectArgs {
    #[command(flatten)]
    common: Common,
    /// Connections to open.
    #[arg(long, default_value_t = 100)]
    connections: usize,
    /// Connects started per second at most; 0 = as fast as --concurrency allows. A result close to this cap
    /// says so: it measures the cap, not the server.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Log users in through the node's /login (demo) and connect with their session cookies.
    #[arg(long)]
    login: bool,
    /// Keep the connections open this long after the last one opened (to measure memory).
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    hold: Duration,
    /// Measure presence latency: every connection logs in as a user of its own, a logged-in watcher on the
    /// first --url subscribes to switchboard.user.on_online, and the report adds how long each user's on_online
    /// took to reach it after her WELCOME. Needs --login; give the storm other nodes' URLs to measure across nodes.
    #[arg(long, requires = "login")]
    presence: bool,
    /// With --presence: the node the watcher connects to (default: the first --url).
    #[arg(long, requires = "presence")]
    watch_url: Option<String>,
}

/// `churn` flags.
#[derive(Args, Debug)]
struct ChurnArgs {
    #[command(flatten)]
    common: Common,
    /// Steady subscribers.
    #[arg(long, default_value_t = 100)]
    connections: usize,
    /// Messages published per second in total.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Connections opened (subscribed, kept 0.1–1 s, closed) per second.
    #[arg(long, default_value_t = 50)]
    churn_rate: u64,
    /// Publishing connections.
    #[arg(long, default_value_t = 1)]
    publishers: usize,
    /// Padding bytes added to each message.
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// WAMP version of the subscribers and churners (publishers use v2).
    #[arg(long, value_enum, default_value_t = ProtocolArg::V2)]
    protocol: ProtocolArg,
}

/// One run's settings, whatever the scenario: what the scenarios read. Flags a scenario does not take keep
/// their defaults here.
#[derive(Debug, Clone)]
struct Cli {
    scenario: Scenario,
    urls: Vec<String>,
    connections: usize,
    rate: u64,
    duration: Duration,
    payload: usize,
    protocol: ProtocolArg,
    topics: usize,
    publishers: usize,
    churn_rate: u64,
    concurrency: usize,
    login: bool,
    hold: Duration,
    presence: bool,
    watch_url: Option<String>,
    server_pid: Option<u32>,
    json: bool,
    allow_remote: bool,
}

impl Cli {
    fn new(scenario: Scenario, common: Common, connections: usize, rate: u64) -> Cli {
        Cli {
            scenario,
            urls: common.urls,
            connections,
            rate,
            duration: common.duration,
            payload: 64,
            protocol: ProtocolArg::V2,
            topics: 1,
            publishers: 1,
            churn_rate: 0,
            concurrency: common.concurrency,
            login: false,
            presence: false,
            watch_url: None,
            hold: Duration::ZERO,
            server_pid: common.server_pid,
            json: common.json,
            allow_remote: common.allow_remote,
        }
    }
}

impl From<ScenarioCmd> for Cli {
    fn from(cmd: ScenarioCmd) -> Cli {
        match cmd {
            ScenarioCmd::Fanout(a) => Cli {
                payload: a.payload,
                protocol: a.protocol,
                topics: a.topics,
                publishers: a.publishers,
                ..Cli::new(Scenario::Fanout, a.common, a.connections, a.rate)
            },
            ScenarioCmd::Direct(a) => {
                Cli { payload: a.payload, ..Cli::new(Scenario::Direct, a.common, a.connections, a.rate) }
            }
            ScenarioCmd::Connect(a) => Cli {
                login: a.login,
                hold: a.hold,
                presence: a.presence,
                watch_url: a.watch_url,
                ..Cli::new(Scenario::Connect, a.common, a.connections, a.rate)
            },
            ScenarioCmd::Resume(a) => {
                Cli { payload: a.payload, ..Cli::new(Scenario::Resume, a.common, a.connections, a.events) }
            }
            ScenarioCmd::Churn(a) => Cli {
                payload: a.payload,
                protocol: a.protocol,
                publishers: a.publishers,
                churn_rate: a.churn_rate,
                ..Cli::new(Scenario::Churn, a.common, a.connections, a.rate)
            },
        }
    }
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

fn main() {
    let cli = Cli::from(Command::parse().scenario);
    if let Err(e) = validate(&cli) {
        eprintln!("switchboard-load: {e}");
        std::process::exit(2);
    }
    if let Err(e) = run(&cli) {
        // One line with the whole chain (it names the URL), not a backtrace.
        eprintln!("switchboard-load: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let report = runtime.block_on(async {
        match cli.scenario {
            Scenario::Fanout => scenarios::fanout(cli).await,
            Scenario::Direct => scenarios::direct(cli).await,
            Scenario::Connect => scenarios::connect(cli).await,
            Scenario::Churn => scenarios::churn(cli).await,
            Scenario::Resume => scenarios::resume(cli).await,
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
        let command = Command::try_parse_from(std::iter::once("switchboard-load").chain(args.iter().copied()));
        Cli::from(command.unwrap().scenario)
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
    fn each_scenario_takes_its_own_flags_only() {
        let fanout = cli(&["fanout", "--url", "ws://127.0.0.1:1/ws", "--topics", "3", "--publishers", "2"]);
        assert_eq!((fanout.scenario, fanout.topics, fanout.publishers), (Scenario::Fanout, 3, 2));
        let connect = cli(&["connect", "--url", "ws://127.0.0.1:1/ws", "--login", "--hold", "2s", "--rate", "0"]);
        assert!(connect.login && connect.hold == Duration::from_secs(2) && connect.rate == 0);
        let parse =
            |args: &[&str]| Command::try_parse_from(std::iter::once("switchboard-load").chain(args.iter().copied()));
        assert!(parse(&["connect", "--url", "ws://127.0.0.1:1/ws", "--topics", "3"]).is_err());
        assert!(parse(&["fanout", "--url", "ws://127.0.0.1:1/ws", "--login"]).is_err());
        assert!(parse(&["direct", "--url", "ws://127.0.0.1:1/ws", "--churn-rate", "5"]).is_err());
    }

    #[test]
    fn bounds_are_enforced() {
        assert!(validate(&cli(&["fanout", "--url", "ws://127.0.0.1:1/ws", "--duration", "2h"])).is_err());
        assert!(validate(&cli(&["fanout", "--url", "ws://127.0.0.1:1/ws", "--connections", "0"])).is_err());
        assert!(validate(&cli(&["direct", "--url", "ws://127.0.0.1:1/ws", "--connections", "1"])).is_err());
    }
}
