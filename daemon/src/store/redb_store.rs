//! A store in one redb file (`[store] engine = "redb"`): a table per namespace, every
//! write a redb transaction committed durably before it returns, except deferred
//! writes (audit records, ledger entries: the hot path), which are made durable by the
//! write-ahead log beside the file (`keyward.wal`, `wal.rs`) and committed to redb
//! without an fsync of their own; the next durable commit (any other write, or the log
//! being emptied) makes them durable in redb too. redb's page cache is bounded
//! ([`CACHE_BYTES`]), so the memory a store holds does not grow with what was written
//! into it: sled 0.34 keeps every record it writes in memory, whatever its
//! `cache_capacity`.

use super::engine::{Blocking, revision_of};
use super::wal::{Entry, Sink, Wal};
use super::{Expect, Namespace, Records, StoreError, Txn};
use redb::{ReadableTable, TableDefinition};
use std::path::Path;
use std::sync::Arc;

/// redb's page cache: reads beyond it come from the operating system's. A daemon fills
/// it as it writes, so it is what a long campaign adds to the memory of a short one:
/// with 4 MiB a 2,000-image campaign's daemon peaked 5.5 MiB above a 200-image one's,
/// with 1 MiB 2.6 MiB.
pub const CACHE_BYTES: usize = 1 << 20;

type Table = TableDefinition<'static, &'static str, &'static [u8]>;

fn table(ns: Namespace) -> Table {
    TableDefinition::new(ns.tree())
}

fn engine(e: impl std::fmt::Display) -> StoreError {
    StoreError::Engine(e.to_string())
}

/// The redb store; cheap to clone (one database shared).
#[derive(Debug, Clone)]
pub struct RedbStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: redb::Database,
    wal: Wal,
}

impl Drop for Inner {
    /// The last handle gone: what the log holds is made durable in redb and the log
    /// emptied, so that the file alone is the store (a crash skips this; the log is
    /// replayed at the next open).
    fn drop(&mut self) {
        if let Err(e) = self.wal.empty(&Db(&self.db)) {
            tracing::warn!(error = %e, "the write-ahead log is kept; it is replayed at the next start");
        }
    }
}

/// What the log stores into: the database, committing without an fsync.
struct Db<'a>(&'a redb::Database);

impl Sink for Db<'_> {
    fn store(&self, batch: &[Entry]) -> Result<(), StoreError> {
        let mut tx = self.0.begin_write().map_err(engine)?;
        tx.set_durability(redb::Durability::None);
        let writes = batch.iter();
        RedbStore::apply(
            &tx,
            writes.map(|(ns, k, v)| (*ns, k.as_str(), Some(v.as_slice()))),
        )?;
        tx.commit().map_err(engine)
    }

    fn persist(&self) -> Result<(), StoreError> {
        // A durable commit makes every commit before it durable.
        let tx = self.0.begin_write().map_err(engine)?;
        tx.commit().map_err(engine)
    }
}

impl RedbStore {
    /// Opens (or creates) the store in the file `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Engine(format!("cannot create {}: {e}", dir.display())))?;
        }
        let db = redb::Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|e| {
                let text = e.to_string();
                if text.contains("lock") || text.contains("in use") {
                    StoreError::Engine(format!(
                        "the store {} is in use by another keywardd (only one daemon may use it): {text}",
                        path.display()
                    ))
                } else {
                    StoreError::Engine(format!("cannot open store {}: {text}", path.display()))
                }
            })?;
        // Every table exists from the start, so that reads need not tell a missing
        // table from an empty one.
        let tx = db.begin_write().map_err(engine)?;
        for ns in Namespace::ALL {
            tx.open_table(table(ns)).map_err(engine)?;
        }
        tx.commit().map_err(engine)?;
        let wal = Wal::open(&super::wal::path_of(path), &Db(&db), |ns, k| {
            let tx = db.begin_read().map_err(engine)?;
            let t = tx.open_table(table(ns)).map_err(engine)?;
            Ok(t.get(k).map_err(engine)?.is_some())
        })?;
        Ok(Self {
            inner: Arc::new(Inner { db, wal }),
        })
    }

    fn read<T>(
        &self,
        ns: Namespace,
        f: impl FnOnce(&redb::ReadOnlyTable<&'static str, &'static [u8]>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let tx = self.inner.db.begin_read().map_err(engine)?;
        let t = tx.open_table(table(ns)).map_err(engine)?;
        f(&t)
    }

    /// Runs `f` in one write transaction, committed durably when it returns `true`
    /// (aborted when `false`).
    fn write(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<bool, StoreError>,
    ) -> Result<bool, StoreError> {
        let tx = self.inner.db.begin_write().map_err(engine)?;
        if f(&tx)? {
            tx.commit().map_err(engine)?;
            Ok(true)
        } else {
            tx.abort().map_err(engine)?;
            Ok(false)
        }
    }

    /// Applies puts (`Some`) and deletes (`None`), opening each namespace's table once
    /// (a group commit writes many records into few tables); writes to one namespace
    /// keep their order.
    fn apply<'w>(
        tx: &redb::WriteTransaction,
        writes: impl Iterator<Item = (Namespace, &'w str, Option<&'w [u8]>)> + Clone,
    ) -> Result<(), StoreError> {
        for ns in Namespace::ALL {
            let mut mine = writes.clone().filter(|w| w.0 == ns).peekable();
            if mine.peek().is_none() {
                continue;
            }
            let mut t = tx.open_table(table(ns)).map_err(engine)?;
            for (_, key, value) in mine {
                match value {
                    Some(v) => t.insert(key, v).map(drop),
                    None => t.remove(key).map(drop),
                }
                .map_err(engine)?;
            }
        }
        Ok(())
    }

    fn collect<'r>(
        range: impl Iterator<
            Item = Result<
                (
                    redb::AccessGuard<'r, &'static str>,
                    redb::AccessGuard<'r, &'static [u8]>,
                ),
                redb::StorageError,
            >,
        >,
        limit: usize,
    ) -> Result<Records, StoreError> {
        range
            .take(limit)
            .map(|r| {
                let (k, v) = r.map_err(engine)?;
                Ok((k.value().to_string(), v.value().to_vec()))
            })
            .collect()
    }
}

/// The blocking operations; `engine.rs` makes them the [`super::Store`] trait's futures.
impl Blocking for RedbStore {
    fn get_now(&self, ns: Namespace, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(ns, |t| {
            Ok(t.get(key).map_err(engine)?.map(|v| v.value().to_vec()))
        })
    }

    fn last_now(&self, ns: Namespace) -> Result<Option<(String, Vec<u8>)>, StoreError> {
        self.read(ns, |t| {
            Ok(t.last()
                .map_err(engine)?
                .map(|(k, v)| (k.value().to_string(), v.value().to_vec())))
        })
    }

    fn list_from_now(&self, ns: Namespace, from: &str) -> Result<Records, StoreError> {
        self.read(ns, |t| {
            Self::collect(t.range(from..).map_err(engine)?, usize::MAX)
        })
    }

    fn scan_now(&self, ns: Namespace, after: &str, limit: usize) -> Result<Records, StoreError> {
        use std::ops::Bound;
        self.read(ns, |t| {
            let range = if after.is_empty() {
                t.range::<&str>(..)
            } else {
                t.range::<&str>((Bound::Excluded(after), Bound::Unbounded))
            };
            Self::collect(range.map_err(engine)?, limit)
        })
    }

    fn put_now(&self, ns: Namespace, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.write(|tx| {
            Self::apply(tx, std::iter::once((ns, key, Some(value))))?;
            Ok(true)
        })?;
        Ok(())
    }

    fn create_now(&self, ns: Namespace, key: &str, value: &[u8]) -> Result<bool, StoreError> {
        self.write(|tx| {
            let mut t = tx.open_table(table(ns)).map_err(engine)?;
            if t.get(key).map_err(engine)?.is_some() {
                return Ok(false);
            }
            t.insert(key, value).map_err(engine)?;
            Ok(true)
        })
    }

    // See `Store::txn`: redb has one write transaction at a time, so the checks and
    // the writes are atomic against every other write.
    fn txn_now(&self, txn: &Txn) -> Result<bool, StoreError> {
        if super::wal::deletes_logged(txn) {
            let db = Db(&self.inner.db);
            return self.inner.wal.empty_then(&db, || self.txn_checked(txn));
        }
        self.txn_checked(txn)
    }

    /// Queued for the next group commit; readable once `wait_durable` returned.
    fn put_deferred_now(&self, ns: Namespace, key: &str, value: &[u8]) -> Result<u64, StoreError> {
        Ok(self.inner.wal.defer(ns, key, value))
    }

    fn wait_durable_now(&self, token: u64) -> Result<(), StoreError> {
        self.inner.wal.sync(token, &Db(&self.inner.db))
    }
}

impl RedbStore {
    /// Checks and writes in one write transaction.
    fn txn_checked(&self, txn: &Txn) -> Result<bool, StoreError> {
        self.write(|tx| {
            for (ns, key, expect) in &txn.checks {
                let t = tx.open_table(table(*ns)).map_err(engine)?;
                let current = t.get(key.as_str()).map_err(engine)?;
                let holds = match (expect, current) {
                    (Expect::Absent, None) => true,
                    (Expect::At(rev), Some(v)) => revision_of(v.value()) == *rev,
                    _ => false,
                };
                if !holds {
                    return Ok(false);
                }
            }
            let writes = txn.writes.iter();
            Self::apply(tx, writes.map(|(ns, k, v)| (*ns, k.as_str(), v.as_deref())))?;
            Ok(true)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redb_passes_the_store_conformance_suite() {
        super::super::conformance::run(&|dir| {
            std::sync::Arc::new(RedbStore::open(&dir.join("store.redb")).unwrap())
                as std::sync::Arc<dyn super::super::Store>
        })
        .await;
    }
}
