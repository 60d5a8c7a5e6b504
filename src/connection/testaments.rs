//! Testaments (WAMP advanced profile, "Testament"): `wamp.session.add_testament(topic, args, kwargs, options)`
//! stores a publication that the router makes when the session ends — for any reason: GOODBYE, a close, a
//! kill, a lost connection, or the death of its node, when a surviving node publishes it from the registry.
//! `wamp.session.flush_testaments()` drops them (answering how many). Only the scope `destroyed` exists here
//! (sessions are never resumed); `detached` is refused. The topic passes the same rules as a PUBLISH from the
//! session (URI, reserved namespaces, access rules), checked when the testament is added. Bounded per session
//! in count and bytes.

use super::*;
use crate::model::Testament;

/// Most testaments one session may hold.
pub(super) const MAX_TESTAMENTS: usize = 16;
/// Most bytes (JSON) one session's testaments may hold together.
pub(super) const MAX_TESTAMENT_BYTES: usize = 64 * 1024;

pub(super) const ADD: &str = "wamp.session.add_testament";
pub(super) const FLUSH: &str = "wamp.session.flush_testaments";

/// A session's testaments, in the order they were added.
#[derive(Debug, Default)]
pub(super) struct Testaments {
    list: Vec<(Testament, String)>,
    bytes: usize,
}

impl Testaments {
    /// Adds one, within the bounds.
    fn add(&mut self, testament: Testament) -> Result<(), WampError> {
        let json = serde_json::to_string(&testament).expect("plain JSON values serialise");
        if self.list.len() >= MAX_TESTAMENTS || self.bytes + json.len() > MAX_TESTAMENT_BYTES {
            let msg = format!("a session may hold {MAX_TESTAMENTS} testaments of {MAX_TESTAMENT_BYTES} bytes in all");
            return Err(WampError::new(errors::INVALID_ARGUMENT, msg));
        }
        self.bytes += json.len();
        self.list.push((testament, json));
        Ok(())
    }

    /// The JSON form of each, for the registry.
    fn encoded(&self) -> Vec<String> {
        self.list.iter().map(|(_, json)| json.clone()).collect()
    }
}

/// The `scope` option: only `destroyed` (the default).
fn check_scope(options: Option<&Value>) -> Result<(), WampError> {
    match options.and_then(|o| o.get("scope")) {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s)) if s == "destroyed" => Ok(()),
        Some(other) => Err(WampError::new(
            errors::INVALID_ARGUMENT,
            format!("testament scope {other} is not supported: sessions are not resumed, use \"destroyed\""),
        )),
    }
}

impl Connection {
    /// Answers `wamp.session.add_testament` and `flush_testaments`, which act on this session's own state;
    /// `None` for any other procedure.
    pub(super) fn testament_call(&mut self, procedure: &str, args: &[Value]) -> Option<Result<CallResult, WampError>> {
        match procedure {
            ADD => Some(self.add_testament(args).map(|()| CallResult::default())),
            FLUSH => Some(check_scope(args.first()).map(|()| {
                let flushed = self.testaments.take().map_or(0, |t| t.list.len());
                if flushed > 0 {
                    self.node.clients().set_testaments(self.session, Vec::new());
                }
                CallResult::value(flushed)
            })),
            _ => None,
        }
    }

    fn add_testament(&mut self, args: &[Value]) -> Result<(), WampError> {
        let invalid = |msg: &str| WampError::new(errors::INVALID_ARGUMENT, msg.to_owned());
        let topic = args.first().and_then(Value::as_str).ok_or_else(|| invalid("the first argument is a topic URI"))?;
        let list = match args.get(1) {
            None | Some(Value::Null) => None,
            Some(Value::Array(a)) => Some(a.clone()),
            Some(_) => return Err(invalid("the second argument is the publication's argument list")),
        };
        let dict = match args.get(2) {
            None | Some(Value::Null) => None,
            Some(Value::Object(o)) => Some(o.clone()),
            Some(_) => return Err(invalid("the third argument is the publication's keyword dictionary")),
        };
        check_scope(args.get(3))?;
        if !uri::is_valid_v2(topic) || uri::is_reserved(topic) {
            let msg = format!("'{}' is not a topic this session may publish to", excerpt(topic));
            return Err(WampError::new(errors::INVALID_URI, msg));
        }
        self.check_publish_access(topic)?;
        let testaments = self.testaments.get_or_insert_with(Box::default);
        testaments.add(Testament { topic: topic.to_owned(), args: list, kwargs: dict })?;
        self.node.clients().set_testaments(self.session, testaments.encoded());
        Ok(())
    }

    /// The session ended: its testaments are published.
    pub(super) fn publish_testaments(&mut self) {
        for (testament, _) in self.testaments.take().map(|t| t.list).unwrap_or_default() {
            self.node.clients().publish_prepared(testament.publication());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn testament(n: usize) -> Testament {
        Testament { topic: format!("t.{n}"), args: Some(vec![json!("x".repeat(n))]), kwargs: None }
    }

    #[test]
    fn testaments_are_bounded_in_count_and_bytes() {
        let mut t = Testaments::default();
        for i in 0..MAX_TESTAMENTS {
            t.add(testament(i)).unwrap();
        }
        assert!(t.add(testament(0)).is_err(), "count");
        let mut big = Testaments::default();
        big.add(testament(MAX_TESTAMENT_BYTES / 2)).unwrap();
        assert!(big.add(testament(MAX_TESTAMENT_BYTES / 2)).is_err(), "bytes");
        assert_eq!(big.encoded().len(), 1);
    }

    #[test]
    fn only_the_destroyed_scope_is_accepted() {
        assert!(check_scope(None).is_ok());
        assert!(check_scope(Some(&json!({}))).is_ok());
        assert!(check_scope(Some(&json!({"scope": "destroyed"}))).is_ok());
        assert!(check_scope(Some(&json!({"scope": "detached"}))).is_err());
    }

    #[test]
    fn a_testament_round_trips_through_its_registry_form() {
        let t = Testament { topic: "a.b".into(), args: Some(vec![json!(1)]), kwargs: None };
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, r#"{"topic":"a.b","args":[1]}"#);
        assert_eq!(serde_json::from_str::<Testament>(&json).unwrap(), t);
    }
}
