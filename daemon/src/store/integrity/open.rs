//! Opening the instance's record MAC key, and the one-time migration that gives every
//! record of an older store its MAC.

use super::{IntegrityError, MacKey, PROTECTED, ProtectedStore, RecordMac, is_protected};
use crate::keys::Backends;
use crate::store::{Namespace, Store, StoreError};
use std::sync::Arc;

impl ProtectedStore {
    /// Protects every record of a store written before records carried MACs; returns
    /// how many. Only for the start that creates the instance's MAC key.
    pub async fn migrate(&self) -> Result<u64, IntegrityError> {
        let mut n = 0;
        for ns in PROTECTED {
            for (key, stored) in self.store.list(ns).await? {
                if is_protected(&stored) {
                    continue;
                }
                let protected = self.mac.protect(ns, &key, &stored).await?;
                self.store.put(ns, &key, &protected).await?;
                n += 1;
            }
        }
        Ok(n)
    }
}

/// Label of the record MAC key inside the HSM (`keyward:records`).
const KEY_LABEL: &str = "records";
/// Label of the marker object made once every record carries a MAC. The HSM, not
/// the store, remembers that migration is over: someone who can only write the store
/// cannot make the daemon MAC forged records by resetting a flag.
const DONE_LABEL: &str = "records-migrated";

/// Why the record MAC key could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The store does not match the HSM.
    #[error("{0}")]
    Mismatch(String),
    /// Reading or protecting records failed.
    #[error(transparent)]
    Integrity(#[from] IntegrityError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Opens the instance's record MAC key on `backend`, creating it (and protecting every
/// record of a store written before records carried MACs) on the first start.
/// Returns the protected store and how many records were migrated now. Safe to
/// interrupt at any point: a restart finishes the migration.
pub async fn open_protected(
    store: Arc<dyn Store>,
    backends: Arc<Backends>,
    backend: &str,
) -> Result<(ProtectedStore, u64), OpenError> {
    let pool = backends
        .get(backend)
        .map_err(|e| OpenError::Mismatch(e.to_string()))?;
    let find = |label: &'static str| pool.run("find", move |s| s.find_secret(label));
    let done = find(DONE_LABEL)
        .await
        .map_err(IntegrityError::from)?
        .is_some();
    let known: Option<MacKey> =
        crate::store::get_json(store.as_ref(), Namespace::Meta, "mac_key").await?;
    if done {
        let key = known.ok_or_else(|| {
            OpenError::Mismatch(
                "the HSM holds this instance's record MAC key, but the store has no record of it: the store was replaced or edited. Restore it from a backup; nothing was changed".into(),
            )
        })?;
        return Ok((ProtectedStore::new(store, RecordMac::new(backends, key)), 0));
    }
    // First start with record MACs, or one interrupted during it.
    let key = match known {
        Some(k) => k,
        None => {
            let hsm_id = match find(KEY_LABEL).await.map_err(IntegrityError::from)? {
                Some(id) => id,
                None => pool
                    .run("generate", |s| s.generate_mac_key(KEY_LABEL))
                    .await
                    .map_err(IntegrityError::from)?,
            };
            let key = MacKey {
                backend: pool.backend().name().to_string(),
                hsm_id,
            };
            store
                .put(Namespace::Meta, "mac_key", &crate::store::to_json(&key)?)
                .await?;
            key
        }
    };
    let protected = ProtectedStore::new(store, RecordMac::new(backends.clone(), key));
    let migrated = protected.migrate().await?;
    pool.run("generate", |s| s.generate_mac_key(DONE_LABEL))
        .await
        .map_err(IntegrityError::from)?;
    Ok((protected, migrated))
}
