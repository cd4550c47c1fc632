//! Where the audit chain stands at start-up: its last record and last checkpoint,
//! read from the end of the log.

use crate::store::{Namespace, Store, StoreError};
use keyward_client::audit::{GENESIS, Line};

/// Meta record: the sequence number of the last checkpoint.
pub(super) const CHECKPOINTED: &str = "audit_checkpointed";

fn corrupt(key: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        key: key.to_string(),
        detail: e.to_string(),
    }
}

/// Where the chain stands: its last record and last checkpoint, read from the end of
/// the log (and the checkpoint marker) rather than from all of it. A log written before
/// the marker existed is read whole, once.
pub(super) async fn read_head(store: &dyn Store) -> Result<Head, StoreError> {
    let mut head = Head {
        seq: 0,
        hash: GENESIS.to_string(),
        checkpointed: 0,
    };
    let Some((k, v)) = store.last(Namespace::Audit).await? else {
        return Ok(head);
    };
    let marker = store.get(Namespace::Meta, CHECKPOINTED).await?;
    let last = serde_json::from_slice::<Line>(&v).map_err(|e| corrupt(&k, e))?;
    let signed = match last {
        // A checkpoint comes right after the record it signs.
        Line::Checkpoint(c) => {
            head.checkpointed = c.seq;
            let key = record_key(c.seq);
            let v = store.get(Namespace::Audit, &key).await?;
            Some(v.ok_or_else(|| corrupt(&key, "the record a checkpoint signs is missing"))?)
        }
        _ => {
            head.checkpointed = match marker {
                Some(m) => String::from_utf8_lossy(&m).parse().unwrap_or(0),
                None => last_checkpoint(store).await?,
            };
            None
        }
    };
    let bytes = signed.as_deref().unwrap_or(&v);
    if let Line::Record(r) = serde_json::from_slice::<Line>(bytes).map_err(|e| corrupt(&k, e))? {
        head.seq = r.seq;
        head.hash = r.hash;
    }
    Ok(head)
}

/// The last checkpoint, found by reading the whole log (a store from before the marker).
async fn last_checkpoint(store: &dyn Store) -> Result<u64, StoreError> {
    let mut last = 0;
    for (k, v) in store.list_from(Namespace::Audit, "").await? {
        if let Line::Checkpoint(c) = serde_json::from_slice(&v).map_err(|e| corrupt(&k, e))? {
            last = c.seq;
        }
    }
    Ok(last)
}

pub(super) fn record_key(seq: u64) -> String {
    format!("{seq:020}")
}

pub(super) struct Head {
    pub(super) seq: u64,
    pub(super) hash: String,
    pub(super) checkpointed: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SledStore;
    use keyward_client::audit::{Checkpoint, CheckpointType, Decision, Record, RecordType};

    async fn put_record(store: &dyn Store, seq: u64, prev: &str) -> String {
        let (bytes, hash) = Record {
            action: "A".into(),
            decision: Decision::Allowed,
            detail: None,
            prev_hash: prev.into(),
            principal: "p".into(),
            reason: "".into(),
            request_hash: "".into(),
            seq,
            target: "".into(),
            time: "2026-11-27T10:00:00Z".into(),
            kind: RecordType::Record,
            hash: String::new(),
        }
        .to_line();
        store
            .put(Namespace::Audit, &record_key(seq), &bytes)
            .await
            .unwrap();
        hash
    }

    async fn put_checkpoint(store: &dyn Store, seq: u64, head: &str, marker: bool) {
        let c = Checkpoint {
            kind: CheckpointType::Checkpoint,
            seq,
            head_hash: head.into(),
            time: String::new(),
            signature: String::new(),
        };
        let key = format!("{}c", record_key(seq));
        store
            .put(Namespace::Audit, &key, &serde_json::to_vec(&c).unwrap())
            .await
            .unwrap();
        if marker {
            store
                .put(Namespace::Meta, CHECKPOINTED, seq.to_string().as_bytes())
                .await
                .unwrap();
        }
    }

    #[tokio::test]
    async fn the_head_is_read_from_the_end_of_the_log_and_from_all_of_an_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(&dir.path().join("s")).unwrap();
        let s: &dyn Store = &store;
        let h = read_head(s).await.unwrap();
        assert_eq!((h.seq, h.hash.as_str(), h.checkpointed), (0, GENESIS, 0));

        let h1 = put_record(s, 1, GENESIS).await;
        let h2 = put_record(s, 2, &h1).await;
        // A store from before the marker: its last checkpoint is found by reading it.
        put_checkpoint(s, 2, &h2, false).await;
        let h3 = put_record(s, 3, &h2).await;
        let h = read_head(s).await.unwrap();
        assert_eq!(
            (h.seq, h.hash.as_str(), h.checkpointed),
            (3, h3.as_str(), 2)
        );
        // The last line is a checkpoint: it names the last record.
        put_checkpoint(s, 3, &h3, true).await;
        let h = read_head(s).await.unwrap();
        assert_eq!(
            (h.seq, h.hash.as_str(), h.checkpointed),
            (3, h3.as_str(), 3)
        );
        // A record after it: the marker says where the last checkpoint is.
        let h4 = put_record(s, 4, &h3).await;
        let h = read_head(s).await.unwrap();
        assert_eq!(
            (h.seq, h.hash.as_str(), h.checkpointed),
            (4, h4.as_str(), 3)
        );
    }
}
