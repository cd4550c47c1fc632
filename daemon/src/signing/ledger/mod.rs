//! The signature ledger: every signature and attestation Keyward pushed, and every
//! blob it signed. Entries are kept by time. The index by key and version
//! (`Namespace::LedgerByKey`) names, for each key version, the seconds in which it
//! signed (`key/v0000000002/000001700000000`): listing what one key signed reads only
//! the entries of those seconds. An index entry is written with the first entry of its
//! second (one per key version per second, so the signing hot path almost never pays
//! for it), in the same commit and before it.

use crate::store::{self, Namespace, Store, StoreError, Txn};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use time::OffsetDateTime;

/// Entries read at a time within one second of a key's index: a second holds every
/// key's entries, and what is read beyond the key's is read for nothing.
const SECOND_BATCH: usize = 128;

/// One pushed signature or attestation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// `signature`, `attestation`, `blob`, or `prune` (the signature was removed after
    /// its version's overlap).
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
    /// When it was signed: when its request passed the checks that pinned the
    /// version (it reached the registry, or the caller, shortly after).
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
    /// For a signature Keyward derived (re-signing): the ledger row of the signature it
    /// re-makes. A derived signature shares its original's fate: condemning the
    /// original condemns it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub derived_from: String,
}

/// Filters for listing.
#[derive(Debug, Default, Clone)]
pub struct LedgerQuery {
    /// Only this key.
    pub key: Option<String>,
    /// Only this version of the key (needs `key`).
    pub version: Option<u32>,
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
    /// Seals and checks rows (none: rows are written and read as they are, in unit
    /// tests without an HSM).
    mac: Option<Arc<mac::LedgerMac>>,
    next: Arc<std::sync::atomic::AtomicU64>,
    /// The last second indexed for each key version (in this process).
    indexed: Arc<std::sync::Mutex<std::collections::HashMap<(String, u32), i64>>>,
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
            mac: None,
            indexed: Arc::default(),
            next: Arc::new(std::sync::atomic::AtomicU64::new(
                u64::from_le_bytes(r) >> 16,
            )),
        }
    }

    /// Seals every row it writes, and refuses every row it reads whose MAC fails.
    pub fn with_mac(mut self, mac: mac::LedgerMac) -> Self {
        self.mac = Some(Arc::new(mac));
        self
    }

    /// The entry in a stored row, if its MAC holds (rows that fail are refused: never
    /// listed, never acted on; the error names the row).
    pub(crate) fn decode(&self, row: &str, stored: &[u8]) -> Result<LedgerEntry, StoreError> {
        let Some(m) = &self.mac else {
            return decode(row, stored);
        };
        match m.open(row, stored) {
            Some(body) => decode(row, &body),
            None => Err(StoreError::Corrupt {
                key: format!("ledger/{row}"),
                detail: "the ledger row failed its integrity check (MAC): it was planted or edited outside Keyward and is not used".into(),
            }),
        }
    }

    /// Seals the rows written before rows carried MACs (once per store); returns how
    /// many. A row that has a MAC field that fails is left as it is (refused).
    pub async fn ensure_macs(&self) -> Result<u64, StoreError> {
        let Some(m) = &self.mac else { return Ok(0) };
        let n = self
            .once_over_rows("ledger_macs", |k, v, txn| {
                let legacy = m.open(k, v).is_none()
                    && serde_json::from_slice::<serde_json::Value>(v)
                        .is_ok_and(|j| j.get("mac").is_none());
                if legacy {
                    txn.writes
                        .push((Namespace::Ledger, k.to_string(), Some(m.seal(k, v))));
                }
                legacy
            })
            .await?;
        if n > 0 {
            tracing::info!(
                rows = n,
                "sealed the ledger rows written before rows carried MACs"
            );
        }
        Ok(n)
    }

    /// Once per store (marked `done` in `Meta`): every row, a batch at a time, offered
    /// to `f`, which adds its writes to the batch's transaction and says whether it
    /// wrote; returns how many rows it wrote for.
    async fn once_over_rows(
        &self,
        done: &str,
        f: impl Fn(&str, &[u8], &mut Txn) -> bool,
    ) -> Result<u64, StoreError> {
        if self.store.get(Namespace::Meta, done).await?.is_some() {
            return Ok(0);
        }
        let (mut cursor, mut n) = (String::new(), 0);
        loop {
            let batch = self.store.scan(Namespace::Ledger, &cursor, 1000).await?;
            let Some((last, _)) = batch.last() else { break };
            cursor = last.clone();
            let mut txn = Txn::new();
            for (k, v) in &batch {
                n += u64::from(f(k, v, &mut txn));
            }
            self.store.txn(&txn).await?;
        }
        self.store.put(Namespace::Meta, done, b"1").await?;
        Ok(n)
    }

    /// Records an entry, its index entry and (for an image signature) its mark
    /// durably, together. The write (and its fsync, shared with concurrent writers)
    /// runs on the blocking pool, not on the async runtime.
    pub async fn record(&self, entry: &LedgerEntry) -> Result<(), StoreError> {
        let mut txn = Txn::new();
        for (ns, key, value) in self.writes(entry)? {
            txn = txn.put(ns, &key, value);
        }
        self.store.txn(&txn).await.map(|_| ())
    }

    /// The writes that record an entry, for a caller that commits them with its own
    /// (a campaign, with its item's result): index entry, entry, and mark.
    pub fn writes(
        &self,
        entry: &LedgerEntry,
    ) -> Result<Vec<(Namespace, String, Vec<u8>)>, StoreError> {
        let (key, value) = self.row(entry)?;
        let mut out = vec![
            (Namespace::LedgerByKey, index_key(entry), Vec::new()),
            (Namespace::Ledger, key.clone(), value),
        ];
        if !entry.derived_from.is_empty() {
            out.push((
                Namespace::LedgerDerived,
                format!("{}/{key}", entry.derived_from),
                Vec::new(),
            ));
        }
        if let Some(mark) = entry_mark(entry) {
            out.push((Namespace::LedgerMarks, mark, key.into_bytes()));
        }
        Ok(out)
    }

    /// Whether key `key` version `version` signed `registry/repository@digest` (for any
    /// identity).
    pub async fn has_mark_for(
        &self,
        key: &str,
        version: u32,
        registry: &str,
        repository: &str,
        digest: &str,
    ) -> Result<bool, StoreError> {
        // Every mark of this signature starts so, whatever identity follows the '#'.
        let prefix = mark(key, version, registry, repository, digest, "");
        Ok(!self
            .store
            .scan_prefix(Namespace::LedgerMarks, &prefix, "", 1)
            .await?
            .is_empty())
    }

    /// The ledger entry a mark points to.
    pub async fn marked(&self, mark: &str) -> Result<Option<LedgerEntry>, StoreError> {
        match self.marked_row(mark).await? {
            Some(row) => self.get(&row).await,
            None => Ok(None),
        }
    }

    /// How many image signatures key `key` version `version` made, and how many of
    /// those images version `by` (the active one) has signed too. Walks that version's
    /// entries through the index, a page at a time.
    pub async fn version_counts(
        &self,
        key: &str,
        version: u32,
        by: Option<u32>,
    ) -> Result<(u64, u64), StoreError> {
        let q = LedgerQuery {
            key: Some(key.to_string()),
            version: Some(version),
            ..Default::default()
        };
        let (mut signed, mut co_signed, mut cursor) = (0, 0, String::new());
        loop {
            let (page, next) = self.list_page(&q, &cursor, 500).await?;
            for e in page.iter().filter(|e| e.kind == "signature") {
                signed += 1;
                if let Some(by) = by.filter(|b| *b != version) {
                    let other = LedgerEntry {
                        version: by,
                        ..e.clone()
                    };
                    if self.has(&other).await? {
                        co_signed += 1;
                    }
                }
            }
            if next.is_empty() {
                return Ok((signed, co_signed));
            }
            cursor = next;
        }
    }

    /// Whether the ledger holds this image signature already: its mark points to a row
    /// that passes its check and is that signature (a planted mark does not count).
    pub async fn has(&self, entry: &LedgerEntry) -> Result<bool, StoreError> {
        let Some(mark) = entry_mark(entry) else {
            return Ok(false);
        };
        let Some(row) = self.marked_row(&mark).await? else {
            return Ok(false);
        };
        Ok(match self.get(&row).await {
            Ok(Some(e)) => entry_mark(&e).as_deref() == Some(mark.as_str()),
            Ok(None) | Err(StoreError::Corrupt { .. }) => false,
            Err(e) => return Err(e),
        })
    }

    /// Writes an entry (and, for the first of its second, its index entry) without
    /// waiting for it to be durable; returns the store's write token. The caller makes
    /// it durable before it answers (the request's outcome audit record does, in the
    /// same group commit). The index entry is queued first, so a durable entry always
    /// has its index entry (a crash can only leave an index entry with no entries).
    pub fn record_pending(&self, entry: &LedgerEntry) -> Result<u64, StoreError> {
        let (key, value) = self.row(entry)?;
        let second = entry.time.unix_timestamp();
        let first_of_second = {
            let mut seen = self.indexed.lock().unwrap_or_else(|p| p.into_inner());
            let last = seen
                .entry((entry.key.clone(), entry.version))
                .or_insert(i64::MIN);
            std::mem::replace(last, second) != second
        };
        if first_of_second {
            self.store
                .put_deferred(Namespace::LedgerByKey, &index_key(entry), &[])?;
        }
        self.store.put_deferred(Namespace::Ledger, &key, &value)
    }

    /// Indexes entries written before the index existed (once per store; repeating it
    /// writes the same index keys).
    pub async fn ensure_index(&self) -> Result<u64, StoreError> {
        let n = self
            .once_over_rows("ledger_index", |k, v, txn| {
                let Ok(e) = self.decode(k, v) else {
                    return false;
                };
                txn.writes
                    .push((Namespace::LedgerByKey, index_key(&e), Some(Vec::new())));
                true
            })
            .await?;
        if n > 0 {
            tracing::info!(
                entries = n,
                "indexed the signature ledger by key and version"
            );
        }
        Ok(n)
    }

    /// The entry's store key: its time, then a counter with a random start (drawn
    /// once) that keeps keys unique without a syscall per entry.
    fn row(&self, entry: &LedgerEntry) -> Result<(String, Vec<u8>), StoreError> {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let key = format!("{:024}-{n:012x}", entry.time.unix_timestamp_nanos());
        let body = store::to_json(entry)?;
        let value = match &self.mac {
            Some(m) => m.seal(&key, &body),
            None => body,
        };
        Ok((key, value))
    }
}

/// The mark of an entry the ledger holds once: an image signature (see [`mark_key`]),
/// a version's attestations of an image (`attestation:` and that mark), or the removal
/// of a signature (`prune:` and its mark).
fn entry_mark(e: &LedgerEntry) -> Option<String> {
    match e.kind.as_str() {
        "signature" => Some(mark_key(e)),
        "attestation" => Some(format!("attestation:{}", mark_key(e))),
        "prune" => Some(format!("prune:{}", mark_key(e))),
        _ => None,
    }
}

/// The mark of an image signature: key version, image and the identity it names (the
/// payload's docker-reference, so that a verifier can find it from the payload).
pub fn mark_key(e: &LedgerEntry) -> String {
    let identity = crate::oci::ImageRef::parse(&e.reference)
        .map(|r| r.identity())
        .unwrap_or_else(|_| e.reference.clone());
    mark(
        &e.key,
        e.version,
        &e.registry,
        &e.repository,
        &e.digest,
        &identity,
    )
}

/// The mark of key `key` version `version`'s signature of `registry/repository@digest`
/// for `identity`.
pub fn mark(
    key: &str,
    version: u32,
    registry: &str,
    repository: &str,
    digest: &str,
    identity: &str,
) -> String {
    format!("{key}/v{version:010}/{registry}/{repository}@{digest}#{identity}")
}

/// The index entry of the second an entry was signed in.
fn index_key(e: &LedgerEntry) -> String {
    format!(
        "{}/v{:010}/{:012}",
        e.key,
        e.version,
        e.time.unix_timestamp()
    )
}

fn decode(key: &str, v: &[u8]) -> Result<LedgerEntry, StoreError> {
    serde_json::from_slice(v).map_err(|e| StoreError::Corrupt {
        key: key.to_string(),
        detail: e.to_string(),
    })
}

mod derived;
mod list;
pub mod mac;
#[cfg(test)]
mod tests;
