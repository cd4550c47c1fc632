//! The re-signing campaign: every image the ledger shows signed by one key version is
//! signed again with the key's active version. Items are listed from the ledger's
//! index by key and version, a page at a time; nothing holds every image.

use super::derived::Original;
use super::runner::Outcome;
use super::{JobError, JobItem, ResignSpec, item_key};
use crate::authz::campaign_permit;
use crate::hsm::HsmError;
use crate::keys::{KeyError, KeyRegistry};
use crate::oci::RegistryError;
use crate::revocation::Revocations;
use crate::revocation::condemned::Condemnation;
use crate::signing::ledger::LedgerQuery;
use crate::signing::{ImageError, ImageSigner, NotResigned};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Items listed per batch (each batch is one commit).
const PAGE: usize = 256;

/// Does the work of re-signing campaigns.
pub struct Resigner {
    signer: Arc<ImageSigner>,
    /// Whether a signature is condemned: every item's original is checked when it runs.
    condemnation: Condemnation,
    /// The revocation list, issued again when derived signatures were revoked.
    lists: Option<Arc<Revocations>>,
    /// Re-signing items in flight per key.
    in_flight: KeysInFlight,
}

/// Re-signing items in flight, per key: each is counted (with a ticket in the order
/// items started) from before it checks its original until its result is committed (or
/// dropped). A revocation's `revoke-derived` job waits until every item of the key that
/// started before it asked has finished, so that a re-signature made by an item that
/// checked just before the revocation is committed, and listed, before the job lists;
/// items that start later check after the revocation and need no wait.
#[derive(Debug, Default, Clone)]
pub struct KeysInFlight(Arc<std::sync::Mutex<InFlightState>>);

#[derive(Debug, Default)]
struct InFlightState {
    next: u64,
    held: std::collections::HashMap<String, std::collections::BTreeSet<u64>>,
}

/// One item counted in a [`KeysInFlight`] until it drops.
pub struct InFlight {
    key: String,
    ticket: u64,
    counts: KeysInFlight,
}

impl std::fmt::Debug for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InFlight").field("key", &self.key).finish()
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut st = self.counts.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(set) = st.held.get_mut(&self.key) {
            set.remove(&self.ticket);
            if set.is_empty() {
                st.held.remove(&self.key);
            }
        }
    }
}

impl KeysInFlight {
    /// Counts an item of `key` until the guard drops.
    pub fn hold(&self, key: &str) -> InFlight {
        let mut st = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let ticket = st.next;
        st.next += 1;
        st.held.entry(key.to_string()).or_default().insert(ticket);
        InFlight {
            key: key.to_string(),
            ticket,
            counts: self.clone(),
        }
    }

    /// Waits (up to `limit`) until every item of `key` that started before this call
    /// has finished; whether they have.
    pub async fn settled(&self, key: &str, limit: std::time::Duration) -> bool {
        let before = self.0.lock().unwrap_or_else(|p| p.into_inner()).next;
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let busy = self
                .0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .held
                .get(key)
                .and_then(|set| set.first().copied())
                .is_some_and(|first| first < before);
            if !busy {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

impl std::fmt::Debug for Resigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resigner").finish_non_exhaustive()
    }
}

/// The ledger query a campaign lists from.
pub fn query(spec: &ResignSpec) -> Result<LedgerQuery, String> {
    let repository = spec
        .repository
        .as_deref()
        .map(glob::Pattern::new)
        .transpose()
        .map_err(|e| format!("invalid repository pattern: {e}"))?;
    Ok(LedgerQuery {
        key: Some(spec.key.clone()),
        version: Some(spec.from_version),
        since: spec.since,
        until: spec.until,
        repository,
    })
}

/// What an error of one item means for the campaign.
pub(super) fn outcome(e: ImageError) -> Outcome {
    let reason = e.to_string();
    match e {
        // Only a registry that cannot be reached is down; a 5xx for one object (a torn
        // upload, a corrupt link) is that item's failure, retried up to `max_attempts`.
        ImageError::Registry(RegistryError::Unavailable { .. } | RegistryError::Timeout { .. }) => {
            Outcome::Retry {
                reason,
                registry_down: true,
            }
        }
        ImageError::Registry(RegistryError::Protocol { .. }) => Outcome::Retry {
            reason,
            registry_down: false,
        },
        ImageError::Registry(RegistryError::NotFound(_)) => Outcome::Skipped(reason),
        ImageError::PermissionDenied(_) => {
            Outcome::Skipped(format!("outside the key's current scope: {reason}"))
        }
        ImageError::Key(KeyError::Hsm(
            HsmError::PoolClosed | HsmError::Device { .. } | HsmError::WrongPin(_),
        ))
        | ImageError::Store(_) => Outcome::Retry {
            reason,
            registry_down: false,
        },
        _ => Outcome::Failed(reason),
    }
}

impl Resigner {
    /// Re-signs with `signer`, deriving only from what `condemnation` does not condemn.
    pub fn new(signer: Arc<ImageSigner>, condemnation: Condemnation) -> Self {
        Self {
            signer,
            condemnation,
            lists: None,
            in_flight: KeysInFlight::default(),
        }
    }

    /// Issues `lists` again when a job revoked signatures.
    pub fn with_lists(mut self, lists: Arc<Revocations>) -> Self {
        self.lists = Some(lists);
        self
    }

    /// Issues the revocation list after revocations (a failure is logged, and the
    /// refresher issues it later).
    pub(super) async fn lists_changed(&self) {
        if let Some(l) = &self.lists {
            l.issue_after_change().await;
        }
    }

    /// The check of every derived signature's original.
    pub(super) fn condemnation(&self) -> &Condemnation {
        &self.condemnation
    }

    pub(super) fn signer(&self) -> &Arc<ImageSigner> {
        &self.signer
    }

    pub(super) fn keys(&self) -> &Arc<KeyRegistry> {
        self.signer.keys()
    }

    /// Counts a re-signing item of `key` in flight until the guard drops.
    pub(super) fn in_flight(&self, key: &str) -> InFlight {
        self.in_flight.hold(key)
    }

    /// Waits (up to `limit`) until no re-signing item of `key` is in flight.
    pub(super) async fn settled(&self, key: &str, limit: std::time::Duration) -> bool {
        self.in_flight.settled(key, limit).await
    }

    /// The next page of items after the ledger cursor `after`, and the cursor to go
    /// on from (empty: listing is over).
    pub async fn list(
        &self,
        job: &str,
        spec: &ResignSpec,
        after: &str,
    ) -> Result<(Vec<(String, JobItem)>, String), JobError> {
        let q = query(spec).map_err(JobError::InvalidArgument)?;
        self.list_signed(job, &q, after, &["signature", "attestation"])
            .await
    }

    /// The image signatures the ledger shows for `q`, as items: a page after `after`,
    /// and the cursor to go on from.
    pub(super) async fn list_signed(
        &self,
        job: &str,
        q: &LedgerQuery,
        after: &str,
        kinds: &[&str],
    ) -> Result<(Vec<(String, JobItem)>, String), JobError> {
        let (entries, next) = self.signer.ledger().list_rows(q, after, PAGE).await?;
        let items = entries
            .into_iter()
            .filter(|(_, e)| kinds.contains(&e.kind.as_str()))
            .map(|(row, e)| {
                // One item per image and kind: its signature, and its attestations.
                let what = match e.kind.as_str() {
                    "signature" => e.reference.clone(),
                    kind => format!("{}\n{kind}", e.reference),
                };
                (
                    item_key(job, &e.registry, &what, &e.digest),
                    JobItem::queued(e.registry, e.reference, e.digest, row),
                )
            })
            .collect();
        Ok((items, next))
    }

    /// Re-signs one image with the key's active version, with the authority of `by`:
    /// `original` is the signature it re-makes, which `derived::admit` found and
    /// checked as the item started. The new ledger entry names it.
    pub async fn run(
        &self,
        job: &str,
        spec: &ResignSpec,
        by: &str,
        item: &JobItem,
        original: &Original,
    ) -> Outcome {
        let key = match self.keys().get(&spec.key) {
            Ok(k) => k,
            Err(e) => return Outcome::Failed(e.to_string()),
        };
        let permit = match campaign_permit(key, by) {
            Ok(p) => p,
            Err(why) => return Outcome::Failed(why),
        };
        if permit.version().number() == spec.from_version {
            return Outcome::Skipped(format!(
                "version {} is still the active version of key {:?}; nothing to re-sign",
                spec.from_version, spec.key
            ));
        }
        let annotations = BTreeMap::from([
            ("dev.keyward/job".to_string(), job.to_string()),
            (
                "dev.keyward/resigns".to_string(),
                format!("{}/v{}", spec.key, spec.from_version),
            ),
        ]);
        let made = if original.entry.kind == "attestation" {
            let Some(old) = permit.key().version(spec.from_version) else {
                return Outcome::Skipped(format!(
                    "key {:?} has no version {}",
                    spec.key, spec.from_version
                ));
            };
            self.signer
                .reattest(&permit, old, &item.reference, &item.digest, &annotations)
                .await
        } else {
            self.signer
                .resign(&permit, &item.reference, &item.digest, &annotations)
                .await
        };
        match made {
            Ok(Ok(signed)) => match signed.ledger {
                // Found made and recorded (by an earlier run): nothing to add.
                Some(entry) if self.signer.ledger().has(&entry).await.unwrap_or(false) => {
                    Outcome::Done(Vec::new())
                }
                Some(mut entry) => {
                    entry.derived_from = original.row.clone();
                    match self.signer.ledger().writes(&entry) {
                        Ok(w) => Outcome::Done(w),
                        Err(e) => Outcome::Retry {
                            reason: e.to_string(),
                            registry_down: false,
                        },
                    }
                }
                None => Outcome::Done(Vec::new()),
            },
            Ok(Err(NotResigned::Gone(why))) => Outcome::Skipped(why),
            Err(e) => outcome(e),
        }
    }

    /// An item the derived-signature rule refused: a re-signature an interrupted run
    /// of it pushed, and never recorded, is taken off the image (it would verify with
    /// the new version although its original is condemned).
    pub async fn refused(&self, spec: &ResignSpec, item: &JobItem, refused: Outcome) -> Outcome {
        let Outcome::Skipped(reason) = refused else {
            return refused;
        };
        let Ok(key) = self.keys().get(&spec.key) else {
            return Outcome::Skipped(reason);
        };
        let Some(active) = key.active().filter(|v| v.version != spec.from_version) else {
            return Outcome::Skipped(reason);
        };
        match self
            .signer
            .withdraw_unrecorded(&key, active, &item.reference, &item.digest)
            .await
        {
            Ok(0) => Outcome::Skipped(reason),
            Ok(_) => Outcome::Skipped(format!(
                "{reason}; the unrecorded re-signature an interrupted run pushed was removed"
            )),
            Err(e) => outcome(e),
        }
    }

    /// At the end of a campaign a rotation started, the old version is retired.
    pub async fn finished(&self, spec: &ResignSpec) -> Result<(), JobError> {
        if !spec.retire_when_done {
            return Ok(());
        }
        self.keys()
            .retire(&spec.key, spec.from_version)
            .await
            .map_err(|e| JobError::FailedPrecondition(e.to_string()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::KeysInFlight;
    use std::time::Duration;

    #[tokio::test]
    async fn a_key_is_settled_only_once_every_item_of_it_has_dropped() {
        let counts = KeysInFlight::default();
        let (a1, a2, b) = (counts.hold("a"), counts.hold("a"), counts.hold("b"));
        assert!(!counts.settled("a", Duration::from_millis(50)).await);
        drop(a1);
        assert!(!counts.settled("a", Duration::from_millis(50)).await);
        let waiter = {
            let counts = counts.clone();
            tokio::spawn(async move { counts.settled("a", Duration::from_secs(5)).await })
        };
        drop(a2);
        assert!(waiter.await.unwrap(), "settled once the last item dropped");
        assert!(!counts.settled("b", Duration::from_millis(10)).await);
        drop(b);
        assert!(counts.settled("b", Duration::from_millis(10)).await);
        assert!(counts.settled("never", Duration::ZERO).await);
        // An item that starts while one waits is not waited for.
        let early = counts.hold("c");
        let waiter = {
            let counts = counts.clone();
            tokio::spawn(async move { counts.settled("c", Duration::from_secs(5)).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let _late = counts.hold("c");
        drop(early);
        assert!(
            waiter.await.unwrap(),
            "waited for an item that started later"
        );
    }
}
