//! Webhooks: user presence and session join/leave POSTed to the web app as signed JSON (`[webhooks]`).
//!
//! Each event is sent by the one node that announces it — the node of the session for `session.join` and
//! `session.leave`, the survivor that purged a dead node's sessions for theirs, and the node whose atomic
//! registry call decided a presence change for `user.online` / `user.offline` — so the web app gets one POST per
//! event, not one per node. A body:
//!
//! ```json
//! {"id": "6f1c…", "event": "session.join", "time": "2026-12-06T13:40:00.123Z", "node": "a",
//!  "data": {"session": 123, "authid": "alice", "authrole": "user", …}}
//! ```
//!
//! `data` is `{authid}` for the user events, the `wamp.session.get` dictionary for `session.join`, and
//! `{session, authid, authrole}` for `session.leave`. Headers: `X-Switchboard-Signature: sha256=<hex HMAC-SHA256
//! of the body under webhooks.secret>`, `X-Switchboard-Event`, `X-Switchboard-Event-Id` (= `id`: a retried event
//! keeps its id, so the receiver can drop repeats). An attempt that gets no answer within `webhooks.timeout`,
//! cannot connect, or is answered 5xx, 408 or 429 is retried after 0.5 s, 1 s, 2 s … (at most 30 s between
//! attempts) up to `webhooks.max_attempts`; any other non-2xx status is final. At most 16 POSTs are in flight,
//! and at most `webhooks.max_queue` events wait or retry per node: beyond, new events are dropped. Everything
//! is counted (`switchboard_webhooks_{delivered,failed,dropped}_total`,
//! `switchboard_webhook_attempt_errors_total`). Events still waiting when a node dies are lost with it.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::sync::{mpsc, Semaphore};

use crate::config::{WebhookEvent, WebhookSettings};
use crate::metrics::{self, Metrics};

/// POSTs in flight at once, per node.
const IN_FLIGHT: usize = 16;
/// Wait before the first retry; doubled each time.
const FIRST_RETRY: Duration = Duration::from_millis(500);
/// Longest wait between two attempts.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(30);

/// The signature header's value for `body` under `secret`: `sha256=<lowercase hex HMAC-SHA256>`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for byte in digest {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// One event to send.
struct Job {
    id: String,
    event: WebhookEvent,
    body: Vec<u8>,
}

/// A node's webhook sender: a cheap handle to the task that POSTs.
#[derive(Clone)]
pub struct Webhooks {
    events: Arc<[WebhookEvent]>,
    node: Arc<str>,
    jobs: mpsc::Sender<Job>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks").field("events", &self.events).finish_non_exhaustive()
    }
}

/// What the sending task needs.
struct Sender {
    url: String,
    secret: Vec<u8>,
    timeout: Duration,
    max_attempts: u32,
    metrics: Arc<Metrics>,
}

impl Webhooks {
    /// Starts sending as `settings` say, on the current actix arbiter; `None` when `webhooks.url` is empty.
    pub fn start(settings: &WebhookSettings, node: &str, metrics: Arc<Metrics>) -> Option<Webhooks> {
        if settings.url.is_empty() {
            return None;
        }
        let (jobs, queue) = mpsc::channel(settings.max_queue);
        let sender = Sender {
            url: settings.url.clone(),
            secret: settings.secret.as_bytes().to_vec(),
            timeout: settings.timeout,
            max_attempts: settings.max_attempts,
            metrics: metrics.clone(),
        };
        actix_web::rt::spawn(sender.run(queue));
        log::info!("webhooks: {} to {}", list(&settings.events), settings.url);
        Some(Webhooks { events: Arc::from(settings.events.as_slice()), node: Arc::from(node), jobs, metrics })
    }

    /// Queues `event` with `data`, if it is one of `webhooks.events` (dropped and counted when the queue is full).
    pub fn send(&self, event: WebhookEvent, data: Value) {
        if !self.events.contains(&event) {
            return;
        }
        let id = uuid::Uuid::new_v4().simple().to_string();
        let time = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
        let body = json!({"id": id, "event": event.as_str(), "time": time, "node": &*self.node, "data": data});
        let job = Job { id, event, body: body.to_string().into_bytes() };
        if self.jobs.try_send(job).is_err() {
            metrics::inc(&self.metrics.webhooks_dropped_total);
            log::warn!("webhooks: {} dropped, webhooks.max_queue events are waiting", event.as_str());
        }
    }
}

fn list(events: &[WebhookEvent]) -> String {
    events.iter().map(|e| e.as_str()).collect::<Vec<_>>().join(", ")
}

impl Sender {
    /// Sends every queued event, at most [`IN_FLIGHT`] at once; ends when the node drops its handles.
    async fn run(self, mut queue: mpsc::Receiver<Job>) {
        let client = Rc::new(client(self.timeout));
        let this = Rc::new(self);
        let slots = Arc::new(Semaphore::new(IN_FLIGHT));
        while let Some(job) = queue.recv().await {
            let Ok(slot) = slots.clone().acquire_owned().await else { return };
            let (this, client) = (this.clone(), client.clone());
            actix_web::rt::spawn(async move {
                this.deliver(&client, job).await;
                drop(slot);
            });
        }
    }

    /// Attempts `job` until it is accepted, refused for good, or out of attempts.
    async fn deliver(&self, client: &awc::Client, job: Job) {
        let mut wait = FIRST_RETRY;
        for attempt in 1..=self.max_attempts {
            let outcome = client
                .post(&self.url)
                .timeout(self.timeout)
                .insert_header(("Content-Type", "application/json"))
                .insert_header(("X-Switchboard-Signature", signature(&self.secret, &job.body)))
                .insert_header(("X-Switchboard-Event", job.event.as_str()))
                .insert_header(("X-Switchboard-Event-Id", job.id.as_str()))
                .send_body(job.body.clone())
                .await;
            let failure = match outcome {
                Ok(response) if response.status().is_success() => {
                    metrics::inc(&self.metrics.webhooks_delivered_total);
                    return;
                }
                Ok(response) => {
                    let status = response.status();
                    let retry = status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429;
                    if !retry {
                        metrics::inc(&self.metrics.webhook_attempt_errors_total);
                        metrics::inc(&self.metrics.webhooks_failed_total);
                        log::warn!("webhooks: {} {} refused with {status}; not retried", job.event.as_str(), job.id);
                        return;
                    }
                    format!("answered {status}")
                }
                Err(e) => e.to_string(),
            };
            metrics::inc(&self.metrics.webhook_attempt_errors_total);
            if attempt == self.max_attempts {
                metrics::inc(&self.metrics.webhooks_failed_total);
                log::warn!("webhooks: {} {} given up after {attempt} attempts: {failure}", job.event.as_str(), job.id);
                return;
            }
            log::debug!("webhooks: {} {} attempt {attempt} failed ({failure}); retrying", job.event.as_str(), job.id);
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(MAX_RETRY_WAIT);
        }
    }
}

/// An HTTP client for `http://` and `https://` (rustls with the ring provider and the system's roots).
fn client(timeout: Duration) -> awc::Client {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        log::debug!("webhooks: a system root certificate could not be read: {error}");
    }
    roots.add_parsable_certificates(found.certs);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|builder| builder.with_root_certificates(roots).with_no_client_auth());
    let connector = awc::Connector::new().timeout(timeout);
    let connector = match tls {
        Ok(mut config) => {
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            connector.rustls_0_23(Arc::new(config))
        }
        Err(e) => {
            log::warn!("webhooks: TLS unavailable ({e}); only http:// URLs will work");
            connector
        }
    };
    awc::Client::builder().connector(connector).timeout(timeout).finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_hex_hmac_sha256_of_the_body() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
