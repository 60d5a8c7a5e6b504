//! Health and metrics endpoints: `/health/live`, `/health/ready` (what a load balancer and a container
//! orchestrator ask) and `/metrics` (OpenMetrics text).

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::metrics;
use crate::services::Services;

pub(super) async fn live() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// Ready when the node can do its job and is not draining: the session store answers and, in cluster mode, the
/// backplane is up. 503 `{"status":"draining",…}` once a drain (SIGTERM) began.
/// 200 `{"status":"ready",…}` or 503 `{"status":"not ready",…}`; `redis` (the session store's Redis) is `up`,
/// `down` or `not configured`, `backplane` is `up`, `down` or `disabled` (embedded mode). While down, `redis_error`
/// and `backplane_error` carry Redis's own words (e.g. `NOAUTH` or `WRONGPASS` after a password change).
pub(super) async fn ready(node: web::Data<Services>) -> HttpResponse {
    let (redis, redis_error) = if node.settings().session_redis_url().is_empty() {
        ("not configured", None)
    } else {
        match node.sessions().probe().await {
            Ok(()) => ("up", None),
            Err(e) => ("down", Some(e.0)),
        }
    };
    let backplane = node.backplane().state();
    let draining = node.is_draining();
    let ready = !draining && redis != "down" && backplane != crate::cluster::BackplaneState::Down;
    let status = match (draining, ready) {
        (true, _) => "draining",
        (false, true) => "ready",
        (false, false) => "not ready",
    };
    let mut body = json!({
        "status": status,
        "node": node.node_id(),
        "mode": if node.is_cluster() { "cluster" } else { "embedded" },
        "session_store": node.sessions().store().kind(),
        "redis": redis,
        "backplane": backplane.as_str(),
        "sessions": node.clients().local_count(),
    });
    if let Some(error) = redis_error {
        body["redis_error"] = json!(error);
    }
    if let Some(error) = node.backplane().last_error() {
        body["backplane_error"] = json!(error);
    }
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

pub(super) async fn metrics(node: web::Data<Services>) -> HttpResponse {
    HttpResponse::Ok().content_type(metrics::CONTENT_TYPE).body(node.metrics().render())
}
