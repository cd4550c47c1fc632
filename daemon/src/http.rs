//! The plain-HTTP listener: `/healthz`, Prometheus `/metrics`, and the signed
//! revocation list (`/v1/revocations.json` and its `.sig`) for verifiers.

use crate::audit::AuditLog;
use crate::metrics::Metrics;
use crate::revocation::Revocations;
use axum::Router;
use axum::http::StatusCode;
use axum::http::header;
use axum::routing::get;
use std::sync::Arc;

/// One part of the current list, or 503 while none has been issued yet.
fn revocation_part(
    part: Option<String>,
    content_type: &'static str,
) -> (StatusCode, [(header::HeaderName, &'static str); 2], String) {
    let headers = [
        (header::CONTENT_TYPE, content_type),
        (header::CACHE_CONTROL, "no-cache"),
    ];
    match part {
        Some(p) => (StatusCode::OK, headers, p),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            [
                (header::CONTENT_TYPE, "text/plain"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            "no revocation list has been issued yet; try again shortly\n".into(),
        ),
    }
}

/// Routes of the HTTP listener.
/// `/healthz` answers 503 with the reason while the audit log cannot be checkpointed.
pub fn router(metrics: Arc<Metrics>, audit: Arc<AuditLog>, lists: Arc<Revocations>) -> Router {
    let signature = lists.clone();
    let crl = lists.clone();
    Router::new()
        .route(
            "/v1/crl.der",
            get(move || {
                use base64::Engine;
                let der = crl.current().and_then(|l| {
                    base64::engine::general_purpose::STANDARD
                        .decode(&l.crl)
                        .ok()
                });
                async move {
                    match der {
                        Some(d) => (
                            StatusCode::OK,
                            [
                                (header::CONTENT_TYPE, "application/pkix-crl"),
                                (header::CACHE_CONTROL, "no-cache"),
                            ],
                            d,
                        ),
                        None => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            [
                                (header::CONTENT_TYPE, "text/plain"),
                                (header::CACHE_CONTROL, "no-cache"),
                            ],
                            b"no CRL has been issued yet; try again shortly\n".to_vec(),
                        ),
                    }
                }
            }),
        )
        .route(
            "/v1/revocations.json",
            get(move || {
                let l = lists.current();
                async move { revocation_part(l.map(|l| l.document.clone()), "application/json") }
            }),
        )
        .route(
            "/v1/revocations.json.sig",
            get(move || {
                let l = signature.current();
                async move { revocation_part(l.map(|l| l.signature.clone()), "text/plain") }
            }),
        )
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
