//! [`App::build`]: every service of a running keywardd, assembled from an opened
//! instance. It owns no sockets; `server::run` serves it.

use super::{Instance, StartError};
use crate::api::{Gate, GateLayer, Observer};
use crate::approvals::{ApprovalRecord, Approvals};
use crate::audit::AuditLog;
use crate::authz::Principals;
use crate::config::Config;
use crate::hsm::HsmPool;
use crate::jobs::resign::Resigner;
use crate::jobs::resume::Resumer;
use crate::jobs::schedule::{Clock, Scheduler, SystemClock};
use crate::jobs::{Jobs, Runner};
use crate::keys::{Backends, KeyRegistry};
use crate::metrics::Metrics;
use crate::oci::{DockerConfig, Registries, RegistrySettings};
use crate::pki::CaRecord;
use crate::pki::timestamps::Tsa;
use crate::revocation::Revocations;
use crate::revocation::condemned::Condemnation;
use crate::revocation::incident::Incidents;
use crate::revocation::publish::Publisher;
use crate::revocation::signatures::RevokedSignatures;
use crate::signing::ImageSigner;
use crate::signing::blob::BlobSigner;
use crate::signing::ledger::SignatureLedger;
use crate::supervise::Supervisor;
use std::sync::Arc;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

/// A keywardd ready to serve.
pub struct App {
    pub(super) config: Config,
    pub(super) ca: Arc<CaRecord>,
    pub(super) tls: ServerTlsConfig,
    pub(super) backends: Arc<Backends>,
    pub(super) principals: Arc<Principals>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) keys: Arc<KeyRegistry>,
    pub(super) signer: Arc<ImageSigner>,
    pub(super) blobs: Arc<BlobSigner>,
    pub(super) audit: Arc<AuditLog>,
    pub(super) obs: Observer,
    pub(super) approvals: Arc<Approvals>,
    pub(super) unfinished: Vec<ApprovalRecord>,
    pub(super) jobs: Arc<Jobs>,
    pub(super) runner: Arc<Runner>,
    /// Rotates and prunes on schedule; `None`: the caller ticks it (tests).
    pub(super) scheduler: Option<Arc<Scheduler>>,
    pub(super) gate: GateLayer,
    pub(super) revocations: Arc<Revocations>,
    pub(super) publisher: Arc<Publisher>,
    pub(super) incidents: Arc<Incidents>,
    pub(super) tsa: Arc<Tsa>,
}

impl App {
    /// Loads keys, checks them against the HSMs, opens the audit log and second
    /// factors, and assembles the services. Refuses an instance without a CA.
    pub async fn build(instance: Instance) -> Result<Self, StartError> {
        let i = instance;
        let ca = i
            .ca()
            .await?
            .ok_or_else(|| StartError::NotInitialised(i.config.data_dir.display().to_string()))?;
        super::write_atomic(
            &i.config.data_dir.join("ca.pem"),
            ca.certificate_pem.as_bytes(),
            0o644,
        )?;
        let ca = Arc::new(ca);
        let keys = Arc::new(
            KeyRegistry::load(i.protected.clone(), i.backends.clone(), ca.clone())
                .await?
                .with_crl_url(
                    i.config
                        .revocation
                        .crl_url(i.config.listen.http)
                        .map_err(StartError::Config)?,
                )
                .with_identity(
                    i.config.ca.identity_prefix.clone(),
                    i.config.ca.issuer_for(&crate::pki::ca_fingerprint(&ca)),
                )
                .with_certificate_validity(time::Duration::days(
                    i.config.ca.certificate_days.into(),
                )),
        );
        let audit_key = i.audit_key(&ca).await?;
        let tsa_key = i.tsa_key(&ca).await?;
        let instance_objects = [
            (
                audit_key.backend.clone(),
                audit_key.hsm_id.clone(),
                "the audit key".to_string(),
            ),
            (
                tsa_key.backend.clone(),
                tsa_key.hsm_id.clone(),
                "the time-stamping key".to_string(),
            ),
        ];
        // The HTTP endpoint's stamps get their own session, queue and one low-priority
        // thread (its queue holds what the endpoint lets in at once).
        let tsa_pool = HsmPool::start_background(
            i.backends.get(&tsa_key.backend)?.backend().clone(),
            i.config.tsa.http_concurrency.max(1),
        )
        .map_err(|source| StartError::Hsm {
            backend: tsa_key.backend.clone(),
            source,
        })?;
        let tsa = Arc::new(
            Tsa::new(i.backends.clone(), tsa_key, &ca.certificate_pem)?.with_own_pool(tsa_pool),
        );
        let report = keys.reconcile(&instance_objects).await?;
        for m in &report.missing_on_hsm {
            tracing::warn!(version = %m, "key version is in the store but its HSM object is missing; it cannot sign");
        }
        for u in &report.unknown_on_hsm {
            tracing::warn!(object = %u, "Keyward-labelled HSM object is not in the store (left in place)");
        }
        for w in &report.without_id {
            tracing::warn!(object = %w, "HSM private key without CKA_ID (half-written object; left in place)");
        }
        for c in &report.usage_corrected {
            tracing::warn!(object = %c, "HSM private key corrected to sign only");
        }
        for r in &report.usage_refused {
            tracing::error!(object = %r, "HSM private key can do more than sign and its module will not change that");
        }
        for r in &report.revoked_can_sign {
            tracing::error!(object = %r, "a version revoked as compromised can still sign on its HSM: destroy its object");
        }
        let docker_path = i
            .config
            .docker_config
            .clone()
            .unwrap_or_else(DockerConfig::default_path);
        let registries = Registries::new(RegistrySettings {
            entries: i.config.registries.clone(),
            docker: DockerConfig::load(&docker_path).map_err(StartError::Config)?,
            limits: i.config.oci.clone(),
        });
        let ledger_key = i
            .protected
            .mac()
            .derive("ledger-rows")
            .await
            .map_err(|source| StartError::Hsm {
                backend: i.config.ca_backend().to_string(),
                source,
            })?;
        let ledger = SignatureLedger::new(i.store.clone())
            .with_mac(crate::signing::ledger::mac::LedgerMac::new(ledger_key));
        ledger.ensure_macs().await?;
        ledger.ensure_index().await?;
        let revoked_signatures = Arc::new(RevokedSignatures::load(i.protected.clone()).await?);
        let condemnation =
            Condemnation::new(keys.clone(), revoked_signatures.clone(), ledger.clone());
        let signer = ImageSigner::new(keys.clone(), registries, ledger.clone())
            .with_revoked_signatures(revoked_signatures.clone())
            .with_tsa(tsa.clone());
        let signer = Arc::new(if i.config.signing.certificates {
            signer
        } else {
            signer.without_certificates()
        });
        let blobs = Arc::new(BlobSigner::new(keys.clone(), ledger));
        let (cert, key) = i.server_identity(&ca).await?;
        let tls = ServerTlsConfig::new()
            .identity(Identity::from_pem(cert, key))
            .client_ca_root(Certificate::from_pem(&ca.certificate_pem));
        let audit = Arc::new(
            AuditLog::open(i.store.clone(), audit_key, i.config.audit.enabled)
                .await
                .map_err(StartError::Store)?,
        );
        if !audit.enabled() {
            tracing::warn!(
                "the audit log is disabled ([audit] enabled = false): requests are not recorded"
            );
        }
        i.audit_start(&audit, &keys).await?;
        let mfa = Arc::new(i.mfa().await?);
        if !mfa.required() {
            tracing::warn!("MFA is not enforced ([mfa] required = false)");
        }
        let obs = Observer {
            metrics: i.metrics.clone(),
            audit: audit.clone(),
            mfa,
        };
        let jobs = Arc::new(Jobs::new(i.protected.clone()));
        let validity = i
            .config
            .revocation
            .validity_seconds()
            .map_err(StartError::Config)?;
        let revocations = Arc::new(
            Revocations::new(
                keys.clone(),
                revoked_signatures,
                i.protected.clone(),
                validity,
            )
            .with_audit(audit.clone()),
        );
        let targets = i.config.revocation.targets().map_err(StartError::Config)?;
        let publisher = Arc::new(Publisher::new(
            revocations.clone(),
            i.protected.clone(),
            Registries::new(RegistrySettings {
                entries: i.config.registries.clone(),
                docker: DockerConfig::load(&docker_path).map_err(StartError::Config)?,
                limits: i.config.oci.clone(),
            }),
            targets,
            std::time::Duration::from_millis(i.config.jobs.retry_max_ms.max(1)),
        ));
        let resigner = Arc::new(
            Resigner::new(signer.clone(), condemnation.clone()).with_lists(revocations.clone()),
        );
        let incidents = Arc::new(
            Incidents::new(
                keys.clone(),
                jobs.clone(),
                signer.ledger().clone(),
                (revocations.clone(), publisher.clone()),
                audit.clone(),
            )
            .with_resigner(resigner.clone()),
        );
        let approvals = Arc::new(Approvals::new(
            i.protected.clone(),
            keys.clone(),
            (signer.clone(), blobs.clone(), incidents.clone()),
            i.principals.clone(),
            audit.clone(),
            std::time::Duration::from_secs(3600),
        ));
        approvals.ensure_index().await.map_err(|e| {
            StartError::Store(crate::store::StoreError::Engine(format!(
                "cannot index the stored approvals: {e}"
            )))
        })?;
        // Before the API serves: none of these is a request this process is signing.
        let unfinished = approvals.unfinished().await;
        let runner = Arc::new(
            Runner::new(
                jobs.clone(),
                resigner,
                Arc::new(Resumer::new(approvals.clone())),
                audit.clone(),
                i.config.jobs.clone(),
            )
            .with_supervisor(Supervisor::new(audit.clone(), i.metrics.clone())),
        );
        let keep = i
            .config
            .approvals
            .keep_seconds()
            .map_err(StartError::Config)?;
        let scheduler = Arc::new(
            Scheduler::new(
                keys.clone(),
                jobs.clone(),
                audit.clone(),
                Arc::new(SystemClock),
            )
            .with_approvals(approvals.clone(), time::Duration::seconds(keep as i64)),
        );
        let gate = GateLayer::new(
            Gate::new(i.principals.clone(), keys.clone(), obs.clone())
                .with_approvals(approvals.clone()),
        );
        Ok(Self {
            config: i.config,
            ca,
            tls,
            backends: i.backends,
            principals: i.principals,
            metrics: i.metrics,
            keys,
            signer,
            blobs,
            audit,
            obs,
            approvals,
            unfinished,
            jobs,
            runner,
            scheduler: Some(scheduler),
            gate,
            revocations,
            publisher,
            incidents,
            tsa,
        })
    }

    /// The same app with a scheduler reading time from `clock` (tests move time
    /// instead of waiting), which does not tick on its own: the caller calls its
    /// `tick`, which rotates and prunes what is due.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> (Self, Arc<Scheduler>) {
        let keep = self.config.approvals.keep_seconds().unwrap_or(30 * 86_400);
        let s = Arc::new(
            Scheduler::new(
                self.keys.clone(),
                self.jobs.clone(),
                self.audit.clone(),
                clock,
            )
            .with_approvals(self.approvals.clone(), time::Duration::seconds(keep as i64)),
        );
        self.scheduler = None;
        (self, s)
    }

    /// Debug builds only: every item of job kind `kind` panics when it runs (tests
    /// prove that a panic is contained).
    #[cfg(debug_assertions)]
    #[doc(hidden)]
    pub fn with_panicking_job_kind(mut self, kind: &'static str) -> Self {
        if let Some(runner) = Arc::get_mut(&mut self.runner) {
            runner.panicking_kind = Some(kind);
        }
        self
    }

    /// The revocation lists it issues (tests issue at a chosen time).
    pub fn revocations(&self) -> Arc<Revocations> {
        self.revocations.clone()
    }
}
