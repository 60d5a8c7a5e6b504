//! Who receives a publication: the exclude/eligible filters shared by v1, v2 and the push API.

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
    /// Whether a session with this id, authid and roles passes every filter.
    pub fn admits(&self, session: Id, authid: &str, roles: &[String]) -> bool {
        if self.exclude.contains(&session) {
            return false;
        }
        if let Some(eligible) = &self.eligible {
            if !eligible.contains(&session) {
                return false;
            }
        }
        if self.exclude_authid.iter().any(|a| a == authid) {
            return false;
        }
        if let Some(eligible) = &self.eligible_authid {
            if !eligible.iter().any(|a| a == authid) {
                return false;
            }
        }
        if roles.iter().any(|r| self.exclude_authrole.contains(r)) {
            return false;
        }
        if let Some(eligible) = &self.eligible_authrole {
            if !roles.iter().any(|r| eligible.contains(r)) {
                return false;
            }
        }
        true
    }

    /// Checks that no list holds more than `max` entries (`wamp.max_filter_entries`); the error names the
    /// first list that does.
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
            Some((name, len)) => Err(format!("'{name}' has {len} entries; at most {max} are allowed")),
            None => Ok(()),
        }
    }

    /// True when no filter is set (every subscriber receives the publication).
    pub fn is_empty(&self) -> bool {
        *self == Filters::default()
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
        let f = Filters { exclude_authrole: vec!["admin".into()], ..Default::default() };
        assert!(!f.admits(1, "a", &roles(&["user", "admin"])));
        let f = Filters { eligible_authrole: Some(vec!["admin".into()]), ..Default::default() };
        assert!(f.admits(1, "a", &roles(&["user", "admin"])));
        assert!(!f.admits(1, "a", &roles(&["user"])));
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
