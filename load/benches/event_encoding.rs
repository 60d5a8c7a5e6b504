//! What one publication's EVENT costs to write, per serializer, for a small (100 B) and a larger (4 KiB, nested)
//! payload: JSON by splicing the payload's JSON text (what a topic does), MessagePack and CBOR by transcoding
//! that text in one pass (what a topic does now), and, for comparison, by parsing it into a value tree and
//! encoding the tree (what a binary EVENT would cost without the transcoder). A topic writes one EVENT per form
//! its subscribers use and per publication, whatever its number of subscribers.
//!
//! Run: `cargo bench --bench event_encoding` (results in `load/BENCHMARKS.md`).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use serde_json::{json, Map, Value};
use switchboard::wamp::{v2, Serializer};

fn payloads() -> [(&'static str, String); 2] {
    let small = json!([{"t": 1_700_000_000_123_456u64, "p": "x".repeat(64)}]).to_string();
    let rows: Vec<Value> = (0..40)
        .map(|i| json!({"id": i, "name": format!("row {i}"), "price": i as f64 * 1.25, "tags": ["a", "b"], "ok": true}))
        .collect();
    let large = json!([{"rows": rows, "blob": "\u{0}AAECAwQFBgcICQ=="}]).to_string();
    [("100B", small), ("4KiB", large)]
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("event");
    let details = Map::new();
    for (size, args) in payloads() {
        group.bench_with_input(BenchmarkId::new("json splice", size), &args, |b, args| {
            b.iter(|| v2::encode_event(black_box(7), 9, "{}", &format!(",{args}")))
        });
        for serializer in [Serializer::MsgPack, Serializer::Cbor] {
            let name = serializer.token().trim_start_matches("wamp.2.");
            group.bench_with_input(BenchmarkId::new(format!("{name} transcode"), size), &args, |b, args| {
                b.iter(|| serializer.encode_event(black_box(7), 9, &details, Some(args), None).unwrap())
            });
            group.bench_with_input(BenchmarkId::new(format!("{name} via tree"), size), &args, |b, args| {
                b.iter(|| {
                    let args: Vec<Value> = serde_json::from_str(black_box(args)).unwrap();
                    let event = v2::Message::Event {
                        subscription: 7,
                        publication: 9,
                        details: Map::new(),
                        args: Some(args),
                        kwargs: None,
                    };
                    event.encode_as(serializer)
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
