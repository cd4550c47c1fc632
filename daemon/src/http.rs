//! The plain-HTTP listener: `/healthz` and Prometheus `/metrics`.

use crate::metrics::Metrics;
use axum::Router;
use axum::http::header;
use axum::routing::get;
use std::sync::Arc;

/// Routes of the HTTP listener.
pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route(
            "/healthz",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "application/json")],
                    "{\"status\":\"ok\"}\n",
                )
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
