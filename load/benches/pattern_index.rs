//! How the broker finds the topics a publication reaches, and what a pattern subscription costs to add and
//! remove, with no patterns and with the attack of issue #9 (60 connections × 1,024 distinct patterns): the
//! scan the broker used before (`Vec<TopicKey>` checked with `MatchPolicy::matches` per publication, removed
//! with `Vec::retain`) against the [`SubscriptionIndex`] it uses now.
//!
//! Run: `cargo bench --bench pattern_index` (results in `load/BENCHMARKS.md`).

use std::collections::HashMap;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use switchboard::topic::index::SubscriptionIndex;
use switchboard::topic::TopicKey;
use switchboard::wamp::uri::MatchPolicy;

/// The attack: 60 connections with 1,024 distinct patterns each, wildcard and prefix alternating by connection.
fn attack() -> Vec<TopicKey> {
    (0..60)
        .flat_map(|c| {
            (0..1024).map(move |i| match c % 2 {
                0 => TopicKey { uri: format!("game.c{c}.p{i}..update").into(), policy: MatchPolicy::Wildcard },
                _ => TopicKey { uri: format!("game.c{c}.p{i}.").into(), policy: MatchPolicy::Prefix },
            })
        })
        .collect()
}

/// The broker as it was: every topic in a hash map, pattern keys in a list scanned per publication.
#[derive(Default)]
struct Scan {
    topics: HashMap<TopicKey, usize>,
    patterns: Vec<TopicKey>,
}

impl Scan {
    fn subscribe(&mut self, key: TopicKey) {
        if key.policy != MatchPolicy::Exact {
            self.patterns.push(key.clone());
        }
        self.topics.insert(key, 1);
    }

    fn unsubscribe(&mut self, key: &TopicKey) {
        self.topics.remove(key);
        self.patterns.retain(|k| k != key);
    }

    fn fan_out(&self, topic: &str) -> usize {
        let mut reached = self.topics.get(&TopicKey::exact(topic)).copied().unwrap_or(0);
        for key in &self.patterns {
            if key.policy.matches(&key.uri, topic) {
                reached += self.topics.get(key).copied().unwrap_or(0);
            }
        }
        reached
    }
}

/// The broker now: one index for every policy.
#[derive(Default)]
struct Index(SubscriptionIndex<usize>);

impl Index {
    fn subscribe(&mut self, key: &TopicKey) {
        self.0.insert(&key.uri, key.policy, 1);
    }

    fn unsubscribe(&mut self, key: &TopicKey) {
        self.0.remove(&key.uri, key.policy);
    }

    fn fan_out(&self, topic: &str) -> usize {
        let mut reached = 0;
        self.0.for_each_match(topic, |n| reached += n);
        reached
    }
}

fn benches(c: &mut Criterion) {
    let lobby = TopicKey::exact("chat.lobby");
    let extra = TopicKey { uri: "game.new..update".into(), policy: MatchPolicy::Wildcard };
    for (label, patterns) in [("0 patterns", Vec::new()), ("60x1024 patterns", attack())] {
        let mut scan = Scan::default();
        let mut index = Index::default();
        scan.subscribe(lobby.clone());
        index.subscribe(&lobby);
        for key in &patterns {
            scan.subscribe(key.clone());
            index.subscribe(key);
        }
        assert_eq!(scan.fan_out("chat.lobby"), 1);
        assert_eq!(index.fan_out("chat.lobby"), 1);

        let mut group = c.benchmark_group("unrelated publish");
        group.bench_function(BenchmarkId::new("scan", label), |b| b.iter(|| scan.fan_out(black_box("chat.lobby"))));
        group.bench_function(BenchmarkId::new("index", label), |b| b.iter(|| index.fan_out(black_box("chat.lobby"))));
        group.finish();

        let mut group = c.benchmark_group("pattern subscribe + unsubscribe");
        group.bench_function(BenchmarkId::new("scan", label), |b| {
            b.iter(|| {
                scan.subscribe(extra.clone());
                scan.unsubscribe(black_box(&extra));
            })
        });
        group.bench_function(BenchmarkId::new("index", label), |b| {
            b.iter(|| {
                index.subscribe(&extra);
                index.unsubscribe(black_box(&extra));
            })
        });
        group.finish();
    }
}

criterion_group!(pattern_index, benches);
criterion_main!(pattern_index);
