//! The embedded default store: sled under the daemon's data directory.

use super::packs::{Packs, is_packed};
use super::sled_read::store_batch;
use super::wal_format::{WalFile, wal_entries, wal_entry};
use super::{Namespace, StoreError};
use std::path::Path;

/// sled database; one process at a time (sled locks the directory).
///
/// Writes are made durable by group commit: every write takes a sequence number, and a
/// writer whose write was already covered by a flush that started after it returns
/// without flushing again, so concurrent writers share one fsync.
///
/// Deferred writes (audit records, ledger entries: the hot path) are made durable
/// through a write-ahead log beside the database (`<dir>.wal`): written after the last
/// entry, into space zero-filled ahead (`WalFile`), and fdatasync'd in one batch per
/// group commit, which costs far less than flushing sled. The committing thread then
/// stores the audit records and ledger entries of its batch as packs (`packs.rs`).
/// At open the log is replayed into sled (its entries have unique keys, so replay is
/// idempotent), sled is flushed and the log emptied; it is also emptied after a sled
/// flush once it grows large.
#[derive(Debug, Clone)]
pub struct SledStore {
    db: sled::Db,
    trees: std::sync::Arc<Vec<sled::Tree>>,
    packs: std::sync::Arc<Packs>,
    commit: std::sync::Arc<GroupCommit>,
    wal: std::sync::Arc<Wal>,
}

/// Entries written but not yet in the log, and the log itself.
#[derive(Debug)]
struct Wal {
    pending: std::sync::Mutex<Vec<Deferred>>,
    /// The log file and the sequence number it covers; held while syncing.
    file: std::sync::Mutex<(WalFile, u64)>,
}

/// A deferred write waiting for the next group commit.
#[derive(Debug)]
struct Deferred {
    seq: u64,
    ns: Namespace,
    key: String,
    value: Vec<u8>,
}

/// The log is emptied (after a sled flush) once it is larger than this.
const WAL_ROTATE: u64 = 32 * 1024 * 1024;

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
        let wal_path = dir.with_extension("wal");
        let io = |e: std::io::Error| {
            StoreError::Engine(format!("write-ahead log {}: {e}", wal_path.display()))
        };
        let bytes = match std::fs::read(&wal_path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io(e)),
        };
        let (entries, torn) = wal_entries(&bytes);
        if torn {
            tracing::warn!(
                "the write-ahead log ends in an incomplete entry (a crash during a write that was never acknowledged); it is dropped"
            );
        }
        let trees = Namespace::ALL
            .iter()
            .map(|ns| db.open_tree(ns.tree()).map_err(engine))
            .collect::<Result<Vec<_>, _>>()?;
        let packs = Packs::open(&db)?;
        let replayed = entries.len();
        // A packed record already in the store was stored before the crash (its key
        // is new when written): the copy there, perhaps overwritten since, stays.
        let mut batch = Vec::with_capacity(entries.len());
        for (ns, k, v) in entries {
            let stored = is_packed(ns)
                && (trees[ns.tag() as usize].contains_key(&k).map_err(engine)?
                    || packs.get(ns, k.as_bytes())?.is_some());
            if !stored {
                batch.push((ns, k.into_bytes(), v));
            }
        }
        store_batch(&trees, &packs, batch.into_iter())?;
        if replayed > 0 {
            tracing::info!(
                entries = replayed,
                "replayed the write-ahead log into the store"
            );
        }
        db.flush().map_err(engine)?;
        let file = {
            use std::os::unix::fs::OpenOptionsExt;
            let file = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(false)
                .mode(0o600)
                .open(&wal_path)
                .map_err(io)?;
            WalFile::empty(file).map_err(io)?
        };
        Ok(Self {
            db,
            trees: std::sync::Arc::new(trees),
            packs: std::sync::Arc::new(packs),
            commit: Default::default(),
            wal: std::sync::Arc::new(Wal {
                pending: std::sync::Mutex::new(Vec::new()),
                file: std::sync::Mutex::new((file, 0)),
            }),
        })
    }

    /// Appends every pending deferred write to the log and syncs it, unless a sync
    /// already covered `token`.
    fn sync_wal(&self, token: u64) -> Result<(), StoreError> {
        let mut guard = self.wal.file.lock().unwrap_or_else(|p| p.into_inner());
        let (file, synced) = &mut *guard;
        if *synced >= token {
            return Ok(());
        }
        let batch =
            std::mem::take(&mut *self.wal.pending.lock().unwrap_or_else(|p| p.into_inner()));
        let upto = batch.iter().map(|d| d.seq).max().unwrap_or(token);
        let mut buf =
            Vec::with_capacity(batch.iter().map(|d| 16 + d.key.len() + d.value.len()).sum());
        for d in &batch {
            buf.extend_from_slice(&wal_entry(d.ns, &d.key, &d.value));
        }
        let io = |e: std::io::Error| {
            StoreError::Engine(format!("cannot write the write-ahead log: {e}"))
        };
        file.append_durably(&buf).map_err(io)?;
        // Durable in the log: now into sled, in one pass on this thread, before any
        // writer of the batch is answered (so that what is answered can be read).
        store_batch(
            &self.trees,
            &self.packs,
            batch
                .into_iter()
                .map(|d| (d.ns, d.key.into_bytes(), d.value)),
        )?;
        *synced = upto.max(token);
        if file.len() > WAL_ROTATE {
            // Everything in the log is in sled; once sled is flushed the log can go.
            self.db.flush().map_err(engine)?;
            file.clear().map_err(io)?;
        }
        Ok(())
    }

    /// Flushes sled and empties the log (everything in it is in sled): after a
    /// packed record is deleted, so that a replay cannot bring it back.
    pub(super) fn empty_wal(&self) -> Result<(), StoreError> {
        let mut guard = self.wal.file.lock().unwrap_or_else(|p| p.into_inner());
        self.db.flush().map_err(engine)?;
        guard
            .0
            .clear()
            .map_err(|e| StoreError::Engine(format!("cannot empty the write-ahead log: {e}")))
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
        // The sequence number is taken under the same lock as the queue, so the queue
        // is in sequence order.
        let mut pending = self.wal.pending.lock().unwrap_or_else(|p| p.into_inner());
        let seq = self.wrote();
        pending.push(Deferred {
            seq,
            ns,
            key: key.to_string(),
            value: value.to_vec(),
        });
        Ok(seq)
    }

    pub(super) fn wait_durable_now(&self, token: u64) -> Result<(), StoreError> {
        self.sync_wal(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_write_ahead_log_is_replayed_and_a_torn_tail_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let db_dir = dir.path().join("store");
        {
            let s = SledStore::open(&db_dir).unwrap();
            s.put_now(Namespace::Meta, "m", b"x").unwrap();
        }
        // As if the process died after syncing the log but before sled wrote the entries.
        let mut log = wal_entry(Namespace::Audit, "00000000000000000001", b"{\"seq\":1}");
        log.extend(wal_entry(Namespace::Ledger, "t-1", b"entry"));
        let torn = wal_entry(Namespace::Audit, "00000000000000000002", b"{\"seq\":2}");
        log.extend_from_slice(&torn[..torn.len() - 3]);
        std::fs::write(db_dir.with_extension("wal"), &log).unwrap();
        let s = SledStore::open(&db_dir).unwrap();
        assert_eq!(
            s.get_now(Namespace::Audit, "00000000000000000001")
                .unwrap()
                .as_deref(),
            Some(&b"{\"seq\":1}"[..])
        );
        assert_eq!(
            s.get_now(Namespace::Ledger, "t-1").unwrap().as_deref(),
            Some(&b"entry"[..])
        );
        assert!(
            s.get_now(Namespace::Audit, "00000000000000000002")
                .unwrap()
                .is_none()
        );
        assert_eq!(
            std::fs::metadata(db_dir.with_extension("wal"))
                .unwrap()
                .len(),
            0
        );
        // Deferred writes go to the log when made durable.
        let t = s
            .put_deferred_now(Namespace::Audit, "00000000000000000002", b"two")
            .unwrap();
        s.wait_durable_now(t).unwrap();
        let logged = std::fs::read(db_dir.with_extension("wal")).unwrap();
        let (entries, torn) = wal_entries(&logged);
        assert!(!torn);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].2, b"two");
        // Written into zero-filled space: a group commit does not grow the file.
        assert_eq!(logged.len(), 1 << 20);
        let t = s
            .put_deferred_now(Namespace::Audit, "00000000000000000003", b"three")
            .unwrap();
        s.wait_durable_now(t).unwrap();
        let logged = std::fs::read(db_dir.with_extension("wal")).unwrap();
        assert_eq!(logged.len(), 1 << 20);
        assert_eq!(wal_entries(&logged).0.len(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sled_passes_the_store_conformance_suite() {
        super::super::conformance::run(&|dir| {
            std::sync::Arc::new(SledStore::open(dir).unwrap())
                as std::sync::Arc<dyn super::super::Store>
        })
        .await;
    }
}
