//! A pass over a job's queued items: each runs within its registry's limits (slots,
//! rate, and a "down" flag with backoff that holds back that registry's items without
//! failing them), and finished items are committed in batches, each batch with the
//! job's counts in one transaction.

use super::derived;
use super::resign::InFlight;
use super::runner::{Outcome, Runner};
use super::trim::Trimmer;
use super::{ItemState, JobError, JobItem, JobKind, JobRecord, JobState};
use crate::store::{Expect, Namespace, Revision, to_json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// The longest a finished item waits for its commit while others run.
const COMMIT_EVERY: Duration = Duration::from_millis(250);

/// A registry's limits and health, shared by every job.
#[derive(Debug)]
pub(super) struct RegistryGate {
    slots: Arc<tokio::sync::Semaphore>,
    next_start: Mutex<tokio::time::Instant>,
    /// Down until then, after this many failures in a row.
    down: Mutex<Option<(tokio::time::Instant, u32, String)>>,
}

/// A finished item: its key and revision, the item, what it came to, and (for an item
/// that re-made a signature) its place among the key's items in flight, given up once
/// the result is committed or dropped.
pub(super) type Finished = (String, Revision, JobItem, Outcome, Option<InFlight>);

fn jitter(d: Duration) -> Duration {
    let mut b = [0u8; 2];
    let _ = getrandom::getrandom(&mut b);
    // 50% to 150% of `d`.
    let f = 0.5 + f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX);
    d.mul_f64(f)
}

impl Runner {
    fn backoff(&self, attempts: u32) -> Duration {
        let base = Duration::from_millis(self.settings.retry_base_ms.max(1));
        let d = base.saturating_mul(1u32 << attempts.min(20));
        jitter(d.min(Duration::from_millis(self.settings.retry_max_ms.max(1))))
    }

    pub(super) fn gate(&self, registry: &str) -> Arc<RegistryGate> {
        let mut gates = self.gates.lock().unwrap_or_else(|p| p.into_inner());
        gates
            .entry(registry.to_string())
            .or_insert_with(|| {
                Arc::new(RegistryGate {
                    slots: Arc::new(tokio::sync::Semaphore::new(
                        self.settings.per_registry.max(1),
                    )),
                    next_start: Mutex::new(tokio::time::Instant::now()),
                    down: Mutex::new(None),
                })
            })
            .clone()
    }

    /// One pass over the queued items: runs those that are due and whose registry is
    /// up. Returns `None` when no item is left queued, or how long to wait before the
    /// next pass.
    pub(super) async fn pass(
        &self,
        id: &str,
        stop: &watch::Receiver<bool>,
    ) -> Result<Option<Duration>, JobError> {
        let job = self.jobs.get(id).await?;
        let prefix = format!("{id}/");
        let mut cursor = String::new();
        let mut set: tokio::task::JoinSet<Finished> = tokio::task::JoinSet::new();
        let mut finished: Vec<Finished> = Vec::new();
        let mut wait: Option<Duration> = None;
        let mut stopped = false;
        let mut retried = false;
        let mut last_commit = std::time::Instant::now();
        let mut trimmer = Trimmer::default();
        'pages: loop {
            let page = self
                .jobs
                .store()
                .scan_prefix::<JobItem>(Namespace::JobItems, &prefix, &cursor, 256)
                .await?;
            let last = page.len() < 256;
            for (key, item) in page {
                cursor = key.clone();
                let item = match item {
                    Ok(i) if i.state == ItemState::Queued => i,
                    Ok(_) => continue,
                    Err(e) => {
                        // Never run, never rewritten (a MAC of ours would vouch for what
                        // someone else wrote): the job says so and cannot end as done.
                        tracing::error!(job = %id, item = %key, error = %e, "job item refused");
                        let why = format!("item {key} is not run: {e}");
                        // Written once, not on every pass (a MAC and an fsync each).
                        if job.error.as_deref() != Some(why.as_str()) {
                            self.jobs
                                .update(id, |j| {
                                    j.error = Some(why.clone());
                                    Ok(())
                                })
                                .await?;
                        }
                        continue;
                    }
                };
                let now = crate::clock::now();
                if let Some(at) = item.next_attempt_at
                    && at > now
                {
                    let d = Duration::try_from(at - now).unwrap_or_default();
                    wait = Some(wait.map_or(d, |w| w.min(d)));
                    continue;
                }
                let gate = self.gate(&item.registry);
                if let Some((until, _, _)) = *gate.down.lock().unwrap_or_else(|p| p.into_inner()) {
                    let now = tokio::time::Instant::now();
                    if until > now {
                        let d = until - now;
                        wait = Some(wait.map_or(d, |w| w.min(d)));
                        continue;
                    }
                }
                while set.len() >= self.settings.concurrency.max(1) {
                    if let Some(Ok(f)) = set.join_next().await {
                        finished.push(f);
                    }
                }
                while let Some(Ok(f)) = set.try_join_next() {
                    finished.push(f);
                }
                retried |= finished
                    .iter()
                    .any(|f| matches!(f.3, Outcome::Retry { .. }));
                // Results are committed in batches (one MAC'd transaction and fsync
                // for many items), at least every quarter second so that progress and
                // a pause show soon.
                let due = finished.len() >= self.settings.concurrency.max(1)
                    || (!finished.is_empty() && last_commit.elapsed() >= COMMIT_EVERY);
                if due && !self.commit(id, &mut finished).await? {
                    stopped = true;
                    break 'pages;
                }
                if due {
                    last_commit = std::time::Instant::now();
                    trimmer.committed();
                }
                if *stop.borrow() {
                    stopped = true;
                    break 'pages;
                }
                let Some((_, rev)) = self
                    .jobs
                    .store()
                    .get_rev::<JobItem>(Namespace::JobItems, &key)
                    .await?
                else {
                    continue;
                };
                set.spawn(self.run_item(&job, key, rev, item, gate));
            }
            if last {
                break;
            }
        }
        while let Some(r) = set.join_next().await {
            if let Ok(f) = r {
                finished.push(f);
            }
        }
        retried |= finished
            .iter()
            .any(|f| matches!(f.3, Outcome::Retry { .. }));
        if !finished.is_empty() && !self.commit(id, &mut finished).await? {
            stopped = true;
        }
        if stopped {
            return Ok(Some(Duration::ZERO));
        }
        if wait.is_some() {
            return Ok(wait);
        }
        // Items this pass ran and re-queued for later are run by the next pass.
        Ok(retried.then_some(Duration::from_millis(self.settings.retry_base_ms.max(1))))
    }

    /// The future that runs one item within its registry's limits.
    fn run_item(
        &self,
        job: &JobRecord,
        key: String,
        rev: Revision,
        item: JobItem,
        gate: Arc<RegistryGate>,
    ) -> impl std::future::Future<Output = Finished> + Send + 'static {
        let (resign, resume, kind, by, id) = (
            self.resign.clone(),
            self.resume.clone(),
            job.kind.clone(),
            job.started_by.clone(),
            job.id.clone(),
        );
        let rate = self.settings.rate_per_registry;
        let supervisor = self.supervisor.clone();
        #[cfg(debug_assertions)]
        let panicking = self.panicking_kind == Some(job.kind.name());
        #[cfg(not(debug_assertions))]
        let panicking = false;
        async move {
            let _slot = gate.slots.clone().acquire_owned().await;
            if rate > 0.0 {
                let start = {
                    let mut next = gate.next_start.lock().unwrap_or_else(|p| p.into_inner());
                    let start = (*next).max(tokio::time::Instant::now());
                    *next = start + Duration::from_secs_f64(1.0 / rate);
                    start
                };
                tokio::time::sleep_until(start).await;
            }
            // The item's work runs as a task of its own, so that a panic in it fails
            // this item (said, audited with its outcome) and nothing else.
            let work = {
                let item = item.clone();
                tokio::spawn(async move {
                    if panicking {
                        panic!(
                            "job kind {} made to panic (a debug build's test)",
                            kind.name()
                        );
                    }
                    // A re-signing item counts as in flight from before its check until
                    // its result is committed: a revocation's job waits for those before
                    // it lists what to revoke, so none slips between the two.
                    let held = match &kind {
                        JobKind::Resign(spec) => Some(resign.in_flight(&spec.key)),
                        _ => None,
                    };
                    // Every item of every kind passes the derived-signature rule as it
                    // starts.
                    match derived::admit(resign.condemnation(), &kind, &item).await {
                        Err(refused) => match &kind {
                            JobKind::Resign(spec) => {
                                (resign.refused(spec, &item, refused).await, None)
                            }
                            _ => (refused, None),
                        },
                        Ok(original) => match (&kind, original) {
                            (JobKind::Resign(spec), Some(original)) => {
                                let done = resign.run(&id, spec, &by, &item, &original).await;
                                (done, held)
                            }
                            (JobKind::Resign(_), None) => (
                                Outcome::Failed("a re-signing item without its original".into()),
                                None,
                            ),
                            (JobKind::Prune(spec), _) => {
                                (resign.prune(spec, &by, &item).await, None)
                            }
                            (JobKind::ResumeApprovals(_), _) => (resume.run(&item).await, None),
                            (JobKind::RevokeDerived(spec), _) => {
                                (resign.revoke_derived(spec, &by, &item).await, None)
                            }
                        },
                    }
                })
            };
            let (outcome, in_flight) = match work.await {
                Ok(done) => done,
                Err(e) => {
                    let why = match e.try_into_panic() {
                        Ok(p) => format!(
                            "its work panicked: {}",
                            crate::supervise::panic_message(&*p)
                        ),
                        Err(e) => format!("its work was cancelled: {e}"),
                    };
                    tracing::error!(item = %key, reason = %why, "a job item failed");
                    if let Some(s) = &supervisor {
                        s.count("job-item");
                    }
                    (Outcome::Failed(why), None)
                }
            };
            (key, rev, item, outcome, in_flight)
        }
    }

    /// Commits finished items with the job's counts; `false` when the job is no
    /// longer running (paused or cancelled meanwhile: its results are still kept).
    async fn commit(&self, id: &str, finished: &mut Vec<Finished>) -> Result<bool, JobError> {
        self.audit_outcomes(id, finished).await?;
        for _ in 0..32 {
            let (mut job, jrev) = self.jobs.get_rev(id).await?;
            let mut checks = vec![(Namespace::Jobs, id.to_string(), Expect::At(jrev))];
            let (mut puts, mut raw) = (Vec::new(), Vec::new());
            let now = crate::clock::now();
            // A registry that answered an item of this batch is up: its failures in the
            // same batch (a connection it dropped while restarting, say) are retried
            // soon, and do not hold back the registry's other items.
            let answered: std::collections::HashSet<&str> = finished
                .iter()
                .filter(|f| matches!(f.3, Outcome::Done(_) | Outcome::Skipped(_)))
                .map(|f| f.2.registry.as_str())
                .collect();
            for (key, rev, item, outcome, _) in finished.iter() {
                let mut item = item.clone();
                match outcome {
                    Outcome::Done(writes) => {
                        item.state = ItemState::Done;
                        item.reason = None;
                        job.done += 1;
                        for (ns, k, v) in writes.iter() {
                            if *ns == Namespace::LedgerMarks {
                                checks.push((*ns, k.clone(), Expect::Absent));
                            }
                            raw.push((*ns, k.clone(), v.clone()));
                        }
                    }
                    Outcome::Skipped(r) => {
                        item.state = ItemState::Skipped;
                        item.reason = Some(r.clone());
                        job.skipped += 1;
                    }
                    Outcome::Failed(r) => {
                        item.state = ItemState::Failed;
                        item.reason = Some(r.clone());
                        job.failed += 1;
                    }
                    Outcome::Retry {
                        reason,
                        registry_down,
                    } => {
                        item.reason = Some(reason.clone());
                        let delay = if *registry_down && answered.contains(item.registry.as_str()) {
                            self.backoff(0)
                        } else if *registry_down {
                            self.registry_down(&item.registry, reason)
                        } else {
                            item.attempts += 1;
                            self.backoff(item.attempts)
                        };
                        if !registry_down && item.attempts >= self.settings.max_attempts {
                            item.reason = Some(format!(
                                "{reason} (gave up after {} attempts)",
                                item.attempts
                            ));
                            item.state = ItemState::Failed;
                            job.failed += 1;
                        } else {
                            item.next_attempt_at = Some(now + delay);
                        }
                    }
                }
                if matches!(outcome, Outcome::Done(_) | Outcome::Skipped(_)) {
                    self.registry_up(&item.registry);
                }
                item.attempts += u32::from(!matches!(outcome, Outcome::Retry { .. }));
                checks.push((Namespace::JobItems, key.clone(), Expect::At(*rev)));
                let json = to_json(&item)?;
                if matches!(item.state, ItemState::Skipped | ItemState::Failed) {
                    puts.push((Namespace::JobFailures, key.clone(), json.clone()));
                }
                puts.push((Namespace::JobItems, key.clone(), json));
            }
            job.updated_at = now;
            puts.push((Namespace::Jobs, id.to_string(), to_json(&job)?));
            if self.jobs.store().commit(checks, puts, raw).await? {
                finished.clear();
                return Ok(job.state == JobState::Running);
            }
            // The job changed (a pause) or an item did (a retry): drop results for
            // items that are no longer queued at the revision they ran at, and
            // ledger records of signatures the ledger has meanwhile.
            let mut keep = Vec::new();
            for mut f in finished.drain(..) {
                if let Outcome::Done(writes) = &mut f.3 {
                    let mut recorded = false;
                    for (ns, k, _) in writes.iter() {
                        if *ns == Namespace::LedgerMarks {
                            recorded |= self.jobs.store().raw().get(*ns, k).await?.is_some();
                        }
                    }
                    if recorded {
                        writes.clear();
                    }
                }
                let current = self
                    .jobs
                    .store()
                    .get_rev::<JobItem>(Namespace::JobItems, &f.0)
                    .await?;
                if current.is_some_and(|(_, r)| r == f.1) {
                    keep.push(f);
                }
            }
            *finished = keep;
        }
        Err(JobError::FailedPrecondition(format!(
            "job {id} is changing too fast to record progress"
        )))
    }

    /// Marks a registry down; returns how long its items wait.
    fn registry_down(&self, registry: &str, reason: &str) -> Duration {
        let gate = self.gate(registry);
        let mut down = gate.down.lock().unwrap_or_else(|p| p.into_inner());
        let now = tokio::time::Instant::now();
        let failures = match &*down {
            Some((until, _, _)) if *until > now => return *until - now,
            Some((_, n, _)) => n + 1,
            None => 0,
        };
        let wait = self.backoff(failures);
        tracing::warn!(
            registry,
            reason,
            wait_ms = wait.as_millis() as u64,
            "registry down; its job items wait"
        );
        *down = Some((now + wait, failures, reason.to_string()));
        wait
    }

    fn registry_up(&self, registry: &str) {
        let gate = self.gate(registry);
        let mut down = gate.down.lock().unwrap_or_else(|p| p.into_inner());
        if down.take().is_some() {
            tracing::info!(registry, "registry back; its job items go on");
        }
    }
}
