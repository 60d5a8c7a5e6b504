//! Test harness: spawn a node on a free port and connect clients to it.

use std::time::Duration;

use serde_json::{Map, Value};
use switchboard::{Application, Builder, Settings, Switchboard};

/// Short wait for things that should *not* happen (no EVENT, no reply).
pub const QUIET: Duration = Duration::from_millis(300);
/// Wait for things that should happen.
pub const WAIT: Duration = Duration::from_secs(5);

/// A running node.
pub struct TestApp {
    pub port: u16,
    pub node: Switchboard,
}

impl TestApp {
    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/ws", self.port)
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }
}

/// Settings for tests: free port, one worker.
pub fn test_settings() -> Settings {
    let mut settings = Settings::default();
    settings.server.bind = "127.0.0.1:0".into();
    settings.server.workers = 1;
    settings
}

/// A node with the default handlers.
pub async fn spawn_app() -> TestApp {
    spawn_with(Switchboard::builder(test_settings())).await
}

/// A node from a prepared builder.
pub async fn spawn_with(builder: Builder) -> TestApp {
    let node = builder.build().await.expect("node builds");
    let app = Application::serve(node).expect("node binds");
    let port = app.port();
    let node = app.node().clone();
    actix_web::rt::spawn(app.run_until_stopped());
    TestApp { port, node }
}

/// Logs `username` in through the node's demo app (on in test settings); returns the `Cookie` header value.
pub async fn login(app: &TestApp, username: &str) -> String {
    let client = awc::Client::builder().disable_redirects().finish();
    let r = client.post(app.http_url("/login")).send_form(&[("username", username)]).await.unwrap();
    assert_eq!(r.status(), 303);
    r.headers().get("set-cookie").unwrap().to_str().unwrap().split(';').next().unwrap().to_owned()
}

/// A v2 session logged in as `username` through the demo app.
pub async fn connect_as(app: &TestApp, username: &str) -> switchboard::client::V2Session {
    let cookie = login(app, username).await;
    switchboard::client::V2Session::connect_with_headers(&app.ws_url(), "r", &[("Cookie", &cookie)]).await.unwrap()
}

/// A JSON object literal as a WAMP dictionary.
pub fn dict(json: Value) -> Map<String, Value> {
    match json {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

/// Polls `check` until it holds or `WAIT` passes.
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + WAIT;
    while !check() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The error URI of a request that must fail with a WAMP error.
pub fn wamp_error<T: std::fmt::Debug>(result: Result<T, switchboard::client::ClientError>) -> String {
    match result {
        Err(switchboard::client::ClientError::Wamp { error, .. }) => error,
        other => panic!("expected a WAMP error, got {other:?}"),
    }
}
