//! [`Store`] for the embedded engines (sled, redb), which are blocking: point reads run
//! where they are called (served from the engine's cache or the operating system's);
//! writes, fsyncs and bulk reads run on the blocking pool, so no async runtime thread
//! waits for the disk. The group commit (`wait_durable`) runs where it is awaited: its
//! one caller per round, the audit log's flusher, has a thread of its own for it.

use super::{Namespace, Records, Revision, Store, StoreError, StoreFuture, Txn};
use sha2::Digest;

/// The revision of stored bytes (equal bytes, equal revision: a write that puts back
/// the same bytes changes nothing a reader could tell apart).
pub(super) fn revision_of(bytes: &[u8]) -> Revision {
    let d = sha2::Sha256::digest(bytes);
    Revision(u64::from_be_bytes([
        d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7],
    ]))
}

/// An engine's blocking operations, one per [`Store`] method.
pub(super) trait Blocking: Clone + Send + Sync + 'static {
    fn get_now(&self, ns: Namespace, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// The record and the revision of its bytes.
    fn get_rev_now(
        &self,
        ns: Namespace,
        key: &str,
    ) -> Result<Option<(Vec<u8>, Revision)>, StoreError> {
        Ok(self.get_now(ns, key)?.map(|v| {
            let rev = revision_of(&v);
            (v, rev)
        }))
    }
    fn last_now(&self, ns: Namespace) -> Result<Option<(String, Vec<u8>)>, StoreError>;
    fn put_now(&self, ns: Namespace, key: &str, value: &[u8]) -> Result<(), StoreError>;
    fn create_now(&self, ns: Namespace, key: &str, value: &[u8]) -> Result<bool, StoreError>;
    fn txn_now(&self, txn: &Txn) -> Result<bool, StoreError>;
    fn list_from_now(&self, ns: Namespace, from: &str) -> Result<Records, StoreError>;
    fn scan_now(&self, ns: Namespace, after: &str, limit: usize) -> Result<Records, StoreError>;
    fn put_deferred_now(&self, ns: Namespace, key: &str, value: &[u8]) -> Result<u64, StoreError>;
    fn wait_durable_now(&self, token: u64) -> Result<(), StoreError>;
}

/// Runs `f` on the blocking pool with its own handle on the store.
fn blocking<E: Blocking, T: Send + 'static>(
    store: &E,
    f: impl FnOnce(&E) -> Result<T, StoreError> + Send + 'static,
) -> StoreFuture<'static, T> {
    let store = store.clone();
    Box::pin(async move {
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| StoreError::Engine(format!("a store task failed: {e}")))?
    })
}

impl<E: Blocking> Store for E {
    fn get<'a>(&'a self, ns: Namespace, key: &'a str) -> StoreFuture<'a, Option<Vec<u8>>> {
        Box::pin(std::future::ready(self.get_now(ns, key)))
    }

    fn get_rev<'a>(
        &'a self,
        ns: Namespace,
        key: &'a str,
    ) -> StoreFuture<'a, Option<(Vec<u8>, Revision)>> {
        Box::pin(std::future::ready(self.get_rev_now(ns, key)))
    }

    fn last(&self, ns: Namespace) -> StoreFuture<'_, Option<(String, Vec<u8>)>> {
        Box::pin(std::future::ready(self.last_now(ns)))
    }

    fn put<'a>(&'a self, ns: Namespace, key: &'a str, value: &'a [u8]) -> StoreFuture<'a, ()> {
        let (key, value) = (key.to_string(), value.to_vec());
        blocking(self, move |s| s.put_now(ns, &key, &value))
    }

    fn create<'a>(&'a self, ns: Namespace, key: &'a str, value: &'a [u8]) -> StoreFuture<'a, bool> {
        let (key, value) = (key.to_string(), value.to_vec());
        blocking(self, move |s| s.create_now(ns, &key, &value))
    }

    fn txn<'a>(&'a self, txn: &'a Txn) -> StoreFuture<'a, bool> {
        let txn = txn.clone();
        blocking(self, move |s| s.txn_now(&txn))
    }

    fn list(&self, ns: Namespace) -> StoreFuture<'_, Records> {
        blocking(self, move |s| s.list_from_now(ns, ""))
    }

    fn list_from<'a>(&'a self, ns: Namespace, from: &'a str) -> StoreFuture<'a, Records> {
        let from = from.to_string();
        blocking(self, move |s| s.list_from_now(ns, &from))
    }

    fn scan<'a>(&'a self, ns: Namespace, after: &'a str, limit: usize) -> StoreFuture<'a, Records> {
        let after = after.to_string();
        blocking(self, move |s| s.scan_now(ns, &after, limit))
    }

    fn put_deferred(&self, ns: Namespace, key: &str, value: &[u8]) -> Result<u64, StoreError> {
        self.put_deferred_now(ns, key, value)
    }

    fn wait_durable(&self, token: u64) -> StoreFuture<'_, ()> {
        // The group commit's caller (the audit log's flusher) has a thread of its own
        // for it: the fsync runs where it is awaited, with no hand-off per round.
        // Called on a runtime worker, it would move that worker's tasks away first.
        Box::pin(async move {
            match tokio::runtime::Handle::try_current() {
                Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                    tokio::task::block_in_place(|| self.wait_durable_now(token))
                }
                Ok(_) => blocking(self, move |s| s.wait_durable_now(token)).await,
                Err(_) => self.wait_durable_now(token),
            }
        })
    }
}
