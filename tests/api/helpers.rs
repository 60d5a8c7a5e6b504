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
    demo_login(&app.http_url("/login"), username).await
}

/// Logs `username` in through the demo app's login `url`; returns the `Cookie` header value.
pub async fn demo_login(url: &str, username: &str) -> String {
    let client = awc::Client::builder().disable_redirects().finish();
    let r = client.post(url).send_form(&[("username", username)]).await.unwrap();
    assert_eq!(r.status(), 303);
    r.headers().get("set-cookie").unwrap().to_str().unwrap().split(';').next().unwrap().to_owned()
}

/// A push API request to `url` with bearer `token`; returns the status and the JSON body (null if none).
pub async fn push_api(url: &str, token: &str, method: &str, body: Option<Value>) -> (u16, Value) {
    let client = awc::Client::default();
    let request = match method {
        "GET" => client.get(url),
        "POST" => client.post(url),
        "DELETE" => client.delete(url),
        other => panic!("{other}"),
    }
    .insert_header(("Authorization", format!("Bearer {token}")));
    let mut response = match body {
        Some(b) => request.send_json(&b).await.unwrap(),
        None => request.send().await.unwrap(),
    };
    let status = response.status().as_u16();
    (status, response.json::<Value>().limit(1 << 20).await.unwrap_or(Value::Null))
}

/// A node mounted with `Switchboard::configure()` in an application's own `HttpServer` (the actix-web-actors
/// socket path); returns its address and the server's handle.
pub async fn spawn_mounted(settings: Settings) -> (String, actix_web::dev::ServerHandle) {
    let node = Switchboard::builder(settings).build().await.unwrap();
    let configure = node.configure();
    let server = actix_web::HttpServer::new(move || actix_web::App::new().configure(configure.clone()))
        .workers(1)
        .bind("127.0.0.1:0")
        .unwrap();
    let addr = server.addrs()[0].to_string();
    let server = server.run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    (addr, handle)
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

/// The number of connections the node counted closed for `reason` (a `reason` label value).
pub fn closed_for(app: &TestApp, reason: &str) -> u64 {
    let series = format!("switchboard_connections_closed_total{{reason=\"{reason}\"}} ");
    let text = app.node.metrics().render();
    let value = text.lines().find_map(|l| l.strip_prefix(&series)).unwrap_or_else(|| panic!("no {series}\n{text}"));
    value.parse().unwrap_or_else(|_| panic!("{series}{value}"))
}

/// The error URI of a request that must fail with a WAMP error.
pub fn wamp_error<T: std::fmt::Debug>(result: Result<T, switchboard::client::ClientError>) -> String {
    match result {
        Err(switchboard::client::ClientError::Wamp { error, .. }) => error,
        other => panic!("expected a WAMP error, got {other:?}"),
    }
}
