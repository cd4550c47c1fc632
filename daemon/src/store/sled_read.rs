//! The sled store's reads over a namespace's tree and its packs, and storing a
//! committed batch (`packs.rs`); and the [`super::engine::Blocking`] operations that
//! `engine.rs` turns into the `Store` trait.

use super::packs::{Packs, Raw, is_packed, merge};
use super::sled_store::SledStore;
use super::{Namespace, StoreError};
use std::ops::Bound;

fn engine(e: sled::Error) -> StoreError {
    StoreError::Engine(e.to_string())
}

impl SledStore {
    /// The records of `ns` from `start` on, in key order: the tree's and the packs'.
    fn records(
        &self,
        ns: Namespace,
        start: Bound<Vec<u8>>,
    ) -> Result<Box<dyn Iterator<Item = Result<Raw, StoreError>> + Send>, StoreError> {
        let main = self
            .tree(ns)?
            .range::<Vec<u8>, _>((start.clone(), Bound::Unbounded))
            .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(engine));
        Ok(match is_packed(ns) {
            true => Box::new(merge(main, self.packs().iter(ns, start))),
            false => Box::new(main),
        })
    }

    pub(super) fn list_from_now(
        &self,
        ns: Namespace,
        from: &str,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.records(ns, Bound::Included(from.as_bytes().to_vec()))?
            .map(|r| r.map(text_key))
            .collect()
    }

    pub(super) fn scan_now(
        &self,
        ns: Namespace,
        after: &str,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let start = if after.is_empty() {
            Bound::Unbounded
        } else {
            Bound::Excluded(after.as_bytes().to_vec())
        };
        self.records(ns, start)?
            .take(limit)
            .map(|r| r.map(text_key))
            .collect()
    }

    pub(super) fn last_now(&self, ns: Namespace) -> Result<Option<(String, Vec<u8>)>, StoreError> {
        let main = self
            .tree(ns)?
            .last()
            .map_err(engine)?
            .map(|(k, v)| (k.to_vec(), v.to_vec()));
        let last = match (main, self.packs().last(ns)?) {
            (Some(m), Some(p)) if p.0 > m.0 => Some(p),
            (Some(m), _) => Some(m),
            (None, p) => p,
        };
        Ok(last.map(text_key))
    }
}

fn text_key((k, v): Raw) -> (String, Vec<u8>) {
    (String::from_utf8_lossy(&k).into_owned(), v)
}

/// Stores a batch of writes made durable by the log: the records of a packed
/// namespace in packs, the rest one by one, in the order of the batch (so a ledger
/// entry's index entry is in before the entry).
pub(super) fn store_batch(
    trees: &[sled::Tree],
    packs: &Packs,
    batch: impl Iterator<Item = (Namespace, Vec<u8>, Vec<u8>)>,
) -> Result<(), StoreError> {
    let mut packed: Vec<Vec<Raw>> = vec![Vec::new(); Namespace::ALL.len()];
    for (ns, k, v) in batch {
        match is_packed(ns) {
            true => packed[ns.tag() as usize].push((k, v)),
            false => {
                trees[ns.tag() as usize].insert(k, v).map_err(engine)?;
            }
        }
    }
    for (ns, records) in Namespace::ALL.iter().zip(packed) {
        if !records.is_empty() {
            packs.commit(*ns, &trees[ns.tag() as usize], records)?;
        }
    }
    Ok(())
}

/// sled's blocking operations for `engine.rs`.
impl super::engine::Blocking for SledStore {
    fn get_now(&self, ns: Namespace, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        SledStore::get_now(self, ns, key)
    }
    fn last_now(&self, ns: Namespace) -> Result<Option<(String, Vec<u8>)>, StoreError> {
        SledStore::last_now(self, ns)
    }
    fn put_now(&self, ns: Namespace, key: &str, value: &[u8]) -> Result<(), StoreError> {
        SledStore::put_now(self, ns, key, value)
    }
    fn create_now(&self, ns: Namespace, key: &str, value: &[u8]) -> Result<bool, StoreError> {
        SledStore::create_now(self, ns, key, value)
    }
    fn txn_now(&self, txn: &super::Txn) -> Result<bool, StoreError> {
        SledStore::txn_now(self, txn)
    }
    fn list_from_now(&self, ns: Namespace, from: &str) -> Result<super::Records, StoreError> {
        SledStore::list_from_now(self, ns, from)
    }
    fn scan_now(
        &self,
        ns: Namespace,
        after: &str,
        limit: usize,
    ) -> Result<super::Records, StoreError> {
        SledStore::scan_now(self, ns, after, limit)
    }
    fn put_deferred_now(&self, ns: Namespace, key: &str, value: &[u8]) -> Result<u64, StoreError> {
        SledStore::put_deferred_now(self, ns, key, value)
    }
    fn wait_durable_now(&self, token: u64) -> Result<(), StoreError> {
        SledStore::wait_durable_now(self, token)
    }
}
