//! Everything HTTP: the WebSocket upgrade (`upgrade`), health and metrics (`health`), the push API (`push`,
//! when `api.token` is set) and the demo web app (`demo`, when enabled). Handlers here decide statuses and
//! bodies; the work is the node's ([`Services`]). Nothing here is imported by the connection, topic or
//! cluster layers.

use actix_web::web;

use std::sync::Arc;

use crate::services::Services;

pub(crate) mod demo;
mod health;
mod push;
pub mod upgrade;

pub use push::{ApiError, MAX_BODY_BYTES};
pub use upgrade::{origin_allowed, Refusal};

pub(crate) fn configure(cfg: &mut web::ServiceConfig, node: Arc<Services>) {
    let demo = node.settings().demo_enabled();
    cfg.app_data(web::Data::from(node.clone()))
        .route("/ws", web::get().to(upgrade::websocket))
        .route("/health/live", web::get().to(health::live))
        .route("/health/ready", web::get().to(health::ready))
        .route("/metrics", web::get().to(health::metrics));
    if !node.settings().api.token.is_empty() {
        push::configure(cfg);
    }
    if demo {
        demo::configure(cfg, &node);
    }
}
