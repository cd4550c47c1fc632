//! The prune job: once a retired version's overlap is over (policy
//! `--prune-after-overlap`), its signature layers are removed from every image the
//! active version has signed too; each removal is noted in the ledger (kind `prune`).
//! An image the active version has not signed keeps the old signature, with the reason.

use super::resign::{Resigner, outcome};
use super::runner::Outcome;
use super::{JobError, JobItem, PruneSpec};
use crate::signing::Pruned;
use crate::signing::ledger::{LedgerEntry, LedgerQuery};

impl Resigner {
    /// The next page of a prune's items: what the version signed.
    pub async fn list_prune(
        &self,
        job: &str,
        spec: &PruneSpec,
        after: &str,
    ) -> Result<(Vec<(String, JobItem)>, String), JobError> {
        let q = LedgerQuery {
            key: Some(spec.key.clone()),
            version: Some(spec.version),
            since: spec.since,
            ..Default::default()
        };
        self.list_signed(job, &q, after, &["signature"]).await
    }

    /// Removes the old version's layers from one image, with the authority `by`.
    pub async fn prune(&self, spec: &PruneSpec, by: &str, item: &JobItem) -> Outcome {
        let key = match self.keys().get(&spec.key) {
            Ok(k) => k,
            Err(e) => return Outcome::Failed(e.to_string()),
        };
        let (Some(old), Some(active)) = (key.version(spec.version), key.active()) else {
            return Outcome::Failed(format!(
                "key {:?} has no version {} or no active version",
                spec.key, spec.version
            ));
        };
        let pruned = self
            .signer()
            .prune(
                &key,
                old,
                active,
                &item.reference,
                &item.digest,
                !spec.compromised,
            )
            .await;
        match pruned {
            Ok(Pruned::NotCoSigned) => Outcome::Skipped(format!(
                "version {} of key {:?} has not signed this image; the old signature is kept",
                active.version, spec.key
            )),
            Ok(Pruned::Removed(_) | Pruned::Nothing) => {
                // Noted once (by its mark), also when a run before a crash removed it.
                let (registry, repository) = match crate::oci::ImageRef::parse(&item.reference) {
                    Ok(r) => (
                        r.parsed.registry().to_string(),
                        r.parsed.repository().to_string(),
                    ),
                    Err(e) => return Outcome::Failed(e.to_string()),
                };
                let note = LedgerEntry {
                    kind: "prune".into(),
                    registry,
                    repository,
                    digest: item.digest.clone(),
                    tag: String::new(),
                    reference: item.reference.clone(),
                    key: spec.key.clone(),
                    version: spec.version,
                    fingerprint: old.fingerprint.clone(),
                    time: crate::clock::now(),
                    requester: by.to_string(),
                    pushed_to: String::new(),
                    size: 0,
                    request_hash: String::new(),
                    derived_from: String::new(),
                };
                match self.signer().ledger().writes(&note) {
                    Ok(w) => Outcome::Done(w),
                    Err(e) => Outcome::Retry {
                        reason: e.to_string(),
                        registry_down: false,
                    },
                }
            }
            Err(e) => outcome(e),
        }
    }
}
