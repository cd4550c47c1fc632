//! The gate: a tower layer in front of every gRPC service. For each request it
//! authenticates the client certificate, finds the method's rule (no rule: refused),
//! decodes the request to learn its target, checks role, signer list, key purpose and
//! one-time code, and writes the audit record (an intent for requests that change
//! state or sign) durably before the handler runs. Refusals are audited durably
//! before the caller gets its answer. Handlers receive an [`Admitted`] and cannot
//! skip any of this: signing needs the [`SignPermit`] only the gate (or an approval
//! re-checked at execution) hands out.

use super::outcome::{Observer, mfa_status};
use super::rules::{self, Access, Effect, KeyUse, Otp, Rule, Target};
use crate::audit::Decision;
use crate::authz::{Principals, SignPermit, check_key_use};
use crate::identity::{Principal, common_name};
use crate::keys::{KeyRecord, KeyRegistry};
use bytes::Bytes;
use http_body_util::BodyExt;
use sha2::Digest;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::Status;
use tonic::body::Body;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

/// Request metadata carrying a one-time code.
pub const OTP_HEADER: &str = "x-keyward-otp";

/// Largest request the gate reads (tonic's own default limit).
pub const MAX_REQUEST: usize = 4 * 1024 * 1024;

/// A request that passed the gate, as the handler sees it.
#[derive(Clone)]
pub struct Admitted {
    /// The caller.
    pub who: Principal,
    /// The method's rule.
    pub rule: &'static Rule,
    /// What the request is about.
    pub target: Target,
    /// SHA-256 of the request message as received, hex.
    pub request_hash: String,
    /// The key a signing request names, as checked.
    pub key: Option<Arc<KeyRecord>>,
    /// Present when the request may sign now (no approvals needed).
    pub permit: Option<SignPermit>,
    /// Approvals the key needs before this request signs (0: none).
    pub approvals_needed: u32,
    pub(super) obs: Observer,
}

impl std::fmt::Debug for Admitted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admitted")
            .field("who", &self.who.name)
            .field("method", &self.rule.name)
            .finish_non_exhaustive()
    }
}

/// The request that passed the gate (every handler starts here).
pub fn admitted<T>(req: &tonic::Request<T>) -> Result<Admitted, Status> {
    req.extensions()
        .get::<Admitted>()
        .cloned()
        .ok_or_else(|| Status::internal("internal error: the request did not pass the gate"))
}

/// What the gate needs.
pub struct Gate {
    principals: Arc<Principals>,
    keys: Arc<KeyRegistry>,
    /// Approvals, to find the key a decision is about.
    approvals: Option<Arc<crate::approvals::Approvals>>,
    obs: Observer,
    /// Client certificate (DER) -> (common name, SHA-256 fingerprint): a connection
    /// presents the same certificate on every request, and parsing it costs more than
    /// the rest of the gate. Only what the bytes themselves say is kept; whether the
    /// principal and that fingerprint are registered is asked on every request.
    seen: std::sync::RwLock<std::collections::HashMap<Vec<u8>, (String, String)>>,
}

/// Client certificates [`Gate::seen`] remembers before it starts again.
const SEEN_CERTIFICATES: usize = 1024;

impl Gate {
    /// A gate over the registered principals and keys.
    pub fn new(principals: Arc<Principals>, keys: Arc<KeyRegistry>, obs: Observer) -> Self {
        Self {
            principals,
            keys,
            approvals: None,
            obs,
            seen: Default::default(),
        }
    }

    /// Finds the key of an approval a decision names in `approvals`.
    pub fn with_approvals(mut self, approvals: Arc<crate::approvals::Approvals>) -> Self {
        self.approvals = Some(approvals);
        self
    }

    /// Whether the key a decision is about asks for a code: the key the request
    /// names, or the key of the approval it decides. An approval that cannot be read
    /// asks for one (the handler then says what is wrong with it).
    async fn decision_needs_code(&self, target: &Target) -> bool {
        let key = if target.key.is_empty() {
            match &self.approvals {
                Some(a) => match a.get(&target.name).await {
                    Ok(r) => r.key,
                    Err(_) => return true,
                },
                None => return false,
            }
        } else {
            target.key.clone()
        };
        self.keys.get(&key).is_ok_and(|k| k.require_mfa)
    }

    /// The common name and fingerprint of a client certificate.
    fn identify(&self, leaf: &[u8]) -> Option<(String, String)> {
        let known = self
            .seen
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(leaf)
            .cloned();
        if known.is_some() {
            return known;
        }
        let name = common_name(leaf).filter(|n| !n.is_empty())?;
        let fingerprint = hex::encode(sha2::Sha256::digest(leaf));
        let mut seen = self.seen.write().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= SEEN_CERTIFICATES {
            seen.clear();
        }
        seen.insert(leaf.to_vec(), (name.clone(), fingerprint.clone()));
        Some((name, fingerprint))
    }

    /// Audits a refusal durably, then returns the status the caller gets.
    async fn refuse(
        &self,
        who: &str,
        method: &'static str,
        target: &str,
        hash: &str,
        st: Status,
    ) -> Status {
        tracing::info!(method, principal = %who, reason = %st.message(), "request refused");
        self.obs.metrics.request(method, st.code());
        let decision = match st.code() {
            tonic::Code::PermissionDenied | tonic::Code::Unauthenticated => Decision::Denied,
            _ => Decision::Failed,
        };
        match self
            .obs
            .record(who, method, target, decision, st.message(), hash)
            .await
        {
            Ok(()) => st,
            Err(audit) => audit,
        }
    }

    fn authenticate(&self, req: &http::Request<Body>) -> Result<Principal, (String, Status)> {
        let certs = req
            .extensions()
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .and_then(|i| i.peer_certs());
        let missing = || {
            (
                String::new(),
                Status::unauthenticated(
                    "a client certificate issued by the Keyward CA is required",
                ),
            )
        };
        let certs = certs.ok_or_else(missing)?;
        let leaf = certs.first().ok_or_else(missing)?;
        let (name, fingerprint) = self.identify(leaf.as_ref()).ok_or_else(|| {
            (
                String::new(),
                Status::unauthenticated("the client certificate has no common name"),
            )
        })?;
        match self.principals.authenticate(&name, &fingerprint) {
            Ok(record) => Ok(Principal { name, record }),
            Err(why) => Err((name, Status::unauthenticated(why))),
        }
    }

    /// Runs every check of the rule table; on success the request carries an
    /// [`Admitted`] and its intent (or read) record is durable.
    pub async fn admit(&self, req: http::Request<Body>) -> Result<http::Request<Body>, Status> {
        let method = req.uri().path().to_string();
        let who = match self.authenticate(&req) {
            Ok(p) => p,
            Err((name, st)) => {
                return Err(self.refuse(&name, "Authenticate", &method, "", st).await);
            }
        };
        let Some(rule) = rules::find(&method) else {
            let st = Status::unimplemented(format!(
                "{method} is not an RPC of this keywardd (no access rule); nothing was done"
            ));
            // Counted and audited as `unknown`, the path as the target (cut short):
            // a caller's text never becomes a metric label.
            let path: String = method.chars().take(200).collect();
            return Err(self.refuse(&who.name, "unknown", &path, "", st).await);
        };
        let otp = req
            .headers()
            .get(OTP_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(|s| zeroize::Zeroizing::new(s.trim().to_string()));
        let (parts, body) = req.into_parts();
        let bytes = match read_message(body).await {
            Ok(b) => b,
            Err(st) => return Err(self.refuse(&who.name, rule.name, "", "", st).await),
        };
        let message = bytes.get(5..).unwrap_or_default();
        let hash = hex::encode(sha2::Sha256::digest(message));
        let target = match (rule.target)(message) {
            Ok(t) => t,
            Err(e) => {
                let st = Status::invalid_argument(format!(
                    "the request is not a valid {}: {e}",
                    rule.name
                ));
                return Err(self.refuse(&who.name, rule.name, "", &hash, st).await);
            }
        };
        let checked = self
            .check(&who, rule, &target, otp.as_deref().map(|s| s.as_str()))
            .await;
        let (key, permit, approvals_needed) = match checked {
            Ok(c) => c,
            Err(st) => {
                return Err(self
                    .refuse(&who.name, rule.name, &target.name, &hash, st)
                    .await);
            }
        };
        if rule.effect.changes_state()
            && let Some(why) = self.obs.audit.blocked()
        {
            let st = Status::unavailable(format!(
                "requests that change state or sign are refused until the audit log can be checkpointed again: {why}"
            ));
            return Err(self
                .refuse(&who.name, rule.name, &target.name, &hash, st)
                .await);
        }
        match rule.effect {
            // Signs now and answers only once its outcome record is durable: an intent
            // would be committed with that record or not at all, so it adds nothing.
            Effect::Reply if permit.is_some() => {}
            Effect::Read => {
                self.obs
                    .record(
                        &who.name,
                        rule.name,
                        &target.name,
                        Decision::Allowed,
                        "",
                        &hash,
                    )
                    .await?
            }
            _ => {
                self.obs
                    .record(
                        &who.name,
                        rule.name,
                        &target.name,
                        Decision::Intent,
                        "",
                        &hash,
                    )
                    .await?
            }
        }
        let mut req = http::Request::from_parts(parts, Body::new(http_body_util::Full::new(bytes)));
        req.extensions_mut().insert(Admitted {
            who,
            rule,
            target,
            request_hash: hash,
            key,
            permit,
            approvals_needed,
            obs: self.obs.clone(),
        });
        Ok(req)
    }

    async fn check(
        &self,
        who: &Principal,
        rule: &Rule,
        target: &Target,
        otp: Option<&str>,
    ) -> Result<(Option<Arc<KeyRecord>>, Option<SignPermit>, u32), Status> {
        match rule.access {
            Access::Role(action) => who.allow(action, rule.what)?,
            Access::SelfOr(action) => {
                if target.name != who.name {
                    who.allow(action, rule.what)?
                }
            }
        }
        let (mut key, mut permit, mut needed) = (None, None, 0);
        if let KeyUse::Sign(purpose) = rule.key {
            let rec = self
                .keys
                .get(&target.key)
                .map_err(|e| Status::not_found(e.to_string()))?;
            let p = check_key_use(&who.record, rec.clone(), purpose)
                .map_err(Status::permission_denied)?;
            needed = rec.approvals;
            if needed == 0 {
                permit = Some(p);
            }
            key = Some(rec);
        }
        let code_needed = match rule.otp {
            Otp::Never => false,
            Otp::Enforced => self.obs.mfa.required(),
            Otp::KeyPolicy => key.as_ref().is_some_and(|k| k.require_mfa),
            Otp::KeyDecision => self.obs.mfa.required() || self.decision_needs_code(target).await,
        };
        if code_needed {
            let what = match rule.otp {
                Otp::KeyPolicy => "signing with this key",
                Otp::KeyDecision if !self.obs.mfa.required() => {
                    "deciding on a key whose policy requires MFA"
                }
                _ => rule.what,
            };
            self.obs
                .mfa
                .verify(&who.name, what, otp)
                .await
                .map_err(|e| mfa_status(&e))?;
        }
        Ok((key.take(), permit.take(), needed))
    }
}

/// Reads one gRPC message frame (flag, length, message); refuses compression, several
/// frames and anything over [`MAX_REQUEST`].
async fn read_message(body: Body) -> Result<Bytes, Status> {
    let limited = http_body_util::Limited::new(body, MAX_REQUEST + 5);
    let bytes = limited
        .collect()
        .await
        .map_err(|e| {
            Status::invalid_argument(format!(
                "the request could not be read (at most {MAX_REQUEST} bytes are accepted): {e}"
            ))
        })?
        .to_bytes();
    if bytes.len() < 5 {
        return Err(Status::invalid_argument("the request has no gRPC message"));
    }
    if bytes[0] != 0 {
        return Err(Status::invalid_argument(
            "compressed requests are not accepted; send them uncompressed",
        ));
    }
    let len = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
    if bytes.len() != 5 + len {
        return Err(Status::invalid_argument(
            "the request must be exactly one gRPC message",
        ));
    }
    Ok(bytes)
}

/// The tower layer that puts the [`Gate`] in front of the services.
#[derive(Clone)]
pub struct GateLayer(Arc<Gate>);

impl GateLayer {
    /// A layer over the gate.
    pub fn new(gate: Gate) -> Self {
        Self(Arc::new(gate))
    }
}

impl<S> tower_layer::Layer<S> for GateLayer {
    type Service = GateService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GateService {
            gate: self.0.clone(),
            inner,
        }
    }
}

/// [`GateLayer`]'s service.
#[derive(Clone)]
pub struct GateService<S> {
    gate: Arc<Gate>,
    inner: S,
}

impl<S> tower_service::Service<http::Request<Body>> for GateService<S>
where
    S: tower_service::Service<http::Request<Body>, Response = http::Response<Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let gate = self.gate.clone();
        // The clone is not ready; the one that was polled ready serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            match gate.admit(req).await {
                Ok(req) => inner.call(req).await.map(|mut resp| {
                    // What `keyward version` reports as the daemon's version.
                    resp.headers_mut().insert(
                        "x-keyward-version",
                        http::HeaderValue::from_static(env!("CARGO_PKG_VERSION")),
                    );
                    resp
                }),
                Err(st) => Ok(st.into_http()),
            }
        })
    }
}
