//! A fixed pool of threads, each owning one HSM session, that runs HSM work off the
//! async runtime.

use super::{Backend, HsmError, HsmSession};
use std::sync::Arc;
use std::time::Instant;

type Job = Box<dyn FnOnce(&mut dyn HsmSession) + Send>;

/// Receives each HSM operation's name and duration in seconds.
pub type Observer = Arc<dyn Fn(&str, f64) + Send + Sync>;

/// Runs closures against HSM sessions on dedicated threads.
///
/// Dropping the pool closes its queue; the threads finish queued work and exit.
pub struct HsmPool {
    backend: Arc<dyn Backend>,
    queue: crossbeam_channel::Sender<Job>,
    observer: Option<Observer>,
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
        let (tx, rx) = crossbeam_channel::bounded::<Job>(4096);
        for i in 0..threads.max(1) {
            let mut session = backend.open_session()?;
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("hsm-{}-{i}", backend.name()))
                .spawn(move || {
                    for job in rx {
                        job(session.as_mut());
                    }
                })
                .map_err(|e| HsmError::Device {
                    op: "start worker",
                    detail: e.to_string(),
                })?;
        }
        Ok(Self {
            backend,
            queue: tx,
            observer: None,
        })
    }

    /// Reports every operation's name and duration in seconds (for metrics).
    pub fn with_observer(mut self, observer: Observer) -> Self {
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
        let queue = self.queue.clone();
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
        rx.await.map_err(|_| HsmError::PoolClosed)?
    }
}
