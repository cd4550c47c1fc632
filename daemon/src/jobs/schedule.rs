//! Scheduled rotation: a key whose policy says `rotate_every` rotates once its active
//! version is that old, with the authority `scheduler`, audited like a request; and a
//! retired version's signatures are pruned once its overlap is over, when the policy
//! says `prune_after_overlap`; an active version's certificate is renewed before it
//! ends. Time comes from a [`Clock`], so that tests move it
//! instead of sleeping.

use super::{JobKind, JobRecord, PruneSpec, new_id};
use super::{Jobs, rotation};
use crate::audit::{AuditLog, Decision, Entry};
use crate::keys::{KeyRecord, KeyRegistry, VersionState};
use crate::store::to_json;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use tokio::sync::watch;

/// Where the scheduler reads the time.
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> OffsetDateTime;
}

/// The system's clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        crate::clock::now()
    }
}

/// The authority scheduled work runs with (in job records and audit records).
pub const SCHEDULER: &str = "scheduler";

/// Names of the keys whose active version is at least their rotation period old at
/// `now`. A key without an active version, or without a period, is never due.
pub fn due(keys: &[Arc<KeyRecord>], now: OffsetDateTime) -> Vec<String> {
    keys.iter()
        .filter(|k| {
            let (Some(every), Some(active)) = (k.rotation.every_seconds, k.active()) else {
                return false;
            };
            let since = active.activated_at.unwrap_or(active.created_at);
            now - since >= time::Duration::seconds(every.min(i64::MAX as u64) as i64)
        })
        .map(|k| k.name.clone())
        .collect()
}

/// Retired versions whose overlap is over, of keys whose policy says
/// `prune_after_overlap`, and for which no prune was started: (key, version).
pub fn prune_due(keys: &[Arc<KeyRecord>], now: OffsetDateTime) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    for k in keys.iter().filter(|k| k.rotation.prune_after_overlap) {
        let overlap = k.rotation.overlap_seconds.unwrap_or(0).min(i64::MAX as u64) as i64;
        for v in &k.versions {
            let over = v
                .retired_at
                .is_some_and(|t| now - t >= time::Duration::seconds(overlap));
            if v.state == VersionState::Retired && v.prune_job.is_none() && over {
                out.push((k.name.clone(), v.version));
            }
        }
    }
    out
}

/// Rotates keys when their policy says so.
pub struct Scheduler {
    keys: Arc<KeyRegistry>,
    /// Finished approvals older than the duration move to the archive at each tick.
    approvals: Option<(Arc<crate::approvals::Approvals>, time::Duration)>,
    jobs: Arc<Jobs>,
    audit: Arc<AuditLog>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler").finish_non_exhaustive()
    }
}

impl Scheduler {
    /// A scheduler over the keys, reading the time from `clock`.
    pub fn new(
        keys: Arc<KeyRegistry>,
        jobs: Arc<Jobs>,
        audit: Arc<AuditLog>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            keys,
            approvals: None,
            jobs,
            audit,
            clock,
        }
    }

    /// Starts the prune of every retired version whose overlap is over; returns the
    /// jobs started.
    pub async fn prune(&self) -> Vec<String> {
        let mut started = Vec::new();
        for (key, version) in prune_due(&self.keys.list(), self.clock.now()) {
            let Ok(id) = new_id() else { continue };
            let job = JobRecord::new(
                id.clone(),
                JobKind::Prune(PruneSpec {
                    since: None,
                    compromised: false,
                    key: key.clone(),
                    version,
                }),
                SCHEDULER,
                format!("the overlap of key {key} version {version} is over"),
            );
            let Ok(json) = to_json(&job) else { continue };
            match self.keys.start_prune(&key, version, (&id, json)).await {
                Ok(true) => {
                    let target = format!("{key}/v{version}");
                    let audited = self
                        .audit
                        .append(Entry {
                            principal: SCHEDULER,
                            action: "PruneAfterOverlap",
                            target: &target,
                            decision: Decision::Allowed,
                            reason: &job.reason,
                            request_hash: "",
                        })
                        .await;
                    if let Err(e) = audited {
                        tracing::error!(job = %id, error = %e, "cannot audit a prune's start");
                    }
                    tracing::info!(key = %key, version, job = %id, "pruning a retired version's signatures after the overlap");
                    self.jobs.bell().notify_one();
                    started.push(id);
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(key = %key, version, error = %e, "cannot start a prune; tried again at the next tick")
                }
            }
        }
        started
    }

    /// Rotates every key that is due now, then starts the prunes that are due; returns
    /// the keys rotated. A rotation that fails is logged and audited, and tried again
    /// at the next tick.
    pub async fn tick(&self) -> Vec<String> {
        let rotated = self.rotate_due().await;
        self.prune().await;
        self.renew().await;
        if let Some((approvals, keep)) = &self.approvals
            && let Err(e) = approvals.archive(self.clock.now() - *keep).await
        {
            tracing::error!(error = %e, "cannot archive finished approvals; tried again at the next tick");
        }
        rotated
    }

    /// Archives finished approvals older than `keep` at each tick.
    pub fn with_approvals(
        mut self,
        approvals: Arc<crate::approvals::Approvals>,
        keep: time::Duration,
    ) -> Self {
        self.approvals = Some((approvals, keep));
        self
    }

    /// Gives every active version whose certificate nears its end a new one (same
    /// public key), audited; returns `key/vN` of each renewed.
    pub async fn renew(&self) -> Vec<String> {
        let mut renewed = Vec::new();
        for done in self.keys.renew_due(self.clock.now()).await {
            let (target, decision, reason) = match done {
                Ok((key, version, until)) => {
                    tracing::info!(key = %key, version, until = %until, "renewed an active version's certificate");
                    renewed.push(format!("{key}/v{version}"));
                    let until = until
                        .format(&time::format_description::well_known::Rfc3339)
                        .unwrap_or_default();
                    (
                        format!("{key}/v{version}"),
                        Decision::Allowed,
                        format!("certificate valid until {until}"),
                    )
                }
                Err((key, e)) => {
                    tracing::error!(key = %key, error = %e, "cannot renew a certificate; tried again at the next tick");
                    (key, Decision::Failed, e.to_string())
                }
            };
            let entry = Entry {
                principal: SCHEDULER,
                action: "RenewCertificate",
                target: &target,
                decision,
                reason: &reason,
                request_hash: "",
            };
            if let Err(e) = self.audit.append(entry).await {
                tracing::error!(target = %target, error = %e, "cannot audit a certificate renewal");
            }
        }
        renewed
    }

    async fn rotate_due(&self) -> Vec<String> {
        let mut rotated = Vec::new();
        let now = self.clock.now();
        for name in due(&self.keys.list(), now) {
            fn entry<'a>(name: &'a str, decision: Decision, reason: &'a str) -> Entry<'a> {
                Entry {
                    principal: SCHEDULER,
                    action: "ScheduledRotation",
                    target: name,
                    decision,
                    reason,
                    request_hash: "",
                }
            }
            let reason = "the active version reached the rotation period";
            if let Err(e) = self
                .audit
                .append(entry(&name, Decision::Intent, reason))
                .await
            {
                tracing::error!(key = %name, error = %e, "cannot audit a scheduled rotation; it waits for the next tick");
                continue;
            }
            // One key's rotation runs as a task of its own: a panic in it fails that
            // key's rotation this tick, and the other keys still rotate.
            let (keys, jobs, key) = (self.keys.clone(), self.jobs.clone(), name.clone());
            let done =
                tokio::spawn(
                    async move { rotation::rotate(&keys, &jobs, &key, SCHEDULER, now).await },
                )
                .await
                .unwrap_or_else(|e| {
                    let why = match e.try_into_panic() {
                        Ok(p) => crate::supervise::panic_message(&*p),
                        Err(e) => e.to_string(),
                    };
                    Err(crate::keys::KeyError::FailedPrecondition(format!(
                        "the rotation panicked: {why}"
                    )))
                });
            let (decision, why) = match &done {
                Ok((r, job)) => {
                    tracing::info!(key = %name, version = r.version, job = ?job.as_ref().map(|j| &j.id), "key rotated on schedule");
                    rotated.push(name.clone());
                    (Decision::Allowed, String::new())
                }
                Err(e) => {
                    tracing::error!(key = %name, error = %e, "scheduled rotation failed; it is tried again at the next tick");
                    (Decision::Failed, e.to_string())
                }
            };
            if let Err(e) = self.audit.append(entry(&name, decision, &why)).await {
                tracing::error!(key = %name, error = %e, "cannot audit a scheduled rotation's outcome");
            }
        }
        rotated
    }

    /// Ticks every `every` until `stop` turns true.
    pub async fn run(self: Arc<Self>, every: Duration, mut stop: watch::Receiver<bool>) {
        loop {
            self.tick().await;
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    }
}
