//! Transactions of the sled store: a transaction checks (revisions derived from the
//! bytes, `engine::revision_of`) and writes inside one sled transaction over every
//! tree, so it is atomic against every other write of this store.

use super::engine::revision_of;
use super::sled_store::SledStore;
use super::{Expect, StoreError, Txn};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

impl SledStore {
    /// See [`super::Store::txn`].
    pub(super) fn apply_txn(&self, txn: &Txn) -> Result<bool, StoreError> {
        if super::wal::deletes_logged(txn) {
            return self.with_wal_emptied(|| self.apply_checked(txn));
        }
        self.apply_checked(txn)
    }

    fn apply_checked(&self, txn: &Txn) -> Result<bool, StoreError> {
        // A packed record to be deleted leaves its pack first; a packed record to be
        // checked is read from its pack (packs change only by a commit, which adds
        // keys above every packed key, or by `unpack`).
        for (ns, key, value) in &txn.writes {
            if value.is_none() {
                self.unpack(*ns, key)?;
            }
        }
        let mut packed = Vec::with_capacity(txn.checks.len());
        for (ns, key, _) in &txn.checks {
            packed.push(self.packed_get(*ns, key.as_bytes())?);
        }
        let trees = self.all_trees();
        let result = trees.transaction(|views| {
            for ((ns, key, expect), in_pack) in txn.checks.iter().zip(&packed) {
                let current = views[ns.tag() as usize]
                    .get(key.as_bytes())?
                    .map(|v| v.to_vec())
                    .or_else(|| in_pack.clone());
                let holds = match (expect, current) {
                    (Expect::Absent, None) => true,
                    (Expect::At(rev), Some(v)) => revision_of(&v) == *rev,
                    _ => false,
                };
                if !holds {
                    return Err(ConflictableTransactionError::Abort(()));
                }
            }
            for (ns, key, value) in &txn.writes {
                let view = &views[ns.tag() as usize];
                match value {
                    Some(v) => view.insert(key.as_bytes(), v.as_slice())?,
                    None => view.remove(key.as_bytes())?,
                };
            }
            Ok(())
        });
        match result {
            Ok(()) => {
                self.commit_durably()?;
                Ok(true)
            }
            Err(TransactionError::Abort(())) => Ok(false),
            Err(TransactionError::Storage(e)) => Err(StoreError::Engine(e.to_string())),
        }
    }
}
