//! Listing the ledger: by time, or for a key through its index by version and second,
//! a page at a time.

use super::{LedgerEntry, LedgerQuery, SECOND_BATCH, SignatureLedger};
use crate::store::{Namespace, StoreError};

/// Entries one page reads at most, matching or not: a filter that matches little ends
/// the page early with a cursor to go on from, so no request walks the whole ledger.
pub const SCAN_CAP: usize = 10_000;

impl SignatureLedger {
    /// A row met while listing: its entry, or nothing (logged) when it is refused.
    fn listed(&self, row: &str, stored: &[u8]) -> Option<LedgerEntry> {
        match self.decode(row, stored) {
            Ok(e) => Some(e),
            Err(e) => {
                tracing::error!(error = %e, "a ledger row was refused; it is left out");
                None
            }
        }
    }

    /// Entries matching the query, oldest first (with a key: by version, then oldest
    /// first): at most `limit` after the cursor `after` (empty: from the start), and
    /// the cursor of the next page (empty on the last). Walks the ledger, or for a key
    /// its index, in batches, never all of it at once, and reads at most [`SCAN_CAP`]
    /// entries: a page may hold fewer than `limit` and still have a next one.
    pub async fn list_page(
        &self,
        q: &LedgerQuery,
        after: &str,
        limit: usize,
    ) -> Result<(Vec<LedgerEntry>, String), StoreError> {
        let (rows, next) = self.list_rows(q, after, limit).await?;
        Ok((rows.into_iter().map(|(_, e)| e).collect(), next))
    }

    /// The entry stored under ledger row `row`, if any.
    pub async fn get(&self, row: &str) -> Result<Option<LedgerEntry>, StoreError> {
        match self.store.get(Namespace::Ledger, row).await? {
            Some(v) => self.decode(row, &v).map(Some),
            None => Ok(None),
        }
    }

    /// The ledger row a mark points to.
    pub async fn marked_row(&self, mark: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .store
            .get(Namespace::LedgerMarks, mark)
            .await?
            .map(|row| String::from_utf8_lossy(&row).into_owned()))
    }

    /// As [`Self::list_page`], each entry with its ledger row (what a job item names
    /// to find it again when it runs).
    pub async fn list_rows(
        &self,
        q: &LedgerQuery,
        after: &str,
        limit: usize,
    ) -> Result<(Vec<(String, LedgerEntry)>, String), StoreError> {
        let opts = glob::MatchOptions {
            require_literal_separator: true,
            ..Default::default()
        };
        let keep = |e: &LedgerEntry| {
            q.key.as_ref().is_none_or(|key| key == &e.key)
                && q.version.is_none_or(|v| v == e.version)
                && q.since.is_none_or(|t| e.time >= t)
                && q.until.is_none_or(|t| e.time < t)
                && q.repository.as_ref().is_none_or(|p| {
                    p.matches_with(&format!("{}/{}", e.registry, e.repository), opts)
                })
        };
        let prefix = match (&q.key, q.version) {
            (Some(k), Some(v)) => Some(format!("{k}/v{v:010}/")),
            (Some(k), None) => Some(format!("{k}/")),
            (None, _) => None,
        };
        let Some(prefix) = prefix else {
            return self.page_by_time(q, &keep, after, limit).await;
        };
        // The cursor of a key listing is `<index key>#<last ledger key read>`.
        let (mut bucket, mut row) = match after.split_once('#') {
            Some((b, r)) => (b.to_string(), r.to_string()),
            None => (String::new(), String::new()),
        };
        let (mut out, mut scanned) = (Vec::new(), 0usize);
        loop {
            if scanned >= SCAN_CAP {
                return Ok((out, format!("{bucket}#{row}")));
            }
            if bucket.is_empty() || row.is_empty() {
                let next = self
                    .store
                    .scan_prefix(Namespace::LedgerByKey, &prefix, &bucket, 1)
                    .await?;
                let Some((b, _)) = next.into_iter().next() else {
                    return Ok((out, String::new()));
                };
                bucket = b;
                row = String::new();
            }
            // `key/vNNNNNNNNNN/SSSSSSSSSSSS`: this bucket lists one version's entries.
            let mut parts = bucket.rsplit('/');
            let second: i64 = parts.next().unwrap_or("").parse().unwrap_or(0);
            let version: Option<u32> = parts.next().and_then(|v| v.strip_prefix('v')?.parse().ok());
            let start = format!("{:024}", i128::from(second) * 1_000_000_000);
            let end = format!("{:024}", (i128::from(second) + 1) * 1_000_000_000);
            let from = if row.is_empty() { start } else { row.clone() };
            let batch = self
                .store
                .scan(Namespace::Ledger, &from, SECOND_BATCH)
                .await?;
            let mut done_with_second = batch.len() < SECOND_BATCH;
            for (k, v) in batch {
                if k >= end {
                    done_with_second = true;
                    break;
                }
                scanned += 1;
                row = k.clone();
                let Some(e) = self.listed(&k, &v) else {
                    continue;
                };
                if keep(&e) && version.is_none_or(|v| v == e.version) {
                    out.push((k, e));
                    if out.len() == limit {
                        return Ok((out, format!("{bucket}#{row}")));
                    }
                }
            }
            if done_with_second {
                row = String::new();
            }
        }
    }

    /// A page of the whole ledger, oldest first, from `q.since` to `q.until` (rows are
    /// keyed by time).
    async fn page_by_time(
        &self,
        q: &LedgerQuery,
        keep: &impl Fn(&LedgerEntry) -> bool,
        after: &str,
        limit: usize,
    ) -> Result<(Vec<(String, LedgerEntry)>, String), StoreError> {
        let key_of = |t: time::OffsetDateTime| format!("{:024}", t.unix_timestamp_nanos());
        let mut out = Vec::new();
        let mut cursor = match (after, q.since) {
            ("", Some(t)) => key_of(t),
            _ => after.to_string(),
        };
        let end = q.until.map(key_of);
        let mut scanned = 0usize;
        loop {
            if scanned >= SCAN_CAP {
                return Ok((out, cursor));
            }
            let batch = self.store.scan(Namespace::Ledger, &cursor, 1000).await?;
            if batch.is_empty() {
                return Ok((out, String::new()));
            }
            for (k, v) in batch {
                if end.as_ref().is_some_and(|end| &k >= end) {
                    return Ok((out, String::new()));
                }
                scanned += 1;
                cursor = k.clone();
                let Some(e) = self.listed(&k, &v) else {
                    continue;
                };
                if keep(&e) {
                    out.push((k, e));
                    if out.len() == limit {
                        return Ok((out, cursor));
                    }
                }
            }
        }
    }
}
