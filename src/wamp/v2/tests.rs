//! Unit tests of the v2 codec.

use super::*;
use crate::wamp::uri::MatchPolicy;
use crate::wamp::DecodeError;

#[test]
fn decodes_hello() {
    let m = Message::decode(r#"[1,"realm1",{"roles":{"subscriber":{}}}]"#).unwrap();
    assert!(matches!(m, Message::Hello { ref realm, .. } if realm == "realm1"));
}

#[test]
fn decodes_publish_with_and_without_payload() {
    let m = Message::decode(r#"[16,239714735,{},"com.myapp.mytopic1"]"#).unwrap();
    assert_eq!(
        m,
        Message::Publish {
            request: 239714735,
            options: Dict::new(),
            topic: "com.myapp.mytopic1".into(),
            args: None,
            kwargs: None
        }
    );
    let m = Message::decode(r#"[16,1,{"acknowledge":true},"t",["Hello"],{"a":1}]"#).unwrap();
    let Message::Publish { args, kwargs, .. } = m else { panic!("not a publish") };
    assert_eq!(args, Some(vec![json!("Hello")]));
    assert_eq!(kwargs.unwrap()["a"], json!(1));
}

#[test]
fn round_trips_every_router_message() {
    let messages = vec![
        Message::Welcome { session: 9, details: Dict::new() },
        Message::abort("wamp.error.no_such_realm", "nope"),
        Message::goodbye(crate::wamp::errors::GOODBYE_AND_OUT, "bye"),
        Message::error(code::SUBSCRIBE, 5, "wamp.error.invalid_uri", "bad"),
        Message::Published { request: 1, publication: 2 },
        Message::Subscribed { request: 1, subscription: 2 },
        Message::Unsubscribed { request: 1 },
        Message::Result { request: 1, details: Dict::new(), args: Some(vec![json!(3)]), kwargs: None },
        Message::Event {
            subscription: 1,
            publication: 2,
            details: Dict::new(),
            args: Some(vec![]),
            kwargs: Some(Dict::new()),
        },
    ];
    for m in messages {
        assert_eq!(Message::decode(&m.encode()).unwrap(), m);
    }
}

#[test]
fn numbers_in_a_payload_survive_decode_and_encode_unchanged() {
    // Found by the `v1` fuzz target: without serde_json's `float_roundtrip`, a relayed float could come out
    // one unit in the last place off (6.666666666666666e43 in, 6.666666666666667e43 out after a trip).
    let frame = r#"[16,1,{},"t",[66666666666666666666666666666666666666666661,0.1,1e-7,-2.5e300]]"#;
    let once = Message::decode(frame).unwrap();
    assert_eq!(Message::decode(&once.encode()).unwrap(), once);
}

#[test]
fn event_fast_path_matches_the_generic_encoder() {
    let args = Some(vec![json!("hi"), json!(2)]);
    let kwargs = None;
    let fast = encode_event(7, 8, "{}", &encode_payload_tail(&args, &kwargs));
    let slow = Message::Event { subscription: 7, publication: 8, details: Dict::new(), args, kwargs }.encode();
    assert_eq!(fast, slow);
    assert_eq!(encode_event(1, 2, "{}", &encode_payload_tail(&None, &Some(Dict::new()))), "[36,1,2,{},[],{}]");
}

#[test]
fn malformed_frames_name_what_is_wrong() {
    assert!(matches!(Message::decode("[16,1"), Err(DecodeError::InvalidJson(_))));
    assert_eq!(Message::decode("{\"a\":1}"), Err(DecodeError::NotAnArray));
    assert_eq!(Message::decode(r#"["x"]"#), Err(DecodeError::BadCode));
    assert_eq!(Message::decode("[999]"), Err(DecodeError::UnknownCode(999)));
    assert!(matches!(Message::decode(r#"[32,1,{}]"#), Err(DecodeError::WrongLength { message: "SUBSCRIBE", .. })));
    assert!(matches!(
        Message::decode(r#"[32,"1",{},"t"]"#),
        Err(DecodeError::BadField { message: "SUBSCRIBE", index: 1, .. })
    ));
    assert!(matches!(Message::decode(r#"[32,0,{},"t"]"#), Err(DecodeError::BadField { index: 1, .. })));
    assert!(matches!(Message::decode(r#"[32,9007199254740993,{},"t"]"#), Err(DecodeError::BadField { index: 1, .. })));
    assert!(matches!(Message::decode(r#"[32,1,[],"t"]"#), Err(DecodeError::BadField { index: 2, .. })));
    assert!(matches!(Message::decode(r#"[32,1,{},7]"#), Err(DecodeError::BadField { index: 3, .. })));
    assert!(matches!(Message::decode(r#"[16,1,{},"t",{"a":1}]"#), Err(DecodeError::BadField { index: 4, .. })));
    assert!(matches!(Message::decode(r#"[48,1,{},"p",[],[]]"#), Err(DecodeError::BadField { index: 5, .. })));
    assert!(matches!(Message::decode(r#"[1,"realm1"]"#), Err(DecodeError::WrongLength { .. })));
}

#[test]
fn names_follow_codes() {
    assert_eq!(Message::Unsubscribed { request: 1 }.name(), "UNSUBSCRIBED");
    assert_eq!(Message::decode("[70,1,{}]").unwrap().name(), "YIELD");
}

#[test]
fn unimplemented_messages_keep_their_request_id() {
    assert_eq!(
        Message::decode(r#"[49,77,{}]"#).unwrap(),
        Message::Unimplemented { code: code::CANCEL, name: "CANCEL", request: Some(77) }
    );
}

#[test]
fn publish_options_meaning() {
    let o: Dict =
        serde_json::from_str(r#"{"exclude_me":false,"eligible":[1,2],"exclude_authid":"bob","acknowledge":true}"#)
            .unwrap();
    let p = PublishOptions::parse(&o).unwrap();
    assert!(!p.exclude_me && p.acknowledge);
    assert_eq!(p.filters.eligible, Some(vec![1, 2]));
    assert_eq!(p.filters.exclude_authid, vec!["bob".to_string()]);
    assert!(PublishOptions::parse(&Dict::new()).unwrap().exclude_me);
    let bad: Dict = serde_json::from_str(r#"{"eligible":["x"]}"#).unwrap();
    assert_eq!(PublishOptions::parse(&bad).unwrap_err().option, "eligible");
    let bad: Dict = serde_json::from_str(r#"{"acknowledge":"yes"}"#).unwrap();
    assert_eq!(PublishOptions::parse(&bad).unwrap_err().option, "acknowledge");
}

#[test]
fn subscribe_options_meaning() {
    let o: Dict = serde_json::from_str(r#"{"match":"wildcard"}"#).unwrap();
    assert_eq!(SubscribeOptions::parse(&o).unwrap().policy, MatchPolicy::Wildcard);
    let bad: Dict = serde_json::from_str(r#"{"match":"regex"}"#).unwrap();
    assert!(SubscribeOptions::parse(&bad).is_err());
}

#[test]
fn an_event_frames_publication_id_is_read_in_place() {
    let frame = encode_event(11, 22, "{}", ",[1]");
    assert_eq!(event_publication(&frame), Some(22));
    assert_eq!(event_publication("[36,11]"), None);
    assert_eq!(event_publication("[33,1,2]"), None, "not an EVENT");
}
