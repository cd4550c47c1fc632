//! Jobs: work that outlives a request (re-signing campaigns, and pruning a retired
//! version's signatures after its overlap). A job and each of
//! its items are records in the store; the runner (`runner.rs`) lists a job's items in
//! batches, each committed with the listing cursor, then runs them and commits each
//! item's result with the job's counts in one transaction. `kill -9` at any point
//! loses nothing: a restart lists from the cursor (an item listed twice is one item)
//! and runs what is still queued; running an item again finds its work already in the
//! registry and does not repeat it.
//!
//! Every change of a job record is a compare-and-swap, so a user's `pause` and the
//! runner's progress never overwrite each other.

pub mod derived;
mod outcomes;
mod pass;
mod prune;
mod record;
pub mod resign;
pub mod resume;
mod revoke_derived;
pub mod rotation;
mod runner;
pub mod schedule;
mod trim;

pub use record::{
    ItemState, JobItem, JobKind, JobRecord, JobState, PruneSpec, ResignSpec, ResumeSpec,
    RevokeDerivedSpec, item_key, new_id,
};
pub use runner::{JobSettings, Outcome, Runner};

use crate::store::integrity::{IntegrityError, ProtectedStore};
use crate::store::{Expect, Namespace, Revision, StoreError, to_json};
use std::sync::Arc;
use time::OffsetDateTime;

/// Why a job operation failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// No such job.
    #[error("job {0:?} not found")]
    NotFound(String),
    /// The job is not in a state that allows this.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The request is malformed.
    #[error("{0}")]
    InvalidArgument(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A job record failed its integrity check, or the MAC key failed.
    #[error(transparent)]
    Integrity(#[from] IntegrityError),
}

/// Jobs in the store, and a bell that wakes the runner when one is added or resumed.
pub struct Jobs {
    store: ProtectedStore,
    wake: Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for Jobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jobs").finish_non_exhaustive()
    }
}

fn now() -> OffsetDateTime {
    crate::clock::now()
}

/// A page of failures: items skipped or failed, with their reasons.
pub type Failures = Vec<JobItem>;

impl Jobs {
    /// Jobs over the store.
    pub fn new(store: ProtectedStore) -> Self {
        Self {
            store,
            wake: Arc::new(tokio::sync::Notify::new()),
        }
    }

    pub(crate) fn store(&self) -> &ProtectedStore {
        &self.store
    }

    pub(crate) fn bell(&self) -> Arc<tokio::sync::Notify> {
        self.wake.clone()
    }

    /// Queues a job; the runner picks it up at once.
    pub async fn start(
        &self,
        kind: JobKind,
        started_by: &str,
        reason: String,
    ) -> Result<JobRecord, JobError> {
        let id = new_id().map_err(JobError::FailedPrecondition)?;
        let rec = JobRecord::new(id.clone(), kind, started_by, reason);
        if !self
            .store
            .put_if(Namespace::Jobs, &id, &rec, Expect::Absent)
            .await?
        {
            return Err(JobError::FailedPrecondition(format!(
                "job id {id} is taken; try again"
            )));
        }
        tracing::info!(job = %id, kind = rec.kind.name(), started_by, reason = %rec.reason, "job queued");
        self.wake.notify_one();
        Ok(rec)
    }

    /// A job with its revision.
    pub async fn get_rev(&self, id: &str) -> Result<(JobRecord, Revision), JobError> {
        match self.store.get_rev::<JobRecord>(Namespace::Jobs, id).await? {
            Some((rec, rev)) if rec.id == id => Ok((rec, rev)),
            Some(_) => Err(JobError::FailedPrecondition(format!(
                "the stored record of job {id:?} names another job; it is not used"
            ))),
            None => Err(JobError::NotFound(id.to_string())),
        }
    }

    /// A job.
    pub async fn get(&self, id: &str) -> Result<JobRecord, JobError> {
        Ok(self.get_rev(id).await?.0)
    }

    /// Every job (newest first), or those in one state. A job record that fails its
    /// integrity check is left out and logged.
    pub async fn list(&self, state: Option<JobState>) -> Result<Vec<JobRecord>, JobError> {
        let mut out = Vec::new();
        for (id, rec) in self.store.list::<JobRecord>(Namespace::Jobs).await? {
            match rec {
                Ok(rec) if rec.id == id => {
                    if state.is_none_or(|s| s == rec.state) {
                        out.push(rec);
                    }
                }
                Ok(_) => {
                    tracing::error!(job = %id, "a stored job record names another job; it is not used")
                }
                Err(e) => tracing::error!(job = %id, error = %e, "job record refused"),
            }
        }
        out.sort_by_key(|j| std::cmp::Reverse(j.created_at));
        Ok(out)
    }

    /// A page of jobs (in `state`, when given), newest first for ids made since ids
    /// carry their time: at most `limit` records read after the id `after`, and the id
    /// to go on from (empty on the last page).
    pub async fn page(
        &self,
        state: Option<JobState>,
        after: &str,
        limit: usize,
    ) -> Result<(Vec<JobRecord>, String), JobError> {
        let found = self
            .store
            .scan_prefix::<JobRecord>(Namespace::Jobs, "job-", after, limit)
            .await?;
        let next = match found.last() {
            Some((k, _)) if found.len() == limit => k.clone(),
            _ => String::new(),
        };
        let mut out = Vec::new();
        for (id, rec) in found {
            match rec {
                Ok(rec) if rec.id == id => {
                    if state.is_none_or(|s| s == rec.state) {
                        out.push(rec);
                    }
                }
                Ok(_) => {
                    tracing::error!(job = %id, "a stored job record names another job; it is not used")
                }
                Err(e) => tracing::error!(job = %id, error = %e, "job record refused"),
            }
        }
        Ok((out, next))
    }

    /// Items of a job that were skipped or failed, in item order: at most `limit`
    /// after `after` (an item key), and the key to go on from (empty at the end).
    pub async fn failures(
        &self,
        id: &str,
        after: &str,
        limit: usize,
    ) -> Result<(Failures, String), JobError> {
        let mut cursor = after.to_string();
        let mut out = Vec::new();
        loop {
            let (page, last) = self.failure_page(id, &cursor).await?;
            for (key, item) in page {
                cursor = key;
                let item = item?;
                // A failure record whose item was re-queued says so.
                if matches!(item.state, ItemState::Skipped | ItemState::Failed) {
                    out.push(item);
                    if out.len() == limit {
                        return Ok((out, cursor));
                    }
                }
            }
            if last {
                return Ok((out, String::new()));
            }
        }
    }

    /// A page of a job's failure records after `cursor`, and whether it is the last.
    async fn failure_page(
        &self,
        id: &str,
        cursor: &str,
    ) -> Result<(Vec<(String, Result<JobItem, IntegrityError>)>, bool), JobError> {
        let page = self
            .store
            .scan_prefix::<JobItem>(Namespace::JobFailures, &format!("{id}/"), cursor, 256)
            .await?;
        let last = page.len() < 256;
        Ok((page, last))
    }

    /// Applies `change` to the stored job by compare-and-swap, re-reading on a race.
    pub(crate) async fn update(
        &self,
        id: &str,
        mut change: impl FnMut(&mut JobRecord) -> Result<(), JobError>,
    ) -> Result<JobRecord, JobError> {
        for _ in 0..32 {
            let (mut rec, rev) = self.get_rev(id).await?;
            change(&mut rec)?;
            rec.updated_at = now();
            if self
                .store
                .put_if(Namespace::Jobs, id, &rec, Expect::At(rev))
                .await?
            {
                return Ok(rec);
            }
        }
        Err(JobError::FailedPrecondition(format!(
            "job {id} is changing too fast to update; try again"
        )))
    }

    /// Stops a queued or running job after the items in flight; `resume` goes on.
    pub async fn pause(&self, id: &str) -> Result<JobRecord, JobError> {
        self.update(id, |j| match j.state {
            JobState::Queued | JobState::Running => {
                j.state = JobState::Paused;
                Ok(())
            }
            JobState::Paused => Ok(()),
            s => Err(JobError::FailedPrecondition(format!(
                "job {} is {}; only a queued or running job can be paused",
                j.id,
                s.as_str()
            ))),
        })
        .await
    }

    /// Goes on with a paused job.
    pub async fn resume(&self, id: &str) -> Result<JobRecord, JobError> {
        let rec = self
            .update(id, |j| match j.state {
                JobState::Paused => {
                    j.state = JobState::Queued;
                    Ok(())
                }
                JobState::Queued | JobState::Running => Ok(()),
                s => Err(JobError::FailedPrecondition(format!(
                    "job {} is {}; only a paused job can be resumed (a failed one: jobs retry)",
                    j.id,
                    s.as_str()
                ))),
            })
            .await?;
        self.wake.notify_one();
        Ok(rec)
    }

    /// Stops a job for good; items not yet run stay queued and are never run.
    pub async fn cancel(&self, id: &str) -> Result<JobRecord, JobError> {
        self.update(id, |j| {
            if j.state.is_finished() && j.state != JobState::Failed {
                return Err(JobError::FailedPrecondition(format!(
                    "job {} is already {}",
                    j.id,
                    j.state.as_str()
                )));
            }
            j.state = JobState::Cancelled;
            j.finished_at = Some(now());
            Ok(())
        })
        .await
    }

    /// Re-queues a job's failed items (not the skipped ones: nothing would change for
    /// them) and runs the job again.
    pub async fn retry(&self, id: &str) -> Result<JobRecord, JobError> {
        let job = self.get(id).await?;
        if !matches!(job.state, JobState::Failed | JobState::Done) {
            return Err(JobError::FailedPrecondition(format!(
                "job {id} is {}; retry re-queues the failed items of a finished job",
                job.state.as_str()
            )));
        }
        let mut cursor = String::new();
        loop {
            let (page, last) = self.failure_page(id, &cursor).await?;
            for (key, item) in page {
                cursor = key.clone();
                if item?.state != ItemState::Failed {
                    continue;
                }
                self.requeue(id, &key).await?;
            }
            if last {
                break;
            }
        }
        let rec = self
            .update(id, |j| {
                if j.failed == 0 && j.state == JobState::Done {
                    return Ok(());
                }
                j.state = JobState::Queued;
                j.finished_at = None;
                j.error = None;
                Ok(())
            })
            .await?;
        self.wake.notify_one();
        Ok(rec)
    }

    /// Moves one failed item back to queued and the job's count with it, in one
    /// transaction.
    async fn requeue(&self, id: &str, key: &str) -> Result<(), JobError> {
        for _ in 0..32 {
            let (job, jrev) = self.get_rev(id).await?;
            let Some((mut item, irev)) = self
                .store
                .get_rev::<JobItem>(Namespace::JobItems, key)
                .await?
            else {
                return Ok(());
            };
            if item.state != ItemState::Failed {
                return Ok(());
            }
            item.state = ItemState::Queued;
            item.attempts = 0;
            item.next_attempt_at = None;
            let mut job = job;
            job.failed = job.failed.saturating_sub(1);
            job.updated_at = now();
            let checks = vec![
                (Namespace::Jobs, id.to_string(), Expect::At(jrev)),
                (Namespace::JobItems, key.to_string(), Expect::At(irev)),
            ];
            let puts = vec![
                (Namespace::Jobs, id.to_string(), to_json(&job)?),
                (Namespace::JobItems, key.to_string(), to_json(&item)?),
                (Namespace::JobFailures, key.to_string(), to_json(&item)?),
            ];
            if self.store.commit(checks, puts, Vec::new()).await? {
                return Ok(());
            }
        }
        Err(JobError::FailedPrecondition(format!(
            "job {id} is changing too fast to retry; try again"
        )))
    }
}
