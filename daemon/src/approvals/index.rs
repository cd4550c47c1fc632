//! Indexes of approvals, so that listing reads a page, not every approval ever stored:
//! `open/…` names those with work left (pending, approved and not yet signed) and
//! `time/…` all of them, both newest first. Each is written in the transaction that
//! writes the record; an entry is only a pointer (the record, MAC'd, is read and
//! checked), so a planted or stale entry is skipped (and a stale one dropped).

use super::{ApprovalError, ApprovalRecord, Approvals, State};
use crate::store::{Expect, Namespace, Revision};

const OPEN: &str = "open/";
const ALL: &str = "time/";
const ARCHIVED: &str = "archived/";

/// Approvals archived per call at most (the scheduler calls again at its next tick).
const ARCHIVE_BATCH: usize = 500;

/// The part of an index key after its prefix: newest first, then the id.
fn order(r: &ApprovalRecord) -> String {
    format!(
        "{:040}-{}",
        i128::MAX - r.created_at.unix_timestamp_nanos(),
        r.id
    )
}

/// Whether an approval still has work left.
fn open(r: &ApprovalRecord) -> bool {
    matches!(r.status, State::Pending | State::Approved)
}

/// The index writes that go with storing `r`.
fn writes(r: &ApprovalRecord) -> Vec<(Namespace, String, Option<Vec<u8>>)> {
    let k = order(r);
    vec![
        (
            Namespace::ApprovalIndex,
            format!("{ALL}{k}"),
            Some(Vec::new()),
        ),
        (
            Namespace::ApprovalIndex,
            format!("{OPEN}{k}"),
            open(r).then(Vec::new),
        ),
    ]
}

impl Approvals {
    /// Stores `r` with its index entries (if at `rev`, when given).
    pub(super) async fn store_indexed(
        &self,
        r: &ApprovalRecord,
        rev: Option<Revision>,
    ) -> Result<bool, ApprovalError> {
        Ok(self
            .store
            .put_indexed(
                (Namespace::Approvals, &r.id),
                r,
                rev.map(Expect::At),
                writes(r),
            )
            .await?)
    }

    /// A page of approvals, newest first: the open ones (`open_only`) or all, at most
    /// `limit` after the page token `after`, and the next token (empty on the last).
    /// Reads `limit` index entries and their records, never more.
    pub async fn page(
        &self,
        open_only: bool,
        after: &str,
        limit: usize,
    ) -> Result<(Vec<ApprovalRecord>, String), ApprovalError> {
        self.page_of(if open_only { OPEN } else { ALL }, after, limit)
            .await
    }

    /// A page of archived approvals, newest first.
    pub async fn archived_page(
        &self,
        after: &str,
        limit: usize,
    ) -> Result<(Vec<ApprovalRecord>, String), ApprovalError> {
        self.page_of(ARCHIVED, after, limit).await
    }

    async fn page_of(
        &self,
        prefix: &'static str,
        after: &str,
        limit: usize,
    ) -> Result<(Vec<ApprovalRecord>, String), ApprovalError> {
        let open_only = prefix == OPEN;
        let after = if after.is_empty() {
            String::new()
        } else {
            format!("{prefix}{after}")
        };
        let entries = self
            .store
            .raw()
            .scan_prefix(Namespace::ApprovalIndex, prefix, &after, limit)
            .await?;
        let next = match entries.last() {
            Some((k, _)) if entries.len() == limit => {
                k.strip_prefix(prefix).unwrap_or_default().to_string()
            }
            _ => String::new(),
        };
        let mut out = Vec::with_capacity(entries.len());
        for (k, _) in entries {
            let id = k.rsplit('-').next().unwrap_or_default();
            let found = if prefix == ARCHIVED {
                self.store
                    .get::<ApprovalRecord>(Namespace::ApprovalArchive, id)
                    .await
                    .map_err(ApprovalError::from)
                    .and_then(|r| r.ok_or_else(|| ApprovalError::NotFound(id.to_string())))
            } else {
                self.get(id).await
            };
            let r = match found {
                Ok(r) if order(&r) == k[prefix.len()..] => r,
                Ok(_) | Err(ApprovalError::NotFound(_)) => {
                    tracing::warn!(index = %k, "an approval index entry names no such approval; dropped");
                    self.drop_entry(&k).await;
                    continue;
                }
                Err(e) => {
                    tracing::error!(approval = %id, error = %e, "approval record refused");
                    continue;
                }
            };
            if open_only && !open(&r) {
                // Decided since (expiry marks it on read): the entry is stale.
                self.drop_entry(&k).await;
                continue;
            }
            out.push(r);
        }
        Ok((out, next))
    }

    /// Removes a stale index entry (best effort: a later listing drops it again).
    async fn drop_entry(&self, key: &str) {
        let txn = crate::store::Txn::new().delete(Namespace::ApprovalIndex, key);
        let _ = self.store.raw().txn(&txn).await;
    }

    /// Moves finished approvals created before `before` to the archive (at most a
    /// batch per call, oldest first): each in one transaction, its record, MAC'd, under
    /// `ApprovalArchive` and its index entry under `archived/`. Returns how many.
    pub async fn archive(&self, before: time::OffsetDateTime) -> Result<usize, ApprovalError> {
        let cutoff = format!("{ALL}{:040}", i128::MAX - before.unix_timestamp_nanos());
        let entries = self
            .store
            .raw()
            .scan_prefix(Namespace::ApprovalIndex, ALL, &cutoff, ARCHIVE_BATCH)
            .await?;
        let mut moved = 0;
        for (k, _) in entries {
            let id = k.rsplit('-').next().unwrap_or_default();
            let (r, rev) = match self.read(id).await {
                Ok(found) => found,
                Err(e) => {
                    tracing::error!(approval = %id, error = %e, "approval not archived");
                    continue;
                }
            };
            if open(&r) || r.created_at >= before {
                continue;
            }
            let order = order(&r);
            let stored = crate::store::to_json(&r)?;
            let committed = self
                .store
                .commit_with(
                    vec![(Namespace::Approvals, r.id.clone(), Expect::At(rev))],
                    vec![(Namespace::ApprovalArchive, r.id.clone(), stored)],
                    vec![
                        (Namespace::Approvals, r.id.clone(), None),
                        (Namespace::ApprovalIndex, format!("{ALL}{order}"), None),
                        (Namespace::ApprovalIndex, format!("{OPEN}{order}"), None),
                        (
                            Namespace::ApprovalIndex,
                            format!("{ARCHIVED}{order}"),
                            Some(Vec::new()),
                        ),
                    ],
                )
                .await?;
            moved += usize::from(committed);
        }
        if moved > 0 {
            tracing::info!(approvals = moved, "archived finished approvals");
        }
        Ok(moved)
    }

    /// Indexes approvals stored before the indexes existed (once per store).
    pub async fn ensure_index(&self) -> Result<u64, ApprovalError> {
        const DONE: &str = "approval_index";
        if self.store.raw().get(Namespace::Meta, DONE).await?.is_some() {
            return Ok(0);
        }
        let mut n = 0;
        for (k, r) in self
            .store
            .list::<ApprovalRecord>(Namespace::Approvals)
            .await?
        {
            match r {
                Ok(r) if r.id == k => {
                    let mut txn = crate::store::Txn::new();
                    txn.writes.extend(writes(&r));
                    self.store.raw().txn(&txn).await?;
                    n += 1;
                }
                _ => tracing::error!(approval = %k, "approval record refused; not indexed"),
            }
        }
        self.store.raw().put(Namespace::Meta, DONE, b"1").await?;
        if n > 0 {
            tracing::info!(approvals = n, "indexed the stored approvals");
        }
        Ok(n)
    }
}
