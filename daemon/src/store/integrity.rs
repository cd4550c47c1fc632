//! Records that grant power (keys and their versions and policies, principals, second
//! factors, approvals) are stored with a MAC made by an HMAC-SHA256 key inside the HSM,
//! over the record's bytes, its namespace and its own store key. Someone who can write
//! the store files cannot forge, edit or move such a record (copy one principal's onto
//! another, point a key at the CA's HSM object, mark an approval approved): a record
//! whose MAC fails is refused and logged, never used.
//!
//! What a MAC cannot stop: putting back an older record that was valid once (a
//! removed principal's earlier record, say). The audit log, hash-chained and signed
//! in the HSM, records every change and is how such a rollback is found.
//!
//! Stored form: `KWM1` || 32-byte tag || record bytes. A store written before records
//! carried MACs is migrated once, when the instance's MAC key is created; afterwards a
//! record without a MAC is refused like a forged one.

use super::{Expect, Namespace, Revision, Store, StoreError, Txn};
use crate::hsm::HsmError;
use crate::keys::Backends;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

mod open;
pub use open::{OpenError, open_protected};

const MAGIC: &[u8; 4] = b"KWM1";
const TAG_LEN: usize = 32;

/// The namespaces whose records carry MACs.
pub const PROTECTED: [Namespace; 8] = [
    Namespace::Keys,
    Namespace::Principals,
    Namespace::Mfa,
    Namespace::Approvals,
    Namespace::Jobs,
    Namespace::JobItems,
    Namespace::JobFailures,
    Namespace::ApprovalArchive,
];

/// Why a protected record could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum IntegrityError {
    /// The record's MAC does not match (edited, forged, or moved to another key).
    #[error(
        "the stored record {ns}/{key} failed its integrity check (MAC): it was changed outside Keyward and is not used; restore the store from a backup"
    )]
    Tampered {
        /// Namespace.
        ns: &'static str,
        /// Store key.
        key: String,
    },
    /// The record is not JSON of the expected shape.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The MAC key failed.
    #[error(transparent)]
    Hsm(#[from] HsmError),
}

/// Where the MAC key is (instance metadata).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MacKey {
    /// Backend holding it.
    pub backend: String,
    /// Its id.
    pub hsm_id: String,
}

/// MACs over records, with a key inside the HSM.
#[derive(Clone)]
pub struct RecordMac {
    backends: Arc<Backends>,
    key: MacKey,
}

impl std::fmt::Debug for RecordMac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordMac").finish_non_exhaustive()
    }
}

/// What the HSM MACs: SHA-256 of the namespace, the store key and the record (HSMs
/// cap the data of one command; YubiHSM at 2 KiB, less than a key record).
fn mac_input(ns: Namespace, key: &str, record: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(b"keyward-record\0");
    h.update(ns.tree().as_bytes());
    h.update([0]);
    h.update(key.as_bytes());
    h.update([0]);
    h.update(record);
    h.finalize().to_vec()
}

fn equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether stored bytes carry a MAC.
pub fn is_protected(stored: &[u8]) -> bool {
    stored.starts_with(MAGIC)
}

impl RecordMac {
    /// MACs with the key `key` on its backend.
    pub fn new(backends: Arc<Backends>, key: MacKey) -> Self {
        Self { backends, key }
    }

    async fn tag(&self, ns: Namespace, key: &str, record: &[u8]) -> Result<Vec<u8>, HsmError> {
        let pool = self
            .backends
            .get(&self.key.backend)
            .map_err(|e| HsmError::Config(e.to_string()))?;
        let (id, input) = (self.key.hsm_id.clone(), mac_input(ns, key, record));
        pool.run("mac", move |s| s.mac(&id, &input)).await
    }

    /// The stored form of a record.
    pub async fn protect(
        &self,
        ns: Namespace,
        key: &str,
        record: &[u8],
    ) -> Result<Vec<u8>, IntegrityError> {
        let tag = self.tag(ns, key, record).await?;
        let mut out = Vec::with_capacity(MAGIC.len() + TAG_LEN + record.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&tag);
        out.extend_from_slice(record);
        Ok(out)
    }

    /// A key for `purpose` derived inside the HSM from the record MAC key (its HMAC
    /// of the purpose): for records written too often to MAC each in the HSM (ledger
    /// rows), MAC'd in memory with this key, which only this HSM can make again.
    pub async fn derive(&self, purpose: &str) -> Result<zeroize::Zeroizing<Vec<u8>>, HsmError> {
        let pool = self
            .backends
            .get(&self.key.backend)
            .map_err(|e| HsmError::Config(e.to_string()))?;
        let (id, input) = (
            self.key.hsm_id.clone(),
            format!("keyward-derive\0{purpose}"),
        );
        let key = pool
            .run("mac", move |s| s.mac(&id, input.as_bytes()))
            .await?;
        Ok(zeroize::Zeroizing::new(key))
    }

    /// The record inside stored bytes, if its MAC holds for this namespace and key.
    pub async fn open<'a>(
        &self,
        ns: Namespace,
        key: &str,
        stored: &'a [u8],
    ) -> Result<&'a [u8], IntegrityError> {
        let tampered = || IntegrityError::Tampered {
            ns: ns.tree(),
            key: key.to_string(),
        };
        if !is_protected(stored) || stored.len() < MAGIC.len() + TAG_LEN {
            return Err(tampered());
        }
        let (tag, record) = stored[MAGIC.len()..].split_at(TAG_LEN);
        if !equal(&self.tag(ns, key, record).await?, tag) {
            return Err(tampered());
        }
        Ok(record)
    }
}

/// Typed access to protected records over the store.
#[derive(Clone)]
pub struct ProtectedStore {
    store: Arc<dyn Store>,
    mac: RecordMac,
}

impl std::fmt::Debug for ProtectedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProtectedStore").finish_non_exhaustive()
    }
}

fn decode<T: serde::de::DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, IntegrityError> {
    serde_json::from_slice(bytes).map_err(|e| {
        IntegrityError::Store(StoreError::Corrupt {
            key: key.to_string(),
            detail: e.to_string(),
        })
    })
}

impl ProtectedStore {
    /// Protected records in `store`, MAC'd with `mac`.
    pub fn new(store: Arc<dyn Store>, mac: RecordMac) -> Self {
        Self { store, mac }
    }

    /// The underlying store (for unprotected namespaces).
    pub fn raw(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The record MAC key's operations.
    pub fn mac(&self) -> &RecordMac {
        &self.mac
    }

    /// Reads and checks a record.
    pub async fn get<T: serde::de::DeserializeOwned>(
        &self,
        ns: Namespace,
        key: &str,
    ) -> Result<Option<T>, IntegrityError> {
        let Some(stored) = self.store.get(ns, key).await? else {
            return Ok(None);
        };
        let record = self.mac.open(ns, key, &stored).await?;
        decode(key, record).map(Some)
    }

    /// Reads and checks a record with its revision, for [`ProtectedStore::put_if`].
    pub async fn get_rev<T: serde::de::DeserializeOwned>(
        &self,
        ns: Namespace,
        key: &str,
    ) -> Result<Option<(T, Revision)>, IntegrityError> {
        let Some((stored, rev)) = self.store.get_rev(ns, key).await? else {
            return Ok(None);
        };
        let record = self.mac.open(ns, key, &stored).await?;
        Ok(Some((decode(key, record)?, rev)))
    }

    /// Writes a record with its MAC only if it is still as `expect` says (nobody
    /// changed it since it was read); returns whether it wrote. On `false`, read it
    /// again and decide again.
    pub async fn put_if<T: Serialize>(
        &self,
        ns: Namespace,
        key: &str,
        value: &T,
        expect: Expect,
    ) -> Result<bool, IntegrityError> {
        self.put_if_all(ns, key, value, expect, Vec::new()).await
    }

    /// Stores `value` (with `expect`, when given) and, in the same transaction, the
    /// unprotected `extra` writes (`None`: delete), such as an index of the record.
    pub async fn put_indexed<T: Serialize>(
        &self,
        (ns, key): (Namespace, &str),
        value: &T,
        expect: Option<Expect>,
        extra: Vec<(Namespace, String, Option<Vec<u8>>)>,
    ) -> Result<bool, IntegrityError> {
        let stored = self.mac.protect(ns, key, &super::to_json(value)?).await?;
        let mut txn = Txn::new();
        if let Some(e) = expect {
            txn = txn.check(ns, key, e);
        }
        txn = txn.put(ns, key, stored);
        txn.writes.extend(extra);
        Ok(self.store.txn(&txn).await?)
    }

    /// [`ProtectedStore::put_if`] that also checks other records (`also`): for a rule
    /// over several records, such as "one admin stays", which a change to one record
    /// must not break while another request changes another.
    pub async fn put_if_all<T: Serialize>(
        &self,
        ns: Namespace,
        key: &str,
        value: &T,
        expect: Expect,
        also: Vec<(Namespace, String, Expect)>,
    ) -> Result<bool, IntegrityError> {
        let stored = self.mac.protect(ns, key, &super::to_json(value)?).await?;
        let mut txn = Txn::new().check(ns, key, expect).put(ns, key, stored);
        txn.checks.extend(also);
        Ok(self.store.txn(&txn).await?)
    }

    /// Writes every record of `puts` with its MAC, and every record of `raw` as it
    /// is (an unprotected namespace: the ledger), in one transaction if every check
    /// holds; returns whether it wrote.
    pub async fn commit(
        &self,
        checks: Vec<(Namespace, String, Expect)>,
        puts: Vec<(Namespace, String, Vec<u8>)>,
        raw: Vec<(Namespace, String, Vec<u8>)>,
    ) -> Result<bool, IntegrityError> {
        let raw = raw.into_iter().map(|(ns, k, v)| (ns, k, Some(v))).collect();
        self.commit_with(checks, puts, raw).await
    }

    /// [`ProtectedStore::commit`] with unprotected writes that may delete (`None`).
    pub async fn commit_with(
        &self,
        checks: Vec<(Namespace, String, Expect)>,
        puts: Vec<(Namespace, String, Vec<u8>)>,
        raw: Vec<(Namespace, String, Option<Vec<u8>>)>,
    ) -> Result<bool, IntegrityError> {
        let mut txn = Txn::new();
        txn.checks = checks;
        for (ns, key, json) in puts {
            let stored = self.mac.protect(ns, &key, &json).await?;
            txn = txn.put(ns, &key, stored);
        }
        txn.writes.extend(raw);
        Ok(self.store.txn(&txn).await?)
    }

    /// At most `limit` records whose key starts with `prefix`, after `after`, each
    /// checked on its own.
    pub async fn scan_prefix<T: serde::de::DeserializeOwned>(
        &self,
        ns: Namespace,
        prefix: &str,
        after: &str,
        limit: usize,
    ) -> Result<Vec<(String, Result<T, IntegrityError>)>, StoreError> {
        let mut out = Vec::new();
        for (key, stored) in self.store.scan_prefix(ns, prefix, after, limit).await? {
            let checked = match self.mac.open(ns, &key, &stored).await {
                Ok(record) => decode(&key, record),
                Err(e) => Err(e),
            };
            out.push((key, checked));
        }
        Ok(out)
    }

    /// Every record of a namespace, each checked on its own: a bad one does not hide
    /// the good ones.
    pub async fn list<T: serde::de::DeserializeOwned>(
        &self,
        ns: Namespace,
    ) -> Result<Vec<(String, Result<T, IntegrityError>)>, StoreError> {
        let mut out = Vec::new();
        for (key, stored) in self.store.list(ns).await? {
            let checked = match self.mac.open(ns, &key, &stored).await {
                Ok(record) => decode(&key, record),
                Err(e) => Err(e),
            };
            out.push((key, checked));
        }
        Ok(out)
    }

    /// Writes a record with its MAC, replacing any old one.
    pub async fn put<T: Serialize>(
        &self,
        ns: Namespace,
        key: &str,
        value: &T,
    ) -> Result<(), IntegrityError> {
        let stored = self.mac.protect(ns, key, &super::to_json(value)?).await?;
        Ok(self.store.put(ns, key, &stored).await?)
    }

    /// Writes a record only if none exists under `key`; returns whether it wrote.
    pub async fn create<T: Serialize>(
        &self,
        ns: Namespace,
        key: &str,
        value: &T,
    ) -> Result<bool, IntegrityError> {
        let stored = self.mac.protect(ns, key, &super::to_json(value)?).await?;
        Ok(self.store.create(ns, key, &stored).await?)
    }
}
