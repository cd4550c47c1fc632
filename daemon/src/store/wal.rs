//! The write-ahead log of deferred writes (audit records, ledger entries: the hot
//! path), shared by the embedded engines. A deferred write is queued without I/O; the
//! first writer to wait for it appends every queued write to the log, fdatasyncs it
//! once for all of them (group commit), and hands the batch to the engine ([`Sink`]),
//! which stores it without making it durable itself: that is the log's job. When the
//! log grows past [`ROTATE`], or a packed record is deleted (a replay must not
//! bring it back), the engine persists what it stored and the log is emptied.
//!
//! At open the log is replayed: its entries have keys never written before, so a
//! packed record already in the store (perhaps overwritten since) is kept, the rest
//! stored again; the engine persists them and the log starts empty.

use super::wal_format::{WalFile, wal_entries, wal_entry};
use super::{Namespace, StoreError};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// A deferred write: namespace, key, value.
pub(super) type Entry = (Namespace, String, Vec<u8>);

/// What the log writes into: an engine's store.
pub(super) trait Sink {
    /// Stores a batch already durable in the log, before any of its writers is
    /// answered (so that what is answered can be read); it need not be durable in the
    /// engine yet.
    fn store(&self, batch: &[Entry]) -> Result<(), StoreError>;
    /// Makes everything stored so far durable in the engine.
    fn persist(&self) -> Result<(), StoreError>;
}

#[derive(Debug)]
pub(super) struct Wal {
    /// Queued writes in sequence order, and the last sequence number handed out.
    pending: Mutex<(Vec<Entry>, u64)>,
    /// The log file and the sequence number it covers; held while syncing.
    file: Mutex<(WalFile, u64)>,
}

/// The log is emptied, after a durable commit of the engine, once it holds more than
/// this many bytes. Until then redb cannot reuse the pages its commits without an fsync
/// freed, so its file grows by some MiB; at 4 MiB the durable commits came often enough
/// under a signing load to stall group commits into the p99 (p99 / p50 at 64 requests
/// in flight 7.6, against 1.9 at 32 MiB).
const ROTATE: u64 = 32 << 20;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The log of the store at `store` (a directory or a file): beside it, `.wal`.
pub(super) fn path_of(store: &Path) -> PathBuf {
    store.with_extension("wal")
}

impl Wal {
    /// Replays the log at `path` into `sink` (skipping a packed record `stored` says
    /// the store has), persists it, and opens the log empty.
    pub(super) fn open(
        path: &Path,
        sink: &impl Sink,
        stored: impl Fn(Namespace, &str) -> Result<bool, StoreError>,
    ) -> Result<Self, StoreError> {
        let io = |e: std::io::Error| {
            StoreError::Engine(format!("write-ahead log {}: {e}", path.display()))
        };
        let bytes = match std::fs::read(path) {
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
        let replayed = entries.len();
        let mut batch = Vec::with_capacity(entries.len());
        for (ns, k, v) in entries {
            if !(super::packs::is_packed(ns) && stored(ns, &k)?) {
                batch.push((ns, k, v));
            }
        }
        sink.store(&batch)?;
        if replayed > 0 {
            tracing::info!(
                entries = replayed,
                "replayed the write-ahead log into the store"
            );
        }
        sink.persist()?;
        let file = {
            use std::os::unix::fs::OpenOptionsExt;
            let file = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(false)
                .mode(0o600)
                .open(path)
                .map_err(io)?;
            WalFile::empty(file).map_err(io)?
        };
        Ok(Self {
            pending: Mutex::new((Vec::new(), 0)),
            file: Mutex::new((file, 0)),
        })
    }

    /// Queues a write; returns its sequence number, the token to wait for.
    pub(super) fn defer(&self, ns: Namespace, key: &str, value: &[u8]) -> u64 {
        let mut pending = lock(&self.pending);
        pending.1 += 1;
        pending.0.push((ns, key.to_string(), value.to_vec()));
        pending.1
    }

    /// Appends every queued write to the log, syncs it and stores the batch in `sink`,
    /// unless a sync already covered `token`.
    pub(super) fn sync(&self, token: u64, sink: &impl Sink) -> Result<(), StoreError> {
        let mut guard = lock(&self.file);
        let (file, synced) = &mut *guard;
        if *synced >= token {
            return Ok(());
        }
        let (batch, upto) = {
            let mut pending = lock(&self.pending);
            (std::mem::take(&mut pending.0), pending.1)
        };
        let mut buf = Vec::with_capacity(batch.iter().map(|d| 16 + d.1.len() + d.2.len()).sum());
        for (ns, key, value) in &batch {
            buf.extend_from_slice(&wal_entry(*ns, key, value));
        }
        let logged = file
            .append_durably(&buf)
            .map_err(|e| StoreError::Engine(format!("cannot write the write-ahead log: {e}")));
        if let Err(e) = logged.and_then(|()| sink.store(&batch)) {
            // Back at the head of the queue for the next sync (logging it twice is
            // harmless: a replay stores a packed record once).
            let mut pending = lock(&self.pending);
            let later = std::mem::replace(&mut pending.0, batch);
            pending.0.extend(later);
            return Err(e);
        }
        *synced = upto;
        if file.len() > ROTATE {
            // Everything in the log is in the engine; once persisted the log can go.
            // The batch is durable either way: a failure here only keeps the log.
            if let Err(e) = sink.persist().and_then(|()| clear(file)) {
                tracing::warn!(error = %e, "the write-ahead log could not be emptied; it is kept and replayed at the next start");
            }
        }
        Ok(())
    }

    /// Persists the engine and empties the log (everything in it is stored).
    pub(super) fn empty(&self, sink: &impl Sink) -> Result<(), StoreError> {
        self.empty_then(sink, || Ok(()))
    }

    /// Empties the log, then runs `f` before anything else is logged: a transaction
    /// that deletes a logged record, so that no replay, after a crash at any point,
    /// can bring the record back.
    pub(super) fn empty_then<T>(
        &self,
        sink: &impl Sink,
        f: impl FnOnce() -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut guard = lock(&self.file);
        sink.persist()?;
        clear(&mut guard.0)?;
        f()
    }
}

/// Whether `txn` deletes a record of a namespace whose writes are logged: it runs
/// with the log emptied ([`Wal::empty_then`]), or a replay could bring the record back.
pub(super) fn deletes_logged(txn: &super::Txn) -> bool {
    let mut writes = txn.writes.iter();
    writes.any(|(ns, _, v)| v.is_none() && super::packs::is_packed(*ns))
}

fn clear(file: &mut WalFile) -> Result<(), StoreError> {
    file.clear()
        .map_err(|e| StoreError::Engine(format!("cannot empty the write-ahead log: {e}")))
}

#[cfg(test)]
mod tests {
    use super::super::engine::Blocking;
    use super::super::wal_format::{wal_entries, wal_entry};
    use super::super::{Namespace, RedbStore, SledStore, Txn};
    use std::path::Path;

    /// `open` opens the store at a path whose log is `path_of(path)`.
    fn replays_and_drops_a_torn_tail<E: Blocking>(open: impl Fn(&Path) -> E) {
        let dir = tempfile::tempdir().unwrap();
        let at = dir.path().join("store");
        let log_path = super::path_of(&at);
        open(&at).put_now(Namespace::Meta, "m", b"x").unwrap();
        // As if the process died after syncing the log but before the engine had the
        // entries.
        let mut log = wal_entry(Namespace::Audit, "00000000000000000001", b"{\"seq\":1}");
        log.extend(wal_entry(Namespace::Ledger, "t-1", b"entry"));
        let torn = wal_entry(Namespace::Audit, "00000000000000000002", b"{\"seq\":2}");
        log.extend_from_slice(&torn[..torn.len() - 3]);
        std::fs::write(&log_path, &log).unwrap();
        let s = open(&at);
        let get = |s: &E, ns, k| s.get_now(ns, k).unwrap();
        assert_eq!(
            get(&s, Namespace::Audit, "00000000000000000001").as_deref(),
            Some(&b"{\"seq\":1}"[..])
        );
        assert_eq!(
            get(&s, Namespace::Ledger, "t-1").as_deref(),
            Some(&b"entry"[..])
        );
        assert_eq!(get(&s, Namespace::Audit, "00000000000000000002"), None);
        assert_eq!(get(&s, Namespace::Meta, "m").as_deref(), Some(&b"x"[..]));
        assert_eq!(std::fs::metadata(&log_path).unwrap().len(), 0);
        // Deferred writes go to the log when made durable, into zero-filled space: a
        // group commit does not grow the file.
        for (i, v) in [b"two", b"3rd"].iter().enumerate() {
            let t = s
                .put_deferred_now(
                    Namespace::Audit,
                    &format!("0000000000000000000{}", i + 2),
                    *v,
                )
                .unwrap();
            s.wait_durable_now(t).unwrap();
            let logged = std::fs::read(&log_path).unwrap();
            let (entries, torn) = wal_entries(&logged);
            assert!(!torn);
            assert_eq!(entries.len(), i + 1);
            assert_eq!(entries[i].2, *v);
            assert_eq!(logged.len(), 1 << 20);
        }
        // A logged record deleted since is not brought back by a replay.
        let delete = Txn::default().delete(Namespace::Audit, "00000000000000000002");
        assert!(s.txn_now(&delete).unwrap());
        assert_eq!(std::fs::metadata(&log_path).unwrap().len(), 0);
        drop(s);
        let s = open(&at);
        assert_eq!(get(&s, Namespace::Audit, "00000000000000000002"), None);
        assert_eq!(
            get(&s, Namespace::Audit, "00000000000000000003").as_deref(),
            Some(&b"3rd"[..])
        );
    }

    #[test]
    fn sled_replays_its_log_and_drops_a_torn_tail() {
        replays_and_drops_a_torn_tail(|p| SledStore::open(p).unwrap());
    }

    #[test]
    fn redb_replays_its_log_and_drops_a_torn_tail() {
        replays_and_drops_a_torn_tail(|p| RedbStore::open(&p.with_extension("redb")).unwrap());
    }
}
