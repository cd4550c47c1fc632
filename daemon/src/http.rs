//! The plain-HTTP listener: `/healthz`, Prometheus `/metrics`, the signed revocation
//! list (`/v1/revocations.json` and its `.sig`) and CRL for verifiers, and the RFC 3161
//! time-stamping authority (`POST /v1/timestamp`, its chain at `/v1/tsa-chain.pem`).

use crate::audit::AuditLog;
use crate::metrics::Metrics;
use crate::pki::timestamps::{Tsa, TsaError};
use crate::revocation::Revocations;
use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::sync::Arc;
use tokio::sync::Semaphore;

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

fn text(code: StatusCode, why: String) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "text/plain")],
        format!("{why}\n"),
    )
        .into_response()
}

/// Answers an RFC 3161 query (`application/timestamp-query`, at most 64 KiB) with a
/// signed `application/timestamp-reply`; a query this TSA does not stamp gets 400 and
/// the reason. At most `slots` queries are stamped at once; more get 503 and
/// Retry-After, so that the unauthenticated endpoint cannot crowd signing out of the
/// HSM.
/// At most `n` turns a second, handed out in order; a turn more than [`WAIT`] away is
/// refused.
struct Pace {
    every: Option<std::time::Duration>,
    next: std::sync::Mutex<tokio::time::Instant>,
}

/// The longest a caller of the time-stamping endpoint waits for its turn.
const WAIT: std::time::Duration = std::time::Duration::from_secs(2);

impl Pace {
    fn new(n: u32) -> Self {
        Self {
            every: (n > 0).then(|| std::time::Duration::from_secs(1) / n),
            next: std::sync::Mutex::new(tokio::time::Instant::now()),
        }
    }

    /// Waits for a turn; `false` when none is free within [`WAIT`].
    async fn turn(&self) -> bool {
        let Some(every) = self.every else {
            return true;
        };
        let at = {
            let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
            let now = tokio::time::Instant::now();
            let at = (*next).max(now);
            if at > now + WAIT {
                return false;
            }
            *next = at + every;
            at
        };
        tokio::time::sleep_until(at).await;
        true
    }
}

async fn timestamp(
    tsa: &Tsa,
    (slots, pace): (&Semaphore, &Pace),
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let kind = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if kind != "application/timestamp-query" {
        return text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("send an RFC 3161 query as application/timestamp-query, not {kind:?}"),
        );
    }
    // A caller waits (up to two seconds) for a slot rather than being turned away at
    // once: callers that retry at once would otherwise spend on refusals the CPU the
    // signing path needs.
    let slot = match tokio::time::timeout(WAIT, slots.acquire()).await {
        Ok(Ok(s)) if pace.turn().await => Some(s),
        _ => None,
    };
    let Some(_slot) = slot else {
        let mut busy = text(
            StatusCode::SERVICE_UNAVAILABLE,
            "the time-stamping authority is busy; try again in a second".into(),
        );
        busy.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        return busy;
    };
    match tsa.stamp(body).await {
        Ok(reply) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/timestamp-reply")],
            reply,
        )
            .into_response(),
        Err(TsaError::BadQuery(why)) => text(StatusCode::BAD_REQUEST, why),
        Err(e) => {
            tracing::error!(error = %e, "time-stamp failed");
            text(
                StatusCode::SERVICE_UNAVAILABLE,
                "the time-stamping authority cannot sign now; see the daemon log".into(),
            )
        }
    }
}

/// Routes of the HTTP listener.
/// `/healthz` answers 503 with the reason while the audit log cannot be checkpointed or
/// no revocation list can be issued; `/v1/audit/head` serves the signed audit head.
/// `POST /v1/timestamp` stamps at most `http_stamps` queries at once (0: not served).
pub fn router(
    metrics: Arc<Metrics>,
    (audit, backends, audit_backend): (Arc<AuditLog>, Arc<crate::keys::Backends>, String),
    lists: Arc<Revocations>,
    (tsa, http_stamps, per_second): (Arc<Tsa>, usize, u32),
) -> Router {
    let head_log = audit.clone();
    let signature = lists.clone();
    let crl = lists.clone();
    let health = lists.clone();
    let chain = tsa.chain_pem();
    let slots = Arc::new(Semaphore::new(http_stamps));
    let pace = Arc::new(Pace::new(per_second));
    Router::new()
        .route(
            "/v1/timestamp",
            post(move |headers: HeaderMap, body: Bytes| {
                let (tsa, slots, pace) = (tsa.clone(), slots.clone(), pace.clone());
                async move {
                    if http_stamps == 0 {
                        return text(
                            StatusCode::NOT_FOUND,
                            "this instance does not serve time-stamps over HTTP ([tsa] http_concurrency = 0)".into(),
                        );
                    }
                    timestamp(&tsa, (&slots, &pace), &headers, &body).await
                }
            })
            .layer(axum::extract::DefaultBodyLimit::max(64 * 1024)),
        )
        .route(
            "/v1/tsa-chain.pem",
            get(move || {
                let chain = chain.clone();
                async move { ([(header::CONTENT_TYPE, "application/x-pem-file")], chain) }
            }),
        )
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
            "/v1/audit/head",
            get(move || {
                let (log, backends, name) = (head_log.clone(), backends.clone(), audit_backend.clone());
                async move {
                    let json = [(header::CONTENT_TYPE, "application/json")];
                    let signed = match backends.get(&name) {
                        Ok(pool) => log.signed_head(pool).await.map_err(|e| e.to_string()),
                        Err(e) => Err(e.to_string()),
                    };
                    match signed {
                        Ok(h) => (
                            StatusCode::OK,
                            json,
                            format!("{}\n", serde_json::to_string(&h).unwrap_or_default()),
                        ),
                        Err(e) => {
                            tracing::error!(error = %e, "cannot sign the audit head");
                            (
                                StatusCode::SERVICE_UNAVAILABLE,
                                json,
                                format!("{}\n", serde_json::json!({"error": "the audit head could not be signed; see the daemon log"})),
                            )
                        }
                    }
                }
            }),
        )
        .route(
            "/healthz",
            get(move || {
                let (blocked, revocation) = (audit.blocked(), health.failing());
                async move {
                    let json = [(header::CONTENT_TYPE, "application/json")];
                    let state = |f: &Option<String>| f.clone().unwrap_or_else(|| "ok".into());
                    let subsystems = serde_json::json!({
                        "audit": state(&blocked),
                        "revocation": state(&revocation),
                    });
                    match blocked.or(revocation) {
                        None => (
                            StatusCode::OK,
                            json,
                            format!("{}\n", serde_json::json!({"status": "ok", "subsystems": subsystems})),
                        ),
                        Some(why) => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            json,
                            format!(
                                "{}\n",
                                serde_json::json!({"status": "unavailable", "reason": why, "subsystems": subsystems})
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
