//! Publishing revocation lists to registries, through outages. Each target's record
//! holds the highest sequence it has; every list is stored by sequence in the
//! transaction that issues it, so what a target still needs follows from committed
//! records alone (the outbox): after a crash or an outage the publisher pushes every
//! missed list, oldest first, and moves `latest` last. Pushing a list twice writes the
//! same manifest: a crash between a push and its record costs nothing.

use super::{IssuedList, Revocations};
use crate::keys::KeyError;
use crate::oci::{ImageRef, Registries, RegistryError, sha256_digest};
use crate::store::integrity::ProtectedStore;
use crate::store::{Expect, Namespace};
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

/// The artifact type of a published list.
pub const ARTIFACT_TYPE: &str = "application/vnd.keyward.revocations.v1+json";
/// The media type of the list's signature layer (base64 DER ECDSA P-256).
pub const SIGNATURE_TYPE: &str = "application/vnd.keyward.revocations.signature.v1+base64";
/// The media type of the CRL layer.
pub const CRL_TYPE: &str = "application/pkix-crl";
const EMPTY_TYPE: &str = "application/vnd.oci.empty.v1+json";
const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// One `[[revocation.publish]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishTarget {
    /// `registry/repository` that receives every list (tags `latest` and `seq-N`).
    pub repository: String,
}

/// What the store keeps per target.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TargetRecord {
    /// `registry/repository`.
    pub repository: String,
    /// The highest sequence pushed (0: none).
    pub published: u64,
    /// The last failure, until a push succeeds.
    pub last_error: Option<String>,
    /// When a push was last tried.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_attempt: Option<OffsetDateTime>,
    /// Failures in a row.
    #[serde(default)]
    pub failures: u32,
}

fn record_key(repository: &str) -> String {
    format!("revocation-targets/{repository}")
}

/// Checks a target's repository: `registry/repository`, no tag or digest.
pub fn check_target(repository: &str) -> Result<(), String> {
    let r = ImageRef::parse(&format!("{repository}:latest")).map_err(|e| {
        format!(
            "[[revocation.publish]] repository {repository:?}: {e} (write registry/org/repository)"
        )
    })?;
    if r.repository() != repository {
        return Err(format!(
            "[[revocation.publish]] repository {repository:?} is not registry/repository (it reads as {}); name the registry host, without a tag",
            r.repository()
        ));
    }
    Ok(())
}

/// Pushes lists to every target.
pub struct Publisher {
    lists: Arc<Revocations>,
    store: ProtectedStore,
    registries: Registries,
    targets: Vec<String>,
    retry_max: Duration,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("targets", &self.targets)
            .finish_non_exhaustive()
    }
}

fn descriptor(media_type: &str, data: &[u8]) -> serde_json::Value {
    serde_json::json!({
        "mediaType": media_type,
        "digest": sha256_digest(data),
        "size": data.len(),
    })
}

impl Publisher {
    /// A publisher of `lists` to `targets`; a target that keeps failing is tried at
    /// most every `retry_max`.
    pub fn new(
        lists: Arc<Revocations>,
        store: ProtectedStore,
        registries: Registries,
        targets: Vec<String>,
        retry_max: Duration,
    ) -> Self {
        Self {
            lists,
            store,
            registries,
            targets,
            retry_max,
        }
    }

    /// Every target with what it holds.
    pub async fn status(&self) -> Result<Vec<TargetRecord>, KeyError> {
        let mut out = Vec::new();
        for t in &self.targets {
            let rec = self
                .store
                .get::<TargetRecord>(Namespace::Meta, &record_key(t))
                .await?
                .unwrap_or_else(|| TargetRecord {
                    repository: t.clone(),
                    ..Default::default()
                });
            out.push(rec);
        }
        Ok(out)
    }

    /// Pushes one list: its three layers, then the manifest under `seq-N`, and under
    /// `latest` when it is the newest.
    async fn push(&self, repository: &str, l: &IssuedList, newest: bool) -> Result<(), String> {
        let at =
            |tag: &str| ImageRef::parse(&format!("{repository}:{tag}")).map_err(|e| e.to_string());
        let image = at("latest")?;
        let registry_err = |e: RegistryError| e.to_string();
        let crl = base64::engine::general_purpose::STANDARD
            .decode(&l.crl)
            .map_err(|e| format!("the stored CRL is not base64: {e}"))?;
        let layers = [
            (ARTIFACT_TYPE, l.document.as_bytes().to_vec()),
            (SIGNATURE_TYPE, l.signature.as_bytes().to_vec()),
            (CRL_TYPE, crl),
        ];
        let empty = b"{}".to_vec();
        self.registries
            .push_blob(&image.parsed, empty.clone(), true)
            .await
            .map_err(registry_err)?;
        let mut descriptors = Vec::new();
        for (media_type, data) in layers {
            descriptors.push(descriptor(media_type, &data));
            self.registries
                .push_blob(&image.parsed, data, false)
                .await
                .map_err(registry_err)?;
        }
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "artifactType": ARTIFACT_TYPE,
            "config": descriptor(EMPTY_TYPE, &empty),
            "layers": descriptors,
            "annotations": {
                "dev.keyward/sequence": l.list.sequence.to_string(),
                "org.opencontainers.image.created": l.list.issued_at,
            },
        });
        let bytes = serde_json::to_vec(&manifest).map_err(|e| e.to_string())?;
        let mut tags = vec![format!("seq-{}", l.list.sequence)];
        if newest {
            tags.push("latest".into());
        }
        for tag in tags {
            self.registries
                .push_manifest(&at(&tag)?.parsed, bytes.clone(), MANIFEST_TYPE)
                .await
                .map_err(registry_err)?;
        }
        Ok(())
    }

    /// Brings one target up to `current`; returns when to try again if it failed.
    async fn catch_up(&self, repository: &str, current: u64) -> Result<Option<Duration>, KeyError> {
        let key = record_key(repository);
        let (mut rec, rev) = match self
            .store
            .get_rev::<TargetRecord>(Namespace::Meta, &key)
            .await?
        {
            Some((r, rev)) => (r, Expect::At(rev)),
            None => (
                TargetRecord {
                    repository: repository.to_string(),
                    ..Default::default()
                },
                Expect::Absent,
            ),
        };
        let now = crate::clock::now();
        if rec.published >= current {
            return Ok(None);
        }
        if rec.failures > 0
            && let Some(last) = rec.last_attempt
        {
            let wait = self.backoff(rec.failures);
            let due = last + wait;
            if due > now {
                return Ok(Some(Duration::try_from(due - now).unwrap_or(wait)));
            }
        }
        let mut result = Ok(());
        for sequence in rec.published + 1..=current {
            let Some(list) = self.lists.by_sequence(sequence).await? else {
                continue; // issued before lists were kept by sequence
            };
            if let Err(e) = self.push(repository, &list, sequence == current).await {
                result = Err(e);
                break;
            }
            rec.published = sequence;
        }
        rec.last_attempt = Some(now);
        let retry = match result {
            Ok(()) => {
                if rec.failures > 0 {
                    tracing::info!(
                        repository,
                        sequence = current,
                        "revocation list published after failures"
                    );
                }
                rec.failures = 0;
                rec.last_error = None;
                None
            }
            Err(e) => {
                rec.failures += 1;
                tracing::warn!(repository, error = %e, failures = rec.failures, "the revocation list could not be published; trying again");
                rec.last_error = Some(e);
                Some(self.backoff(rec.failures))
            }
        };
        // Only this daemon's publisher writes a target record; a lost race means
        // another daemon published meanwhile, which the next round reads.
        self.store.put_if(Namespace::Meta, &key, &rec, rev).await?;
        Ok(retry)
    }

    fn backoff(&self, failures: u32) -> Duration {
        let d = Duration::from_millis(250).saturating_mul(1 << failures.min(16));
        d.min(self.retry_max)
    }

    /// One round over every target; returns how long until the earliest retry.
    pub async fn round(&self) -> Option<Duration> {
        let current = self.lists.current()?.list.sequence;
        let mut wait: Option<Duration> = None;
        for t in &self.targets {
            match self.catch_up(t, current).await {
                Ok(Some(w)) => wait = Some(wait.map_or(w, |x| x.min(w))),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(repository = %t, error = %e, "cannot read or record a revocation target");
                    wait = Some(self.retry_max);
                }
            }
        }
        wait
    }

    /// Publishes until `stop`: after each new list, and again when a failed target is
    /// due.
    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        if self.targets.is_empty() {
            // Nothing to publish to: idle until the daemon stops (the supervisor
            // restarts a task that ends early).
            let _ = stop.wait_for(|s| *s).await;
            return;
        }
        loop {
            let issued = self.lists.issued();
            let wait = self.round().await.unwrap_or(Duration::from_secs(30));
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                _ = issued => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}
