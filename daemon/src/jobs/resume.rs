//! Resuming approved requests as a job: each approval a crash left approved but not
//! signed is an item. Signing it again is safe: the approval's own state (approved ->
//! signed, by compare-and-swap) lets it sign once, and a request signed meanwhile is
//! skipped.

use super::runner::Outcome;
use super::{ItemState, JobItem, ResumeSpec, item_key};
use crate::approvals::{Approvals, State};
use std::sync::Arc;

/// The registry name resumed approvals are limited under (they are not one registry's).
const APPROVALS: &str = "approvals";

/// Lists and runs the items of resume jobs.
pub struct Resumer {
    approvals: Arc<Approvals>,
}

impl std::fmt::Debug for Resumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resumer").finish_non_exhaustive()
    }
}

impl Resumer {
    /// Resumes through `approvals`.
    pub fn new(approvals: Arc<Approvals>) -> Self {
        Self { approvals }
    }

    /// Every item at once (the spec names them); listing is then over.
    pub fn list(&self, job: &str, spec: &ResumeSpec) -> (Vec<(String, JobItem)>, String) {
        let items = spec
            .approvals
            .iter()
            .map(|id| {
                (
                    item_key(job, APPROVALS, id, ""),
                    JobItem {
                        registry: APPROVALS.into(),
                        reference: id.clone(),
                        digest: String::new(),
                        origin: String::new(),
                        state: ItemState::Queued,
                        reason: None,
                        attempts: 0,
                        next_attempt_at: None,
                    },
                )
            })
            .collect();
        (items, String::new())
    }

    /// Signs one approved request (the item's reference is its id).
    pub async fn run(&self, item: &JobItem) -> Outcome {
        match self.approvals.resume_one(&item.reference).await {
            Ok(r) => match r.status {
                State::Signed => Outcome::Done(Vec::new()),
                State::Approved => Outcome::Retry {
                    reason: r.error.unwrap_or_else(|| "not signed yet".into()),
                    registry_down: false,
                },
                State::Refused => Outcome::Skipped(r.error.unwrap_or_default()),
                other => Outcome::Skipped(format!("the request is {}", other.as_str())),
            },
            Err(e) => Outcome::Retry {
                reason: e.to_string(),
                registry_down: false,
            },
        }
    }
}
