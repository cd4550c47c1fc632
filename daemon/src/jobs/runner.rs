//! The job runner: one task per runnable job, under the daemon's shutdown signal.
//! A job is driven in passes over its queued items; items run concurrently (a limit
//! per job and per registry, and a rate per registry) and their results are committed
//! in batches, each batch with the job's counts in one transaction. A registry that
//! is down (unreachable, 5xx, timeouts) holds back its own items until it is back,
//! with exponential backoff and jitter; it never fails them and never stops the job.

use super::pass::RegistryGate;
use super::resign::Resigner;
use super::resume::Resumer;
use super::{JobError, JobKind, JobRecord, JobState, Jobs};
use crate::audit::AuditLog;
use crate::store::{Expect, Namespace, to_json};
use crate::supervise::Supervisor;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// How jobs run (`[jobs]` in keywardd.toml).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobSettings {
    /// Items of one job in flight at once.
    pub concurrency: usize,
    /// Items in flight at once against one registry.
    pub per_registry: usize,
    /// Items started per second against one registry (0: no limit).
    pub rate_per_registry: f64,
    /// First retry delay, in milliseconds; it doubles per attempt.
    pub retry_base_ms: u64,
    /// Longest retry delay, in milliseconds.
    pub retry_max_ms: u64,
    /// Attempts before an item that keeps failing (not for a registry that is down)
    /// is marked failed.
    pub max_attempts: u32,
    /// How often the scheduler looks for keys due for rotation, in seconds.
    pub schedule_seconds: u64,
}

impl Default for JobSettings {
    fn default() -> Self {
        Self {
            concurrency: 16,
            per_registry: 16,
            rate_per_registry: 0.0,
            retry_base_ms: 1000,
            retry_max_ms: 300_000,
            max_attempts: 6,
            schedule_seconds: 60,
        }
    }
}

/// What running one item came to.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Done (also when it was found already done), with the records that say so
    /// (ledger entries: namespace, key, value), written with the item's result. A
    /// record in `LedgerMarks` is written only if absent: one that exists means the
    /// ledger has the signature already.
    Done(Vec<(Namespace, String, Vec<u8>)>),
    /// Not done, for a reason another attempt would not change.
    Skipped(String),
    /// Not done; another attempt needs someone to change something first.
    Failed(String),
    /// Try again later. `registry_down`: the registry is unreachable; hold back every
    /// item of that registry, and do not count the attempt.
    Retry {
        /// Why.
        reason: String,
        /// Whether the registry as a whole is down.
        registry_down: bool,
    },
}

/// Runs jobs.
pub struct Runner {
    pub(super) jobs: Arc<Jobs>,
    pub(super) resign: Arc<Resigner>,
    pub(super) resume: Arc<Resumer>,
    /// Every item's outcome is audited, with the job's authority as the principal.
    pub(super) audit: Arc<AuditLog>,
    pub(super) settings: JobSettings,
    pub(super) gates: Mutex<HashMap<String, Arc<RegistryGate>>>,
    /// Says when a job's task or an item's work panicked (log, audit, metric).
    pub(super) supervisor: Option<Supervisor>,
    /// Debug builds only: items of this kind panic (tests prove a panic is contained).
    #[cfg(debug_assertions)]
    #[doc(hidden)]
    pub panicking_kind: Option<&'static str>,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner").finish_non_exhaustive()
    }
}

impl Runner {
    /// A runner over the jobs, with the work of each kind.
    pub fn new(
        jobs: Arc<Jobs>,
        resign: Arc<Resigner>,
        resume: Arc<Resumer>,
        audit: Arc<AuditLog>,
        settings: JobSettings,
    ) -> Self {
        Self {
            jobs,
            resign,
            resume,
            audit,
            settings,
            gates: Mutex::new(HashMap::new()),
            supervisor: None,
            #[cfg(debug_assertions)]
            panicking_kind: None,
        }
    }

    /// Reports panics of jobs and items through `supervisor`.
    pub fn with_supervisor(mut self, supervisor: Supervisor) -> Self {
        self.supervisor = Some(supervisor);
        self
    }

    /// A job's task ended in a panic: said (log, audit, metric) and kept on the job
    /// record; the job is driven again after a backoff.
    async fn job_panicked(&self, id: &str, why: String) {
        let why = format!("the job's task panicked: {why}");
        if let Some(s) = &self.supervisor {
            s.failed("job", id, &why).await;
        } else {
            tracing::error!(job = %id, reason = %why, "a job's task panicked");
        }
        let _ = self
            .jobs
            .update(id, |j| {
                j.error = Some(why.clone());
                Ok(())
            })
            .await;
    }

    /// Runs every runnable job until `stop` turns true; a job added or resumed rings
    /// the bell. Jobs in flight finish their items in flight and stop.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let bell = self.jobs.bell();
        let mut running: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
        // Jobs whose task panicked wait before they are driven again (doubling).
        let mut held: HashMap<String, (tokio::time::Instant, u32)> = HashMap::new();
        loop {
            let ended: Vec<String> = running
                .iter()
                .filter(|(_, h)| h.is_finished())
                .map(|(id, _)| id.clone())
                .collect();
            for id in ended {
                let Some(handle) = running.remove(&id) else {
                    continue;
                };
                if let Err(e) = handle.await
                    && e.is_panic()
                {
                    let why = crate::supervise::panic_message(&*e.into_panic());
                    self.job_panicked(&id, why).await;
                    let n = held.get(&id).map_or(0, |h| h.1 + 1);
                    let wait = Duration::from_secs(1 << n.min(6));
                    held.insert(id, (tokio::time::Instant::now() + wait, n));
                }
            }
            match self.jobs.list(None).await {
                Ok(all) => {
                    for job in all.into_iter().filter(|j| j.state.is_runnable()) {
                        if running.contains_key(&job.id)
                            || held
                                .get(&job.id)
                                .is_some_and(|(until, _)| *until > tokio::time::Instant::now())
                        {
                            continue;
                        }
                        let (me, stop, id) = (self.clone(), stop.clone(), job.id.clone());
                        running.insert(
                            job.id,
                            tokio::spawn(async move {
                                if let Err(e) = me.drive(&id, stop).await {
                                    tracing::error!(job = %id, error = %e, "job stopped on an error; it goes on at the next start or resume");
                                }
                            }),
                        );
                    }
                }
                Err(e) => tracing::error!(error = %e, "cannot list jobs"),
            }
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                _ = bell.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
        }
        for (_, h) in running {
            let _ = h.await;
        }
    }

    /// Drives one job until it finishes, is paused or cancelled, or the daemon stops.
    async fn drive(&self, id: &str, mut stop: watch::Receiver<bool>) -> Result<(), JobError> {
        let job = self
            .jobs
            .update(id, |j| {
                if j.state == JobState::Queued {
                    j.state = JobState::Running;
                }
                Ok(())
            })
            .await?;
        if job.state != JobState::Running {
            return Ok(());
        }
        tracing::info!(job = %id, kind = job.kind.name(), "job running");
        if !job.listed {
            self.list_items(id, &stop).await?;
        }
        loop {
            if *stop.borrow() {
                return Ok(());
            }
            let pass = self.pass(id, &stop).await?;
            let job = self.jobs.get(id).await?;
            if job.state != JobState::Running {
                tracing::info!(job = %id, state = job.state.as_str(), "job stopped");
                return Ok(());
            }
            match pass {
                None => return self.finish(job).await,
                Some(wait) => {
                    tokio::select! {
                        _ = stop.wait_for(|s| *s) => return Ok(()),
                        _ = tokio::time::sleep(wait.min(Duration::from_secs(5))) => {}
                    }
                }
            }
        }
    }

    /// Lists a job's items in batches, each committed with the cursor it reached.
    async fn list_items(&self, id: &str, stop: &watch::Receiver<bool>) -> Result<(), JobError> {
        loop {
            if *stop.borrow() {
                return Ok(());
            }
            let (job, jrev) = self.jobs.get_rev(id).await?;
            if job.listed || job.state != JobState::Running {
                return Ok(());
            }
            let (found, next) = match &job.kind {
                JobKind::Resign(spec) => self.resign.list(&job.id, spec, &job.cursor).await?,
                JobKind::Prune(spec) => self.resign.list_prune(&job.id, spec, &job.cursor).await?,
                JobKind::ResumeApprovals(spec) => self.resume.list(&job.id, spec),
                JobKind::RevokeDerived(spec) => {
                    self.resign.list_derived(&job.id, spec, &job.cursor).await?
                }
            };
            let mut checks = vec![(Namespace::Jobs, id.to_string(), Expect::At(jrev))];
            let mut puts = Vec::new();
            let mut added = 0;
            for (key, item) in found {
                let exists = self
                    .jobs
                    .store()
                    .raw()
                    .get(Namespace::JobItems, &key)
                    .await?
                    .is_some();
                if exists || puts.iter().any(|(_, k, _)| k == &key) {
                    continue;
                }
                checks.push((Namespace::JobItems, key.clone(), Expect::Absent));
                puts.push((Namespace::JobItems, key, to_json(&item)?));
                added += 1;
            }
            let mut job = job;
            job.total += added;
            job.listed = next.is_empty();
            job.cursor = next;
            job.updated_at = crate::clock::now();
            puts.push((Namespace::Jobs, id.to_string(), to_json(&job)?));
            // A lost race (a user paused the job) re-reads and lists the batch again.
            self.jobs.store().commit(checks, puts, Vec::new()).await?;
        }
    }

    /// Ends a job whose items are all done, skipped or failed: first what its kind
    /// does at the end (idempotent: a crash before the job is marked runs it again),
    /// then the job's state.
    async fn finish(&self, job: JobRecord) -> Result<(), JobError> {
        let state = if job.failed > 0 || job.error.is_some() {
            JobState::Failed
        } else {
            JobState::Done
        };
        if state == JobState::Done {
            match &job.kind {
                JobKind::Resign(spec) => self.resign.finished(spec).await?,
                JobKind::RevokeDerived(_) => self.resign.lists_changed().await,
                JobKind::Prune(_) | JobKind::ResumeApprovals(_) => {}
            }
        }
        let rec = self
            .jobs
            .update(&job.id, |j| {
                if j.state == JobState::Running {
                    j.state = state;
                    j.finished_at = Some(crate::clock::now());
                }
                Ok(())
            })
            .await?;
        tracing::info!(job = %rec.id, state = rec.state.as_str(), done = rec.done, skipped = rec.skipped, failed = rec.failed, "job finished");
        crate::heap::release_free_heap();
        Ok(())
    }
}
