//! The audit log: every request, allowed or denied, as a hash-chained record; every N
//! records or T seconds the chain head is signed by an audit key inside the HSM.
//!
//! The line format (records, checkpoints, anchors, the canonical hash) is
//! `keyward_client::audit::record`, shared with `keyward audit verify`, which reports
//! offline any edited, dropped or reordered record.
//!
//! A request is answered only after its record is durable; when the log cannot be
//! written, the request is refused (fail closed). Concurrent records share one fsync.

use crate::hsm::{HsmError, HsmPool};
mod export;
mod head;
mod signed_head;

pub use export::checkpoint_loop;
use head::{CHECKPOINTED, Head, read_head, record_key};

use crate::store::{Namespace, Store, StoreError};
use base64::Engine;
use keyward_client::audit::{Checkpoint, CheckpointType, Record, RecordType, checkpoint_message};
pub use keyward_client::audit::{Decision, GENESIS};
use serde::{Deserialize, Serialize};
use sha2::Digest;
use std::sync::{Arc, Mutex};
use time::format_description::well_known::Rfc3339;

/// Errors of the audit log.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The record could not be written or made durable.
    #[error("the audit log cannot be written: {0}")]
    Store(#[from] StoreError),
    /// A checkpoint could not be signed.
    #[error("the audit key failed: {0}")]
    Hsm(#[from] HsmError),
}

/// What the audit key is (stored in the instance's metadata).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditKey {
    /// Backend holding it.
    pub backend: String,
    /// Its HSM id.
    pub hsm_id: String,
    /// DER SubjectPublicKeyInfo, hex.
    pub public_key: String,
}

/// One decision to record.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    /// Who asked (empty when the caller could not be authenticated).
    pub principal: &'a str,
    /// The API method.
    pub action: &'a str,
    /// What it was about (key, image reference, principal).
    pub target: &'a str,
    /// What was decided.
    pub decision: Decision,
    /// Why (for denials and failures).
    pub reason: &'a str,
    /// SHA-256 of the request message, hex.
    pub request_hash: &'a str,
}

type Waiter = (u64, tokio::sync::oneshot::Sender<Result<(), String>>);

/// The audit log over the store.
pub struct AuditLog {
    store: Arc<dyn Store>,
    head: Mutex<Head>,
    key: AuditKey,
    enabled: bool,
    /// Group commit: appenders hand their write token to one flusher thread, which
    /// makes every pending record durable with one fsync and then answers them all.
    flusher: std::sync::mpsc::Sender<Waiter>,
    /// Why the last checkpoint failed; while set, requests that change state or sign
    /// are refused and /healthz answers 503.
    blocked: Mutex<Option<String>>,
    /// Asks the checkpoint loop to sign the chain head now.
    nudge: tokio::sync::Notify,
    /// The last signed head and when it was signed (`signed_head.rs`).
    signed_head: Mutex<Option<(std::time::Instant, keyward_client::audit::SignedHead)>>,
}

/// Waits for pending writes, makes all of them durable at once, answers each waiter.
/// Runs on a thread of its own: a round blocks it for one fsync, and no worker of the
/// async runtime pays for the hand-off (about 4% of the SignDigest rate on two cores
/// against running it as a task that blocks in place).
fn flush_loop(
    store: Arc<dyn Store>,
    runtime: tokio::runtime::Handle,
    rx: std::sync::mpsc::Receiver<Waiter>,
) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let upto = batch.iter().map(|(t, _)| *t).max().unwrap_or(0);
        let result = runtime
            .block_on(store.wait_durable(upto))
            .map_err(|e| e.to_string());
        for (_, reply) in batch {
            let _ = reply.send(result.clone());
        }
    }
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Opens the log where it left off.
    pub async fn open(
        store: Arc<dyn Store>,
        key: AuditKey,
        enabled: bool,
    ) -> Result<Self, StoreError> {
        let head = read_head(store.as_ref()).await?;
        let (tx, rx) = std::sync::mpsc::channel();
        let (flushed, runtime) = (store.clone(), tokio::runtime::Handle::current());
        std::thread::Builder::new()
            .name("audit-commit".into())
            .spawn(move || flush_loop(flushed, runtime, rx))
            .map_err(|e| StoreError::Engine(format!("cannot start the audit flusher: {e}")))?;
        Ok(Self {
            store,
            head: Mutex::new(head),
            key,
            enabled,
            flusher: tx,
            blocked: Mutex::new(None),
            nudge: tokio::sync::Notify::new(),
            signed_head: Mutex::new(None),
        })
    }

    /// Whether records are written (off only for benchmarks).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The audit key's public half, PEM.
    pub fn public_key_pem(&self) -> String {
        hex::decode(&self.key.public_key)
            .map(|d| crate::hsm::public_key::spki_pem(&d))
            .unwrap_or_default()
    }

    /// Appends a record and returns once it is durable.
    pub async fn append(&self, e: Entry<'_>) -> Result<u64, AuditError> {
        self.append_covering(e, 0).await
    }

    /// Appends a record and returns once it and the earlier store write `covers` (a
    /// ledger entry, say) are durable: both in one group commit.
    pub async fn append_covering(&self, e: Entry<'_>, covers: u64) -> Result<u64, AuditError> {
        let (seq, token) = self.queue(e, None)?;
        self.wait(token.max(covers)).await?;
        Ok(seq)
    }

    /// Appends a record carrying `detail` (a document such as an incident's report),
    /// returns once it is durable, and asks for a checkpoint at once, so that the
    /// record is signed by the audit key within moments rather than at the next period.
    pub async fn append_signed(
        &self,
        e: Entry<'_>,
        detail: serde_json::Value,
    ) -> Result<u64, AuditError> {
        let (seq, token) = self.queue(e, Some(detail))?;
        self.wait(token).await?;
        self.nudge.notify_one();
        Ok(seq)
    }

    /// Resolves when a checkpoint is asked for ([`AuditLog::append_signed`]).
    pub(crate) async fn checkpoint_wanted(&self) {
        self.nudge.notified().await
    }

    /// Appends a record to the chain without waiting for it to be durable: the next
    /// group commit, which any later [`AuditLog::append_covering`] waits for, writes
    /// it (the store commits deferred writes in order). For a request whose only
    /// effect is its answer, which goes out after its outcome record is durable.
    pub fn append_queued(&self, e: Entry<'_>) -> Result<u64, AuditError> {
        Ok(self.queue(e, None)?.0)
    }

    /// Chains the record and queues its store write: (sequence number, write token).
    fn queue(
        &self,
        e: Entry<'_>,
        detail: Option<serde_json::Value>,
    ) -> Result<(u64, u64), AuditError> {
        if !self.enabled {
            return Ok((0, 0));
        }
        let mut head = self.head.lock().unwrap_or_else(|p| p.into_inner());
        let seq = head.seq + 1;
        let time = crate::clock::now().format(&Rfc3339).unwrap_or_default();
        let (bytes, hash) = Record {
            action: e.action.into(),
            decision: e.decision,
            detail,
            prev_hash: head.hash.as_str().into(),
            principal: e.principal.into(),
            reason: e.reason.into(),
            request_hash: e.request_hash.into(),
            seq,
            target: e.target.into(),
            time: time.into(),
            kind: RecordType::Record,
            hash: String::new(),
        }
        .to_line();
        let token = self
            .store
            .put_deferred(Namespace::Audit, &record_key(seq), &bytes)?;
        head.seq = seq;
        head.hash = hash;
        Ok((seq, token))
    }

    /// Returns once every store write up to `token` is durable (group commit).
    async fn wait(&self, token: u64) -> Result<(), AuditError> {
        if token == 0 {
            return Ok(());
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.flusher
            .send((token, tx))
            .map_err(|_| StoreError::Engine("the audit flusher stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Engine("the audit flusher stopped".into()))?
            .map_err(StoreError::Engine)?;
        Ok(())
    }

    /// Signs the chain head with the audit key if records were added since the last
    /// checkpoint.
    pub async fn checkpoint(&self, pool: &HsmPool) -> Result<Option<u64>, AuditError> {
        let (seq, hash) = {
            let head = self.head.lock().unwrap_or_else(|p| p.into_inner());
            if head.seq == head.checkpointed {
                return Ok(None);
            }
            (head.seq, head.hash.clone())
        };
        let sig = self
            .sign("audit-checkpoint", pool, checkpoint_message(seq, &hash))
            .await?;
        let rec = Checkpoint {
            kind: CheckpointType::Checkpoint,
            seq,
            head_hash: hash,
            time: crate::clock::now().format(&Rfc3339).unwrap_or_default(),
            signature: base64::engine::general_purpose::STANDARD.encode(sig),
        };
        let store = self.store.clone();
        let key = format!("{}c", record_key(seq));
        let bytes = serde_json::to_vec(&rec).unwrap_or_default();
        // Through the same ordered commit as the records: the record it signs is
        // durable no later than the checkpoint itself.
        store.put_deferred(Namespace::Audit, &key, &bytes)?;
        // After the checkpoint, in the same commit: a start reads it instead of the log.
        let token =
            store.put_deferred(Namespace::Meta, CHECKPOINTED, seq.to_string().as_bytes())?;
        store.wait_durable(token).await?;
        let mut head = self.head.lock().unwrap_or_else(|p| p.into_inner());
        head.checkpointed = head.checkpointed.max(seq);
        Ok(Some(seq))
    }

    /// Signs `msg` with the audit key (checkpoints, heads).
    pub(super) async fn sign(
        &self,
        op: &'static str,
        pool: &HsmPool,
        msg: Vec<u8>,
    ) -> Result<Vec<u8>, AuditError> {
        let id = self.key.hsm_id.clone();
        let spki = hex::decode(&self.key.public_key).map_err(|e| StoreError::Corrupt {
            key: "meta/audit_key".into(),
            detail: format!("its public key is not hex: {e}"),
        })?;
        let sig: Vec<u8> = pool
            .run(op, move |s| {
                crate::pki::instance_key::sign(s, &id, &spki, &msg)
            })
            .await
            .map_err(|e: HsmError| e)?;
        Ok(sig)
    }

    /// Why requests that change state are refused, if they are: the last checkpoint
    /// could not be signed or stored.
    pub fn blocked(&self) -> Option<String> {
        self.blocked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_blocked(&self, why: Option<String>) {
        *self.blocked.lock().unwrap_or_else(|p| p.into_inner()) = why;
    }

    /// Records not yet covered by a checkpoint.
    pub fn uncheckpointed(&self) -> u64 {
        let head = self.head.lock().unwrap_or_else(|p| p.into_inner());
        head.seq - head.checkpointed
    }
}

fn short(e: &AuditError) -> &'static str {
    match e {
        AuditError::Store(_) => "the store failed",
        AuditError::Hsm(_) => "the audit key in the HSM failed",
    }
}

/// SHA-256 of a request message, hex.
pub fn request_hash(msg: &impl prost::Message) -> String {
    hex::encode(sha2::Sha256::digest(msg.encode_to_vec()))
}
