//! [`run`]: serves an [`App`] on listeners the caller bound, until shutdown; and
//! [`Instance::serve`], which binds the configured addresses and runs.

use super::{App, Instance, StartError, io};
use crate::api::{
    ApprovalApi, AuditApi, ImageApi, JobApi, KeyApi, MfaApi, PrincipalApi, RevocationApi,
    SigningApi, TrustApi,
};
use keyward_proto::v1::approval_service_server::ApprovalServiceServer;
use keyward_proto::v1::audit_service_server::AuditServiceServer;
use keyward_proto::v1::image_service_server::ImageServiceServer;
use keyward_proto::v1::job_service_server::JobServiceServer;
use keyward_proto::v1::key_service_server::KeyServiceServer;
use keyward_proto::v1::mfa_service_server::MfaServiceServer;
use keyward_proto::v1::principal_service_server::PrincipalServiceServer;
use keyward_proto::v1::revocation_service_server::RevocationServiceServer;
use keyward_proto::v1::signing_service_server::SigningServiceServer;
use keyward_proto::v1::trust_service_server::TrustServiceServer;
use std::future::Future;
use std::net::SocketAddr;
use tokio::net::TcpListener;
use tonic::transport::Server;

/// The running servers.
pub struct Running {
    /// Where the gRPC API listens.
    pub grpc_addr: SocketAddr,
    /// Where `/healthz` and `/metrics` listen.
    pub http_addr: SocketAddr,
    task: tokio::task::JoinHandle<Result<(), StartError>>,
}

impl Running {
    /// Waits until the servers stop (after the shutdown signal).
    pub async fn wait(self) -> Result<(), StartError> {
        self.task.await.map_err(|e| StartError::Io {
            what: "server task".into(),
            source: std::io::Error::other(e.to_string()),
        })?
    }
}
impl Instance {
    /// Builds the app, binds the configured listeners and serves until `shutdown`.
    pub async fn serve(
        mut self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<Running, StartError> {
        let listen = self.config.listen.clone();
        let grpc = TcpListener::bind(listen.grpc)
            .await
            .map_err(io(format!("cannot listen on {}", listen.grpc)))?;
        let http = TcpListener::bind(listen.http)
            .await
            .map_err(io(format!("cannot listen on {}", listen.http)))?;
        // Certificates name the CRL at the address verifiers reach (the bound one when
        // the configuration asked for port 0).
        if self.config.revocation.public_url.is_none() {
            let bound = http.local_addr().map_err(io("local address"))?;
            self.config.revocation.public_url = Some(format!("http://{bound}"));
        }
        let app = App::build(self).await?;
        run(app, grpc, http, shutdown).await
    }
}

/// Serves the gRPC API (mTLS) on `grpc` and `/healthz`, `/metrics` on `http` until
/// `shutdown` completes; then a last audit checkpoint is signed. Pending approvals
/// resume, and jobs run, once the listeners serve.
pub async fn run(
    app: App,
    grpc: TcpListener,
    http: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Running, StartError> {
    let grpc_addr = grpc.local_addr().map_err(io("local address"))?;
    let http_addr = http.local_addr().map_err(io("local address"))?;
    let App {
        config,
        ca,
        tls,
        backends,
        principals,
        metrics,
        keys,
        signer,
        blobs,
        audit,
        obs,
        approvals,
        unfinished,
        jobs,
        runner,
        scheduler,
        gate,
        revocations,
        publisher,
        incidents,
        tsa,
    } = app;
    let router = Server::builder()
        .tls_config(tls)
        .map_err(|e| StartError::Config(format!("TLS configuration: {e}")))?
        .layer(gate)
        .add_service(KeyServiceServer::new(KeyApi::new(
            keys.clone(),
            principals.clone(),
            approvals.clone(),
            jobs.clone(),
            signer.ledger().clone(),
            obs.clone(),
        )))
        .add_service(RevocationServiceServer::new(RevocationApi::new(
            keys.clone(),
            revocations.clone(),
            publisher.clone(),
            signer.clone(),
            (incidents.clone(), approvals.clone()),
        )))
        .add_service(TrustServiceServer::new(TrustApi::new(
            keys.clone(),
            tsa.clone(),
        )))
        .add_service(JobServiceServer::new(JobApi::new(
            jobs.clone(),
            keys.clone(),
        )))
        .add_service(SigningServiceServer::new(SigningApi::new(
            blobs,
            approvals.clone(),
            obs.clone(),
        )))
        .add_service(ImageServiceServer::new(ImageApi::new(
            signer.clone(),
            approvals.clone(),
            obs.clone(),
        )))
        .add_service(PrincipalServiceServer::new(PrincipalApi::new(
            principals,
            ca,
            keys.clone(),
            obs.mfa.clone(),
        )))
        .add_service(AuditServiceServer::new(AuditApi::new(
            audit.clone(),
            backends.clone(),
            config.ca_backend().to_string(),
        )))
        .add_service(MfaServiceServer::new(MfaApi::new(obs)))
        .add_service(ApprovalServiceServer::new(ApprovalApi::new(
            approvals.clone(),
        )));
    let incoming = tonic::transport::server::TcpIncoming::from(grpc).with_nodelay(Some(true));
    let metrics_for_tasks = metrics.clone();
    let http_app = crate::http::router(
        metrics,
        (
            audit.clone(),
            backends.clone(),
            config.ca_backend().to_string(),
        ),
        revocations.clone(),
        (tsa, config.tsa.http_concurrency, config.tsa.http_per_second),
    );

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    // Every long-lived task is supervised: one that panics or ends early is logged,
    // audited, counted and started again.
    let sup = crate::supervise::Supervisor::new(audit.clone(), metrics_for_tasks);
    let (ca_backend, stop) = (config.ca_backend().to_string(), stop_rx.clone());
    let checkpoint_every = std::time::Duration::from_secs(config.audit.checkpoint_seconds.max(1));
    let checkpoint_records = config.audit.checkpoint_records.max(1);
    let checkpoints = sup.spawn("audit-checkpoints", stop_rx.clone(), move || {
        crate::audit::checkpoint_loop(
            audit.clone(),
            backends.clone(),
            ca_backend.clone(),
            checkpoint_every,
            checkpoint_records,
            stop.clone(),
        )
    });
    let stop = stop_rx.clone();
    let jobs_stopped = sup.spawn("jobs", stop_rx.clone(), move || {
        runner.clone().run(stop.clone())
    });
    let every = std::time::Duration::from_secs(config.jobs.schedule_seconds.max(1));
    let scheduled = scheduler.map(|s| {
        let stop = stop_rx.clone();
        sup.spawn("scheduler", stop_rx.clone(), move || {
            s.clone().run(every, stop.clone())
        })
    });
    // The list is checked a few times per half-life (at most every minute) and
    // re-issued when due.
    let validity = config.revocation.validity_seconds().unwrap_or(86_400);
    let refresh_every = std::time::Duration::from_secs((validity / 8).clamp(1, 60));
    let stop = stop_rx.clone();
    let lists = revocations.clone();
    let refreshed = sup.spawn("revocation-refresh", stop_rx.clone(), move || {
        lists.clone().refresh(refresh_every, stop.clone())
    });
    let stop = stop_rx.clone();
    let published = sup.spawn("revocation-publish", stop_rx.clone(), move || {
        publisher.clone().run(stop.clone())
    });
    let mut stop_grpc = stop_rx.clone();
    let mut stop_http = stop_rx;
    let task = tokio::spawn(async move {
        let grpc = router.serve_with_incoming_shutdown(incoming, async move {
            let _ = stop_grpc.wait_for(|s| *s).await;
        });
        let http = axum::serve(http, http_app).with_graceful_shutdown(async move {
            let _ = stop_http.wait_for(|s| *s).await;
        });
        let (g, h) = tokio::join!(grpc, http);
        g.map_err(|e| StartError::Io {
            what: "gRPC server".into(),
            source: std::io::Error::other(e.to_string()),
        })?;
        h.map_err(io("HTTP server"))?;
        // Jobs finish their items in flight; a last checkpoint covers the final
        // records before the HSM pools close.
        let _ = jobs_stopped.await;
        if let Some(s) = scheduled {
            let _ = s.await;
        }
        let _ = refreshed.await;
        let _ = published.await;
        let _ = checkpoints.await;
        // Keep the registry (and with it the HSM pools) alive until both stop.
        drop(signer);
        drop(keys);
        Ok(())
    });
    // Approved requests a crash interrupted are finished by a job now that the API
    // serves (their registry pushes may take long; callers can already ask about them).
    resume_unfinished(&jobs, unfinished).await;
    incidents.ensure_derived_jobs().await;
    Ok(Running {
        grpc_addr,
        http_addr,
        task,
    })
}

/// Starts the job that signs the approved requests a crash left unsigned, leaving out
/// those a job from an earlier start still has queued.
async fn resume_unfinished(
    jobs: &crate::jobs::Jobs,
    unfinished: Vec<crate::approvals::ApprovalRecord>,
) {
    use crate::jobs::{JobKind, ResumeSpec};
    let mut covered = std::collections::HashSet::new();
    if let Ok(all) = jobs.list(None).await {
        for j in all.iter().filter(|j| !j.state.is_finished()) {
            if let JobKind::ResumeApprovals(s) = &j.kind {
                covered.extend(s.approvals.iter().cloned());
            }
        }
    }
    let ids: Vec<String> = unfinished
        .into_iter()
        .map(|r| r.id)
        .filter(|id| !covered.contains(id))
        .collect();
    tracing::info!(
        unfinished = ids.len(),
        "approved requests left unsigned by a restart are resumed by a job"
    );
    if ids.is_empty() {
        return;
    }
    let reason = format!("{} approved requests left unsigned by a restart", ids.len());
    let spec = JobKind::ResumeApprovals(ResumeSpec { approvals: ids });
    if let Err(e) = jobs.start(spec, "keywardd", reason).await {
        tracing::error!(error = %e, "cannot start the job that resumes approved requests; they resume at the next start");
    }
}
