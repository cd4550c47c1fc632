//! Shared blobs (the config blob every signature manifest names) known to be in a
//! repository, so that each is uploaded once. Concurrent pushes of the same blob to the
//! same repository wait for the first instead of uploading it again at the same time
//! (the registry can then refuse a manifest naming it while the two uploads settle).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// Remembered blobs at most; then the memory starts over.
const MAX_KNOWN: usize = 16384;

/// (registry, repository, digest).
pub type BlobKey = (String, String, String);

/// Blobs known to exist, and uploads in flight.
#[derive(Debug, Default)]
pub struct KnownBlobs {
    known: Mutex<HashSet<BlobKey>>,
    inflight: Mutex<HashMap<BlobKey, Arc<tokio::sync::Mutex<()>>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl KnownBlobs {
    /// Runs `upload` unless the blob is known to be there; one upload per blob at a
    /// time. The blob is known once an upload succeeded.
    pub async fn once<E>(
        &self,
        key: BlobKey,
        upload: impl std::future::Future<Output = Result<(), E>>,
    ) -> Result<(), E> {
        if lock(&self.known).contains(&key) {
            return Ok(());
        }
        let gate = lock(&self.inflight).entry(key.clone()).or_default().clone();
        let _one = gate.lock().await;
        if lock(&self.known).contains(&key) {
            return Ok(());
        }
        let result = upload.await;
        if result.is_ok() {
            let mut known = lock(&self.known);
            if known.len() >= MAX_KNOWN {
                known.clear();
            }
            known.insert(key.clone());
        }
        lock(&self.inflight).remove(&key);
        result
    }
}
