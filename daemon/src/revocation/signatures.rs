//! Revoked signatures: one image digest's signature by one key version, withdrawn
//! without revoking the key. Each is a MAC'd record; the set is kept in memory for
//! verification and the revocation list.

use crate::keys::{KeyError, RevocationReason};
use crate::store::integrity::ProtectedStore;
use crate::store::{Expect, Namespace};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::RwLock;
use time::OffsetDateTime;

const PREFIX: &str = "revoked-signatures/";

/// One revoked signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedSignature {
    /// Key name.
    pub key: String,
    /// The version that made it.
    pub version: u32,
    /// The signed image digest.
    pub digest: String,
    /// Why.
    pub reason: RevocationReason,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub revoked_at: OffsetDateTime,
    /// Who revoked it.
    pub revoked_by: String,
}

type Id = (String, u32, String);

fn record_key(id: &Id) -> String {
    format!("{PREFIX}{}/v{:010}/{}", id.0, id.1, id.2)
}

/// Every revoked signature.
#[derive(Debug)]
pub struct RevokedSignatures {
    store: ProtectedStore,
    set: RwLock<BTreeMap<Id, RevokedSignature>>,
    /// Records refused at load (failed their check), with why: while any is, no
    /// revocation list is issued (it would leave the signature out).
    refused: Vec<String>,
}

impl RevokedSignatures {
    /// Loads the set; a record that fails its check is logged and left out.
    pub async fn load(store: ProtectedStore) -> Result<Self, KeyError> {
        let mut set = BTreeMap::new();
        let mut refused = Vec::new();
        let mut after = String::new();
        loop {
            let page = store
                .scan_prefix::<RevokedSignature>(Namespace::Meta, PREFIX, &after, 500)
                .await?;
            let Some((last, _)) = page.last() else { break };
            after = last.clone();
            for (key, rec) in page {
                match rec {
                    Ok(r) => {
                        set.insert((r.key.clone(), r.version, r.digest.clone()), r);
                    }
                    Err(e) => {
                        tracing::error!(record = %key, error = %e, "a revoked-signature record was refused");
                        refused.push(format!("revoked-signature record {key}: {e}"));
                    }
                }
            }
        }
        Ok(Self {
            store,
            set: RwLock::new(set),
            refused,
        })
    }

    /// Records refused at load, with why.
    pub fn refused(&self) -> &[String] {
        &self.refused
    }

    /// The revocation of `key` version `version`'s signature of `digest`, if any.
    pub fn get(&self, key: &str, version: u32, digest: &str) -> Option<RevokedSignature> {
        self.set
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(key.to_string(), version, digest.to_string()))
            .cloned()
    }

    /// Every revoked signature, by key, version and digest.
    pub fn all(&self) -> Vec<RevokedSignature> {
        self.set
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Records a revocation; one already recorded for the same signature is an error
    /// that says when.
    pub async fn record(&self, r: RevokedSignature) -> Result<(), KeyError> {
        let id = (r.key.clone(), r.version, r.digest.clone());
        if !self
            .store
            .put_if(Namespace::Meta, &record_key(&id), &r, Expect::Absent)
            .await?
        {
            let at = self
                .store
                .get::<RevokedSignature>(Namespace::Meta, &record_key(&id))
                .await?
                .map(|e| {
                    e.revoked_at
                        .format(&time::format_description::well_known::Rfc3339)
                        .unwrap_or_default()
                })
                .unwrap_or_default();
            return Err(KeyError::FailedPrecondition(format!(
                "the signature of {} by key {:?} v{} was revoked already (at {at}); revocation is irreversible",
                r.digest, r.key, r.version
            )));
        }
        self.set
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, r);
        Ok(())
    }
}
