//! The two-person rule: a signing request on a key that needs N approvals is stored
//! bound to the exact request (key, digests, reference, annotations, request hash) and
//! is signed only after N distinct approvers, never the requester, approve it.
//!
//! Crash safety: the decision to sign is stored (`approved`) before signing, and the
//! result (`signed`) after; at start-up approved requests without a result are
//! signed. Signing an image twice adds nothing (a key version signs a digest once),
//! and a blob signature is only returned from the stored result.

use crate::authz::{PrincipalRecord, Role};
use crate::hsm::{DigestAlgorithm, SignInput};
use crate::keys::{KeyError, KeyRegistry};
use crate::signing::{ImageError, ImageSigner, parse_ref};
use crate::store::{self, Namespace, Store, StoreError};
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

/// Errors of approvals.
#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    /// No such approval.
    #[error("approval {0:?} not found")]
    NotFound(String),
    /// The approval is no longer pending.
    #[error("approval {id} is {status}; it can no longer be approved or denied")]
    NotPending {
        /// Which.
        id: String,
        /// Its status.
        status: String,
    },
    /// The caller may not approve this request.
    #[error("{0}")]
    Refused(String),
    /// Key lookup or signing failed.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// Image signing failed.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What is waiting to be signed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Subject {
    /// A blob: its digest (or, for Ed25519, the message itself, base64).
    Blob {
        /// `sha256`, ... or empty for a message.
        digest_algorithm: String,
        /// Hex digest, or base64 message.
        data: String,
    },
    /// An image: the reference as requested and the digests that will be signed.
    Image {
        /// Reference as requested.
        reference: String,
        /// Manifest digests resolved when the request was made.
        digests: Vec<String>,
        /// Payload annotations.
        annotations: BTreeMap<String, String>,
    },
}

/// A stored approval.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApprovalRecord {
    /// Random id.
    pub id: String,
    /// `pending`, `approved`, `signed`, `denied`, `expired`.
    pub status: String,
    /// Key to sign with.
    pub key: String,
    /// What to sign.
    pub subject: Subject,
    /// SHA-256 of the original request.
    pub request_hash: String,
    /// Who asked.
    pub requester: String,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Pending requests expire then.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// Approvals needed.
    pub needed: u32,
    /// Approvers so far.
    pub approved_by: Vec<String>,
    /// Who denied it, and why.
    pub denied_by: Option<(String, String)>,
    /// Blob signature (base64) once signed.
    pub signature: Option<String>,
    /// Key version that signed.
    pub version: u32,
    /// Where image signatures went.
    pub pushed_to: Vec<String>,
    /// Why signing failed, if it did (the request stays approved and is retried at
    /// start-up).
    pub error: Option<String>,
}

/// All approvals.
pub struct Approvals {
    store: Arc<dyn Store>,
    keys: Arc<KeyRegistry>,
    signer: Arc<ImageSigner>,
    ttl: Duration,
    /// Decisions one at a time, so two approvals never both trigger signing.
    decide: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Approvals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Approvals").finish_non_exhaustive()
    }
}

impl Approvals {
    /// Approvals over the store; pending requests expire after `ttl`.
    pub fn new(
        store: Arc<dyn Store>,
        keys: Arc<KeyRegistry>,
        signer: Arc<ImageSigner>,
        ttl: Duration,
    ) -> Self {
        Self {
            store,
            keys,
            signer,
            ttl,
            decide: tokio::sync::Mutex::new(()),
        }
    }

    fn save(&self, r: &ApprovalRecord) -> Result<(), ApprovalError> {
        Ok(self
            .store
            .put(Namespace::Approvals, &r.id, &store::to_json(r)?)?)
    }

    fn expire(&self, mut r: ApprovalRecord) -> Result<ApprovalRecord, ApprovalError> {
        if r.status == "pending" && OffsetDateTime::now_utc() > r.expires_at {
            r.status = "expired".into();
            self.save(&r)?;
        }
        Ok(r)
    }

    /// An approval by id.
    pub fn get(&self, id: &str) -> Result<ApprovalRecord, ApprovalError> {
        let r: ApprovalRecord = store::get_json(self.store.as_ref(), Namespace::Approvals, id)?
            .ok_or_else(|| ApprovalError::NotFound(id.to_string()))?;
        self.expire(r)
    }

    /// All approvals, newest first.
    pub fn list(&self, pending_only: bool) -> Result<Vec<ApprovalRecord>, ApprovalError> {
        let mut out = Vec::new();
        for (k, v) in self.store.list(Namespace::Approvals)? {
            let r: ApprovalRecord =
                serde_json::from_slice(&v).map_err(|e| StoreError::Corrupt {
                    key: k,
                    detail: e.to_string(),
                })?;
            let r = self.expire(r)?;
            if !pending_only || r.status == "pending" {
                out.push(r);
            }
        }
        out.sort_by_key(|a| std::cmp::Reverse(a.created_at));
        Ok(out)
    }

    fn new_record(
        &self,
        requester: &str,
        key: &str,
        subject: Subject,
        request_hash: &str,
        needed: u32,
    ) -> Result<ApprovalRecord, ApprovalError> {
        let mut id = [0u8; 8];
        getrandom::getrandom(&mut id).map_err(|e| StoreError::Engine(e.to_string()))?;
        let now = OffsetDateTime::now_utc();
        let r = ApprovalRecord {
            id: hex::encode(id),
            status: "pending".into(),
            key: key.to_string(),
            subject,
            request_hash: request_hash.to_string(),
            requester: requester.to_string(),
            created_at: now,
            expires_at: now + self.ttl,
            needed,
            approved_by: Vec::new(),
            denied_by: None,
            signature: None,
            version: 0,
            pushed_to: Vec::new(),
            error: None,
        };
        self.save(&r)?;
        Ok(r)
    }

    /// Stores a blob-signing request for approval.
    pub fn request_blob(
        &self,
        requester: &str,
        key: &str,
        input: &SignInput,
        request_hash: &str,
        needed: u32,
    ) -> Result<ApprovalRecord, ApprovalError> {
        let subject = match input {
            SignInput::Digest(d, bytes) => Subject::Blob {
                digest_algorithm: d.to_string(),
                data: hex::encode(bytes),
            },
            SignInput::Message(m) => Subject::Blob {
                digest_algorithm: String::new(),
                data: base64::engine::general_purpose::STANDARD.encode(m),
            },
        };
        self.new_record(requester, key, subject, request_hash, needed)
    }

    /// Stores an image-signing request for approval, with the digests resolved now.
    #[allow(clippy::too_many_arguments)]
    pub async fn request_image(
        &self,
        requester: &str,
        key: &str,
        reference: &str,
        recursive: bool,
        annotations: BTreeMap<String, String>,
        request_hash: &str,
        needed: u32,
    ) -> Result<ApprovalRecord, ApprovalError> {
        let (_, digests) = self.signer.plan(key, reference, recursive).await?;
        self.new_record(
            requester,
            key,
            Subject::Image {
                reference: reference.to_string(),
                digests,
                annotations,
            },
            request_hash,
            needed,
        )
    }

    /// A request that can still be approved or denied.
    fn pending(&self, id: &str) -> Result<ApprovalRecord, ApprovalError> {
        let r = self.get(id)?;
        if r.status != "pending" {
            return Err(ApprovalError::NotPending {
                id: r.id,
                status: r.status,
            });
        }
        Ok(r)
    }

    /// Records an approval; the request is signed once enough distinct approvers agreed.
    /// The caller has checked the approver role (the API's gate).
    pub async fn approve(
        &self,
        approver: &PrincipalRecord,
        id: &str,
    ) -> Result<ApprovalRecord, ApprovalError> {
        let _one = self.decide.lock().await;
        let mut r = self.pending(id)?;
        if r.requester == approver.name {
            return Err(ApprovalError::Refused(format!(
                "{:?} requested this signature and may not approve it (separation of duties)",
                approver.name
            )));
        }
        let key = self.keys.get(&r.key)?;
        if !key.approvers.is_empty() && !key.approvers.contains(&approver.name) {
            return Err(ApprovalError::Refused(format!(
                "principal {:?} is not among the approvers of key {:?} ({})",
                approver.name,
                key.name,
                key.approvers.join(", ")
            )));
        }
        if r.approved_by.contains(&approver.name) {
            return Err(ApprovalError::Refused(format!(
                "{:?} already approved this request; it needs another approver",
                approver.name
            )));
        }
        r.approved_by.push(approver.name.clone());
        if (r.approved_by.len() as u32) < r.needed {
            self.save(&r)?;
            return Ok(r);
        }
        r.status = "approved".into();
        self.save(&r)?;
        Ok(self.execute(r).await)
    }

    /// Denies a pending request.
    pub async fn deny(
        &self,
        who: &PrincipalRecord,
        id: &str,
        reason: &str,
    ) -> Result<ApprovalRecord, ApprovalError> {
        let _one = self.decide.lock().await;
        let mut r = self.pending(id)?;
        if !who
            .roles
            .iter()
            .any(|x| matches!(x, Role::Approver | Role::Admin))
            && who.name != r.requester
        {
            return Err(ApprovalError::Refused(format!(
                "principal {:?} may not deny: that needs the role approver",
                who.name
            )));
        }
        r.status = "denied".into();
        r.denied_by = Some((who.name.clone(), reason.to_string()));
        self.save(&r)?;
        Ok(r)
    }

    /// Signs an approved request and stores the result (or the error).
    async fn execute(&self, mut r: ApprovalRecord) -> ApprovalRecord {
        let result: Result<(), ApprovalError> = async {
            match &r.subject {
                Subject::Blob {
                    digest_algorithm,
                    data,
                } => {
                    let input = if digest_algorithm.is_empty() {
                        SignInput::Message(
                            base64::engine::general_purpose::STANDARD
                                .decode(data)
                                .map_err(|e| StoreError::Engine(e.to_string()))?,
                        )
                    } else {
                        SignInput::Digest(
                            DigestAlgorithm::parse(digest_algorithm).map_err(StoreError::Engine)?,
                            hex::decode(data).map_err(|e| StoreError::Engine(e.to_string()))?,
                        )
                    };
                    let (version, sig) = self.keys.sign(&r.key, input).await?;
                    r.version = version;
                    r.signature = Some(base64::engine::general_purpose::STANDARD.encode(sig));
                }
                Subject::Image {
                    reference,
                    digests,
                    annotations,
                } => {
                    let image = parse_ref(reference)?;
                    let signed = self
                        .signer
                        .sign_planned(&r.requester, &r.key, &image, digests, annotations)
                        .await?;
                    r.version = signed.first().map(|s| s.version).unwrap_or(0);
                    r.pushed_to = signed.into_iter().map(|s| s.pushed_to).collect();
                }
            }
            Ok(())
        }
        .await;
        match result {
            Ok(()) => {
                r.status = "signed".into();
                r.error = None;
            }
            Err(e) => {
                tracing::error!(approval = %r.id, error = %e, "signing an approved request failed; it stays approved and is retried at start-up");
                r.error = Some(e.to_string());
            }
        }
        if let Err(e) = self.save(&r) {
            tracing::error!(approval = %r.id, error = %e, "cannot store the approval's result");
        }
        r
    }

    /// Signs approved requests whose signing did not finish (a crash, a failed push).
    pub async fn resume(&self) {
        let _one = self.decide.lock().await;
        let Ok(all) = self.list(false) else { return };
        for r in all.into_iter().filter(|r| r.status == "approved") {
            tracing::info!(approval = %r.id, "signing an approved request left unfinished");
            self.execute(r).await;
        }
    }
}
