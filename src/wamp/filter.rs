//! Who receives a publication: the exclude/eligible filters shared by v1, v2 and the push API.
//!
//! [`Filters`] is what a publisher sends and what travels between nodes (its serde form is part of the
//! cluster envelope). Lists are bounded ([`Filters::check_limits`], `wamp.max_filter_entries`) and, before
//! they are applied to subscribers, turned once per publication into an [`AdmitSet`] of hash sets, so a
//! topic with many subscribers never scans a long list per subscriber.

use std::collections::HashSet;

use super::Id;

/// Delivery filters of one publication. `None` for an eligible list means "no restriction"; `Some(empty)`
/// means nobody (the WAMP v2 reading; the v1 codec maps Ratchet's empty list to `None`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Filters {
    /// Session ids that must not receive it.
    pub exclude: Vec<Id>,
    /// If set, only these session ids may receive it.
    pub eligible: Option<Vec<Id>>,
    /// Authids (usernames) that must not receive it.
    pub exclude_authid: Vec<String>,
    /// If set, only sessions with one of these authids may receive it.
    pub eligible_authid: Option<Vec<String>>,
    /// Roles that must not receive it (a session is excluded if any of its roles is listed).
    pub exclude_authrole: Vec<String>,
    /// If set, only sessions holding one of these roles may receive it.
    pub eligible_authrole: Option<Vec<String>>,
}

impl Filters {
    /// Whether a session with this id, authid and roles passes every filter. Builds an [`AdmitSet`] for one
    /// answer: to test many sessions against the same filters, build the set once and ask it.
    pub fn admits(&self, session: Id, authid: &str, roles: &[String]) -> bool {
        AdmitSet::new(self).admits(session, authid, roles)
    }

    /// True when no filter is set (every subscriber receives the publication).
    pub fn is_empty(&self) -> bool {
        *self == Filters::default()
    }

    /// Refuses filters with a list longer than `max` entries (`wamp.max_filter_entries`), naming the option:
    /// `"exclude_authid holds 7000 entries; at most 1024 are allowed"`. Duplicates count: the bound is on what
    /// the publisher sent, which is what a node parses, stores and forwards.
    pub fn check_limits(&self, max: usize) -> Result<(), String> {
        let lengths = [
            ("exclude", self.exclude.len()),
            ("eligible", self.eligible.as_ref().map_or(0, Vec::len)),
            ("exclude_authid", self.exclude_authid.len()),
            ("eligible_authid", self.eligible_authid.as_ref().map_or(0, Vec::len)),
            ("exclude_authrole", self.exclude_authrole.len()),
            ("eligible_authrole", self.eligible_authrole.as_ref().map_or(0, Vec::len)),
        ];
        match lengths.into_iter().find(|(_, len)| *len > max) {
            Some((option, len)) => Err(format!("{option} holds {len} entries; at most {max} are allowed")),
            None => Ok(()),
        }
    }

    /// Roughly the heap bytes these filters hold (ids, strings and their headers): what a queued publication
    /// costs beyond its payload.
    pub fn approx_bytes(&self) -> usize {
        let ids = |v: &[Id]| std::mem::size_of_val(v);
        let strings = |v: &[String]| v.iter().map(|s| std::mem::size_of::<String>() + s.len()).sum::<usize>();
        ids(&self.exclude)
            + self.eligible.as_deref().map_or(0, ids)
            + strings(&self.exclude_authid)
            + self.eligible_authid.as_deref().map_or(0, strings)
            + strings(&self.exclude_authrole)
            + self.eligible_authrole.as_deref().map_or(0, strings)
    }
}

/// One publication's [`Filters`] as hash sets, built once and shared by every topic it reaches: admitting a
/// subscriber costs a few hash lookups (one per role for the role lists), whatever the lists' lengths.
#[derive(Debug, Default)]
pub struct AdmitSet {
    /// No filter at all: every session is admitted without a lookup.
    unrestricted: bool,
    exclude: HashSet<Id>,
    eligible: Option<HashSet<Id>>,
    exclude_authid: HashSet<Box<str>>,
    eligible_authid: Option<HashSet<Box<str>>>,
    exclude_authrole: HashSet<Box<str>>,
    eligible_authrole: Option<HashSet<Box<str>>>,
}

fn string_set(list: &[String]) -> HashSet<Box<str>> {
    list.iter().map(|s| Box::from(s.as_str())).collect()
}

impl AdmitSet {
    /// The sets of `filters` (duplicates collapse).
    pub fn new(filters: &Filters) -> AdmitSet {
        AdmitSet {
            unrestricted: filters.is_empty(),
            exclude: filters.exclude.iter().copied().collect(),
            eligible: filters.eligible.as_ref().map(|v| v.iter().copied().collect()),
            exclude_authid: string_set(&filters.exclude_authid),
            eligible_authid: filters.eligible_authid.as_deref().map(string_set),
            exclude_authrole: string_set(&filters.exclude_authrole),
            eligible_authrole: filters.eligible_authrole.as_deref().map(string_set),
        }
    }

    /// Whether a session with this id, authid and roles passes every filter.
    pub fn admits(&self, session: Id, authid: &str, roles: &[String]) -> bool {
        if self.unrestricted {
            return true;
        }
        if self.exclude.contains(&session) || self.eligible.as_ref().is_some_and(|e| !e.contains(&session)) {
            return false;
        }
        if self.exclude_authid.contains(authid) || self.eligible_authid.as_ref().is_some_and(|e| !e.contains(authid)) {
            return false;
        }
        if roles.iter().any(|r| self.exclude_authrole.contains(r.as_str())) {
            return false;
        }
        match &self.eligible_authrole {
            Some(eligible) => roles.iter().any(|r| eligible.contains(r.as_str())),
            None => true,
        }
    }

    /// The eligible session ids, each once, if the publication names them.
    pub fn eligible(&self) -> Option<&HashSet<Id>> {
        self.eligible.as_ref()
    }

    /// The eligible authids, each once, if the publication names them.
    pub fn eligible_authid(&self) -> Option<&HashSet<Box<str>>> {
        self.eligible_authid.as_ref()
    }

    /// Roughly the heap bytes the sets hold (entries and the tables' slack).
    pub fn approx_bytes(filters: &Filters) -> usize {
        // A hashbrown table holds each entry plus a control byte, at most 7/8 full: about twice the entries.
        2 * filters.approx_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles(r: &[&str]) -> Vec<String> {
        r.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn empty_filters_admit_everyone() {
        assert!(Filters::default().admits(1, "alice", &roles(&["user"])));
        assert!(AdmitSet::new(&Filters::default()).admits(1, "alice", &[]));
    }

    #[test]
    fn each_filter_is_applied() {
        let f = Filters { exclude: vec![1], ..Default::default() };
        assert!(!f.admits(1, "a", &[]));
        assert!(f.admits(2, "a", &[]));
        let f = Filters { eligible: Some(vec![]), ..Default::default() };
        assert!(!f.admits(1, "a", &[]));
        let f = Filters { eligible_authid: Some(vec!["bob".into()]), ..Default::default() };
        assert!(f.admits(1, "bob", &[]));
        assert!(!f.admits(1, "alice", &[]));
        let f = Filters { exclude_authid: vec!["bob".into()], ..Default::default() };
        assert!(!f.admits(1, "bob", &[]));
        assert!(f.admits(1, "alice", &[]));
        let f = Filters { exclude_authrole: vec!["admin".into()], ..Default::default() };
        assert!(!f.admits(1, "a", &roles(&["user", "admin"])));
        let f = Filters { eligible_authrole: Some(vec!["admin".into()]), ..Default::default() };
        assert!(f.admits(1, "a", &roles(&["user", "admin"])));
        assert!(!f.admits(1, "a", &roles(&["user"])));
        assert!(!f.admits(1, "a", &[]), "no role at all is not an eligible role");
    }

    /// The list scan the sets replace: the reference the sets must agree with.
    fn scan(f: &Filters, session: Id, authid: &str, roles: &[String]) -> bool {
        !f.exclude.contains(&session)
            && f.eligible.as_ref().is_none_or(|e| e.contains(&session))
            && !f.exclude_authid.iter().any(|a| a == authid)
            && f.eligible_authid.as_ref().is_none_or(|e| e.iter().any(|a| a == authid))
            && !roles.iter().any(|r| f.exclude_authrole.contains(r))
            && f.eligible_authrole.as_ref().is_none_or(|e| roles.iter().any(|r| e.contains(r)))
    }

    /// A small deterministic xorshift generator: property-style tests without a dependency.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }

        /// Up to three values below `n`.
        fn ids(&mut self, n: u64) -> Vec<u64> {
            (0..self.below(4)).map(|_| self.below(n)).collect()
        }

        fn names(&mut self, n: u64) -> Vec<String> {
            self.ids(n).into_iter().map(|i| format!("u{i}")).collect()
        }

        fn sometimes<T>(&mut self, value: T) -> Option<T> {
            (self.below(2) == 0).then_some(value)
        }
    }

    #[test]
    fn admit_sets_agree_with_scanning_the_lists() {
        // Small id and name spaces, so hits and misses both happen often.
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..2000 {
            let eligible = rng.ids(6);
            let eligible_authid = rng.names(6);
            let eligible_authrole = rng.names(4);
            let f = Filters {
                exclude: rng.ids(6),
                eligible: rng.sometimes(eligible),
                exclude_authid: rng.names(6),
                eligible_authid: rng.sometimes(eligible_authid),
                exclude_authrole: rng.names(4),
                eligible_authrole: rng.sometimes(eligible_authrole),
            };
            let set = AdmitSet::new(&f);
            for _ in 0..8 {
                let (session, authid) = (rng.below(6), format!("u{}", rng.below(6)));
                let roles = rng.names(4);
                assert_eq!(set.admits(session, &authid, &roles), scan(&f, session, &authid, &roles), "{f:?}");
            }
        }
    }

    #[test]
    fn check_limits_names_the_first_list_that_is_too_long() {
        let names = |n: usize| (0..n).map(|i| format!("u{i}")).collect::<Vec<_>>();
        let f = Filters { exclude_authid: names(7000), ..Default::default() };
        assert_eq!(f.check_limits(1024), Err("exclude_authid holds 7000 entries; at most 1024 are allowed".into()));
        let f = Filters { eligible: Some((0..1025).collect()), ..Default::default() };
        assert_eq!(f.check_limits(1024), Err("eligible holds 1025 entries; at most 1024 are allowed".into()));
        let f = Filters { eligible_authrole: Some(names(3)), ..Default::default() };
        assert!(f.check_limits(2).unwrap_err().starts_with("eligible_authrole holds 3 entries"));
        let at_the_cap = Filters {
            exclude: (0..1024).collect(),
            eligible_authid: Some(names(1024)),
            exclude_authrole: names(1024),
            ..Default::default()
        };
        assert_eq!(at_the_cap.check_limits(1024), Ok(()));
        assert_eq!(Filters::default().check_limits(0), Ok(()));
    }

    #[test]
    fn limits_name_the_first_list_that_is_too_long() {
        let f = Filters { exclude: vec![1, 2], eligible_authid: Some(vec!["a".into(); 3]), ..Default::default() };
        assert_eq!(f.check_limits(3), Ok(()));
        let err = f.check_limits(2).unwrap_err();
        assert!(err.contains("eligible_authid") && err.contains('3'), "{err}");
        assert!(Filters::default().check_limits(0).is_ok());
    }
}
