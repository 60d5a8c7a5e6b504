//! `switchboard health`, the container healthcheck: exit 0 for a ready node, 1 with the reason otherwise
//! (nothing listening, draining, Redis down), always within its 2 s bound.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use switchboard::client::V2Session;

use crate::cluster::Node;
use crate::hostile::Proc;
use crate::redis_server::RedisServer;

/// The subcommand's own bound (2 s) plus process start on a loaded machine.
const BOUND: Duration = Duration::from_secs(4);

/// Runs `switchboard health` with `args` and `env`, checking it ends within [`BOUND`].
fn health(args: &[&str], env: &[(&str, String)]) -> Output {
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("health")
        .args(args)
        .env_remove("SWITCHBOARD_REDIS_URL")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("the switchboard binary runs");
    assert!(started.elapsed() < BOUND, "health took {:?}", started.elapsed());
    output
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[actix_web::test]
async fn health_exits_0_for_a_ready_node_found_from_its_bind_setting() {
    let node = Proc::start("").await;
    let out = health(&[], &[("SWITCHBOARD_BIND", format!("0.0.0.0:{}", node.port))]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert!(text(&out.stdout).contains("ready"), "{}", text(&out.stdout));
    let out = health(&["--url", &node.http("/health/ready")], &[]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
}

#[actix_web::test]
async fn health_exits_1_naming_the_url_when_nothing_listens() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = health(&[], &[("SWITCHBOARD_BIND", format!("127.0.0.1:{port}"))]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("http://127.0.0.1:{port}/health/ready")) && stderr.contains("refused"),
        "{stderr}"
    );
}

#[actix_web::test]
async fn health_exits_1_while_the_node_drains() {
    let mut node = Proc::start("[server]\ndrain_period = \"3s\"\nshutdown_timeout = \"2s\"\n").await;
    let _session = V2Session::connect(&node.ws(), "r").await.unwrap();
    node.terminate();
    // The node still listens for READY_NOTICE after the signal: the check must see it draining.
    let out = health(&["--url", &node.http("/health/ready")], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("status draining"), "{}", text(&out.stderr));
    assert!(node.wait_exit(Duration::from_secs(10)).await.is_some_and(|s| s.success()), "{}", node.log());
}

#[actix_web::test]
async fn health_exits_1_with_the_reason_when_redis_is_down() {
    let mut redis = RedisServer::start().await;
    let node = Node::start(&redis, "health").await;
    redis.stop();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = health(&["--url", &node.http("/health/ready")], &[]);
        if out.status.code() == Some(1) {
            assert!(
                text(&out.stderr).contains("HTTP 503") && text(&out.stderr).contains("down"),
                "{}",
                text(&out.stderr)
            );
            break;
        }
        assert!(Instant::now() < deadline, "health still 0 with Redis stopped");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
