//! The audit record of each finished job item, written before the batch commits.

use super::pass::Finished;
use super::runner::{Outcome, Runner};
use super::{JobError, JobKind};
use crate::audit::{Decision, Entry};

impl Runner {
    /// Audits what each finished item came to (retries are not outcomes), with the
    /// job's authority as the principal, durably before the results are committed: a
    /// crash in between runs the items again, which find their work done.
    pub(super) async fn audit_outcomes(
        &self,
        id: &str,
        finished: &[Finished],
    ) -> Result<(), JobError> {
        let job = self.jobs.get(id).await?;
        let action = match job.kind {
            JobKind::Resign(_) => "Resign",
            JobKind::Prune(_) => "Prune",
            JobKind::ResumeApprovals(_) => "ResumeApproval",
            JobKind::RevokeDerived(_) => "RevokeDerived",
        };
        let records: Vec<(Decision, String, String)> = finished
            .iter()
            .filter_map(|(_, _, item, outcome, _)| {
                let (decision, reason) = match outcome {
                    Outcome::Done(_) => (Decision::Allowed, format!("job {id}")),
                    Outcome::Skipped(r) => (Decision::Failed, format!("job {id}: skipped: {r}")),
                    Outcome::Failed(r) => (Decision::Failed, format!("job {id}: {r}")),
                    Outcome::Retry { .. } => return None,
                };
                Some((
                    decision,
                    reason,
                    format!("{}@{}", item.reference, item.digest),
                ))
            })
            .collect();
        let n = records.len();
        for (i, (decision, reason, target)) in records.iter().enumerate() {
            let entry = Entry {
                principal: &job.started_by,
                action,
                target,
                decision: *decision,
                reason,
                request_hash: "",
            };
            // The last one waits for the group commit that makes all of them durable.
            let written = if i + 1 == n {
                self.audit.append(entry).await
            } else {
                self.audit.append_queued(entry)
            };
            written.map_err(|e| JobError::FailedPrecondition(e.to_string()))?;
        }
        Ok(())
    }
}
