//! The session meta API: identity-revealing procedures only for `meta.roles`, lists paged and capped by
//! `meta.max_list`, `wamp.session.count` open and answered from maintained counts.

use serde_json::{json, Value};
use switchboard::client::V2Session;
use switchboard::Switchboard;

use crate::helpers::*;

fn ids(args: &[Value]) -> Vec<u64> {
    args[0].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect()
}

#[actix_web::test]
async fn anonymous_sessions_get_not_authorized_from_list_and_get_but_may_count() {
    let app = spawn_app().await;
    let mut anon = V2Session::connect(&app.ws_url(), "r").await.unwrap();
    let list = anon.call("wamp.session.list", vec![], dict(json!({}))).await;
    assert_eq!(wamp_error(list), "wamp.error.not_authorized");
    let get = anon.call("wamp.session.get", vec![json!(anon.id)], dict(json!({}))).await;
    assert_eq!(wamp_error(get), "wamp.error.not_authorized");
    assert_eq!(anon.call("wamp.session.count", vec![], dict(json!({}))).await.unwrap().0, vec![json!(1)]);
    let mut v1 = switchboard::client::V1Session::connect(&app.ws_url()).await.unwrap();
    assert_eq!(wamp_error(v1.call("wamp.session.list", vec![]).await), "wamp.error.not_authorized");
}

#[actix_web::test]
async fn a_logged_in_user_gets_the_list_in_pages_capped_by_max_list() {
    let mut settings = test_settings();
    settings.meta.max_list = 2;
    let app = spawn_with(Switchboard::builder(settings)).await;
    let mut alice = connect_as(&app, "alice").await;
    let mut others = Vec::new();
    for _ in 0..4 {
        others.push(V2Session::connect(&app.ws_url(), "r").await.unwrap());
    }
    let mut expected: Vec<u64> = others.iter().map(|s| s.id).chain([alice.id]).collect();
    expected.sort();

    let (first, _) = alice.call("wamp.session.list", vec![], dict(json!({"limit": 100}))).await.unwrap();
    assert_eq!(ids(&first), expected[..2], "capped at meta.max_list, in id order");
    let mut all: Vec<u64> = Vec::new();
    let mut after = 0;
    loop {
        let (page, _) = alice.call("wamp.session.list", vec![], dict(json!({"after": after}))).await.unwrap();
        let page = ids(&page);
        all.extend(&page);
        if page.len() < 2 {
            break;
        }
        after = *page.last().unwrap();
    }
    assert_eq!(all, expected);
    let (one, _) = alice.call("wamp.session.list", vec![], dict(json!({"limit": 1}))).await.unwrap();
    assert_eq!(ids(&one), expected[..1]);
    let (users, _) = alice.call("wamp.session.list", vec![json!(["user"])], dict(json!({}))).await.unwrap();
    assert_eq!(ids(&users), vec![alice.id]);
    let bad = alice.call("wamp.session.list", vec![], dict(json!({"limit": "ten"}))).await;
    assert_eq!(wamp_error(bad), "wamp.error.invalid_argument");
    let (got, _) = alice.call("wamp.session.get", vec![json!(others[0].id)], dict(json!({}))).await.unwrap();
    assert_eq!(got[0]["authid"], json!(others[0].authid()));
}

#[actix_web::test]
async fn meta_roles_limit_identity_procedures_to_the_listed_roles() {
    let mut settings = test_settings();
    settings.meta.roles = Some(vec!["admin".into()]);
    let app = spawn_with(Switchboard::builder(settings)).await;
    let mut alice = connect_as(&app, "alice").await;
    assert_eq!(alice.authrole(), "user");
    let list = alice.call("wamp.session.list", vec![], dict(json!({}))).await;
    assert_eq!(wamp_error(list), "wamp.error.not_authorized");
    assert_eq!(alice.call("wamp.session.count", vec![], dict(json!({}))).await.unwrap().0, vec![json!(1)]);
}

#[actix_web::test]
async fn session_count_follows_sessions_and_roles_as_they_come_and_go() {
    let app = spawn_app().await;
    let mut alice = connect_as(&app, "alice").await;
    let bob = connect_as(&app, "bob").await;
    let anon = V2Session::connect(&app.ws_url(), "r").await.unwrap();
    let mut count = async |roles: Value| {
        let args = if roles.is_null() { vec![] } else { vec![roles] };
        alice.call("wamp.session.count", args, dict(json!({}))).await.unwrap().0[0].as_u64().unwrap()
    };
    assert_eq!(count(Value::Null).await, 3);
    assert_eq!(count(json!(["user"])).await, 2);
    assert_eq!(count(json!(["anonymous"])).await, 1);
    assert_eq!(count(json!(["user", "anonymous"])).await, 3, "a union, each session once");
    assert_eq!(count(json!([])).await, 0);
    drop(bob);
    drop(anon);
    let node = app.node.clone();
    eventually("two sessions left", || node.clients().local_count() == 1).await;
    assert_eq!(count(Value::Null).await, 1);
    assert_eq!(count(json!(["user"])).await, 1);
    assert_eq!(count(json!(["anonymous"])).await, 0);
}
