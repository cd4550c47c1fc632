//! The signature ledger: every signature and attestation Keyward pushed.

use crate::store::{self, Namespace, Store, StoreError};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use time::OffsetDateTime;

/// One pushed signature or attestation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// `signature`, `attestation` or `blob`.
    pub kind: String,
    /// Registry host.
    pub registry: String,
    /// Repository, without registry.
    pub repository: String,
    /// The signed manifest digest.
    pub digest: String,
    /// The tag requested, if any.
    pub tag: String,
    /// The reference as requested.
    pub reference: String,
    /// Key name.
    pub key: String,
    /// Key version.
    pub version: u32,
    /// Fingerprint of the version's public key.
    pub fingerprint: String,
    /// When it was pushed.
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    /// Who asked.
    pub requester: String,
    /// Where it was pushed: `registry/repository:sha256-<hex>.sig` (empty for blobs).
    pub pushed_to: String,
    /// Blobs: the size the requester gave.
    #[serde(default)]
    pub size: u64,
    /// SHA-256 of the request that led to it (links the entry to its audit records).
    #[serde(default)]
    pub request_hash: String,
}

/// Filters for listing.
#[derive(Debug, Default, Clone)]
pub struct LedgerQuery {
    /// Only this key.
    pub key: Option<String>,
    /// Signed at or after.
    pub since: Option<OffsetDateTime>,
    /// Signed before.
    pub until: Option<OffsetDateTime>,
    /// `registry/repository` matches this glob.
    pub repository: Option<glob::Pattern>,
}

/// Ledger over the store, ordered by time.
#[derive(Clone)]
pub struct SignatureLedger {
    store: Arc<dyn Store>,
    next: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for SignatureLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignatureLedger").finish_non_exhaustive()
    }
}

impl SignatureLedger {
    /// A ledger in this store.
    pub fn new(store: Arc<dyn Store>) -> Self {
        let mut r = [0u8; 8];
        let _ = getrandom::getrandom(&mut r);
        Self {
            store,
            next: Arc::new(std::sync::atomic::AtomicU64::new(
                u64::from_le_bytes(r) >> 16,
            )),
        }
    }

    /// Records an entry durably. The write (and its fsync, shared with concurrent
    /// writers) runs on the blocking pool, not on the async runtime.
    pub async fn record(&self, entry: &LedgerEntry) -> Result<(), StoreError> {
        let (key, value) = self.row(entry)?;
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.put(Namespace::Ledger, &key, &value))
            .await
            .map_err(|e| StoreError::Engine(e.to_string()))?
    }

    /// Writes an entry without waiting for it to be durable; returns the store's write
    /// token. The caller makes it durable before it answers (the request's outcome
    /// audit record does, in the same group commit).
    pub fn record_pending(&self, entry: &LedgerEntry) -> Result<u64, StoreError> {
        let (key, value) = self.row(entry)?;
        self.store.put_deferred(Namespace::Ledger, &key, &value)
    }

    /// The entry's store key: its time, then a counter with a random start (drawn
    /// once) that keeps keys unique without a syscall per entry.
    fn row(&self, entry: &LedgerEntry) -> Result<(String, Vec<u8>), StoreError> {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let key = format!("{:024}-{n:012x}", entry.time.unix_timestamp_nanos());
        Ok((key, store::to_json(entry)?))
    }

    /// Entries matching the query, oldest first: at most `limit` after the cursor
    /// `after` (empty: from the start), and the cursor of the next page (empty on the
    /// last). Walks the ledger in batches, never all of it at once.
    pub fn list_page(
        &self,
        q: &LedgerQuery,
        after: &str,
        limit: usize,
    ) -> Result<(Vec<LedgerEntry>, String), StoreError> {
        let opts = glob::MatchOptions {
            require_literal_separator: true,
            ..Default::default()
        };
        let mut out = Vec::new();
        let mut cursor = after.to_string();
        loop {
            let batch = self.store.scan(Namespace::Ledger, &cursor, 1000)?;
            if batch.is_empty() {
                return Ok((out, String::new()));
            }
            for (k, v) in batch {
                cursor = k.clone();
                let e: LedgerEntry =
                    serde_json::from_slice(&v).map_err(|e| StoreError::Corrupt {
                        key: k,
                        detail: e.to_string(),
                    })?;
                if q.key.as_ref().is_some_and(|key| key != &e.key)
                    || q.since.is_some_and(|t| e.time < t)
                    || q.until.is_some_and(|t| e.time >= t)
                    || q.repository.as_ref().is_some_and(|p| {
                        !p.matches_with(&format!("{}/{}", e.registry, e.repository), opts)
                    })
                {
                    continue;
                }
                out.push(e);
                if out.len() == limit {
                    return Ok((out, cursor));
                }
            }
        }
    }
}
