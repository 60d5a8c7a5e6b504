//! The subscription index: which subscriptions (exact, prefix, wildcard) a published topic matches, without
//! looking at the ones it does not.
//!
//! - **Exact** subscriptions: a hash map from URI.
//! - **Prefix** subscriptions: a radix tree over the URI's *bytes* ([`MatchPolicy::Prefix`] is a plain string
//!   prefix: `com.myapp` matches `com.myapp.x` and `com.myappx` alike). Matching walks the topic once and
//!   collects every subscription ending on the way: O(topic length), whatever the number of subscriptions.
//! - **Wildcard** subscriptions: per component count, a trie over components whose nodes have exact edges (a
//!   hash map) and one wildcard edge (an empty pattern component). Matching follows, level by level, the edge
//!   named by the topic's component and the wildcard edge, so it visits only subscriptions agreeing with the
//!   topic so far.
//!
//! Insertion and removal are O(URI length) hash and tree operations; nothing here is ever scanned linearly, so
//! an unrelated publish costs the same with 60,000 patterns present as with none. Semantics are exactly
//! [`MatchPolicy::matches`]; a property test checks the index against scanning with it.
//!
//! Pure data structure: no actix, no I/O. The broker stores the topic actors' addresses in it.

use std::collections::HashMap;

use crate::wamp::uri::MatchPolicy;

/// Every subscription of a node by URI and policy, each with a value (the broker's topic actor address).
#[derive(Debug)]
pub struct SubscriptionIndex<V> {
    exact: HashMap<Box<str>, V>,
    prefix: RadixNode<V>,
    /// Wildcard tries by component count.
    wildcard: HashMap<usize, WildcardNode<V>>,
    len: usize,
}

impl<V> Default for SubscriptionIndex<V> {
    fn default() -> Self {
        SubscriptionIndex { exact: HashMap::new(), prefix: RadixNode::default(), wildcard: HashMap::new(), len: 0 }
    }
}

impl<V> SubscriptionIndex<V> {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Subscriptions held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the index holds no subscription.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds the subscription `uri` under `policy` with `value`; returns the value it replaces, if any.
    pub fn insert(&mut self, uri: &str, policy: MatchPolicy, value: V) -> Option<V> {
        let previous = match policy {
            MatchPolicy::Exact => self.exact.insert(Box::from(uri), value),
            MatchPolicy::Prefix => self.prefix.insert(uri.as_bytes(), value),
            MatchPolicy::Wildcard => self.wildcard.entry(components(uri)).or_default().insert(uri.split('.'), value),
        };
        if previous.is_none() {
            self.len += 1;
        }
        previous
    }

    /// Removes the subscription `uri` under `policy`; returns its value, if it was there.
    pub fn remove(&mut self, uri: &str, policy: MatchPolicy) -> Option<V> {
        let removed = match policy {
            MatchPolicy::Exact => self.exact.remove(uri),
            MatchPolicy::Prefix => self.prefix.remove(uri.as_bytes()),
            MatchPolicy::Wildcard => {
                let count = components(uri);
                let trie = self.wildcard.get_mut(&count)?;
                let removed = trie.remove(uri.split('.'));
                if trie.is_empty() {
                    self.wildcard.remove(&count);
                }
                removed
            }
        };
        if removed.is_some() {
            self.len -= 1;
        }
        removed
    }

    /// Calls `f` with the value of every subscription that receives publications to `topic`, each once.
    pub fn for_each_match(&self, topic: &str, mut f: impl FnMut(&V)) {
        if let Some(value) = self.exact.get(topic) {
            f(value);
        }
        self.prefix.for_each_prefix_of(topic.as_bytes(), &mut f);
        if self.wildcard.is_empty() {
            return;
        }
        if let Some(trie) = self.wildcard.get(&components(topic)) {
            trie.for_each_match(topic.split('.'), &mut f);
        }
    }
}

/// The number of `.`-separated components of a URI.
fn components(uri: &str) -> usize {
    uri.bytes().filter(|b| *b == b'.').count() + 1
}

/// A node of the prefix radix tree: the subscription ending exactly here, and the edges below, sorted by their
/// first byte (no two edges of a node share a first byte).
#[derive(Debug)]
struct RadixNode<V> {
    value: Option<V>,
    edges: Vec<RadixEdge<V>>,
}

#[derive(Debug)]
struct RadixEdge<V> {
    label: Box<[u8]>,
    node: RadixNode<V>,
}

impl<V> Default for RadixNode<V> {
    fn default() -> Self {
        RadixNode { value: None, edges: Vec::new() }
    }
}

impl<V> RadixNode<V> {
    fn edge(&self, first: u8) -> Result<usize, usize> {
        self.edges.binary_search_by_key(&first, |e| e.label[0])
    }

    fn insert(&mut self, key: &[u8], value: V) -> Option<V> {
        let Some(&first) = key.first() else { return self.value.replace(value) };
        let i = match self.edge(first) {
            Ok(i) => i,
            Err(i) => {
                let node = RadixNode { value: Some(value), edges: Vec::new() };
                self.edges.insert(i, RadixEdge { label: key.into(), node });
                return None;
            }
        };
        let edge = &mut self.edges[i];
        let common = edge.label.iter().zip(key).take_while(|(a, b)| a == b).count();
        if common < edge.label.len() {
            // Split the edge where the key leaves it: the old rest hangs below a new inner node.
            let rest = RadixEdge { label: edge.label[common..].into(), node: std::mem::take(&mut edge.node) };
            edge.label = edge.label[..common].into();
            edge.node.edges.push(rest);
        }
        edge.node.insert(&key[common..], value)
    }

    fn remove(&mut self, key: &[u8]) -> Option<V> {
        let Some(&first) = key.first() else { return self.value.take() };
        let i = self.edge(first).ok()?;
        let edge = &mut self.edges[i];
        let rest = key.strip_prefix(&*edge.label)?;
        let removed = edge.node.remove(rest)?;
        // Keep the tree compressed: drop an empty leaf, merge an inner node left with a single edge.
        if edge.node.value.is_none() {
            match edge.node.edges.len() {
                0 => {
                    self.edges.remove(i);
                }
                1 => {
                    let child = edge.node.edges.pop().expect("one edge");
                    edge.label = [&*edge.label, &*child.label].concat().into();
                    edge.node = child.node;
                }
                _ => {}
            }
        }
        Some(removed)
    }

    fn for_each_prefix_of(&self, topic: &[u8], f: &mut impl FnMut(&V)) {
        let (mut node, mut rest) = (self, topic);
        loop {
            if let Some(value) = &node.value {
                f(value);
            }
            let Some(&first) = rest.first() else { return };
            let Ok(i) = node.edge(first) else { return };
            let edge = &node.edges[i];
            let Some(after) = rest.strip_prefix(&*edge.label) else { return };
            (node, rest) = (&edge.node, after);
        }
    }
}

/// A node of a wildcard trie (all its patterns have the same component count): the subscription ending here,
/// the edges for fixed components and the edge for an empty (any) component.
#[derive(Debug)]
struct WildcardNode<V> {
    value: Option<V>,
    exact: HashMap<Box<str>, WildcardNode<V>>,
    any: Option<Box<WildcardNode<V>>>,
}

impl<V> Default for WildcardNode<V> {
    fn default() -> Self {
        WildcardNode { value: None, exact: HashMap::new(), any: None }
    }
}

impl<V> WildcardNode<V> {
    fn is_empty(&self) -> bool {
        self.value.is_none() && self.exact.is_empty() && self.any.is_none()
    }

    fn insert<'a>(&mut self, mut components: impl Iterator<Item = &'a str>, value: V) -> Option<V> {
        let Some(first) = components.next() else { return self.value.replace(value) };
        let child = match first {
            "" => self.any.get_or_insert_with(Box::default),
            fixed => self.exact.entry(Box::from(fixed)).or_default(),
        };
        child.insert(components, value)
    }

    fn remove<'a>(&mut self, mut components: impl Iterator<Item = &'a str>) -> Option<V> {
        let Some(first) = components.next() else { return self.value.take() };
        match first {
            "" => {
                let child = self.any.as_mut()?;
                let removed = child.remove(components)?;
                if child.is_empty() {
                    self.any = None;
                }
                Some(removed)
            }
            fixed => {
                let child = self.exact.get_mut(fixed)?;
                let removed = child.remove(components)?;
                if child.is_empty() {
                    self.exact.remove(fixed);
                }
                Some(removed)
            }
        }
    }

    /// Every value whose pattern matches the topic's `components` (as many as this trie's patterns have).
    fn for_each_match<'a>(&self, mut components: impl Iterator<Item = &'a str> + Clone, f: &mut impl FnMut(&V)) {
        let Some(first) = components.next() else {
            if let Some(value) = &self.value {
                f(value);
            }
            return;
        };
        if let Some(child) = self.exact.get(first) {
            child.for_each_match(components.clone(), f);
        }
        if let Some(child) = &self.any {
            child.for_each_match(components, f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn matches(index: &SubscriptionIndex<usize>, topic: &str) -> BTreeSet<usize> {
        let mut found = BTreeSet::new();
        index.for_each_match(topic, |v| assert!(found.insert(*v), "{v} reported twice for {topic}"));
        found
    }

    #[test]
    fn each_policy_matches_as_the_uri_rules_say() {
        let mut index = SubscriptionIndex::new();
        index.insert("com.myapp", MatchPolicy::Prefix, 1);
        index.insert("com.myapp.", MatchPolicy::Prefix, 2);
        index.insert("com..update", MatchPolicy::Wildcard, 3);
        index.insert("com.user.update", MatchPolicy::Exact, 4);
        index.insert("com", MatchPolicy::Prefix, 5);
        assert_eq!(matches(&index, "com.myapp.a.b"), BTreeSet::from([1, 2, 5]));
        assert_eq!(matches(&index, "com.myappx"), BTreeSet::from([1, 5]));
        assert_eq!(matches(&index, "com.user.update"), BTreeSet::from([3, 4, 5]));
        assert_eq!(matches(&index, "com.user.x.update"), BTreeSet::from([5]));
        assert_eq!(matches(&index, "org.other"), BTreeSet::new());
        assert_eq!(index.len(), 5);
    }

    #[test]
    fn removing_restores_what_was_there_and_leaves_nothing_behind() {
        let mut index = SubscriptionIndex::new();
        index.insert("abc", MatchPolicy::Prefix, 1);
        index.insert("abd", MatchPolicy::Prefix, 2);
        index.insert("ab", MatchPolicy::Prefix, 3);
        index.insert("a..c", MatchPolicy::Wildcard, 4);
        assert_eq!(index.insert("abc", MatchPolicy::Prefix, 9), Some(1), "replacing returns the old value");
        assert_eq!(index.remove("ab", MatchPolicy::Prefix), Some(3));
        assert_eq!(index.remove("ab", MatchPolicy::Prefix), None);
        assert_eq!(index.remove("abx", MatchPolicy::Prefix), None);
        assert_eq!(index.remove("a..c", MatchPolicy::Exact), None, "policies are separate");
        assert_eq!(matches(&index, "abcd"), BTreeSet::from([9]));
        assert_eq!(matches(&index, "abd"), BTreeSet::from([2]));
        for (uri, policy) in
            [("abc", MatchPolicy::Prefix), ("abd", MatchPolicy::Prefix), ("a..c", MatchPolicy::Wildcard)]
        {
            assert!(index.remove(uri, policy).is_some());
        }
        assert!(index.is_empty());
        assert!(index.prefix.edges.is_empty() && index.prefix.value.is_none());
        assert!(index.wildcard.is_empty());
    }

    /// A small deterministic xorshift generator: property-style tests without a dependency.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }

        /// A URI of 1–4 components over a tiny alphabet (so patterns and topics often agree), with empty
        /// components (wildcards, or v1-style `a..b` topics) sometimes, and sometimes cut at a random byte
        /// (prefixes that end mid-component).
        fn uri(&mut self) -> String {
            const WORDS: [&str; 6] = ["a", "b", "ab", "abc", "b.", ""];
            let parts: Vec<&str> = (0..=self.below(4)).map(|_| WORDS[self.below(WORDS.len())]).collect();
            let mut uri = parts.join(".");
            if self.below(4) == 0 && uri.len() > 1 {
                uri.truncate(1 + self.below(uri.len() - 1));
            }
            uri
        }
    }

    #[test]
    fn the_index_agrees_with_scanning_every_subscription() {
        let policies = [MatchPolicy::Exact, MatchPolicy::Prefix, MatchPolicy::Wildcard];
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let mut index = SubscriptionIndex::new();
        let mut naive: Vec<(String, MatchPolicy, usize)> = Vec::new();
        for step in 0..20_000 {
            let (uri, policy) = (rng.uri(), policies[rng.below(3)]);
            if rng.below(3) == 0 {
                let removed = index.remove(&uri, policy);
                let position = naive.iter().position(|(u, p, _)| *u == uri && *p == policy);
                assert_eq!(removed, position.map(|i| naive.swap_remove(i).2), "removing {uri} {policy:?}");
            } else {
                let previous = index.insert(&uri, policy, step);
                let position = naive.iter().position(|(u, p, _)| *u == uri && *p == policy);
                assert_eq!(previous, position.map(|i| std::mem::replace(&mut naive[i].2, step)));
                if position.is_none() {
                    naive.push((uri, policy, step));
                }
            }
            assert_eq!(index.len(), naive.len());
            let topic = rng.uri();
            let expected: BTreeSet<usize> =
                naive.iter().filter(|(u, p, _)| p.matches(u, &topic)).map(|(_, _, v)| *v).collect();
            assert_eq!(matches(&index, &topic), expected, "topic {topic:?} after step {step}");
        }
        for (uri, policy, value) in naive.drain(..) {
            assert_eq!(index.remove(&uri, policy), Some(value));
        }
        assert!(index.is_empty() && index.prefix.edges.is_empty() && index.wildcard.is_empty());
    }
}
