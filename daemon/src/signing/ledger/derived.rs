//! What was derived from a signature: re-signatures name the row they re-make
//! (`LedgerEntry::derived_from`), and `Namespace::LedgerDerived` indexes them by it, in
//! the commit that records them.

use super::{SignatureLedger, mark};
use crate::store::{Namespace, StoreError};

impl SignatureLedger {
    /// The ledger rows of the signatures re-made from the one in row `row` (directly).
    pub async fn derived_from(&self, row: &str) -> Result<Vec<String>, StoreError> {
        let prefix = format!("{row}/");
        let mut out = Vec::new();
        let mut after = String::new();
        loop {
            let page = self
                .store
                .scan_prefix(Namespace::LedgerDerived, &prefix, &after, 256)
                .await?;
            let Some((last, _)) = page.last() else {
                return Ok(out);
            };
            after = last.clone();
            out.extend(
                page.into_iter()
                    .filter_map(|(k, _)| k.strip_prefix(&prefix).map(str::to_string)),
            );
        }
    }

    /// The ledger rows of every signature re-made from the one in row `row`, however
    /// many re-signings away (at most `limit` of them).
    pub async fn derivations(&self, row: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        let (mut out, mut next) = (Vec::new(), vec![row.to_string()]);
        while let Some(r) = next.pop() {
            for d in self.derived_from(&r).await? {
                if out.len() >= limit {
                    return Ok(out);
                }
                if !out.contains(&d) {
                    next.push(d.clone());
                    out.push(d);
                }
            }
        }
        Ok(out)
    }

    /// The ledger rows of key `key` version `version`'s signatures of
    /// `registry/repository@digest` (any identity).
    pub async fn signature_rows(
        &self,
        key: &str,
        version: u32,
        (registry, repository, digest): (&str, &str, &str),
    ) -> Result<Vec<String>, StoreError> {
        let prefix = mark(key, version, registry, repository, digest, "");
        let marks = self
            .store
            .scan_prefix(Namespace::LedgerMarks, &prefix, "", 64)
            .await?;
        Ok(marks
            .into_iter()
            .map(|(_, row)| String::from_utf8_lossy(&row).into_owned())
            .collect())
    }
}
