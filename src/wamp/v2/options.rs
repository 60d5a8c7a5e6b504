//! The options of PUBLISH and SUBSCRIBE this router understands, read strictly: a wrong type is an error.

use serde_json::Value;

use super::Dict;
use crate::wamp::filter::Filters;
use crate::wamp::id::{self, Id};
use crate::wamp::uri::MatchPolicy;

/// Why an option dictionary is not acceptable (answered with `wamp.error.invalid_argument`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("option '{option}' must be {expected}")]
pub struct OptionError {
    /// The offending option key.
    pub option: &'static str,
    /// What it must be.
    pub expected: &'static str,
}

fn opt_bool(options: &Dict, key: &'static str, default: bool) -> Result<bool, OptionError> {
    match options.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(OptionError { option: key, expected: "a boolean" }),
    }
}

fn opt_ids(options: &Dict, key: &'static str) -> Result<Option<Vec<Id>>, OptionError> {
    const EXPECTED: &str = "a list of session ids";
    match options.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_u64().filter(|i| id::is_valid(*i)).ok_or(OptionError { option: key, expected: EXPECTED }))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(OptionError { option: key, expected: EXPECTED }),
    }
}

fn opt_strings(options: &Dict, key: &'static str) -> Result<Option<Vec<String>>, OptionError> {
    const EXPECTED: &str = "a string or a list of strings";
    match options.get(key) {
        None | Some(Value::Null) => Ok(None),
        // Crossbar accepts a single string for the authid/authrole filters; so do we.
        Some(Value::String(s)) => Ok(Some(vec![s.clone()])),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or(OptionError { option: key, expected: EXPECTED }))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(OptionError { option: key, expected: EXPECTED }),
    }
}

/// PUBLISH options, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishOptions {
    /// Answer with PUBLISHED (or ERROR) once the publication is handed to the broker.
    pub acknowledge: bool,
    /// Leave the publisher out of the receivers (default `true`, per the spec).
    pub exclude_me: bool,
    /// Ask the broker to reveal the publisher in EVENT details.
    pub disclose_me: bool,
    /// Receiver filters.
    pub filters: Filters,
    /// Keep it as the topic's retained event (WAMP "Event Retention").
    pub retain: bool,
}

impl PublishOptions {
    /// Meaning stage for `PUBLISH.Options`. Unknown keys are ignored, as the spec asks.
    pub fn parse(options: &Dict) -> Result<PublishOptions, OptionError> {
        Ok(PublishOptions {
            acknowledge: opt_bool(options, "acknowledge", false)?,
            exclude_me: opt_bool(options, "exclude_me", true)?,
            disclose_me: opt_bool(options, "disclose_me", false)?,
            retain: opt_bool(options, "retain", false)?,
            filters: Filters {
                exclude: opt_ids(options, "exclude")?.unwrap_or_default(),
                eligible: opt_ids(options, "eligible")?,
                exclude_authid: opt_strings(options, "exclude_authid")?.unwrap_or_default(),
                eligible_authid: opt_strings(options, "eligible_authid")?,
                exclude_authrole: opt_strings(options, "exclude_authrole")?.unwrap_or_default(),
                eligible_authrole: opt_strings(options, "eligible_authrole")?,
            },
        })
    }
}

/// SUBSCRIBE options, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscribeOptions {
    /// How the subscription URI matches topics.
    pub policy: MatchPolicy,
    /// Deliver the topic's retained event first (WAMP "Event Retention"; exact subscriptions only).
    pub get_retained: bool,
    /// Replay the topic's kept events published after this one first (a switchboard extension; exact
    /// subscriptions of topics with a `[[history]]` rule).
    pub resume_after: Option<Id>,
}

impl SubscribeOptions {
    /// Meaning stage for `SUBSCRIBE.Options`.
    pub fn parse(options: &Dict) -> Result<SubscribeOptions, OptionError> {
        let policy = match options.get("match") {
            None | Some(Value::Null) => MatchPolicy::Exact,
            Some(Value::String(s)) if s == "exact" => MatchPolicy::Exact,
            Some(Value::String(s)) if s == "prefix" => MatchPolicy::Prefix,
            Some(Value::String(s)) if s == "wildcard" => MatchPolicy::Wildcard,
            Some(_) => {
                return Err(OptionError { option: "match", expected: "one of \"exact\", \"prefix\", \"wildcard\"" })
            }
        };
        let get_retained = opt_bool(options, "get_retained", false)?;
        if get_retained && policy != MatchPolicy::Exact {
            return Err(OptionError { option: "get_retained", expected: "used with exact subscriptions only" });
        }
        let resume_after = match options.get("resume_after") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_u64()
                    .filter(|i| id::is_valid(*i))
                    .ok_or(OptionError { option: "resume_after", expected: "a publication id" })?,
            ),
        };
        if resume_after.is_some() && (policy != MatchPolicy::Exact || get_retained) {
            let expected = "used with exact subscriptions only, and not with get_retained";
            return Err(OptionError { option: "resume_after", expected });
        }
        Ok(SubscribeOptions { policy, get_retained, resume_after })
    }
}
