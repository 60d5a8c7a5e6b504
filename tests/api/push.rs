//! The push API checks its token before it reads a body, refuses bodies over the limit before parsing them,
//! and applies `wamp.max_filter_entries` to filter lists.

use serde_json::{json, Value};
use switchboard::Switchboard;

use crate::helpers::*;

const TOKEN: &str = "push-test-token-0123456789";
/// The push API's body limit (`push::MAX_BODY_BYTES`).
const MAX_BODY_BYTES: usize = 1024 * 1024;

async fn spawn_with_api(max_filter_entries: usize) -> TestApp {
    let mut settings = test_settings();
    settings.api.token = TOKEN.into();
    settings.wamp.max_filter_entries = max_filter_entries;
    spawn_with(Switchboard::builder(settings)).await
}

/// POSTs `body` (raw bytes, JSON content type) to `/api/publish`; returns status and JSON answer.
async fn post(app: &TestApp, token: Option<&str>, body: impl Into<Vec<u8>>) -> (u16, Value) {
    let mut request = awc::Client::default().post(app.http_url("/api/publish")).content_type("application/json");
    if let Some(token) = token {
        request = request.insert_header(("Authorization", format!("Bearer {token}")));
    }
    let mut response = request.send_body(body.into()).await.unwrap();
    let status = response.status().as_u16();
    (status, response.json::<Value>().limit(1 << 20).await.unwrap_or(Value::Null))
}

#[actix_web::test]
async fn without_a_token_a_body_is_not_parsed_and_no_field_is_listed() {
    let app = spawn_with_api(1024).await;
    let (status, body) = post(&app, None, r#"{"zzz":1}"#).await;
    assert_eq!(status, 401, "{body}");
    let message = body["error"].as_str().unwrap();
    assert!(!message.contains("topic") && !message.contains("eligible"), "{message}");
    let (status, body) = post(&app, Some("wrong-token-0123456789"), r#"{"zzz":1}"#).await;
    assert_eq!(status, 403, "{body}");
    assert!(!body["error"].as_str().unwrap().contains("topic"), "{body}");
    let (status, body) = post(&app, Some(TOKEN), r#"{"zzz":1}"#).await;
    assert_eq!(status, 400, "with the token the body is parsed and explained: {body}");
    // Every route is behind the same check.
    for path in ["/api/sessions", "/api/sessions/1", "/api/users/alice/sessions"] {
        let r = awc::Client::default().get(app.http_url(path)).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
    }
}

#[actix_web::test]
async fn a_body_over_the_limit_is_refused_with_413_before_parsing() {
    let app = spawn_with_api(1024).await;
    let huge = format!(r#"{{"topic":"t","args":["{}"]}}"#, "x".repeat(MAX_BODY_BYTES));
    let (status, body) = post(&app, Some(TOKEN), huge.clone()).await;
    assert_eq!(status, 413, "{body}");
    let (status, _) = post(&app, None, huge).await;
    assert_eq!(status, 401, "the token comes first");
    let (status, body) = post(&app, Some(TOKEN), r#"{"topic":"t","args":[1]}"#).await;
    assert_eq!(status, 200, "{body}");
}

#[actix_web::test]
async fn filter_lists_above_max_filter_entries_get_400_naming_the_list() {
    let app = spawn_with_api(3).await;
    let ok = json!({"topic": "t", "exclude_authid": ["a", "b", "c"]}).to_string();
    assert_eq!(post(&app, Some(TOKEN), ok).await.0, 200);
    for field in ["exclude", "eligible", "exclude_authid", "eligible_authid", "exclude_authrole", "eligible_authrole"] {
        let list = if field.ends_with("authid") || field.ends_with("authrole") {
            json!(["a", "b", "c", "d"])
        } else {
            json!([1, 2, 3, 4])
        };
        let mut body = json!({"topic": "t"});
        body[field] = list;
        let (status, answer) = post(&app, Some(TOKEN), body.to_string()).await;
        assert_eq!(status, 400, "{field}: {answer}");
        assert!(answer["error"].as_str().unwrap().contains(&format!("{field} holds 4 entries")), "{answer}");
    }
}
