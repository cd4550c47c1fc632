//! Prometheus metrics served on `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Arc;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KeyLabels {
    key: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskLabels {
    task: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HsmLabels {
    backend: String,
    operation: String,
}

/// The daemon's counters and histograms.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    signatures: Family<KeyLabels, Counter>,
    hsm_seconds: Family<HsmLabels, Histogram>,
    task_restarts: Family<TaskLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("keyward");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "gRPC requests by method and status code",
            requests.clone(),
        );
        let signatures = Family::<KeyLabels, Counter>::default();
        registry.register("signatures", "Signatures made, by key", signatures.clone());
        let hsm_seconds = Family::<HsmLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.00005, 2.0, 16))
        });
        registry.register(
            "hsm_operation_seconds",
            "Time HSM operations take on the worker threads",
            hsm_seconds.clone(),
        );
        let task_restarts = Family::<TaskLabels, Counter>::default();
        registry.register(
            "task_restarts",
            "Daemon tasks (and jobs, and one key's scheduled work) that panicked or stopped, by task",
            task_restarts.clone(),
        );
        Self {
            registry,
            requests,
            signatures,
            hsm_seconds,
            task_restarts,
        }
    }

    /// Counts a finished request. The method is a name from the rule table (or
    /// `unknown`, `Authenticate`), never text a caller chose.
    pub fn request(&self, method: &'static str, code: tonic::Code) {
        self.requests
            .get_or_create(&RequestLabels {
                method: method.to_string(),
                code: format!("{code:?}"),
            })
            .inc();
    }

    /// Counts a task that failed and was restarted (or contained).
    pub fn task_restarted(&self, task: &'static str) {
        self.task_restarts.get_or_create(&TaskLabels { task }).inc();
    }

    /// Counts a signature.
    pub fn signature(&self, key: &str) {
        self.signatures
            .get_or_create(&KeyLabels {
                key: key.to_string(),
            })
            .inc();
    }

    /// An observer for an HSM pool's operation latencies.
    pub fn hsm_timer(self: &Arc<Self>, backend: &str) -> crate::hsm::pool::OpTimer {
        let me = self.clone();
        let backend = backend.to_string();
        Arc::new(move |op, secs| {
            me.hsm_seconds
                .get_or_create(&HsmLabels {
                    backend: backend.clone(),
                    operation: op.to_string(),
                })
                .observe(secs)
        })
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
