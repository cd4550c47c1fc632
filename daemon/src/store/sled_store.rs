//! The sled store: sled 0.34 under the daemon's data directory (instances created
//! before redb became the engine of new ones; `open.rs`).

use super::packs::Packs;
use super::sled_read::store_batch;
use super::wal::{Entry, Sink, Wal};
use super::{Namespace, StoreError};
use std::path::Path;

/// sled database; one process at a time (sled locks the directory).
///
/// Writes are made durable by group commit: every write takes a sequence number, and a
/// writer whose write was already covered by a flush that started after it returns
/// without flushing again, so concurrent writers share one fsync.
///
/// Deferred writes (audit records, ledger entries: the hot path) are made durable
/// through the write-ahead log beside the database (`<dir>.wal`, `wal.rs`), whose
/// fdatasync costs far less than flushing sled; the committing thread then stores the
/// audit records and ledger entries of its batch as packs (`packs.rs`).
#[derive(Debug, Clone)]
pub struct SledStore {
    db: sled::Db,
    trees: std::sync::Arc<Vec<sled::Tree>>,
    packs: std::sync::Arc<Packs>,
    commit: std::sync::Arc<GroupCommit>,
    wal: std::sync::Arc<Wal>,
}

/// What the log stores into: sled's trees and packs.
struct View<'a>(&'a sled::Db, &'a [sled::Tree], &'a Packs);

impl Sink for View<'_> {
    fn store(&self, batch: &[Entry]) -> Result<(), StoreError> {
        let records = batch
            .iter()
            .map(|(ns, k, v)| (*ns, k.clone().into_bytes(), v.clone()));
        store_batch(self.1, self.2, records)
    }

    fn persist(&self) -> Result<(), StoreError> {
        self.0.flush().map(drop).map_err(engine)
    }
}

#[derive(Debug, Default)]
struct GroupCommit {
    /// Sequence number of the last write made.
    written: std::sync::atomic::AtomicU64,
    /// Held while flushing; holds the sequence number the last flush covered.
    flushed: std::sync::Mutex<u64>,
}

fn engine(e: sled::Error) -> StoreError {
    StoreError::Engine(e.to_string())
}

/// Opens sled in `dir`. A lock still held for a moment by a store of this process
/// that was just closed (sled's own threads end after it) is waited for briefly; a
/// lock held longer is another daemon's.
fn open_db(dir: &Path) -> Result<sled::Db, StoreError> {
    let mut tries = 0;
    loop {
        let text = match sled::Config::new().path(dir).open() {
            Ok(db) => return Ok(db),
            Err(e) => e.to_string(),
        };
        let locked = text.contains("lock")
            || text.contains("WouldBlock")
            || text.contains("temporarily unavailable");
        if !locked {
            return Err(StoreError::Engine(format!(
                "cannot open store in {}: {text}",
                dir.display()
            )));
        }
        tries += 1;
        if tries >= 20 {
            return Err(StoreError::Engine(format!(
                "the data directory {} is in use by another keywardd (only one daemon may use it): {text}",
                dir.display()
            )));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

impl SledStore {
    /// Opens (or creates) the database in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let db = open_db(dir)?;
        let trees = Namespace::ALL
            .iter()
            .map(|ns| db.open_tree(ns.tree()).map_err(engine))
            .collect::<Result<Vec<_>, _>>()?;
        let packs = Packs::open(&db)?;
        let path = super::wal::path_of(dir);
        let wal = Wal::open(&path, &View(&db, &trees, &packs), |ns, k| {
            Ok(trees[ns.tag() as usize].contains_key(k).map_err(engine)?
                || packs.get(ns, k.as_bytes())?.is_some())
        })?;
        Ok(Self {
            db,
            trees: std::sync::Arc::new(trees),
            packs: std::sync::Arc::new(packs),
            commit: Default::default(),
            wal: std::sync::Arc::new(wal),
        })
    }

    fn view(&self) -> View<'_> {
        View(&self.db, &self.trees, &self.packs)
    }

    /// Flushes sled, empties the log and runs `f` before anything else is logged
    /// (see `Wal::empty_then`).
    pub(super) fn with_wal_emptied<T>(
        &self,
        f: impl FnOnce() -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.wal.empty_then(&self.view(), f)
    }

    /// Makes every write up to and including `seq` durable.
    fn durable(&self, seq: u64) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering;
        let mut flushed = self
            .commit
            .flushed
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if *flushed >= seq {
            return Ok(());
        }
        let upto = self.commit.written.load(Ordering::SeqCst);
        self.db.flush().map_err(engine)?;
        *flushed = upto;
        Ok(())
    }

    fn wrote(&self) -> u64 {
        self.commit
            .written
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1
    }

    /// Every tree, indexed by [`Namespace::tag`].
    pub(super) fn all_trees(&self) -> &[sled::Tree] {
        &self.trees
    }

    /// Makes every write made so far durable (group commit).
    pub(super) fn commit_durably(&self) -> Result<(), StoreError> {
        let seq = self.wrote();
        self.durable(seq)
    }

    pub(super) fn get_raw(&self, ns: Namespace, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self.tree(ns)?.get(key).map_err(engine)? {
            Some(v) => Ok(Some(v.to_vec())),
            None => self.packs.get(ns, key.as_bytes()),
        }
    }

    /// Whether a pack holds `key` (see `packs.rs`): a transaction's check reads there
    /// what the namespace's tree does not have.
    pub(super) fn packed_get(
        &self,
        ns: Namespace,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.packs.get(ns, key)
    }

    /// The packs of the audit log and the ledger.
    pub(super) fn packs(&self) -> &Packs {
        &self.packs
    }

    /// Moves a packed record into its namespace's tree, before a transaction deletes it.
    pub(super) fn unpack(&self, ns: Namespace, key: &str) -> Result<(), StoreError> {
        self.packs.unpack(ns, &self.tree(ns)?, key.as_bytes())
    }

    pub(super) fn tree(&self, ns: Namespace) -> Result<sled::Tree, StoreError> {
        // Trees are opened once; `open_tree` takes a lock and a lookup per call.
        Ok(self.trees[ns.tag() as usize].clone())
    }
}

/// The blocking operations; `engine.rs` makes them the [`super::Store`] trait's futures.
impl SledStore {
    pub(super) fn get_now(&self, ns: Namespace, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_raw(ns, key)
    }

    pub(super) fn txn_now(&self, txn: &super::Txn) -> Result<bool, StoreError> {
        self.apply_txn(txn)
    }

    pub(super) fn put_now(&self, ns: Namespace, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let tree = self.tree(ns)?;
        tree.insert(key, value).map_err(engine)?;
        let seq = self.wrote();
        self.durable(seq)
    }

    pub(super) fn create_now(
        &self,
        ns: Namespace,
        key: &str,
        value: &[u8],
    ) -> Result<bool, StoreError> {
        if self.packs.get(ns, key.as_bytes())?.is_some() {
            return Ok(false);
        }
        let tree = self.tree(ns)?;
        let swapped = tree
            .compare_and_swap(key, None as Option<&[u8]>, Some(value))
            .map_err(engine)?;
        if swapped.is_err() {
            return Ok(false);
        }
        let seq = self.wrote();
        self.durable(seq)?;
        Ok(true)
    }

    /// Queued for the next group commit: logged, synced, then inserted into sled by
    /// the committing thread. It is readable once `wait_durable` returned.
    pub(super) fn put_deferred_now(
        &self,
        ns: Namespace,
        key: &str,
        value: &[u8],
    ) -> Result<u64, StoreError> {
        Ok(self.wal.defer(ns, key, value))
    }

    pub(super) fn wait_durable_now(&self, token: u64) -> Result<(), StoreError> {
        self.wal.sync(token, &self.view())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sled_passes_the_store_conformance_suite() {
        super::super::conformance::run(&|dir| {
            std::sync::Arc::new(SledStore::open(dir).unwrap())
                as std::sync::Arc<dyn super::super::Store>
        })
        .await;
    }
}
