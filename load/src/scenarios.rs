//! The four scenarios. Each connects its clients (bounded concurrency), runs traffic for `--duration`,
//! drains for a bounded time, and returns a [`Report`].

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use hdrhistogram::Histogram;
use rand::Rng;
use serde_json::{json, Map, Value};
use switchboard::client::{ClientError, Socket, V1Session, V2Session};
use switchboard::wamp::{v1, Serializer};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::raw::RawReader;
use crate::report::{end_progress, histogram, proc_rss_kib, progress, rate_cap_note, Counters, CpuWindow, Report};
use crate::{Cli, ProtocolArg};

/// How long to wait for in-flight messages after traffic stops.
const DRAIN: Duration = Duration::from_secs(5);
/// How long one connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// Small socket buffers: a load client holds thousands of connections.
fn small_buffers() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(8 * 1024).write_buffer_size(0)
}

fn message(pad: &str) -> Value {
    json!({ "t": now_us(), "p": pad })
}

fn http_base(ws_url: &str) -> String {
    let http = ws_url.replacen("wss://", "https://", 1).replacen("ws://", "http://", 1);
    match http.rfind("/ws") {
        Some(i) => http[..i].to_owned(),
        None => http,
    }
}

/// Logs `username` in through the node's demo `/login`; returns the `Cookie` header value.
fn login(ws_url: &str, username: &str) -> anyhow::Result<String> {
    let agent = ureq::AgentBuilder::new().redirects(0).timeout(CONNECT_TIMEOUT).build();
    let url = format!("{}/login", http_base(ws_url));
    // ureq's error names the URL already; its source chain would repeat the OS error.
    let response = agent.post(&url).send_form(&[("username", username)]).map_err(|e| anyhow::anyhow!("POST {e}"))?;
    let cookie =
        response.header("set-cookie").context("no session cookie: is the demo (/login) enabled on the node?")?;
    Ok(cookie.split(';').next().unwrap_or_default().to_owned())
}

async fn login_all(cli: &Cli, count: usize, prefix: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::with_capacity(count);
    let mut tasks = JoinSet::new();
    for i in 0..count {
        let url = cli.urls[i % cli.urls.len()].clone();
        let name = format!("{prefix}{i}");
        tasks.spawn_blocking(move || login(&url, &name).map(|c| (i, name, c)));
        if tasks.len() >= 32 {
            let (i, n, c) = tasks.join_next().await.expect("a task")??;
            out.push((i, n, c));
        }
    }
    while let Some(r) = tasks.join_next().await {
        out.push(r??);
    }
    out.sort_by_key(|(i, _, _)| *i);
    Ok(out.into_iter().map(|(_, n, c)| (n, c)).collect())
}

/// A connection failure that names the URL (the client's own error does not).
fn at(url: &str, e: ClientError) -> anyhow::Error {
    anyhow::anyhow!("{url}: {e}")
}

/// Opens a WAMP v2 session (HELLO → WELCOME) within [`CONNECT_TIMEOUT`]; errors name the URL.
async fn open_v2(url: &str, cookie: Option<&str>) -> anyhow::Result<V2Session> {
    open_v2_in(url, cookie, Serializer::Json).await
}

/// [`open_v2`] speaking `serializer`.
async fn open_v2_in(url: &str, cookie: Option<&str>, serializer: Serializer) -> anyhow::Result<V2Session> {
    let headers: Vec<(&str, &str)> = cookie.map(|c| vec![("Cookie", c)]).unwrap_or_default();
    let open = async {
        let socket = Socket::connect_with(url, &[serializer.token()], &headers, small_buffers()).await?;
        V2Session::handshake_in(socket, "load", Default::default(), None, serializer).await
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, open).await {
        Ok(opened) => opened.map_err(|e| at(url, e)),
        Err(_) => anyhow::bail!("{url}: no WELCOME within {CONNECT_TIMEOUT:?}"),
    }
}

/// Opens a WAMP v1 session (WELCOME) within [`CONNECT_TIMEOUT`]; errors name the URL.
async fn open_v1(url: &str) -> anyhow::Result<V1Session> {
    let open = async { V1Session::welcome(Socket::connect_with(url, &["wamp"], &[], small_buffers()).await?).await };
    match tokio::time::timeout(CONNECT_TIMEOUT, open).await {
        Ok(opened) => opened.map_err(|e| at(url, e)),
        Err(_) => anyhow::bail!("{url}: no WELCOME within {CONNECT_TIMEOUT:?}"),
    }
}

/// A subscribed connection of either protocol.
enum Subscriber {
    V2(V2Session, ProtocolArg),
    V1(V1Session),
}

/// The send timestamp of an EVENT frame without decoding it: the `"t":` field of our payload (in a
/// MessagePack or CBOR frame: the key `t` and the unsigned integer after it). A load client must not be the
/// bottleneck, so it scans the frame's bytes for the one number it needs.
fn timestamp_in(frame: &[u8], protocol: ProtocolArg) -> Option<u64> {
    let be = |bytes: &[u8]| bytes.iter().fold(0u64, |n, b| n << 8 | u64::from(*b));
    // The key `t` as a one-character string, and the markers of a 64- and a 32-bit unsigned integer.
    let binary = match protocol {
        ProtocolArg::Msgpack => Some(([0xa1, b't'], 0xcf, 0xce)),
        ProtocolArg::Cbor => Some(([0x61, b't'], 0x1b, 0x1a)),
        _ => None,
    };
    if let Some((key, u64_marker, u32_marker)) = binary {
        let at = frame.windows(2).position(|w| w == key)?;
        let value = &frame[at + 2..];
        return match *value.first()? {
            m if m == u64_marker => Some(be(value.get(1..9)?)),
            m if m == u32_marker => Some(be(value.get(1..5)?)),
            _ => None,
        };
    }
    let at = frame.windows(4).position(|w| w == b"\"t\":")? + 4;
    let digits = &frame[at..];
    let end = digits.iter().position(|c| !c.is_ascii_digit()).unwrap_or(digits.len());
    std::str::from_utf8(&digits[..end]).ok()?.parse().ok()
}

fn is_event(frame: &[u8], protocol: ProtocolArg) -> bool {
    match protocol {
        ProtocolArg::V2 | ProtocolArg::Mixed => frame.starts_with(b"[36,"),
        ProtocolArg::V1 => frame.starts_with(b"[8,"),
        // An array of 4 to 6 elements whose first is 36.
        ProtocolArg::Msgpack => matches!(frame, [0x94..=0x96, 0x24, ..]),
        ProtocolArg::Cbor => matches!(frame, [0x84..=0x86, 0x18, 0x24, ..]),
    }
}

impl Subscriber {
    async fn open(url: &str, protocol: ProtocolArg, topic: &str, cookie: Option<&str>) -> anyhow::Result<Subscriber> {
        let serializer = match protocol {
            ProtocolArg::Msgpack => Serializer::MsgPack,
            ProtocolArg::Cbor => Serializer::Cbor,
            _ => Serializer::Json,
        };
        Ok(match protocol {
            ProtocolArg::V2 | ProtocolArg::Msgpack | ProtocolArg::Cbor | ProtocolArg::Mixed => {
                let mut s = open_v2_in(url, cookie, serializer).await?;
                s.subscribe(topic).await.map_err(|e| at(url, e))?;
                Subscriber::V2(s, protocol)
            }
            ProtocolArg::V1 => {
                let mut s = open_v1(url).await?;
                s.send(&v1::Message::Subscribe { topic: topic.to_owned() }).await.map_err(|e| at(url, e))?;
                // A round trip on the same socket: the SUBSCRIBE was processed.
                s.call("wamp.session.count", vec![]).await.map_err(|e| at(url, e))?;
                Subscriber::V1(s)
            }
        })
    }

    /// The raw socket (after the handshake), for the fast receive path.
    fn into_socket(self) -> (Socket, ProtocolArg) {
        match self {
            Subscriber::V2(s, protocol) => (s.socket, protocol),
            Subscriber::V1(s) => (s.socket, ProtocolArg::V1),
        }
    }

    /// Next event payload (first argument), or `None` after `wait` without one.
    async fn next(&mut self, wait: Duration) -> Result<Option<Value>, ClientError> {
        let result = match self {
            Subscriber::V2(s, _) => s.next_event(wait).await.map(|(_, _, _, args)| args.into_iter().next()),
            Subscriber::V1(s) => s.next_event(wait).await.map(|(_, event)| Some(event)),
        };
        match result {
            Ok(v) => Ok(v),
            Err(ClientError::Timeout(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Receives until `stop`, counting deliveries and recording latency. Over plain TCP the frames are parsed in
/// place ([`RawReader`]): one clock read per socket read, no allocation or timer per frame.
async fn receive(s: Subscriber, counters: Arc<Counters>, mut stop: watch::Receiver<bool>) -> Histogram<u64> {
    let (socket, protocol) = s.into_socket();
    let mut socket = match socket.into_tcp() {
        Ok(tcp) => RawReader::new(tcp),
        Err(tls) => return receive_frames(*tls, protocol, counters, stop).await,
    };
    let mut h = histogram();
    loop {
        if *stop.borrow() {
            break;
        }
        let (mut seen, mut now) = (0, None);
        let read = tokio::select! {
            _ = stop.changed() => break,
            read = socket.read(|text| {
                if is_event(text, protocol) {
                    seen += 1;
                    if let Some(t) = timestamp_in(text, protocol) {
                        let now = *now.get_or_insert_with(now_us);
                        let _ = h.record(now.saturating_sub(t).max(1));
                    }
                }
            }) => read,
        };
        counters.delivered.fetch_add(seen, Ordering::Relaxed);
        if !matches!(read, Ok(true)) {
            counters.errors.fetch_add(1, Ordering::Relaxed);
            break;
        }
    }
    h
}

/// The general receive path (TLS): one frame at a time through the WebSocket client.
async fn receive_frames(
    mut socket: Socket,
    protocol: ProtocolArg,
    counters: Arc<Counters>,
    mut stop: watch::Receiver<bool>,
) -> Histogram<u64> {
    let mut h = histogram();
    loop {
        if *stop.borrow() {
            break;
        }
        tokio::select! {
            _ = stop.changed() => break,
            frame = socket.recv(Duration::from_millis(500)) => match frame {
                Ok(switchboard::client::Frame::Text(text)) if is_event(text.as_bytes(), protocol) => {
                    counters.delivered.fetch_add(1, Ordering::Relaxed);
                    if let Some(t) = timestamp_in(text.as_bytes(), protocol) {
                        let _ = h.record(now_us().saturating_sub(t).max(1));
                    }
                }
                Ok(switchboard::client::Frame::Binary(bytes)) if is_event(&bytes, protocol) => {
                    counters.delivered.fetch_add(1, Ordering::Relaxed);
                    if let Some(t) = timestamp_in(&bytes, protocol) {
                        let _ = h.record(now_us().saturating_sub(t).max(1));
                    }
                }
                Ok(switchboard::client::Frame::Text(_) | switchboard::client::Frame::Binary(_)) => {}
                Err(ClientError::Timeout(_)) => {}
                _ => {
                    counters.errors.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
    }
    h
}

/// Opens `n` things with at most `concurrency` in flight; fails if any fails.
async fn open_many<T: Send + 'static, F>(
    n: usize,
    concurrency: usize,
    make: impl Fn(usize) -> F,
) -> anyhow::Result<Vec<T>>
where
    F: std::future::Future<Output = anyhow::Result<T>> + Send + 'static,
{
    let gate = Arc::new(Semaphore::new(concurrency));
    let mut tasks = JoinSet::new();
    for i in 0..n {
        let permit = gate.clone().acquire_owned().await.expect("semaphore open");
        let fut = make(i);
        tasks.spawn(async move {
            let r = tokio::time::timeout(CONNECT_TIMEOUT, fut).await;
            drop(permit);
            (i, r)
        });
    }
    let mut out: Vec<(usize, T)> = Vec::with_capacity(n);
    while let Some(joined) = tasks.join_next().await {
        let (i, r) = joined?;
        let item = r.map_err(|_| anyhow::anyhow!("connection {i} timed out"))??;
        out.push((i, item));
    }
    out.sort_by_key(|(i, _)| *i);
    Ok(out.into_iter().map(|(_, t)| t).collect())
}

/// Publishes at `rate` per second across `publishers` until `duration` passes; each message goes to
/// `topic_of(n)` with options from `options_of(n)`.
async fn publish_for(
    publishers: Vec<V2Session>,
    rate: u64,
    duration: Duration,
    pad: Arc<String>,
    counters: Arc<Counters>,
    topic_of: Arc<dyn Fn(u64) -> String + Send + Sync>,
    options_of: Arc<dyn Fn(u64) -> Map<String, Value> + Send + Sync>,
) -> Vec<u64> {
    let per = (rate as f64 / publishers.len() as f64).max(0.001);
    let mut tasks = JoinSet::new();
    let count = publishers.len() as u64;
    for (k, mut p) in publishers.into_iter().enumerate() {
        let (pad, counters, topic_of, options_of) =
            (pad.clone(), counters.clone(), topic_of.clone(), options_of.clone());
        tasks.spawn(async move {
            let interval = Duration::from_secs_f64(1.0 / per);
            // Publisher k starts k/count of an interval late: together they send evenly spread over time
            // instead of all at once every interval (a burst that would measure queueing, not latency).
            let started = Instant::now() + interval.mul_f64(k as f64 / count as f64);
            let mut sent_per_topic: Vec<u64> = Vec::new();
            let mut n: u64 = k as u64;
            let mut i: u64 = 0;
            while started.elapsed() < duration {
                let due = started + interval.mul_f64(i as f64);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    tokio::time::sleep(wait).await;
                }
                let topic = topic_of(n);
                match p.publish(&topic, options_of(n), vec![message(&pad)]).await {
                    Ok(()) => {
                        counters.sent.fetch_add(1, Ordering::Relaxed);
                        let idx = n as usize;
                        if sent_per_topic.len() <= idx {
                            sent_per_topic.resize(idx + 1, 0);
                        }
                        sent_per_topic[idx] += 1;
                    }
                    Err(_) => {
                        counters.errors.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
                n += count;
                i += 1;
            }
            (p, sent_per_topic)
        });
    }
    let mut per_message: Vec<u64> = Vec::new();
    let mut keep = Vec::new();
    while let Some(Ok((p, v))) = tasks.join_next().await {
        for (i, c) in v.into_iter().enumerate() {
            if per_message.len() <= i {
                per_message.resize(i + 1, 0);
            }
            per_message[i] += c;
        }
        keep.push(p);
    }
    // Close cleanly: dropping a socket with unread data makes the kernel send a reset, which may discard
    // the last publications still in the server's receive buffer.
    for mut p in keep {
        let _ = p.socket.close().await;
        let _ = p.socket.expect_close(Duration::from_secs(2)).await;
    }
    per_message
}

async fn drain(counters: &Counters, expected: u64) {
    let deadline = Instant::now() + DRAIN;
    while Counters::get(&counters.delivered) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn stop_receivers(stop: watch::Sender<bool>, receivers: JoinSet<Histogram<u64>>) -> Histogram<u64> {
    let _ = stop.send(true);
    let mut all = histogram();
    let mut receivers = receivers;
    while let Some(Ok(h)) = receivers.join_next().await {
        let _ = all.add(h);
    }
    all
}

fn params(cli: &Cli) -> Value {
    json!({
        "urls": cli.urls, "connections": cli.connections, "rate": cli.rate,
        "duration_s": cli.duration.as_secs_f64(), "payload": cli.payload,
        "protocol": format!("{:?}", cli.protocol).to_lowercase(), "topics": cli.topics, "publishers": cli.publishers,
    })
}

/// Subscribers receiving (counted, timed) and publishers ready to send: the set-up fanout and churn share.
struct Traffic {
    counters: Arc<Counters>,
    publishers: Vec<V2Session>,
    stop: watch::Sender<bool>,
    receivers: JoinSet<Histogram<u64>>,
}

impl Traffic {
    /// Opens `--connections` subscribers (subscriber `i` on `topic_of(i)`, nodes round robin) and
    /// `--publishers` publishers, and starts the receivers.
    async fn open(cli: &Cli, topic_of: impl Fn(usize) -> String) -> anyhow::Result<Traffic> {
        let (urls, protocol) = (Arc::new(cli.urls.clone()), cli.protocol);
        let subs = open_many(cli.connections, cli.concurrency, |i| {
            let (urls, topic) = (urls.clone(), topic_of(i));
            async move { Subscriber::open(&urls[i % urls.len()], protocol.for_subscriber(i), &topic, None).await }
        })
        .await
        .context("opening subscribers")?;
        let publishers = open_many(cli.publishers, cli.concurrency, |i| {
            let urls = urls.clone();
            async move { open_v2(&urls[(i + 1) % urls.len()], None).await }
        })
        .await?;
        Ok(Traffic::start(subs, publishers).await)
    }

    /// Lets the last subscriptions settle cluster-wide (v1 has no SUBSCRIBED), then starts counting.
    async fn start(subs: Vec<Subscriber>, publishers: Vec<V2Session>) -> Traffic {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let counters = Arc::new(Counters::default());
        let (stop, watch_rx) = watch::channel(false);
        let mut receivers = JoinSet::new();
        for s in subs {
            receivers.spawn(receive(s, counters.clone(), watch_rx.clone()));
        }
        Traffic { counters, publishers, stop, receivers }
    }

    /// The measured window: a progress bar and the server's CPU from now on.
    fn begin(&self, label: &'static str, cli: &Cli) -> Window {
        Window {
            started: Instant::now(),
            bar: progress(label, cli.duration, self.counters.clone()),
            cpu: CpuWindow::start(cli.server_pid),
        }
    }

    /// Ends a run whose traffic took `elapsed`: waits (bounded) for `expected` deliveries, reads the server's
    /// CPU, stops the receivers and builds the report.
    async fn finish(
        self,
        window: Window,
        scenario: &'static str,
        cli: &Cli,
        elapsed: Duration,
        expected: u64,
        mut extra: Vec<(&'static str, Value)>,
    ) -> Report {
        let counters = self.counters;
        drain(&counters, expected).await;
        extra.extend(window.cpu.finish(Counters::get(&counters.delivered)));
        end_progress(window.bar);
        let latency = stop_receivers(self.stop, self.receivers).await;
        Report {
            scenario,
            params: params(cli),
            elapsed,
            sent: Counters::get(&counters.sent),
            expected,
            delivered: Counters::get(&counters.delivered),
            errors: Counters::get(&counters.errors),
            latency_of: "delivery",
            latency,
            extra,
            notes: Vec::new(),
        }
    }
}

/// The measured part of a run.
struct Window {
    started: Instant,
    bar: Option<tokio::task::JoinHandle<()>>,
    cpu: CpuWindow,
}

/// N subscribers spread over topics and nodes; publishers at `--rate` in total, round robin over topics.
pub async fn fanout(cli: &Cli) -> anyhow::Result<Report> {
    let topics = cli.topics;
    let mut traffic = Traffic::open(cli, move |i| format!("load.fanout.{}", i % topics)).await?;
    let subscribers_per_topic: Vec<u64> =
        (0..topics).map(|t| (0..cli.connections).filter(|i| i % topics == t).count() as u64).collect();
    let window = traffic.begin("fanout", cli);
    let per_message = publish_for(
        std::mem::take(&mut traffic.publishers),
        cli.rate,
        cli.duration,
        Arc::new("x".repeat(cli.payload)),
        traffic.counters.clone(),
        Arc::new(move |n| format!("load.fanout.{}", n % topics as u64)),
        Arc::new(|_| Map::new()),
    )
    .await;
    let elapsed = window.started.elapsed();
    // per_message is indexed by message number; message n went to topic n % topics.
    let expected: u64 = per_message.iter().enumerate().map(|(n, c)| c * subscribers_per_topic[n % topics]).sum();
    Ok(traffic.finish(window, "fanout", cli, elapsed, expected, Vec::new()).await)
}

/// N logged-in users on random nodes; each sends to a random other user (eligible_authid) at `--rate` in total.
pub async fn direct(cli: &Cli) -> anyhow::Result<Report> {
    let users = login_all(cli, cli.connections, "load-user-").await.context("logging users in")?;
    let n = users.len();
    let urls = Arc::new(cli.urls.clone());
    let users = Arc::new(users);
    // Each user has a receiving connection and a sending one, on random nodes.
    let receivers = open_many(n, cli.concurrency, |i| {
        let (urls, users) = (urls.clone(), users.clone());
        let node = rand::rng().random_range(0..urls.len());
        async move { Subscriber::open(&urls[node], ProtocolArg::V2, "load.direct", Some(&users[i].1)).await }
    })
    .await
    .context("opening receivers")?;
    let senders = open_many(n, cli.concurrency, |i| {
        let (urls, users) = (urls.clone(), users.clone());
        let node = rand::rng().random_range(0..urls.len());
        async move { open_v2(&urls[node], Some(&users[i].1)).await }
    })
    .await?;
    let mut traffic = Traffic::start(receivers, senders).await;
    let window = traffic.begin("direct", cli);
    let names: Arc<Vec<String>> = Arc::new(users.iter().map(|(name, _)| name.clone()).collect());
    publish_for(
        std::mem::take(&mut traffic.publishers),
        cli.rate,
        cli.duration,
        Arc::new("x".repeat(cli.payload)),
        traffic.counters.clone(),
        Arc::new(|_| "load.direct".to_owned()),
        Arc::new(move |_| {
            let to = &names[rand::rng().random_range(0..names.len())];
            let mut o = Map::new();
            o.insert("eligible_authid".into(), json!([to]));
            o.insert("exclude_me".into(), json!(false));
            o
        }),
    )
    .await;
    let elapsed = window.started.elapsed();
    // Each message targets exactly one user, who has one receiving socket.
    let expected = Counters::get(&traffic.counters.sent);
    Ok(traffic.finish(window, "direct", cli, elapsed, expected, Vec::new()).await)
}

/// `resume`: `--rate` events (the count, here) published on `load.resume`, then `--connections` clients
/// subscribing with `resume_after` the publication before them, at once; each must receive every event, in
/// order, replayed. The latency is from its SUBSCRIBE to its last event.
pub async fn resume(cli: &Cli) -> anyhow::Result<Report> {
    const TOPIC: &str = "load.resume";
    let events = cli.rate as usize;
    let url = &cli.urls[0];
    let mut publisher = open_v2(url, None).await?;
    let pad = "x".repeat(cli.payload);
    let ack = || serde_json::Map::new();
    let before = publisher.publish_acked(TOPIC, ack(), vec![message(&pad)]).await.map_err(|e| at(url, e))?;
    let mut published = Vec::with_capacity(events);
    for _ in 0..events {
        published.push(publisher.publish_acked(TOPIC, ack(), vec![message(&pad)]).await.map_err(|e| at(url, e))?);
    }
    let published = Arc::new(published);
    let counters = Arc::new(Counters::default());
    let cpu = CpuWindow::start(cli.server_pid);
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for i in 0..cli.connections {
        let (url, published, counters) = (cli.urls[i % cli.urls.len()].clone(), published.clone(), counters.clone());
        tasks.spawn(async move {
            let mut client = open_v2(&url, None).await?;
            let asked = Instant::now();
            let options = json!({"resume_after": before});
            let Value::Object(options) = options else { unreachable!() };
            client.subscribe_with(TOPIC, options).await.map_err(|e| at(&url, e))?;
            for expected in published.iter() {
                let (_, id, details, _) = client.next_event(Duration::from_secs(30)).await.map_err(|e| at(&url, e))?;
                anyhow::ensure!(id == *expected, "{url}: got publication {id}, expected {expected}");
                anyhow::ensure!(details.get("history_gap").is_none(), "{url}: history gap");
                counters.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, anyhow::Error>(asked.elapsed().as_micros() as u64)
        });
    }
    let mut latency = histogram();
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(us)) => {
                let _ = latency.record(us.max(1));
            }
            Ok(Err(e)) => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
                first_error.get_or_insert(e);
            }
            Err(e) => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
                first_error.get_or_insert(e.into());
            }
        }
    }
    let elapsed = started.elapsed();
    let delivered = Counters::get(&counters.delivered);
    let mut extra = cpu.finish(delivered);
    extra.push(("clients_recovered", json!(latency.len())));
    Ok(Report {
        scenario: "resume",
        params: json!({ "urls": cli.urls, "connections": cli.connections, "events": events, "payload": cli.payload }),
        elapsed,
        sent: (events * cli.connections) as u64,
        expected: (events * cli.connections) as u64,
        delivered,
        errors: Counters::get(&counters.errors),
        latency_of: "recovery",
        latency,
        extra,
        notes: first_error.map(|e| format!("first error: {e:#}")).into_iter().collect(),
    })
}

/// A logged-in watcher of `switchboard.user.on_online`, recording when each user's event arrived.
struct PresenceWatch {
    seen: Arc<std::sync::Mutex<std::collections::HashMap<String, Instant>>>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl PresenceWatch {
    /// How long to wait for the last users' events once every connection is open.
    const SETTLE: Duration = Duration::from_secs(15);

    async fn start(url: &str) -> anyhow::Result<PresenceWatch> {
        let cookie = login(url, "load-presence-watcher")?;
        let mut session = open_v2(url, Some(&cookie)).await?;
        session.subscribe("switchboard.user.on_online").await.map_err(|e| at(url, e)).context("watching presence")?;
        let seen: Arc<std::sync::Mutex<std::collections::HashMap<String, Instant>>> = Arc::default();
        let (stop, mut stopped) = watch::channel(false);
        let record = seen.clone();
        let task = tokio::spawn(async move {
            while !*stopped.borrow() {
                tokio::select! {
                    event = session.next_event(Duration::from_secs(1)) => match event {
                        Ok((_, _, _, args)) => {
                            if let Some(authid) = args.first().and_then(Value::as_str) {
                                record.lock().unwrap().entry(authid.to_owned()).or_insert_with(Instant::now);
                            }
                        }
                        Err(ClientError::Timeout(_)) => {}
                        Err(e) => {
                            eprintln!("presence watcher: {e}");
                            return;
                        }
                    },
                    _ = stopped.changed() => {}
                }
            }
        });
        Ok(PresenceWatch { seen, stop, task })
    }

    /// Waits (at most [`Self::SETTLE`]) for every user of `welcomed` (authid, connect start, WELCOME), then
    /// reports how long after her WELCOME her `on_online` arrived (0 when it came first), and after her connect
    /// started (TCP, upgrade, HELLO: what a user opening the page waits for her friends to see her).
    async fn finish(self, welcomed: &[(&str, Instant, Instant)]) -> Vec<(&'static str, Value)> {
        let deadline = Instant::now() + Self::SETTLE;
        while Instant::now() < deadline {
            let all_seen = {
                let seen = self.seen.lock().unwrap();
                welcomed.iter().all(|(user, _, _)| seen.contains_key(*user))
            };
            if all_seen {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = self.stop.send(true);
        let _ = self.task.await;
        let seen = self.seen.lock().unwrap();
        let (mut after_welcome, mut after_start, mut missing, mut first) = (histogram(), histogram(), 0u64, 0u64);
        for (user, begun, welcome) in welcomed {
            match seen.get(*user) {
                Some(at) => {
                    first += u64::from(at < welcome);
                    let _ = after_welcome.record(at.saturating_duration_since(*welcome).as_micros().max(1) as u64);
                    let _ = after_start.record(at.saturating_duration_since(*begun).as_micros().max(1) as u64);
                }
                None => missing += 1,
            }
        }
        let ms = |us: u64| us as f64 / 1000.0;
        vec![
            ("presence_events", json!(after_welcome.len())),
            ("presence_missing", json!(missing)),
            ("presence_before_welcome", json!(first)),
            ("presence_p50_ms", json!(ms(after_welcome.value_at_quantile(0.5)))),
            ("presence_p99_ms", json!(ms(after_welcome.value_at_quantile(0.99)))),
            ("presence_max_ms", json!(ms(after_welcome.max()))),
            ("presence_from_connect_p50_ms", json!(ms(after_start.value_at_quantile(0.5)))),
            ("presence_from_connect_p99_ms", json!(ms(after_start.value_at_quantile(0.99)))),
        ]
    }
}

/// Opens `--connections` sockets (with session cookies when `--login`) as fast as `--concurrency` and `--rate`
/// allow, keeps them until all are open, then closes them.
pub async fn connect(cli: &Cli) -> anyhow::Result<Report> {
    let counters = Arc::new(Counters::default());
    let logins = if cli.login {
        // With --presence every connection is a user of her own: each one's first socket is announced.
        let users = if cli.presence { cli.connections } else { cli.connections.min(1000) };
        login_all(cli, users, "load-conn-").await?
    } else {
        Vec::new()
    };
    let cookies: Arc<Vec<String>> = Arc::new(logins.iter().map(|(_, c)| c.clone()).collect());
    let watch = match cli.presence {
        true => Some(PresenceWatch::start(cli.watch_url.as_deref().unwrap_or(&cli.urls[0])).await?),
        false => None,
    };
    let urls = Arc::new(cli.urls.clone());
    let rss_before = cli.server_pid.and_then(proc_rss_kib);
    let cpu = CpuWindow::start(cli.server_pid);
    let bar = progress("connect", cli.duration, counters.clone());
    let gate = Arc::new(Semaphore::new(cli.concurrency));
    let mut tasks = JoinSet::new();
    let started = Instant::now();
    let interval = (cli.rate > 0).then(|| Duration::from_secs_f64(1.0 / cli.rate as f64));
    for i in 0..cli.connections {
        if started.elapsed() > cli.duration {
            break;
        }
        if let Some(interval) = interval {
            let due = started + interval.mul_f64(i as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                tokio::time::sleep(wait).await;
            }
        }
        let permit = gate.clone().acquire_owned().await.expect("semaphore open");
        let (urls, cookies, task_counters) = (urls.clone(), cookies.clone(), counters.clone());
        tasks.spawn(async move {
            let url = &urls[i % urls.len()];
            let cookie = (!cookies.is_empty()).then(|| cookies[i % cookies.len()].as_str());
            let begun = Instant::now();
            let opened = open_v2(url, cookie).await;
            drop(permit);
            match opened {
                Ok(session) => {
                    task_counters.delivered.fetch_add(1, Ordering::Relaxed);
                    Ok((begun.elapsed().as_micros() as u64, session, i, begun, Instant::now()))
                }
                Err(e) => {
                    task_counters.errors.fetch_add(1, Ordering::Relaxed);
                    Err(e)
                }
            }
        });
        counters.sent.fetch_add(1, Ordering::Relaxed);
    }
    // Connects were started at this rate; at the --rate cap the result measures the cap, not the server.
    let started_per_s = Counters::get(&counters.sent) as f64 / started.elapsed().as_secs_f64().max(1e-9);
    let mut latency = histogram();
    let mut open = Vec::new();
    let mut welcomed = Vec::new();
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok((us, session, i, begun, at))) => {
                let _ = latency.record(us.max(1));
                open.push(session);
                welcomed.push((i, begun, at));
            }
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(e.into());
            }
        }
    }
    let elapsed = started.elapsed();
    end_progress(bar);
    let opened = open.len() as u64;
    if let (0, Some(e)) = (opened, first_error.as_ref()) {
        anyhow::bail!("no connection opened: {e:#}");
    }
    let mut notes: Vec<String> = first_error.map(|e| format!("first connection error: {e:#}")).into_iter().collect();
    notes.extend(rate_cap_note("--rate", cli.rate, started_per_s));
    let mut extra = vec![("connects_per_s", json!(opened as f64 / elapsed.as_secs_f64().max(1e-9)))];
    extra.extend(cpu.finish(0));
    if let Some(watch) = watch {
        let welcomed: Vec<(&str, Instant, Instant)> =
            welcomed.iter().map(|(i, begun, at)| (logins[*i].0.as_str(), *begun, *at)).collect();
        extra.extend(watch.finish(&welcomed).await);
    }
    if !cli.hold.is_zero() {
        eprintln!("connect: {opened} connections open; holding them for {}", humantime::format_duration(cli.hold));
        tokio::time::sleep(cli.hold).await;
    }
    if let (Some(before), Some(after)) = (rss_before, cli.server_pid.and_then(proc_rss_kib)) {
        extra.push(("server_rss_kib_before", json!(before)));
        extra.push(("server_rss_kib_after", json!(after)));
        if opened > 0 {
            extra.push(("server_rss_kib_per_connection", json!((after as f64 - before as f64) / opened as f64)));
        }
    }
    drop(open);
    Ok(Report {
        scenario: "connect",
        params: json!({ "urls": cli.urls, "connections": cli.connections, "rate": cli.rate,
                        "concurrency": cli.concurrency, "login": cli.login }),
        elapsed,
        sent: Counters::get(&counters.sent),
        expected: Counters::get(&counters.sent),
        delivered: opened,
        errors: Counters::get(&counters.errors),
        latency_of: "handshake",
        latency,
        extra,
        notes,
    })
}

/// Steady subscribers receive fan-out traffic while `--churn-rate` connections per second open, subscribe
/// and close. Loss is counted for the steady subscribers only.
pub async fn churn(cli: &Cli) -> anyhow::Result<Report> {
    let urls = Arc::new(cli.urls.clone());
    let protocol = cli.protocol;
    let mut traffic = Traffic::open(cli, |_| "load.churn".to_owned()).await?;
    // The churners: open, subscribe, read briefly, close.
    let churned = Arc::new(Counters::default());
    let churn_task = {
        let (urls, churned, rate, duration) = (urls.clone(), churned.clone(), cli.churn_rate, cli.duration);
        tokio::spawn(async move {
            if rate == 0 {
                return;
            }
            let started = Instant::now();
            let interval = Duration::from_secs_f64(1.0 / rate as f64);
            let mut tasks = JoinSet::new();
            let mut i = 0u64;
            while started.elapsed() < duration {
                let due = started + interval.mul_f64(i as f64);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    tokio::time::sleep(wait).await;
                }
                let url = urls[i as usize % urls.len()].clone();
                let churned = churned.clone();
                tasks.spawn(async move {
                    let stay = Duration::from_millis(rand::rng().random_range(100..1000));
                    match Subscriber::open(&url, protocol, "load.churn", None).await {
                        Ok(mut s) => {
                            churned.sent.fetch_add(1, Ordering::Relaxed);
                            let until = Instant::now() + stay;
                            while Instant::now() < until {
                                if s.next(until - Instant::now()).await.is_err() {
                                    break;
                                }
                            }
                        }
                        Err(_) => {
                            churned.errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
                while tasks.try_join_next().is_some() {}
                i += 1;
            }
            while tasks.join_next().await.is_some() {}
        })
    };
    let window = traffic.begin("churn", cli);
    publish_for(
        std::mem::take(&mut traffic.publishers),
        cli.rate,
        cli.duration,
        Arc::new("x".repeat(cli.payload)),
        traffic.counters.clone(),
        Arc::new(|_| "load.churn".to_owned()),
        Arc::new(|_| Map::new()),
    )
    .await;
    let elapsed = window.started.elapsed();
    // Loss counts for the steady subscribers only; churners do not add to `delivered`.
    let expected = Counters::get(&traffic.counters.sent) * cli.connections as u64;
    let _ = churn_task.await;
    let extra = vec![
        ("churned_connections", json!(Counters::get(&churned.sent))),
        ("churn_failures", json!(Counters::get(&churned.errors))),
    ];
    Ok(traffic.finish(window, "churn", cli, elapsed, expected, extra).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_found_without_decoding() {
        let frame = r#"[36,1,2,{},[{"t":1700000000123456,"p":"xx"}]]"#;
        assert_eq!(timestamp_in(frame.as_bytes(), ProtocolArg::V2), Some(1_700_000_000_123_456));
        assert!(is_event(frame.as_bytes(), ProtocolArg::V2));
        let event = switchboard::wamp::v2::Message::Event {
            subscription: 1,
            publication: 2,
            details: Map::new(),
            args: Some(vec![json!({"t": 1_700_000_000_123_456u64, "p": "xx"})]),
            kwargs: None,
        };
        for (serializer, protocol) in
            [(Serializer::MsgPack, ProtocolArg::Msgpack), (Serializer::Cbor, ProtocolArg::Cbor)]
        {
            let frame = event.encode_as(serializer);
            assert!(is_event(&frame, protocol), "{protocol:?}: {frame:x?}");
            assert_eq!(timestamp_in(&frame, protocol), Some(1_700_000_000_123_456), "{protocol:?}");
        }
        assert_eq!(timestamp_in(br#"[8,"topic",{"t":42,"p":""}]"#, ProtocolArg::V1), Some(42));
        assert_eq!(timestamp_in(b"[36,1,2,{},[]]", ProtocolArg::V2), None);
    }
}
