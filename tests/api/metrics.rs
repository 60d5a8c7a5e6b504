//! `/metrics` as a strict OpenMetrics parser reads it, on a node with traffic: every family declared once and
//! before its samples, unique names, counters ending in `_total`, HELP texts without a doubled full stop,
//! `# EOF` last; and the families operators look for first counting what happened.

use std::collections::{BTreeMap, HashSet};

use serde_json::json;
use std::time::Duration;

use switchboard::client::{Frame, Socket, V2Session};
use switchboard::wamp::{errors, v2::Message};
use switchboard::{Disconnect, Switchboard};

use crate::helpers::*;

/// One metric family as declared and sampled.
#[derive(Debug, Default)]
struct Family {
    kind: String,
    help: String,
    /// Sample name with its labels (`name{k="v"}`) → value.
    samples: BTreeMap<String, f64>,
}

/// The sample suffixes a family of `kind` may use (OpenMetrics 1.0, the types this node exposes).
fn suffixes(kind: &str) -> Option<&'static [&'static str]> {
    match kind {
        "counter" => Some(&["_total", "_created"]),
        "gauge" => Some(&[""]),
        "histogram" => Some(&["_bucket", "_sum", "_count", "_created"]),
        _ => None,
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// One sample line: name, label pairs, value.
type Sample = (String, Vec<(String, String)>, f64);

/// Parses `name{k="v",…} value` into the name, the label pairs and the value.
fn parse_sample(line: &str) -> Result<Sample, String> {
    let (series, value) = line.rsplit_once(' ').ok_or_else(|| format!("sample without a value: {line}"))?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse::<f64>().map_err(|_| format!("bad value in {line}"))?,
    };
    let (name, labels) = match series.split_once('{') {
        None => (series, Vec::new()),
        Some((name, rest)) => {
            let body = rest.strip_suffix('}').ok_or_else(|| format!("unclosed labels: {line}"))?;
            let mut labels = Vec::new();
            for pair in body.split(',').filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').ok_or_else(|| format!("bad label in {line}"))?;
                let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"'));
                let v = v.ok_or_else(|| format!("unquoted label value in {line}"))?;
                if !valid_name(k) || v.contains(['"', '\\', '\n']) {
                    return Err(format!("bad label in {line}"));
                }
                labels.push((k.to_owned(), v.to_owned()));
            }
            (name, labels)
        }
    };
    if !valid_name(name) {
        return Err(format!("bad metric name in {line}"));
    }
    Ok((name.to_owned(), labels, value))
}

/// Reads OpenMetrics text strictly; returns the families by name or the first rule broken.
fn parse_openmetrics(text: &str) -> Result<BTreeMap<String, Family>, String> {
    let body = text.strip_suffix("# EOF\n").ok_or("the text does not end with `# EOF`")?;
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    let mut finished: HashSet<String> = HashSet::new();
    let mut current: Option<String> = None;
    let mut sampled = false;
    for line in body.lines() {
        if let Some(meta) = line.strip_prefix("# ") {
            let mut parts = meta.splitn(3, ' ');
            let (keyword, name, rest) = (parts.next(), parts.next(), parts.next());
            let (Some(keyword), Some(name), Some(rest)) = (keyword, name, rest) else {
                return Err(format!("malformed metadata line: {line}"));
            };
            if current.as_deref() != Some(name) {
                // A new family: the previous one is over and may never come back.
                if let Some(previous) = current.take() {
                    finished.insert(previous);
                }
                if finished.contains(name) || families.contains_key(name) {
                    return Err(format!("family {name} declared twice (metadata after samples)"));
                }
                current = Some(name.to_owned());
                sampled = false;
                families.insert(name.to_owned(), Family::default());
            } else if sampled {
                return Err(format!("metadata after samples for {name}"));
            }
            let family = families.get_mut(name).expect("inserted above");
            match keyword {
                "HELP" if family.help.is_empty() => family.help = rest.to_owned(),
                "TYPE" if family.kind.is_empty() => family.kind = rest.to_owned(),
                "HELP" | "TYPE" => return Err(format!("second {keyword} for {name}")),
                other => return Err(format!("unexpected metadata {other} for {name}")),
            }
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            return Err(format!("unexpected line: {line:?}"));
        }
        let (sample, labels, value) = parse_sample(line)?;
        let name = current.clone().ok_or_else(|| format!("sample before any metadata: {line}"))?;
        let family = families.get_mut(&name).expect("current family exists");
        let allowed = suffixes(&family.kind).ok_or_else(|| format!("{name}: unknown type {:?}", family.kind))?;
        if !allowed.iter().any(|suffix| sample == format!("{name}{suffix}")) {
            return Err(format!("sample {sample} does not belong to family {name} ({})", family.kind));
        }
        let series = if labels.is_empty() {
            sample
        } else {
            let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
            format!("{sample}{{{}}}", labels.join(","))
        };
        if family.samples.insert(series.clone(), value).is_some() {
            return Err(format!("sample {series} appears twice"));
        }
        sampled = true;
    }
    for (name, family) in &families {
        if family.help.is_empty() || family.kind.is_empty() {
            return Err(format!("{name} lacks HELP or TYPE"));
        }
        if family.help.ends_with("..") {
            return Err(format!("{name}: HELP ends in '..': {}", family.help));
        }
        if family.kind == "counter" && name.ends_with("_total") {
            return Err(format!("counter family {name} must be named without _total (its samples carry it)"));
        }
        if family.samples.is_empty() {
            return Err(format!("{name} has no samples"));
        }
    }
    Ok(families)
}

/// The value of one series (`name` or `name{k="v"}`) in the parsed families.
fn value(families: &BTreeMap<String, Family>, series: &str) -> f64 {
    families
        .values()
        .find_map(|f| f.samples.get(series))
        .copied()
        .unwrap_or_else(|| panic!("no series {series} in /metrics"))
}

#[test]
fn the_strict_parser_refuses_what_prometheus_refuses() {
    let ok = "# HELP a_things Things.\n# TYPE a_things counter\na_things_total 1\n# EOF\n";
    assert!(parse_openmetrics(ok).is_ok());
    // The rendering this test was written against: one name declared as a gauge and as a counter.
    let twice = "# HELP a A.\n# TYPE a gauge\na 1\n# HELP a B.\n# TYPE a counter\na_total 1\n# EOF\n";
    assert!(parse_openmetrics(twice).unwrap_err().contains("metadata after samples"));
    let dots = "# HELP a Open sockets..\n# TYPE a gauge\na 1\n# EOF\n";
    assert!(parse_openmetrics(dots).unwrap_err().contains(".."));
    let no_eof = "# HELP a A.\n# TYPE a gauge\na 1\n";
    assert!(parse_openmetrics(no_eof).is_err());
    let late_meta = "# HELP a A.\na 1\n# TYPE a gauge\n# EOF\n";
    assert!(parse_openmetrics(late_meta).is_err());
    let wrong_suffix = "# HELP a A.\n# TYPE a counter\na 1\n# EOF\n";
    assert!(parse_openmetrics(wrong_suffix).is_err());
    let total_family = "# HELP a_total A.\n# TYPE a_total counter\na_total_total 1\n# EOF\n";
    assert!(parse_openmetrics(total_family).is_err());
}

#[actix_web::test]
async fn metrics_parse_strictly_and_count_connections_closes_lookups_and_queues_on_a_busy_node() {
    let app = spawn_app().await;
    // Traffic: a logged-in session that subscribes, publishes to itself, looks sessions up and says GOODBYE.
    let mut alice = connect_as(&app, "alice").await;
    alice.subscribe("chat.lobby").await.unwrap();
    alice.publish_acked("chat.lobby", dict(json!({"exclude_me": false})), vec![json!("hi")]).await.unwrap();
    alice.next_event(WAIT).await.unwrap();
    let count = alice.call("wamp.session.count", vec![], dict(json!({}))).await.unwrap();
    assert_eq!(count.0, vec![json!(1)]);
    alice.send(&Message::goodbye("wamp.close.close_realm", "done")).await.unwrap();
    assert_eq!(alice.socket.expect_close(WAIT).await.unwrap().0, 1000);
    // A socket that breaks the protocol.
    let mut rude = Socket::connect(&app.ws_url(), &["wamp.2.json"], &[]).await.unwrap();
    rude.send_text("not wamp").await.unwrap();
    assert!(matches!(rude.recv(WAIT).await.unwrap(), Frame::Text(t) if t.starts_with("[3,")));
    assert_eq!(rude.expect_close(WAIT).await.unwrap().0, 1002);
    eventually("both connections are counted closed", || {
        app.node.metrics().render().contains("switchboard_connections 0\n")
    })
    .await;

    let mut response = awc::Client::default()
        .get(app.http_url("/metrics"))
        .insert_header(("Accept", "application/openmetrics-text"))
        .send()
        .await
        .unwrap();
    let content_type = response.headers().get("content-type").unwrap().to_str().unwrap().to_owned();
    assert!(content_type.starts_with("application/openmetrics-text; version=1.0.0"), "{content_type}");
    let text = String::from_utf8(response.body().limit(1 << 22).await.unwrap().to_vec()).unwrap();
    let families = parse_openmetrics(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));

    assert_eq!(value(&families, "switchboard_connections"), 0.0);
    assert_eq!(value(&families, "switchboard_connections_accepted_total"), 2.0);
    assert_eq!(value(&families, r#"switchboard_connections_closed_total{reason="goodbye"}"#), 1.0);
    assert_eq!(value(&families, r#"switchboard_connections_closed_total{reason="protocol_error"}"#), 1.0);
    let closed: f64 = families["switchboard_connections_closed"].samples.values().sum();
    assert_eq!(closed, 2.0, "each connection is counted closed once");
    assert_eq!(value(&families, "switchboard_publishes_total"), 1.0);
    assert!(value(&families, "switchboard_registry_lookup_seconds_count") >= 1.0);
    assert_eq!(value(&families, "switchboard_outbound_queue_bytes"), 0.0, "every queued byte was sent");
    assert_eq!(value(&families, "switchboard_backplane_publish_seconds_count"), 0.0, "embedded: no backplane");
    let reasons: HashSet<&str> = families["switchboard_connections_closed"]
        .samples
        .keys()
        .map(|series| series.split('"').nth(1).expect("a reason label"))
        .collect();
    let expected: HashSet<&str> = switchboard::metrics::CloseReason::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(reasons, expected, "every reason is shown, and nothing else");
}

#[test]
fn the_readme_lists_every_family_and_every_close_reason() {
    let readme = include_str!("../../README.md");
    let section = readme.split("\n### Metrics\n").nth(1).expect("a Metrics section in the README");
    let section = section.split("\n## ").next().unwrap_or(section);
    let text = switchboard::metrics::Metrics::default().render();
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let family = line.split(' ').nth(2).unwrap().strip_prefix("switchboard_").unwrap();
        assert!(section.contains(&format!("`{family}`")), "the README's Metrics section does not list {family}");
    }
    for reason in switchboard::metrics::CloseReason::ALL {
        assert!(section.contains(&format!("`{}`", reason.as_str())), "the README does not list {reason:?}");
    }
}

#[actix_web::test]
async fn closes_the_node_or_the_application_asks_for_are_counted_by_reason() {
    let mut settings = test_settings();
    settings.session.max_sockets_per_user = 1;
    let app = spawn_with(Switchboard::builder(settings)).await;
    let mut oldest = connect_as(&app, "bob").await;
    let mut newest = connect_as(&app, "bob").await;
    assert_eq!(oldest.socket.expect_close(WAIT).await.unwrap().0, 1008);
    let kick = |reason: &str| Disconnect { code: 1008, reason: reason.to_owned(), message: "bye".to_owned() };
    assert_eq!(app.node.clients().disconnect_user("bob", kick(errors::KICKED)).await.unwrap(), 1);
    assert_eq!(newest.socket.expect_close(WAIT).await.unwrap().0, 1008);
    // A reason URI the application makes up is still one of the bounded label values.
    let mut carol = connect_as(&app, "carol").await;
    app.node.clients().disconnect_user("carol", kick("com.example.\nforged")).await.unwrap();
    assert_eq!(carol.socket.expect_close(WAIT).await.unwrap().0, 1008);
    let mut last = V2Session::connect(&app.ws_url(), "r").await.unwrap();
    app.node.close_all_connections(Duration::from_secs(2)).await;
    assert_eq!(last.socket.expect_close(WAIT).await.unwrap().0, 1001);
    eventually("every close is counted", || {
        [("too_many_sockets", 1), ("kicked", 2), ("shutdown", 1)]
            .iter()
            .all(|(reason, n)| closed_for(&app, reason) == *n)
    })
    .await;
    assert!(!app.node.metrics().render().contains("forged"));
}
