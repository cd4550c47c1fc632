//! The plain-HTTP listener: `/healthz` and Prometheus `/metrics`.

use crate::audit::AuditLog;
use crate::metrics::Metrics;
use axum::Router;
use axum::http::StatusCode;
use axum::http::header;
use axum::routing::get;
use std::sync::Arc;

/// Routes of the HTTP listener.
/// `/healthz` answers 503 with the reason while the audit log cannot be checkpointed.
pub fn router(metrics: Arc<Metrics>, audit: Arc<AuditLog>) -> Router {
    Router::new()
        .route(
            "/healthz",
            get(move || {
                let blocked = audit.blocked();
                async move {
                    let json = [(header::CONTENT_TYPE, "application/json")];
                    match blocked {
                        None => (StatusCode::OK, json, "{\"status\":\"ok\"}\n".to_string()),
                        Some(why) => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            json,
                            format!(
                                "{}\n",
                                serde_json::json!({"status": "unavailable", "reason": why})
                            ),
                        ),
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let m = metrics.clone();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        m.encode(),
                    )
                }
            }),
        )
}
