//! The load tool's command line as a user meets it: per-scenario help, and connection errors that name the URL.

use std::process::{Command, Output};

fn load(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_switchboard-load")).args(args).output().expect("switchboard-load runs")
}

#[test]
fn connect_help_lists_its_own_flags() {
    let out = load(&["connect", "--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in ["--url", "--connections", "--rate", "--concurrency", "--login", "--hold", "--duration", "--json"] {
        assert!(help.contains(flag), "connect --help lacks {flag}:\n{help}");
    }
    for other in ["--topics", "--publishers", "--churn-rate", "--protocol"] {
        assert!(!help.contains(other), "connect --help lists {other}, which connect does not use:\n{help}");
    }
}

#[test]
fn top_level_help_lists_the_scenarios() {
    let help = String::from_utf8_lossy(&load(&["--help"]).stdout).into_owned();
    for scenario in ["fanout", "direct", "connect", "churn"] {
        assert!(help.contains(scenario), "{help}");
    }
}

#[test]
fn a_refused_connection_is_reported_with_its_url() {
    // Port 1 on loopback: nothing listens there, so the connect is refused at once.
    let url = "ws://127.0.0.1:1/ws";
    for scenario in ["fanout", "connect"] {
        let out = load(&[scenario, "--url", url, "--connections", "1", "--duration", "1s"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{scenario}: {stderr}");
        assert!(stderr.contains(url), "{scenario}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{scenario}: one line, no backtrace: {stderr}");
    }
}
