//! Reading the log out (pages of lines for `audit export`) and the loop that signs its
//! head every N records or T seconds.

use super::{AuditError, AuditLog, record_key, short};
use crate::store::{Namespace, StoreError};
use keyward_client::audit::{Anchor, AnchorType, Line};
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

impl AuditLog {
    /// One page of exported lines (records and checkpoints) after the store cursor
    /// `after` (empty: from sequence number `from_seq`), optionally only those at or
    /// after `since`; returns the lines and the cursor of the next page (empty on the
    /// last). With `since`, the first page starts with an anchor line naming the hash
    /// its first record follows, so that a verifier can check the export from there
    /// (`keyward audit verify --from`).
    pub async fn export_page(
        &self,
        from_seq: u64,
        after: &str,
        since: Option<OffsetDateTime>,
        limit: usize,
    ) -> Result<(Vec<String>, String), StoreError> {
        let first_page = after.is_empty();
        let start = match (first_page, from_seq) {
            (false, _) => after.to_string(),
            (true, 0 | 1) => String::new(),
            // The last key before record `from_seq`: its predecessor's checkpoint.
            (true, n) => format!("{}c", record_key(n - 1)),
        };
        let batch = self.store.scan(Namespace::Audit, &start, limit).await?;
        let next = if batch.len() == limit {
            batch.last().map(|(k, _)| k.clone()).unwrap_or_default()
        } else {
            String::new()
        };
        let mut out = Vec::new();
        let mut anchored = !first_page;
        for (k, v) in batch {
            if let Some(since) = since {
                let line: Line = serde_json::from_slice(&v).map_err(|e| StoreError::Corrupt {
                    key: k.clone(),
                    detail: e.to_string(),
                })?;
                let time = match &line {
                    Line::Record(r) => r.time.as_ref(),
                    Line::Checkpoint(c) => c.time.as_str(),
                    Line::Anchor(_) => "",
                };
                if OffsetDateTime::parse(time, &Rfc3339).is_ok_and(|t| t < since) {
                    continue;
                }
                if !anchored {
                    let Line::Record(r) = &line else { continue };
                    let anchor = Anchor {
                        kind: AnchorType::Anchor,
                        seq: r.seq.saturating_sub(1),
                        hash: r.prev_hash.to_string(),
                    };
                    out.push(serde_json::to_string(&anchor).unwrap_or_default());
                    anchored = true;
                }
            }
            out.push(String::from_utf8_lossy(&v).into_owned());
        }
        Ok((out, next))
    }
}

/// Runs checkpoints every `every` or when `max_records` accumulate, until `stop`.
pub async fn checkpoint_loop(
    log: Arc<AuditLog>,
    pool_owner: Arc<crate::keys::Backends>,
    backend: String,
    every: Duration,
    max_records: u64,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut since = tokio::time::Instant::now();
    loop {
        let wanted = tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => false,
            _ = log.checkpoint_wanted() => true,
            _ = stop.wait_for(|s| *s) => break,
        };
        if !wanted && since.elapsed() < every && log.uncheckpointed() < max_records {
            continue;
        }
        since = tokio::time::Instant::now();
        let result = match pool_owner.get(&backend) {
            Ok(pool) => log.checkpoint(pool).await.map(|_| ()),
            Err(e) => Err(AuditError::Store(StoreError::Engine(e.to_string()))),
        };
        match result {
            Ok(()) => {
                if log.blocked().is_some() {
                    tracing::info!(
                        "audit checkpoint succeeded again; requests that change state are accepted"
                    );
                }
                log.set_blocked(None);
            }
            Err(e) => {
                tracing::error!(error = %e, "audit checkpoint failed; refusing requests that change state or sign until one succeeds");
                log.set_blocked(Some(format!(
                    "the last audit checkpoint failed ({})",
                    short(&e)
                )));
                // Try again soon rather than after a whole period.
                since = tokio::time::Instant::now()
                    .checked_sub(every.saturating_sub(Duration::from_secs(1)))
                    .unwrap_or(since);
            }
        }
    }
    if let Ok(pool) = pool_owner.get(&backend) {
        let _ = log.checkpoint(pool).await;
    }
}
