//! A fixed pool of threads, each owning one HSM session, that runs HSM work off the
//! async runtime.

use super::{Backend, HsmError, HsmSession};
use std::sync::Arc;
use std::time::Instant;

type Job = Box<dyn FnOnce(&mut dyn HsmSession) + Send>;

/// Receives each HSM operation's name and duration in seconds.
pub type OpTimer = Arc<dyn Fn(&str, f64) + Send + Sync>;

/// Runs closures against HSM sessions on dedicated threads.
///
/// Dropping the pool closes its queue and waits for the threads to finish queued work
/// and close their sessions. The process must not exit while a worker is still inside
/// the PKCS#11 module: the module's exit-time destructors would deadlock against it.
pub struct HsmPool {
    backend: Arc<dyn Backend>,
    queue: Option<crossbeam_channel::Sender<Job>>,
    workers: Vec<std::thread::JoinHandle<()>>,
    observer: Option<OpTimer>,
}

impl Drop for HsmPool {
    fn drop(&mut self) {
        self.queue.take();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

impl std::fmt::Debug for HsmPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HsmPool")
            .field("backend", &self.backend.name())
            .finish_non_exhaustive()
    }
}

impl HsmPool {
    /// Starts `threads` workers, each with its own session. Fails if a session cannot be
    /// opened.
    pub fn start(backend: Arc<dyn Backend>, threads: usize) -> Result<Self, HsmError> {
        Self::start_as(backend, threads, false, 4096)
    }

    /// A pool of one thread, queueing at most `queue` jobs, whose thread runs at the
    /// lowest CPU priority: for work that must never slow signing (the time-stamps the
    /// unauthenticated HTTP endpoint makes). Its session is its own.
    pub fn start_background(backend: Arc<dyn Backend>, queue: usize) -> Result<Self, HsmError> {
        Self::start_as(backend, 1, true, queue)
    }

    fn start_as(
        backend: Arc<dyn Backend>,
        threads: usize,
        background: bool,
        queue: usize,
    ) -> Result<Self, HsmError> {
        let (tx, rx) = crossbeam_channel::bounded::<Job>(queue.max(1));
        let mut workers = Vec::new();
        for i in 0..threads.max(1) {
            let mut session = backend.open_session()?;
            let rx = rx.clone();
            let worker = std::thread::Builder::new()
                .name(format!("hsm-{}-{i}", backend.name()))
                .spawn(move || {
                    if background {
                        lowest_priority();
                    }
                    for job in rx {
                        // A panicking job (a bug, or a test double that panics on an
                        // unsupported command) fails its caller, not the worker.
                        let run = std::panic::AssertUnwindSafe(|| job(session.as_mut()));
                        if std::panic::catch_unwind(run).is_err() {
                            tracing::error!("an HSM job panicked; its request failed");
                        }
                    }
                    drop(session);
                })
                .map_err(|e| HsmError::Device {
                    op: "start worker",
                    detail: e.to_string(),
                })?;
            workers.push(worker);
        }
        Ok(Self {
            backend,
            queue: Some(tx),
            workers,
            observer: None,
        })
    }

    /// Reports every operation's name and duration in seconds (for metrics).
    pub fn with_timer(mut self, observer: OpTimer) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The backend this pool works for.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// Runs `f` on a worker's session and returns its result.
    pub async fn run<T, E, F>(&self, op: &'static str, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<HsmError> + Send + 'static,
        F: FnOnce(&mut dyn HsmSession) -> Result<T, E> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let observer = self.observer.clone();
        let job: Job = Box::new(move |session| {
            let start = Instant::now();
            let result = f(session);
            if let Some(obs) = observer {
                obs(op, start.elapsed().as_secs_f64());
            }
            let _ = tx.send(result);
        });
        let Some(queue) = self.queue.clone() else {
            return Err(HsmError::PoolClosed.into());
        };
        // The queue is bounded: when the HSM falls behind, waiting for room happens on
        // the blocking pool, not on a runtime thread.
        match queue.try_send(job) {
            Ok(()) => {}
            Err(crossbeam_channel::TrySendError::Full(job)) => {
                tokio::task::spawn_blocking(move || queue.send(job))
                    .await
                    .map_err(|_| HsmError::PoolClosed)?
                    .map_err(|_| HsmError::PoolClosed)?;
            }
            Err(crossbeam_channel::TrySendError::Disconnected(_)) => {
                return Err(HsmError::PoolClosed.into());
            }
        }
        rx.await.map_err(|_| HsmError::Device {
            op,
            detail: "the operation ended without a result (it panicked); see the daemon log".into(),
        })?
    }
}

/// Gives the calling thread the lowest CPU priority (nice 19): under contention the
/// signing threads run first. Linux sets niceness per thread.
fn lowest_priority() {
    #[cfg(target_os = "linux")]
    #[allow(unsafe_code)]
    // SAFETY: gettid and setpriority take no pointers; they change the scheduling
    // priority of this thread only.
    unsafe {
        let tid = libc::gettid();
        if libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19) != 0 {
            tracing::warn!("cannot lower a background HSM thread's priority");
        }
    }
}
