//! The signed audit head: where the chain stands (its last durable record), signed by
//! the audit key, so that an export cut back to an earlier checkpoint is refused by a
//! verifier holding a later head (`keyward audit verify --head`). Every revocation list
//! names the head at its issue too. Signing makes the chain durable first (a
//! checkpoint), so a head never names a record a crash could lose.

use super::head::record_key;
use super::{AuditError, AuditLog};
use crate::hsm::HsmPool;
use crate::store::{Namespace, StoreError};
use base64::Engine;
use keyward_client::audit::{AuditHead, Line, SignedHead, head_message};
use std::time::{Duration, Instant};
use time::format_description::well_known::Rfc3339;

/// A head signed this recently is served again instead of signing another (the HTTP
/// endpoint needs no credentials: it must not be a way to keep the HSM busy).
const REUSE: Duration = Duration::from_secs(1);

impl AuditLog {
    /// The last durable record (sequence, hash): the chain is checkpointed first.
    pub async fn durable_head(&self, pool: &HsmPool) -> Result<(u64, String), AuditError> {
        self.checkpoint(pool).await?;
        let seq = self
            .head
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .checkpointed;
        if seq == 0 {
            return Ok((0, keyward_client::audit::GENESIS.to_string()));
        }
        let key = record_key(seq);
        let bytes = self
            .store
            .get(Namespace::Audit, &key)
            .await?
            .ok_or_else(|| StoreError::Corrupt {
                key: key.clone(),
                detail: "the checkpointed record is missing".into(),
            })?;
        match serde_json::from_slice::<Line>(&bytes) {
            Ok(Line::Record(r)) => Ok((r.seq, r.hash.to_string())),
            _ => Err(StoreError::Corrupt {
                key,
                detail: "not an audit record".into(),
            }
            .into()),
        }
    }

    /// The head, signed by the audit key (one signed less than a second ago is reused).
    pub async fn signed_head(&self, pool: &HsmPool) -> Result<SignedHead, AuditError> {
        if let Some((at, h)) = &*self.signed_head.lock().unwrap_or_else(|p| p.into_inner())
            && at.elapsed() < REUSE
        {
            return Ok(h.clone());
        }
        let (seq, hash) = self.durable_head(pool).await?;
        let head = AuditHead {
            seq,
            hash,
            time: crate::clock::now().format(&Rfc3339).unwrap_or_default(),
        };
        let sig = self.sign("audit-head", pool, head_message(&head)).await?;
        let signed = SignedHead {
            head,
            signature: base64::engine::general_purpose::STANDARD.encode(sig),
        };
        *self.signed_head.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((Instant::now(), signed.clone()));
        Ok(signed)
    }
}
