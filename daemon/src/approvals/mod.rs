//! The two-person rule: a signing request on a key that needs N approvals is stored
//! bound to the exact request (key, digests, reference, annotations, request hash) and
//! is signed only after N distinct approvers, never the requester, approve it.
//!
//! Crash safety: the decision to sign is stored (`approved`) before signing, and the
//! result (`signed`) after; at start-up approved requests without a result are
//! signed. Signing an image twice adds nothing (a key version signs a digest once),
//! and a blob signature is only returned from the stored result.

mod execute;
mod index;
mod record;
mod revocation;

pub use record::{ApprovalRecord, State, Subject};
pub use revocation::Asked;

use crate::audit::AuditLog;
use crate::authz::Principals;
use crate::hsm::SignInput;
use crate::keys::{KeyError, KeyRegistry};
use crate::revocation::incident::Incidents;
use crate::signing::blob::{BlobSigner, Described};
use crate::signing::{ImageError, ImageSigner};
use crate::store::integrity::{IntegrityError, ProtectedStore};
use crate::store::{Namespace, Revision, StoreError};
use base64::Engine;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

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
        /// Its state.
        status: State,
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
    /// A stored approval failed its integrity check, or the MAC key failed.
    #[error(transparent)]
    Integrity(#[from] IntegrityError),
    /// The request kept changing under this decision (many deciders at once).
    #[error("approval {0} is being decided by other requests; try again")]
    Busy(String),
    /// The system's random number generator failed.
    #[error("the system random number generator failed: {0}")]
    Random(String),
}

/// How often a decision is tried again when the request changed under it.
const CAS_TRIES: usize = 32;

/// Requests a principal may have waiting at once.
pub const MAX_PENDING_PER_PRINCIPAL: usize = 100;

/// All approvals.
pub struct Approvals {
    store: ProtectedStore,
    keys: Arc<KeyRegistry>,
    signer: Arc<ImageSigner>,
    blobs: Arc<BlobSigner>,
    principals: Arc<Principals>,
    audit: Arc<AuditLog>,
    incidents: Arc<Incidents>,
    ttl: Duration,
}

impl std::fmt::Debug for Approvals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Approvals").finish_non_exhaustive()
    }
}

impl Approvals {
    /// Approvals over the store, executed by the signers (signatures) and the
    /// incidents (revocations); pending requests expire after `ttl`.
    pub fn new(
        store: ProtectedStore,
        keys: Arc<KeyRegistry>,
        executors: (Arc<ImageSigner>, Arc<BlobSigner>, Arc<Incidents>),
        principals: Arc<Principals>,
        audit: Arc<AuditLog>,
        ttl: Duration,
    ) -> Self {
        Self {
            store,
            keys,
            signer: executors.0,
            blobs: executors.1,
            incidents: executors.2,
            principals,
            audit,
            ttl,
        }
    }

    /// Stores an approval its executor owns (an approved request being signed).
    async fn save(&self, r: &ApprovalRecord) -> Result<(), ApprovalError> {
        self.store_indexed(r, None).await.map(|_| ())
    }

    /// Stores `r` if the record is still at `rev`: deciding (approve, deny, expire)
    /// is a compare-and-swap, so two deciders, in one daemon or two, never both win.
    async fn save_if(&self, r: &ApprovalRecord, rev: Revision) -> Result<bool, ApprovalError> {
        self.store_indexed(r, Some(rev)).await
    }

    /// The stored record and its revision, refused if it names another id.
    async fn read(&self, id: &str) -> Result<(ApprovalRecord, Revision), ApprovalError> {
        let (r, rev): (ApprovalRecord, Revision) = self
            .store
            .get_rev(Namespace::Approvals, id)
            .await?
            .ok_or_else(|| ApprovalError::NotFound(id.to_string()))?;
        if r.id != id {
            return Err(ApprovalError::Integrity(IntegrityError::Tampered {
                ns: "approvals",
                key: id.to_string(),
            }));
        }
        Ok((r, rev))
    }

    /// An approval by id with its revision; a pending request past its time is marked
    /// expired first (unless it is decided meanwhile). One whose stored record fails its
    /// integrity check is refused.
    pub(crate) async fn get_rev(
        &self,
        id: &str,
    ) -> Result<(ApprovalRecord, Revision), ApprovalError> {
        for _ in 0..CAS_TRIES {
            let (mut r, rev) = self.read(id).await?;
            if r.status != State::Pending || crate::clock::now() <= r.expires_at {
                return Ok((r, rev));
            }
            r.status = State::Expired;
            self.save_if(&r, rev).await?;
        }
        Err(ApprovalError::Busy(id.to_string()))
    }

    /// An approval by id; one whose stored record fails its integrity check is refused.
    pub async fn get(&self, id: &str) -> Result<ApprovalRecord, ApprovalError> {
        Ok(self.get_rev(id).await?.0)
    }

    /// Approvals with work left (pending, or approved and not yet signed), newest
    /// first; with `pending_only` the pending ones. Read through the open index: as
    /// many as are open, never every approval ever stored. Records that fail their
    /// integrity check are left out and logged.
    pub async fn list(&self, pending_only: bool) -> Result<Vec<ApprovalRecord>, ApprovalError> {
        let (mut out, mut after) = (Vec::new(), String::new());
        loop {
            let (page, next) = self.page(true, &after, 500).await?;
            out.extend(
                page.into_iter()
                    .filter(|r| !pending_only || r.status == State::Pending),
            );
            if next.is_empty() {
                return Ok(out);
            }
            after = next;
        }
    }

    async fn new_record(
        &self,
        requester: &str,
        key: &str,
        subject: Subject,
        request_hash: &str,
        needed: u32,
    ) -> Result<ApprovalRecord, ApprovalError> {
        let waiting = self
            .list(true)
            .await?
            .iter()
            .filter(|r| r.requester == requester)
            .count();
        if waiting >= MAX_PENDING_PER_PRINCIPAL {
            return Err(ApprovalError::Refused(format!(
                "principal {requester:?} already has {waiting} requests waiting for approval (at most {MAX_PENDING_PER_PRINCIPAL}); deny or wait for some first"
            )));
        }
        let mut id = [0u8; 8];
        getrandom::getrandom(&mut id).map_err(|e| ApprovalError::Random(e.to_string()))?;
        let now = crate::clock::now();
        let r = ApprovalRecord {
            id: hex::encode(id),
            status: State::Pending,
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
            version: None,
            pushed_to: Vec::new(),
            error: None,
            outcome: None,
        };
        self.save(&r).await?;
        Ok(r)
    }

    /// Stores a blob-signing request for approval.
    pub async fn request_blob(
        &self,
        requester: &str,
        key: &str,
        input: &SignInput,
        described: Described,
        request_hash: &str,
        needed: u32,
    ) -> Result<ApprovalRecord, ApprovalError> {
        let (digest_algorithm, data) = match input {
            SignInput::Digest(d, bytes) => (Some(d.to_string()), hex::encode(bytes)),
            SignInput::Message(m) => (None, base64::engine::general_purpose::STANDARD.encode(m)),
        };
        let subject = Subject::Blob {
            digest_algorithm,
            data,
            file_name: described.file_name,
            size: described.size,
        };
        self.new_record(requester, key, subject, request_hash, needed)
            .await
    }

    /// Stores a policy change that weakens the key's policy; one other key-admin or
    /// admin must approve it.
    pub async fn request_policy(
        &self,
        requester: &str,
        key: &str,
        change: crate::keys::PolicyChange,
        weakens: Vec<String>,
        request_hash: &str,
    ) -> Result<ApprovalRecord, ApprovalError> {
        self.new_record(
            requester,
            key,
            Subject::Policy { change, weakens },
            request_hash,
            1,
        )
        .await
    }

    /// Stores an attestation request for approval, bound to the exact statement: the
    /// image digest resolved now, the predicate type and the predicate.
    #[allow(clippy::too_many_arguments)]
    pub async fn request_attestation(
        &self,
        requester: &str,
        key: &str,
        reference: &str,
        predicate_type: &str,
        predicate: &[u8],
        request_hash: &str,
        needed: u32,
    ) -> Result<ApprovalRecord, ApprovalError> {
        let plan = self
            .signer
            .plan_attestation(key, reference, predicate_type, predicate)
            .await?;
        self.new_record(
            requester,
            key,
            Subject::Attestation {
                reference: reference.to_string(),
                digest: plan.digest,
                predicate_type: plan.predicate_type,
                predicate: plan.predicate,
                predicate_digest: plan.predicate_digest,
            },
            request_hash,
            needed,
        )
        .await
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
        let (_, digests) = self
            .signer
            .plan(key, reference, recursive, &annotations)
            .await?;
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
        .await
    }
}
