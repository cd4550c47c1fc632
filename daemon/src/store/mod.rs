//! Storage of Keyward's state behind a small trait, so that domain code never sees the
//! engine: redb for a new data directory, sled for one created with it (`open.rs`); a
//! replicated deployment can put an etcd store here.

#[cfg(test)]
pub(crate) mod conformance;
mod engine;
pub mod integrity;
mod open;
mod packs;
mod redb_store;
mod sled_read;
mod sled_store;
mod sled_txn;
mod wal;
mod wal_format;

pub use open::{Engine, Migrated, migrate_to_redb, open};
pub use redb_store::RedbStore;
pub use sled_store::SledStore;

/// A group of records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Namespace {
    /// Key records, by key name.
    Keys,
    /// Instance facts: the CA, server identity.
    Meta,
    /// The signature ledger, by time.
    Ledger,
    /// Principals, by name.
    Principals,
    /// The audit log, by sequence number.
    Audit,
    /// MFA enrolments (sealed secrets), by principal.
    Mfa,
    /// Signing requests waiting for approval, by id.
    Approvals,
    /// The ledger by key and version: `key/v0000000001/<ledger key>`, empty values.
    LedgerByKey,
    /// Jobs (work that outlives a request), by id.
    Jobs,
    /// Jobs' items: `<job id>/<item>`.
    JobItems,
    /// One mark per image signature the ledger records, by key version, image and
    /// reference (`key/v0000000002/registry/repo@digest#reference`): the ledger holds
    /// each signature once, however often a campaign's item is re-run.
    LedgerMarks,
    /// Jobs' items that were skipped or failed (`<job id>/<item>`, the item record), so
    /// that showing a job's failures reads those, not every item.
    JobFailures,
    /// Re-signatures by the signature they re-make: `<original's ledger row>/<the
    /// re-signature's ledger row>`, empty values. Condemning a signature finds what
    /// was derived from it here.
    LedgerDerived,
    /// Indexes of approvals, newest first: `open/<inverted time>-<id>` for those with
    /// work left (pending, approved), `time/<inverted time>-<id>` for all. Empty values.
    ApprovalIndex,
    /// Finished approvals moved out of `Approvals` after `[approvals] keep`, by id
    /// (MAC'd like the current ones).
    ApprovalArchive,
}

impl Namespace {
    /// Every namespace; its position is its tag in the write-ahead log, so new ones
    /// go at the end.
    pub(crate) const ALL: [Namespace; 15] = [
        Namespace::Keys,
        Namespace::Meta,
        Namespace::Ledger,
        Namespace::Principals,
        Namespace::Audit,
        Namespace::Mfa,
        Namespace::Approvals,
        Namespace::LedgerByKey,
        Namespace::Jobs,
        Namespace::JobItems,
        Namespace::LedgerMarks,
        Namespace::JobFailures,
        Namespace::LedgerDerived,
        Namespace::ApprovalIndex,
        Namespace::ApprovalArchive,
    ];

    /// A byte naming the namespace in the write-ahead log.
    pub(crate) fn tag(self) -> u8 {
        Self::ALL.iter().position(|n| *n == self).unwrap_or(0) as u8
    }

    fn from_tag(tag: u8) -> Option<Self> {
        Self::ALL.get(tag as usize).copied()
    }

    fn tree(self) -> &'static str {
        match self {
            Namespace::Keys => "keys",
            Namespace::Meta => "meta",
            Namespace::Ledger => "ledger",
            Namespace::Principals => "principals",
            Namespace::Audit => "audit",
            Namespace::Mfa => "mfa",
            Namespace::Approvals => "approvals",
            Namespace::LedgerByKey => "ledger_by_key",
            Namespace::Jobs => "jobs",
            Namespace::JobItems => "job_items",
            Namespace::LedgerMarks => "ledger_marks",
            Namespace::JobFailures => "job_failures",
            Namespace::LedgerDerived => "ledger_derived",
            Namespace::ApprovalIndex => "approval_index",
            Namespace::ApprovalArchive => "approval_archive",
        }
    }
}

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The engine failed (disk, lock, corruption).
    #[error("storage error: {0}")]
    Engine(String),
    /// A record could not be decoded.
    #[error("stored record {key:?} is unreadable: {detail}")]
    Corrupt {
        /// The record's key.
        key: String,
        /// What is wrong with it.
        detail: String,
    },
}

/// A record's revision: a different one after every change of the record. Opaque:
/// get it with [`Store::get_rev`], hand it back in a [`Txn`] check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Revision(pub(crate) u64);

/// What a transaction expects of a record before it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// That there is none.
    Absent,
    /// That it is still at this revision (nobody changed it since it was read).
    At(Revision),
}

/// Checks and writes applied together: every write if every check holds, else none.
/// The way for two daemons sharing a store (or two requests in one) to change the same
/// record without a lock: read with [`Store::get_rev`], decide, write with a check, and
/// read again and retry when the check failed.
#[derive(Debug, Clone, Default)]
pub struct Txn {
    /// Records and what they must be.
    pub checks: Vec<(Namespace, String, Expect)>,
    /// Records to put (`Some`) or delete (`None`).
    pub writes: Vec<(Namespace, String, Option<Vec<u8>>)>,
}

impl Txn {
    /// An empty transaction.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a check.
    pub fn check(mut self, ns: Namespace, key: &str, expect: Expect) -> Self {
        self.checks.push((ns, key.to_string(), expect));
        self
    }

    /// Adds a put.
    pub fn put(mut self, ns: Namespace, key: &str, value: Vec<u8>) -> Self {
        self.writes.push((ns, key.to_string(), Some(value)));
        self
    }

    /// Adds a delete.
    pub fn delete(mut self, ns: Namespace, key: &str) -> Self {
        self.writes.push((ns, key.to_string(), None));
        self
    }
}

/// What a store call returns: a future, so that a store over the network (etcd) and
/// one that fsyncs (sled) both keep I/O off the async runtime's threads.
pub type StoreFuture<'a, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Records as (key, value), ordered by key.
pub type Records = Vec<(String, Vec<u8>)>;

/// Durable key-value storage. Every write is durable when its future completes. The
/// suite in `conformance.rs` says what an implementation must do.
pub trait Store: Send + Sync {
    /// Reads a record.
    fn get<'a>(&'a self, ns: Namespace, key: &'a str) -> StoreFuture<'a, Option<Vec<u8>>>;
    /// Writes a record, replacing any old one.
    fn put<'a>(&'a self, ns: Namespace, key: &'a str, value: &'a [u8]) -> StoreFuture<'a, ()>;
    /// Writes a record only if none exists under `key`; returns whether it wrote.
    fn create<'a>(&'a self, ns: Namespace, key: &'a str, value: &'a [u8]) -> StoreFuture<'a, bool>;
    /// All records of a namespace, ordered by key.
    fn list(&self, ns: Namespace) -> StoreFuture<'_, Records>;
    /// Records whose key is at or after `from`, ordered by key.
    fn list_from<'a>(&'a self, ns: Namespace, from: &'a str) -> StoreFuture<'a, Records>;
    /// At most `limit` records whose key is after `after` (all when empty), ordered by
    /// key: the way to walk a large namespace without holding it in memory.
    fn scan<'a>(&'a self, ns: Namespace, after: &'a str, limit: usize) -> StoreFuture<'a, Records>;
    /// At most `limit` records whose key starts with `prefix` and comes after `after`
    /// (from the first when empty), ordered by key.
    fn scan_prefix<'a>(
        &'a self,
        ns: Namespace,
        prefix: &'a str,
        after: &'a str,
        limit: usize,
    ) -> StoreFuture<'a, Records> {
        Box::pin(async move {
            let start = if after.is_empty() { prefix } else { after };
            let mut out = self.scan(ns, start, limit).await?;
            // A record whose key is `prefix` itself comes first when `after` is empty.
            if after.is_empty()
                && let Some(v) = self.get(ns, prefix).await?
            {
                out.insert(0, (prefix.to_string(), v));
                out.truncate(limit);
            }
            out.retain(|(k, _)| k.starts_with(prefix));
            Ok(out)
        })
    }
    /// The record with the greatest key.
    fn last(&self, ns: Namespace) -> StoreFuture<'_, Option<(String, Vec<u8>)>>;
    /// Queues a write without waiting for durability (no I/O: it returns at once);
    /// returns a token for [`Store::wait_durable`], after which the record is durable
    /// and readable. Lets a caller that must order writes (a hash chain) release its
    /// lock before the fsync, which concurrent writers then share. In the audit log
    /// and the ledger a deferred write adds a record under a key not written before
    /// (sled stores a commit's such records together, `packs.rs`); once durable it is
    /// a record like any other.
    fn put_deferred(&self, ns: Namespace, key: &str, value: &[u8]) -> Result<u64, StoreError>;
    /// Completes once the write with this token (and every write queued before it) is
    /// durable.
    fn wait_durable(&self, token: u64) -> StoreFuture<'_, ()>;
    /// Reads a record with its revision.
    fn get_rev<'a>(
        &'a self,
        ns: Namespace,
        key: &'a str,
    ) -> StoreFuture<'a, Option<(Vec<u8>, Revision)>>;
    /// Applies every write of `txn` if every check holds, durably; returns whether it
    /// did (false: a check failed and nothing was written). Checks see every durable
    /// record, deferred writes included.
    fn txn<'a>(&'a self, txn: &'a Txn) -> StoreFuture<'a, bool>;
}

/// Reads and decodes a JSON record.
pub async fn get_json<T: serde::de::DeserializeOwned>(
    store: &dyn Store,
    ns: Namespace,
    key: &str,
) -> Result<Option<T>, StoreError> {
    store
        .get(ns, key)
        .await?
        .map(|v| {
            serde_json::from_slice(&v).map_err(|e| StoreError::Corrupt {
                key: key.to_string(),
                detail: e.to_string(),
            })
        })
        .transpose()
}

/// Encodes a record as JSON.
pub fn to_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Engine(format!("cannot encode record: {e}")))
}
