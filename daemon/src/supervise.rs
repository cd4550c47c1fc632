//! Supervised tasks. What runs for the daemon's whole life (the rotation scheduler,
//! the job runner, the revocation list's refresher and publisher, the audit
//! checkpoints) runs under a [`Supervisor`]: a task that panics, or ends before the
//! daemon stops, is logged, audited (`TaskRestarted`, principal `keywardd`), counted
//! (`keyward_task_restarts_total{task}`) and started again after a backoff. One fault
//! never silently stops every key's rotation.

use crate::audit::{AuditLog, Decision, Entry};
use crate::metrics::Metrics;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The first wait before a restart; it doubles per restart in a row, up to [`MAX_WAIT`].
const FIRST_WAIT: Duration = Duration::from_millis(500);
const MAX_WAIT: Duration = Duration::from_secs(60);
/// A task that ran this long before it stopped starts its backoff afresh.
const HEALTHY_RUN: Duration = Duration::from_secs(300);

/// The principal of supervision's audit records.
pub const DAEMON: &str = "keywardd";

/// Restarts tasks that fail, and says so.
#[derive(Clone)]
pub struct Supervisor {
    audit: Arc<AuditLog>,
    metrics: Arc<Metrics>,
    first_wait: Duration,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor").finish_non_exhaustive()
    }
}

/// What a panic carried, as text.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

impl Supervisor {
    /// Audits to `audit`, counts in `metrics`.
    pub fn new(audit: Arc<AuditLog>, metrics: Arc<Metrics>) -> Self {
        Self {
            audit,
            metrics,
            first_wait: FIRST_WAIT,
        }
    }

    /// Waits `first` before the first restart in a row (tests shorten it).
    pub fn with_first_wait(mut self, first: Duration) -> Self {
        self.first_wait = first;
        self
    }

    /// Counts a failure that is said elsewhere (a job item's, with its outcome).
    pub fn count(&self, task: &'static str) {
        self.metrics.task_restarted(task);
    }

    /// Says that `task` failed (`why`): log, metric and audit record. Also for work
    /// that is contained where it runs (one job, one key's rotation).
    pub async fn failed(&self, task: &'static str, target: &str, why: &str) {
        tracing::error!(task, target, reason = %why, "a daemon task failed; it goes on without it");
        self.metrics.task_restarted(task);
        let entry = Entry {
            principal: DAEMON,
            action: "TaskRestarted",
            target,
            decision: Decision::Failed,
            reason: why,
            request_hash: "",
        };
        if let Err(e) = self.audit.append(entry).await {
            tracing::error!(task, error = %e, "cannot audit a task's failure");
        }
    }

    /// Runs `make()` as a task until `stop` turns true, starting it again whenever it
    /// panics or returns before that.
    pub fn spawn<F, Fut>(
        &self,
        task: &'static str,
        mut stop: watch::Receiver<bool>,
        make: F,
    ) -> tokio::task::JoinHandle<()>
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let me = self.clone();
        tokio::spawn(async move {
            let mut wait = me.first_wait;
            loop {
                let started = tokio::time::Instant::now();
                let ended = tokio::spawn(make()).await;
                if *stop.borrow() {
                    return;
                }
                let why = match ended {
                    Ok(()) => "it ended before the daemon stopped".to_string(),
                    Err(e) if e.is_panic() => {
                        format!("it panicked: {}", panic_message(&*e.into_panic()))
                    }
                    Err(e) => format!("it was cancelled: {e}"),
                };
                if started.elapsed() >= HEALTHY_RUN {
                    wait = me.first_wait;
                }
                me.failed(task, task, &format!("{why}; restarted")).await;
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return,
                    _ = tokio::time::sleep(wait) => {}
                }
                wait = (wait * 2).min(MAX_WAIT);
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn a_task_that_panics_is_restarted_counted_and_audited_until_the_daemon_stops() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(crate::store::RedbStore::open(&dir.path().join("s.redb")).unwrap());
        let key = crate::audit::AuditKey {
            backend: "b".into(),
            hsm_id: "a".into(),
            public_key: String::new(),
        };
        let audit = Arc::new(AuditLog::open(store, key, true).await.unwrap());
        let metrics = Arc::new(Metrics::new());
        let sup = Supervisor::new(audit.clone(), metrics.clone())
            .with_first_wait(Duration::from_millis(1));
        let (stop_tx, stop) = watch::channel(false);
        let runs = Arc::new(AtomicU32::new(0));
        let counted = runs.clone();
        let handle = sup.spawn("scheduler", stop.clone(), move || {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            let mut stop = stop.clone();
            async move {
                if n < 2 {
                    panic!("boom {n}");
                }
                let _ = stop.wait_for(|s| *s).await;
            }
        });
        while runs.load(Ordering::SeqCst) < 3 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stop_tx.send(true).unwrap();
        handle.await.unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        let exposition = metrics.encode();
        assert!(
            exposition.contains("keyward_task_restarts_total{task=\"scheduler\"} 2"),
            "{exposition}"
        );
        let (records, _) = audit.export_page(0, "", None, 100).await.unwrap();
        let text = records.join("\n");
        assert!(text.contains("TaskRestarted"), "{text}");
        assert!(text.contains("it panicked: boom 1"), "{text}");
    }
}
