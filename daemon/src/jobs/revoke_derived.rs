//! A derived signature shares the fate of its original. When a signature is condemned
//! (its version compromised since a time before it was made, or it was revoked on its
//! own), every signature re-made from it, however many re-signings away, is revoked
//! with the same reason, and with `remove` taken off its image. Items are listed from
//! the condemned originals' ledger rows and their re-signatures
//! (`Namespace::LedgerDerived`); each revokes one derived signature (idempotent: one
//! revoked already counts as done). When the job is done the revocation list is issued.

use super::resign::Resigner;
use super::runner::Outcome;
use super::{JobError, JobItem, RevokeDerivedSpec};
use crate::keys::{KeyError, rfc3339};
use crate::oci::ImageRef;
use crate::revocation::signatures::RevokedSignature;
use crate::signing::Pruned;
use crate::signing::ledger::LedgerQuery;

/// Originals listed per batch.
const PAGE: usize = 256;
/// How long listing waits for a key's re-signing items in flight before it tries later.
const SETTLE: std::time::Duration = std::time::Duration::from_secs(30);

/// Derived signatures followed from one original, at most.
const MAX_DERIVED: usize = 4096;

fn item_key(job: &str, row: &str) -> String {
    use sha2::Digest;
    let h = sha2::Sha256::digest(row.as_bytes());
    format!("{job}/{}", hex::encode(&h[..12]))
}

impl Resigner {
    /// The ledger rows of the condemned originals after `after`, and the cursor to go
    /// on from (empty: listing is over).
    async fn condemned_originals(
        &self,
        spec: &RevokeDerivedSpec,
        after: &str,
    ) -> Result<(Vec<String>, String), JobError> {
        let ledger = self.signer().ledger();
        if let Some(signature) = &spec.signature {
            if !after.is_empty() {
                return Ok((Vec::new(), String::new()));
            }
            let image =
                ImageRef::parse(signature).map_err(|e| JobError::InvalidArgument(e.to_string()))?;
            let digest = image.parsed.digest().unwrap_or_default().to_string();
            let rows = ledger
                .signature_rows(
                    &spec.key,
                    spec.version,
                    (image.parsed.registry(), image.parsed.repository(), &digest),
                )
                .await?;
            return Ok((rows, String::new()));
        }
        let q = LedgerQuery {
            key: Some(spec.key.clone()),
            version: Some(spec.version),
            since: spec.since,
            ..Default::default()
        };
        let (rows, next) = ledger.list_rows(&q, after, PAGE).await?;
        let originals = rows
            .into_iter()
            .filter(|(_, e)| e.kind == "signature")
            .map(|(row, _)| row)
            .collect();
        Ok((originals, next))
    }

    /// The next page of a job's items: the signatures derived from the next page of
    /// condemned originals, once the key's re-signing items in flight have committed.
    pub async fn list_derived(
        &self,
        job: &str,
        spec: &RevokeDerivedSpec,
        after: &str,
    ) -> Result<(Vec<(String, JobItem)>, String), JobError> {
        if after.is_empty() && !self.settled(&spec.key, SETTLE).await {
            // Items that checked their original before the revocation landed are still
            // running: list once they have committed (the runner lists again).
            return Err(JobError::FailedPrecondition(format!(
                "re-signing items of key {:?} are still in flight; listing waits for them",
                spec.key
            )));
        }
        self.derived_items(job, spec, after).await
    }

    /// The signatures derived from the next page of condemned originals, as items.
    async fn derived_items(
        &self,
        job: &str,
        spec: &RevokeDerivedSpec,
        after: &str,
    ) -> Result<(Vec<(String, JobItem)>, String), JobError> {
        let (originals, next) = self.condemned_originals(spec, after).await?;
        let ledger = self.signer().ledger();
        let mut items = Vec::new();
        for original in originals {
            // Each re-signature must name (in its MAC'd row) a row of this chain: an
            // index entry planted in the store files cannot pull another signature in.
            let mut chain = std::collections::HashSet::from([original.clone()]);
            for row in ledger.derivations(&original, MAX_DERIVED).await? {
                let e = match ledger.get(&row).await {
                    Ok(Some(e)) if chain.contains(&e.derived_from) => e,
                    Ok(_) => continue,
                    Err(err) => {
                        tracing::error!(row = %row, error = %err, "a re-signature's ledger row was refused");
                        continue;
                    }
                };
                chain.insert(row.clone());
                items.push((
                    item_key(job, &row),
                    JobItem::queued(e.registry, e.reference, e.digest, row),
                ));
            }
        }
        Ok((items, next))
    }

    /// How many signatures were derived from the condemned originals, and the first
    /// `listed` of them (`registry/repository@digest by key vN`): what an incident's dry
    /// run shows.
    pub async fn count_derived(
        &self,
        spec: &RevokeDerivedSpec,
        listed: usize,
    ) -> Result<(u64, Vec<String>), JobError> {
        let (mut count, mut shown, mut after) = (0, Vec::new(), String::new());
        loop {
            let (items, next) = self.derived_items("dry-run", spec, &after).await?;
            for (_, item) in items {
                count += 1;
                if shown.len() < listed
                    && let Some(e) = self.signer().ledger().get(&item.origin).await?
                {
                    shown.push(format!(
                        "{}/{}@{} by {} v{}",
                        e.registry, e.repository, e.digest, e.key, e.version
                    ));
                }
            }
            if next.is_empty() {
                return Ok((count, shown));
            }
            after = next;
        }
    }

    /// Revokes one derived signature (and with `remove`, takes its layer off the
    /// image), with the authority `by`.
    pub async fn revoke_derived(
        &self,
        spec: &RevokeDerivedSpec,
        by: &str,
        item: &JobItem,
    ) -> Outcome {
        let retry = |e: &dyn std::fmt::Display| Outcome::Retry {
            reason: e.to_string(),
            registry_down: false,
        };
        let e = match self.signer().ledger().get(&item.origin).await {
            Ok(Some(e)) => e,
            Ok(None) => {
                return Outcome::Skipped(format!(
                    "ledger row {} is no longer in the ledger",
                    item.origin
                ));
            }
            Err(err) => return retry(&err),
        };
        let revoked = self
            .condemnation()
            .revoked()
            .record(RevokedSignature {
                key: e.key.clone(),
                version: e.version,
                digest: e.digest.clone(),
                reason: spec.reason,
                revoked_at: crate::clock::now(),
                revoked_by: by.to_string(),
            })
            .await;
        match revoked {
            // Revoked before (by a run a crash interrupted, or on its own): it stands.
            Ok(()) | Err(KeyError::FailedPrecondition(_)) => {}
            Err(err) => return retry(&err),
        }
        tracing::warn!(key = %e.key, version = e.version, digest = %e.digest, original = ?spec.signature, compromised_since = ?spec.since.map(rfc3339), "a signature derived from a condemned one was revoked");
        if !spec.remove {
            return Outcome::Done(Vec::new());
        }
        let key = match self.keys().get(&e.key) {
            Ok(k) => k,
            Err(err) => return Outcome::Failed(err.to_string()),
        };
        let Some(version) = key.version(e.version) else {
            return Outcome::Skipped(format!("key {:?} has no version {}", e.key, e.version));
        };
        match self
            .signer()
            .prune(&key, version, version, &item.reference, &item.digest, false)
            .await
        {
            Ok(Pruned::Removed(_) | Pruned::Nothing | Pruned::NotCoSigned) => {
                Outcome::Done(Vec::new())
            }
            Err(err) => super::resign::outcome(err),
        }
    }
}
