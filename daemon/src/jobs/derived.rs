//! The one rule for every signature Keyward derives: a signature that is not the
//! direct answer to a request (a rotation's campaign, `keyward resign`, an incident's
//! re-signing, any kind added later) is made only if, when its item runs (not when the
//! job listed it):
//!
//! - the original ledger entry is there, is the signature the item names, and passes
//!   its checks;
//! - the original is not condemned: not revoked on its own, not made by a version
//!   compromised at the time it signed, not derived from a signature that is
//!   (`revocation::condemned`);
//! - the image is inside the key's current scope, and the key still signs images;
//! - the key's current policy allows it (a rotation's campaign stops re-signing once
//!   `resign_on_rotate` is turned off).
//!
//! Otherwise the item is skipped with the reason, which `keyward jobs show` prints.
//! The runner asks [`admit`] before it runs any item of any kind; [`derivation`] is where
//! a kind says whether its items derive signatures.

use super::runner::Outcome;
use super::{JobItem, JobKind, ResignSpec};
use crate::keys::KeyError;
use crate::oci::ImageRef;
use crate::revocation::condemned::Condemnation;
use crate::signing::ledger::{LedgerEntry, mark};

/// Whether a job kind's items derive signatures, and from what.
#[derive(Debug)]
pub enum Derivation<'a> {
    /// Each item re-makes the signature of `spec.key` version `spec.from_version`
    /// named by the item.
    Resign(&'a ResignSpec),
    /// The items make no signature derived from another (the reason, for readers).
    None(&'static str),
}

/// What `kind`'s items derive. A new job kind must answer here (the match is
/// exhaustive), and a unit test names every kind.
pub fn derivation(kind: &JobKind) -> Derivation<'_> {
    match kind {
        JobKind::Resign(spec) => Derivation::Resign(spec),
        JobKind::Prune(_) => Derivation::None("removes signature layers; signs nothing"),
        JobKind::ResumeApprovals(_) => Derivation::None(
            "signs approved requests as asked; approvals::execute re-checks each one as a request",
        ),
        JobKind::RevokeDerived(_) => {
            Derivation::None("revokes and removes derived signatures; signs nothing")
        }
    }
}

/// The original signature an item re-makes, found when the item runs.
#[derive(Debug, Clone)]
pub struct Original {
    /// Its ledger row.
    pub row: String,
    /// The entry.
    pub entry: LedgerEntry,
}

fn retry(e: impl std::fmt::Display) -> Outcome {
    Outcome::Retry {
        reason: e.to_string(),
        registry_down: false,
    }
}

/// Whether `item` of a job of `kind` may run now: `Ok(Some(original))` for an item
/// that re-makes `original`, `Ok(None)` for an item of a kind that derives nothing,
/// or the outcome the item comes to instead (skipped with the reason; retried when a
/// record could not be read).
pub async fn admit(
    rule: &Condemnation,
    kind: &JobKind,
    item: &JobItem,
) -> Result<Option<Original>, Outcome> {
    let spec = match derivation(kind) {
        Derivation::Resign(spec) => spec,
        Derivation::None(_) => return Ok(None),
    };
    let original = find_original(rule, spec, item).await?;
    if let Some(why) = rule.check(&original.entry).await.map_err(retry)? {
        return Err(Outcome::Skipped(format!("not re-signed: {why}")));
    }
    let key = match rule.keys().get(&spec.key) {
        Ok(k) => k,
        Err(KeyError::NotFound(_)) => {
            return Err(Outcome::Skipped(format!(
                "not re-signed: key {:?} no longer exists",
                spec.key
            )));
        }
        Err(e) => return Err(retry(e)),
    };
    if spec.retire_when_done && !key.rotation.resign {
        return Err(Outcome::Skipped(format!(
            "not re-signed: key {:?}'s policy no longer re-signs on rotation (resign_on_rotate is off)",
            spec.key
        )));
    }
    let repository = format!("{}/{}", original.entry.registry, original.entry.repository);
    if let Err(why) = crate::signing::in_scope(&key, &repository) {
        return Err(Outcome::Skipped(format!(
            "not re-signed: outside the key's current scope: {why}"
        )));
    }
    Ok(Some(original))
}

/// The ledger entry `item` names (by its row; items listed before items named their
/// row are found by the signature's mark), checked to be the signature the item says.
async fn find_original(
    rule: &Condemnation,
    spec: &ResignSpec,
    item: &JobItem,
) -> Result<Original, Outcome> {
    let ledger = rule.ledger();
    let row = if item.origin.is_empty() {
        let image = ImageRef::parse(&item.reference)
            .map_err(|e| Outcome::Skipped(format!("not re-signed: {e}")))?;
        let m = mark(
            &spec.key,
            spec.from_version,
            image.parsed.registry(),
            image.parsed.repository(),
            &item.digest,
            &image.identity(),
        );
        ledger.marked_row(&m).await.map_err(retry)?
    } else {
        Some(item.origin.clone())
    };
    let gone = || {
        Outcome::Skipped(format!(
            "not re-signed: the ledger holds no signature of {}@{} by key {:?} v{} to re-make",
            item.reference, item.digest, spec.key, spec.from_version
        ))
    };
    let row = row.ok_or_else(gone)?;
    let entry = match ledger.get(&row).await {
        Ok(Some(e)) => e,
        Ok(None) => return Err(gone()),
        Err(crate::store::StoreError::Corrupt { key, detail }) => {
            tracing::error!(row = %key, %detail, "a ledger row was refused; nothing is derived from it");
            return Err(Outcome::Skipped(format!(
                "not re-signed: the original's ledger row {key} was refused: {detail}"
            )));
        }
        Err(e) => return Err(retry(e)),
    };
    let matches = matches!(entry.kind.as_str(), "signature" | "attestation")
        && entry.key == spec.key
        && entry.version == spec.from_version
        && entry.digest == item.digest
        && entry.reference == item.reference;
    if !matches {
        tracing::error!(row = %row, job_item = %item.reference, "a job item names a ledger row of another signature");
        return Err(Outcome::Skipped(format!(
            "not re-signed: ledger row {row} is not the signature of {}@{} by key {:?} v{}",
            item.reference, item.digest, spec.key, spec.from_version
        )));
    }
    Ok(Original { row, entry })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::{PruneSpec, ResumeSpec, RevokeDerivedSpec};

    /// One job of every kind. The match below is exhaustive: a new kind does not
    /// compile until it is added here, and then the test asks what it derives.
    fn one_of_each() -> Vec<JobKind> {
        let all = vec![
            JobKind::Resign(ResignSpec {
                key: "k".into(),
                from_version: 1,
                repository: None,
                since: None,
                until: None,
                retire_when_done: true,
            }),
            JobKind::Prune(PruneSpec {
                key: "k".into(),
                version: 1,
                since: None,
                compromised: false,
            }),
            JobKind::ResumeApprovals(ResumeSpec { approvals: vec![] }),
            JobKind::RevokeDerived(RevokeDerivedSpec {
                key: "k".into(),
                version: 1,
                since: None,
                signature: None,
                remove: true,
                reason: crate::keys::RevocationReason::KeyCompromise,
            }),
        ];
        for k in &all {
            match k {
                JobKind::Resign(_)
                | JobKind::Prune(_)
                | JobKind::ResumeApprovals(_)
                | JobKind::RevokeDerived(_) => {}
            }
        }
        all
    }

    #[test]
    fn every_job_kind_says_whether_it_derives_signatures() {
        let kinds = one_of_each();
        let names: Vec<&str> = kinds.iter().map(JobKind::name).collect();
        assert_eq!(
            names,
            ["resign", "prune", "resume-approvals", "revoke-derived"]
        );
        for k in &kinds {
            let d = derivation(k);
            match k.name() {
                // Re-signing derives: its items go through the rule.
                "resign" => assert!(matches!(d, Derivation::Resign(_)), "{d:?}"),
                other => assert!(
                    matches!(d, Derivation::None(why) if !why.is_empty()),
                    "{other}: a kind that derives nothing says why"
                ),
            }
        }
    }
}
