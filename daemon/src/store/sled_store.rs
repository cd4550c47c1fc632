//! The embedded default store: sled under the daemon's data directory.

use super::{Namespace, Store, StoreError};
use std::path::Path;

/// sled database; one process at a time (sled locks the directory).
///
/// Writes are made durable by group commit: every write takes a sequence number, and a
/// writer whose write was already covered by a flush that started after it returns
/// without flushing again, so concurrent writers share one fsync.
#[derive(Debug, Clone)]
pub struct SledStore {
    db: sled::Db,
    commit: std::sync::Arc<GroupCommit>,
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

impl SledStore {
    /// Opens (or creates) the database in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let db = sled::Config::new().path(dir).open().map_err(|e| {
            let text = e.to_string();
            if text.contains("lock") || text.contains("WouldBlock") || text.contains("temporarily unavailable") {
                StoreError::Engine(format!(
                    "the data directory {} is in use by another keywardd (only one daemon may use it): {text}",
                    dir.display()
                ))
            } else {
                StoreError::Engine(format!("cannot open store in {}: {text}", dir.display()))
            }
        })?;
        Ok(Self {
            db,
            commit: Default::default(),
        })
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

    fn tree(&self, ns: Namespace) -> Result<sled::Tree, StoreError> {
        self.db.open_tree(ns.tree()).map_err(engine)
    }
}

impl Store for SledStore {
    fn get(&self, ns: Namespace, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.tree(ns)?.get(key).map_err(engine)?.map(|v| v.to_vec()))
    }

    fn put(&self, ns: Namespace, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let tree = self.tree(ns)?;
        tree.insert(key, value).map_err(engine)?;
        let seq = self.wrote();
        self.durable(seq)
    }

    fn create(&self, ns: Namespace, key: &str, value: &[u8]) -> Result<bool, StoreError> {
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

    fn list_from(&self, ns: Namespace, from: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.tree(ns)?
            .range(from..)
            .map(|r| {
                let (k, v) = r.map_err(engine)?;
                Ok((String::from_utf8_lossy(&k).into_owned(), v.to_vec()))
            })
            .collect()
    }

    fn scan(
        &self,
        ns: Namespace,
        after: &str,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        use std::ops::Bound;
        let start = if after.is_empty() {
            Bound::Unbounded
        } else {
            Bound::Excluded(after.as_bytes().to_vec())
        };
        self.tree(ns)?
            .range::<Vec<u8>, _>((start, Bound::Unbounded))
            .take(limit)
            .map(|r| {
                let (k, v) = r.map_err(engine)?;
                Ok((String::from_utf8_lossy(&k).into_owned(), v.to_vec()))
            })
            .collect()
    }

    fn last(&self, ns: Namespace) -> Result<Option<(String, Vec<u8>)>, StoreError> {
        Ok(self
            .tree(ns)?
            .last()
            .map_err(engine)?
            .map(|(k, v)| (String::from_utf8_lossy(&k).into_owned(), v.to_vec())))
    }

    fn put_deferred(&self, ns: Namespace, key: &str, value: &[u8]) -> Result<u64, StoreError> {
        self.tree(ns)?.insert(key, value).map_err(engine)?;
        Ok(self.wrote())
    }

    fn wait_durable(&self, token: u64) -> Result<(), StoreError> {
        self.durable(token)
    }

    fn list(&self, ns: Namespace) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.tree(ns)?
            .iter()
            .map(|r| {
                let (k, v) = r.map_err(engine)?;
                Ok((String::from_utf8_lossy(&k).into_owned(), v.to_vec()))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_does_not_overwrite_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = SledStore::open(dir.path()).unwrap();
            assert!(s.create(Namespace::Keys, "a", b"1").unwrap());
            assert!(!s.create(Namespace::Keys, "a", b"2").unwrap());
            s.put(Namespace::Meta, "m", b"x").unwrap();
        }
        let s = SledStore::open(dir.path()).unwrap();
        assert_eq!(
            s.get(Namespace::Keys, "a").unwrap().as_deref(),
            Some(&b"1"[..])
        );
        assert_eq!(
            s.list(Namespace::Meta).unwrap(),
            vec![("m".to_string(), b"x".to_vec())]
        );
    }
}
