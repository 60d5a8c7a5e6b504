//! Hostile clients: one test per attack of issue #9, each against a real `switchboard` process so the node's
//! own memory (RSS from `/proc`) can be bounded while a well-behaved client keeps its traffic.
//!
//! Each submodule owns one area; they share [`Proc`], a single embedded-mode node process.

// Each submodule uses the part of the harness its attack needs.
#![allow(dead_code)]

mod access;
mod caps;
mod fanout;
pub mod frames;
mod patterns;
mod slow;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{demo_login, push_api};

/// Bearer token of the push API on hostile-test nodes.
pub const TOKEN: &str = "hostile-test-token-0123456789";

/// One embedded-mode `switchboard` process (no Redis), with the demo login and the push API on.
pub struct Proc {
    pub port: u16,
    child: Option<Child>,
    dir: PathBuf,
}

impl Proc {
    /// Starts a node with `config` (TOML, only the keys the test changes) and waits until it is ready.
    pub async fn start(config: &str) -> Proc {
        let dir = std::env::temp_dir().join(format!("switchboard-hostile-{}", rand::random::<u32>()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("node.toml");
        std::fs::write(&file, config).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = std::fs::File::create(dir.join("node.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .arg("--config")
            .arg(&file)
            .env("SWITCHBOARD_BIND", format!("127.0.0.1:{port}"))
            .env("SWITCHBOARD_API_TOKEN", TOKEN)
            .env("SWITCHBOARD_DEMO", "true")
            .env_remove("SWITCHBOARD_REDIS_URL")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("the switchboard binary starts");
        let proc = Proc { port, child: Some(child), dir };
        proc.wait_ready().await;
        proc
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = awc::Client::default().get(self.http("/health/ready")).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "node not ready; log:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// What the node logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("node.log")).unwrap_or_default()
    }

    pub fn ws(&self) -> String {
        format!("ws://127.0.0.1:{}/ws", self.port)
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn http(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Resident memory of the node process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }

    /// The value of one metric sample (`switchboard_` + `name`, first sample line), 0 when absent.
    pub async fn metric(&self, name: &str) -> u64 {
        let mut r = awc::Client::default().get(self.http("/metrics")).send().await.unwrap();
        let body = String::from_utf8(r.body().limit(1 << 22).await.unwrap().to_vec()).unwrap();
        let prefix = format!("switchboard_{name}");
        body.lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| {
                let (k, v) = l.split_once(' ')?;
                (k == prefix || k.starts_with(&format!("{prefix}{{"))).then(|| v.parse::<f64>().ok())?
            })
            .map(|v| v as u64)
            .unwrap_or(0)
    }

    /// Logs `username` in through the demo app; returns the `Cookie` header value.
    pub async fn login(&self, username: &str) -> String {
        demo_login(&self.http("/login"), username).await
    }

    /// Sends SIGTERM (a graceful stop); [`wait_exit`](Self::wait_exit) collects the process.
    pub fn terminate(&self) {
        let status = Command::new("kill").arg("-TERM").arg(self.pid().to_string()).status().expect("kill runs");
        assert!(status.success(), "kill -TERM {} failed", self.pid());
    }

    /// Waits up to `bound` for the process to exit; its exit status, or `None` if it still runs.
    pub async fn wait_exit(&mut self, bound: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + bound;
        let child = self.child.as_mut().expect("running");
        loop {
            if let Some(status) = child.try_wait().expect("the child can be polled") {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A push API request with the token; returns status and JSON body.
    pub async fn api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        push_api(&self.http(path), TOKEN, method, body).await
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
