//! A Keyward instance: opens the configured HSMs and the store, initialises the CA,
//! and serves the gRPC API (mTLS) and the HTTP endpoints.

use crate::api::{
    ApprovalApi, AuditApi, Gate, GateLayer, ImageApi, KeyApi, MfaApi, PrincipalApi, SigningApi,
};
use crate::audit::{AuditKey, AuditLog};
use crate::authz::{Principals, Role, pem_fingerprint};
use crate::config::{BackendConfig, Config, YubiConnector, pkcs11_settings, secret_source};
use crate::hsm::pkcs11::Pkcs11Backend;
use crate::hsm::yubihsm::YubiHsmBackend;
use crate::hsm::{Algorithm, Backend, HsmError, HsmPool};
use crate::keys::{Backends, KeyError, KeyRegistry};
use crate::metrics::Metrics;
use crate::mfa::{Mfa, MfaSettings, NewEnrolment, SealingKey};
use crate::pki::{self, CaRecord, PkiError, Subject, TlsIdentity};
use crate::registry::{DockerConfig, Registries, RegistrySettings};
use crate::signing::ImageSigner;
use crate::signing::blob::BlobSigner;
use crate::signing::ledger::SignatureLedger;
use crate::store::integrity::ProtectedStore;
use crate::store::{self, Namespace, SledStore, Store, StoreError};
use keyward_proto::v1::approval_service_server::ApprovalServiceServer;
use keyward_proto::v1::audit_service_server::AuditServiceServer;
use keyward_proto::v1::image_service_server::ImageServiceServer;
use keyward_proto::v1::key_service_server::KeyServiceServer;
use keyward_proto::v1::mfa_service_server::MfaServiceServer;
use keyward_proto::v1::principal_service_server::PrincipalServiceServer;
use keyward_proto::v1::signing_service_server::SigningServiceServer;
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

/// Why an instance could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is unusable.
    #[error("{0}")]
    Config(String),
    /// An HSM could not be opened.
    #[error("backend {backend}: {source}")]
    Hsm {
        /// Which backend.
        backend: String,
        /// Why.
        source: HsmError,
    },
    /// The store could not be opened or read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The record MAC key could not be opened, or the store does not match the HSM.
    #[error(transparent)]
    Integrity(#[from] crate::store::integrity::OpenError),
    /// Keys could not be loaded.
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// A certificate could not be issued.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// The instance has no CA yet.
    #[error("this instance is not initialised: run `keywardd init --config {0}` first")]
    NotInitialised(String),
    /// `init` on an initialised instance.
    #[error("this instance is already initialised (its CA exists); nothing was changed")]
    AlreadyInitialised,
    /// A file could not be written or its directory is not safe.
    #[error(transparent)]
    File(#[from] crate::files::FileError),
    /// A file or socket failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> StartError {
    let what = what.into();
    move |source| StartError::Io { what, source }
}

/// Writes a file atomically with the given mode (see [`crate::files::write_atomic`]).
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), StartError> {
    crate::files::write_atomic(path, data, mode).map_err(StartError::from)
}

/// A principal's client identity, ready to be written as files.
pub struct ClientIdentity {
    /// The principal's name (certificate CN).
    pub name: String,
    /// Key and certificate.
    pub tls: TlsIdentity,
    /// The Keyward CA certificate, PEM.
    pub ca_pem: String,
}

impl ClientIdentity {
    /// Writes `NAME.crt`, `NAME.key` (0600), `ca.pem` and, given an endpoint, a
    /// `client.toml` pointing at it into `dir`; returns the client.toml path.
    pub fn write(&self, dir: &Path, endpoint: Option<&str>) -> Result<PathBuf, StartError> {
        std::fs::create_dir_all(dir).map_err(io(format!("cannot create {}", dir.display())))?;
        let cert = dir.join(format!("{}.crt", self.name));
        let key = dir.join(format!("{}.key", self.name));
        let ca = dir.join("ca.pem");
        write_atomic(&cert, self.tls.certificate_pem.as_bytes(), 0o644)?;
        write_atomic(&key, self.tls.key_pem.as_bytes(), 0o600)?;
        write_atomic(&ca, self.ca_pem.as_bytes(), 0o644)?;
        let path = dir.join("client.toml");
        if let Some(endpoint) = endpoint {
            write_client_config(&path, endpoint, &ca, &cert, &key)?;
        }
        Ok(path)
    }
}

/// Writes a client configuration for the `keyward` CLI (the client's own type, so
/// daemon, CLI and tests read and write one schema).
pub fn write_client_config(
    path: &Path,
    endpoint: &str,
    ca: &Path,
    cert: &Path,
    key: &Path,
) -> Result<(), StartError> {
    let config = keyward_client::ClientConfig {
        endpoint: endpoint.to_string(),
        server_name: Some("localhost".into()),
        ca_cert: ca.to_path_buf(),
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
    };
    let name = cert
        .file_stem()
        .map(|s| s.to_string_lossy())
        .unwrap_or_default();
    write_atomic(path, config.to_toml(&name).as_bytes(), 0o600)
}

/// An opened instance: HSMs logged in, store open.
pub struct Instance {
    config: Config,
    store: Arc<dyn Store>,
    /// The records that grant power, MAC'd in the HSM.
    protected: ProtectedStore,
    /// Records given a MAC at this start (a store from before record MACs).
    migrated: u64,
    backends: Arc<Backends>,
    principals: Arc<Principals>,
    metrics: Arc<Metrics>,
}

fn open_backend(b: &BackendConfig) -> Result<Arc<dyn Backend>, StartError> {
    let hsm = |source| StartError::Hsm {
        backend: b.name().to_string(),
        source,
    };
    match b {
        BackendConfig::Pkcs11 { .. } => {
            let settings = pkcs11_settings(b)
                .ok_or_else(|| StartError::Config("not a pkcs11 backend".into()))?
                .map_err(StartError::Config)?;
            Ok(Arc::new(Pkcs11Backend::open(settings).map_err(hsm)?))
        }
        BackendConfig::Yubihsm {
            name,
            connector,
            auth_key_id,
            password_file,
            password_env,
        } => {
            let password = secret_source(&format!("backend {name}"), password_file, password_env)
                .map_err(StartError::Config)?
                .read()
                .map_err(hsm)?;
            let credentials =
                yubihsm::Credentials::from_password(*auth_key_id, password.as_bytes());
            let connector = match connector {
                YubiConnector::Http { addr, port } => {
                    yubihsm::Connector::http(&yubihsm::HttpConfig {
                        addr: addr.clone(),
                        port: *port,
                        timeout_ms: 5000,
                    })
                }
                #[cfg(feature = "usb")]
                YubiConnector::Usb { serial } => {
                    let serial =
                        serial.as_deref().map(str::parse).transpose().map_err(|_| {
                            StartError::Config(format!("backend {name}: bad serial"))
                        })?;
                    yubihsm::Connector::usb(&yubihsm::UsbConfig {
                        serial,
                        timeout_ms: 5000,
                    })
                }
                #[cfg(not(feature = "usb"))]
                YubiConnector::Usb { .. } => {
                    return Err(StartError::Config(format!(
                        "backend {name}: this keywardd was built without USB support; use the http connector (yubihsm-connector) or build with --features usb"
                    )));
                }
            };
            Ok(Arc::new(
                YubiHsmBackend::open(name, connector, credentials).map_err(hsm)?,
            ))
        }
    }
}

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
    /// Opens every backend (logging in once each) and the store.
    pub async fn open(config: Config) -> Result<Self, StartError> {
        Self::open_with(config, Vec::new()).await
    }

    /// Like [`Instance::open`], with extra, already opened backends (tests use this for
    /// a YubiHSM MockHsm).
    pub async fn open_with(
        config: Config,
        extra: Vec<Arc<dyn Backend>>,
    ) -> Result<Self, StartError> {
        // Registry clients (rustls) use the process-wide crypto provider; ring is the
        // one already linked for gRPC. Installing twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let metrics = Arc::new(Metrics::new());
        let cfgs = config.backends.clone();
        let opened = tokio::task::spawn_blocking(move || {
            cfgs.iter().map(open_backend).collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(|e| StartError::Config(e.to_string()))??;
        let mut pools = BTreeMap::new();
        for backend in opened.into_iter().chain(extra) {
            let name = backend.name().to_string();
            let pool = HsmPool::start(backend, config.hsm_threads)
                .map_err(|source| StartError::Hsm {
                    backend: name.clone(),
                    source,
                })?
                .with_observer(metrics.hsm_observer(&name));
            pools.insert(name, pool);
        }
        let backends = Arc::new(
            Backends::new(pools, config.default_backend().to_string())
                .map_err(StartError::Config)?,
        );
        crate::files::private_dir(&config.data_dir)?;
        let store_dir = config.data_dir.join("store");
        let store: Arc<dyn Store> = Arc::new(SledStore::open(&store_dir)?);
        // Whatever the umask was when the store was written: the daemon's user only.
        crate::files::restrict_tree(&store_dir)?;
        let (protected, migrated) = crate::store::integrity::open_protected(
            store.clone(),
            backends.clone(),
            config.ca_backend(),
        )
        .await?;
        if migrated > 0 {
            tracing::info!(
                records = migrated,
                "records written before record MACs now carry one"
            );
        }
        let principals = Arc::new(Principals::load(protected.clone()).await?);
        Ok(Self {
            config,
            store,
            protected,
            migrated,
            backends,
            principals,
            metrics,
        })
    }

    /// Audits what start-up did to records: the migration to record MACs, and every
    /// record refused because its MAC failed.
    async fn audit_start(&self, audit: &AuditLog, keys: &KeyRegistry) -> Result<(), StartError> {
        let mut events: Vec<(&str, String, String)> = Vec::new();
        if self.migrated > 0 {
            events.push((
                "MigrateRecords",
                String::new(),
                format!(
                    "{} records written before record MACs now carry one",
                    self.migrated
                ),
            ));
        }
        for (name, why) in keys.refused().chain(self.principals.refused()) {
            events.push(("RefuseRecord", name.clone(), why.clone()));
        }
        for (action, target, reason) in &events {
            let decision = if *action == "MigrateRecords" {
                "allowed"
            } else {
                "denied"
            };
            audit
                .append(crate::audit::Entry {
                    principal: "keywardd",
                    action,
                    target,
                    decision,
                    reason,
                    request_hash: "",
                })
                .await
                .map_err(|e| StartError::Config(format!("cannot write the audit log: {e}")))?;
        }
        Ok(())
    }

    /// The CA record, if the instance is initialised.
    pub fn ca(&self) -> Result<Option<CaRecord>, StartError> {
        Ok(store::get_json(self.store.as_ref(), Namespace::Meta, "ca")?)
    }

    fn ca_pool(&self) -> Result<&HsmPool, StartError> {
        self.backends
            .get(self.config.ca_backend())
            .map_err(StartError::from)
    }

    /// Generates the CA key inside the HSM and the self-signed CA certificate, and
    /// issues the first admin's client identity. Refuses an initialised instance.
    pub async fn initialise(&self, admin: &str) -> Result<ClientIdentity, StartError> {
        if self.ca()?.is_some() {
            return Err(StartError::AlreadyInitialised);
        }
        crate::keys::validate_name(admin).map_err(StartError::Config)?;
        let pool = self.ca_pool()?;
        let backend = pool.backend().name().to_string();
        let cn = self.config.ca.common_name.clone();
        let b = backend.clone();
        let ca: CaRecord = pool
            .run("init-ca", move |s| {
                let key = s.generate("ca", Algorithm::EcdsaP256)?;
                match pki::self_sign_ca(s, &b, &key.hsm_id, &key.public_key_der, &cn) {
                    Ok(ca) => Ok(ca),
                    Err(e) => {
                        let _ = s.destroy(&key.hsm_id);
                        Err(e)
                    }
                }
            })
            .await?;
        let stored = store::to_json(&ca).and_then(|v| self.store.create(Namespace::Meta, "ca", &v));
        if !matches!(stored, Ok(true)) {
            let id = ca.hsm_id.clone();
            let _: Result<(), HsmError> = pool.run("destroy", move |s| s.destroy(&id)).await;
            return Err(match stored {
                Err(e) => e.into(),
                _ => StartError::AlreadyInitialised,
            });
        }
        tracing::info!(backend, fingerprint = %pki::ca_fingerprint(&ca), "Keyward CA created in the HSM");
        let identity = self.issue_client(&ca, admin).await?;
        let fingerprint = pem_fingerprint(&identity.tls.certificate_pem)
            .ok_or_else(|| StartError::Config("issued an unreadable certificate".into()))?;
        self.principals
            .add(admin, vec![Role::Admin], fingerprint, "keywardd init")
            .await
            .map_err(|e| StartError::Config(e.to_string()))?;
        Ok(identity)
    }

    /// Issues a client identity for a principal.
    pub async fn issue_client(
        &self,
        ca: &CaRecord,
        name: &str,
    ) -> Result<ClientIdentity, StartError> {
        let ca2 = ca.clone();
        let who = name.to_string();
        let tls = self
            .ca_pool()?
            .run("issue-client", move |s| {
                pki::issue_tls_identity(s, &ca2, Subject::Client(&who))
            })
            .await?;
        Ok(ClientIdentity {
            name: name.to_string(),
            tls,
            ca_pem: ca.certificate_pem.clone(),
        })
    }

    /// The audit key: generated inside the CA's HSM on first start, then reused.
    async fn audit_key(&self) -> Result<AuditKey, StartError> {
        if let Some(k) =
            store::get_json::<AuditKey>(self.store.as_ref(), Namespace::Meta, "audit_key")?
        {
            return Ok(k);
        }
        let pool = self.ca_pool()?;
        let backend = pool.backend().name().to_string();
        let generated = pool
            .run("generate", |s| s.generate("audit", Algorithm::EcdsaP256))
            .await
            .map_err(|source| StartError::Hsm {
                backend: backend.clone(),
                source,
            })?;
        let key = AuditKey {
            backend,
            hsm_id: generated.hsm_id.clone(),
            public_key: hex::encode(&generated.public_key_der),
        };
        let stored =
            store::to_json(&key).and_then(|v| self.store.create(Namespace::Meta, "audit_key", &v));
        if !matches!(stored, Ok(true)) {
            let id = generated.hsm_id;
            let _: Result<(), HsmError> = pool.run("destroy", move |s| s.destroy(&id)).await;
            stored?;
            return Err(StartError::Config(
                "the audit key was created concurrently; restart".into(),
            ));
        }
        tracing::info!("audit key created in the HSM");
        Ok(key)
    }

    /// Second factors, with the key that seals TOTP secrets (generated inside the CA's
    /// HSM on first use).
    pub async fn mfa(&self) -> Result<Mfa, StartError> {
        let key =
            match store::get_json::<SealingKey>(self.store.as_ref(), Namespace::Meta, "mfa_key")? {
                Some(k) => k,
                None => {
                    let pool = self.ca_pool()?;
                    let backend = pool.backend().name().to_string();
                    let hsm_id = pool
                        .run("generate", |s| s.generate_sealing_key("mfa"))
                        .await
                        .map_err(|source| StartError::Hsm {
                            backend: backend.clone(),
                            source,
                        })?;
                    let key = SealingKey { backend, hsm_id };
                    if !self
                        .store
                        .create(Namespace::Meta, "mfa_key", &store::to_json(&key)?)?
                    {
                        return Err(StartError::Config(
                            "the MFA key was created concurrently; restart".into(),
                        ));
                    }
                    key
                }
            };
        Ok(Mfa::new(
            self.protected.clone(),
            self.backends.clone(),
            key,
            MfaSettings {
                required: self.config.mfa.required,
                max_failures: self.config.mfa.max_failures.max(1),
                lockout: std::time::Duration::from_secs(self.config.mfa.lockout_seconds),
            },
        ))
    }

    /// Enrols a principal's TOTP, active at once (the first admin at initialisation).
    pub async fn enroll_now(&self, principal: &str) -> Result<NewEnrolment, StartError> {
        self.mfa()
            .await?
            .enroll(principal, true)
            .await
            .map_err(|e| StartError::Config(e.to_string()))
    }

    /// The server's TLS identity from the data directory, issued anew if missing.
    async fn server_identity(&self, ca: &CaRecord) -> Result<(String, String), StartError> {
        let dir = self.config.data_dir.join("tls");
        let (crt, key) = (dir.join("server.crt"), dir.join("server.key"));
        if let (Ok(c), Ok(k)) = (std::fs::read_to_string(&crt), std::fs::read_to_string(&key)) {
            return Ok((c, k));
        }
        std::fs::create_dir_all(&dir).map_err(io(format!("cannot create {}", dir.display())))?;
        let names = self.config.tls.server_names.clone();
        let ca2 = ca.clone();
        let tls = self
            .ca_pool()?
            .run("issue-server", move |s| {
                pki::issue_tls_identity(s, &ca2, Subject::Server(&names))
            })
            .await?;
        write_atomic(&key, tls.key_pem.as_bytes(), 0o600)?;
        write_atomic(&crt, tls.certificate_pem.as_bytes(), 0o644)?;
        Ok((tls.certificate_pem, tls.key_pem.to_string()))
    }

    /// Binds the listeners and starts serving until `shutdown` completes.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<Running, StartError> {
        let ca = self.ca()?.ok_or_else(|| {
            StartError::NotInitialised(self.config.data_dir.display().to_string())
        })?;
        write_atomic(
            &self.config.data_dir.join("ca.pem"),
            ca.certificate_pem.as_bytes(),
            0o644,
        )?;
        let ca = Arc::new(ca);
        let keys = Arc::new(
            KeyRegistry::load(self.protected.clone(), self.backends.clone(), ca.clone()).await?,
        );
        let audit_key = self.audit_key().await?;
        let report = keys
            .reconcile(&[(
                audit_key.backend.clone(),
                audit_key.hsm_id.clone(),
                "the audit key".to_string(),
            )])
            .await?;
        for m in &report.missing_on_hsm {
            tracing::warn!(version = %m, "key version is in the store but its HSM object is missing; it cannot sign");
        }
        for u in &report.unknown_on_hsm {
            tracing::warn!(object = %u, "Keyward-labelled HSM object is not in the store (left in place)");
        }
        for w in &report.without_id {
            tracing::warn!(object = %w, "HSM private key without CKA_ID (half-written object; left in place)");
        }
        let docker_path = self
            .config
            .docker_config
            .clone()
            .unwrap_or_else(DockerConfig::default_path);
        let registries = Registries::new(RegistrySettings {
            entries: self.config.registries.clone(),
            docker: DockerConfig::load(&docker_path).map_err(StartError::Config)?,
            limits: self.config.oci.clone(),
        });
        let ledger = SignatureLedger::new(self.store.clone());
        let signer = Arc::new(ImageSigner::new(keys.clone(), registries, ledger.clone()));
        let blobs = Arc::new(BlobSigner::new(keys.clone(), ledger));
        let (cert, key) = self.server_identity(&ca).await?;
        let tls = ServerTlsConfig::new()
            .identity(Identity::from_pem(cert, key))
            .client_ca_root(Certificate::from_pem(&ca.certificate_pem));

        let grpc = tokio::net::TcpListener::bind(self.config.listen.grpc)
            .await
            .map_err(io(format!("cannot listen on {}", self.config.listen.grpc)))?;
        let http = tokio::net::TcpListener::bind(self.config.listen.http)
            .await
            .map_err(io(format!("cannot listen on {}", self.config.listen.http)))?;
        let grpc_addr = grpc.local_addr().map_err(io("local address"))?;
        let http_addr = http.local_addr().map_err(io("local address"))?;

        let audit = Arc::new(
            AuditLog::open(self.store.clone(), audit_key, self.config.audit.enabled)
                .map_err(StartError::Store)?,
        );
        if !audit.enabled() {
            tracing::warn!(
                "the audit log is disabled ([audit] enabled = false): requests are not recorded"
            );
        }
        self.audit_start(&audit, &keys).await?;
        let mfa = Arc::new(self.mfa().await?);
        if !mfa.required() {
            tracing::warn!("MFA is not enforced ([mfa] required = false)");
        }
        let obs = crate::api::Observer {
            metrics: self.metrics.clone(),
            audit: audit.clone(),
            mfa,
        };
        let approvals = Arc::new(crate::approvals::Approvals::new(
            self.protected.clone(),
            keys.clone(),
            (signer.clone(), blobs.clone()),
            self.principals.clone(),
            audit.clone(),
            std::time::Duration::from_secs(3600),
        ));
        approvals.resume().await;
        let gate = GateLayer::new(Gate::new(
            self.principals.clone(),
            keys.clone(),
            obs.clone(),
        ));
        let router = Server::builder()
            .tls_config(tls)
            .map_err(|e| StartError::Config(format!("TLS configuration: {e}")))?
            .layer(gate)
            .add_service(KeyServiceServer::new(KeyApi::new(
                keys.clone(),
                self.principals.clone(),
                approvals.clone(),
                obs.clone(),
            )))
            .add_service(SigningServiceServer::new(SigningApi::new(
                blobs.clone(),
                approvals.clone(),
                obs.clone(),
            )))
            .add_service(ImageServiceServer::new(ImageApi::new(
                signer.clone(),
                approvals.clone(),
                obs.clone(),
            )))
            .add_service(PrincipalServiceServer::new(PrincipalApi::new(
                self.principals.clone(),
                ca.clone(),
                keys.clone(),
            )))
            .add_service(AuditServiceServer::new(AuditApi::new(
                audit.clone(),
                self.backends.clone(),
                self.config.ca_backend().to_string(),
            )))
            .add_service(MfaServiceServer::new(MfaApi::new(obs.clone())))
            .add_service(ApprovalServiceServer::new(ApprovalApi::new(approvals)));
        let incoming = tonic::transport::server::TcpIncoming::from(grpc).with_nodelay(Some(true));
        let http_app = crate::http::router(self.metrics.clone(), audit.clone());

        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        let checkpoints = tokio::spawn(crate::audit::checkpoint_loop(
            audit.clone(),
            self.backends.clone(),
            self.config.ca_backend().to_string(),
            std::time::Duration::from_secs(self.config.audit.checkpoint_seconds.max(1)),
            self.config.audit.checkpoint_records.max(1),
            stop_rx.clone(),
        ));
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
            // A last checkpoint covers the final records before the HSM pools close.
            let _ = checkpoints.await;
            // Keep the registry (and with it the HSM pools) alive until both stop.
            drop(signer);
            drop(keys);
            Ok(())
        });
        Ok(Running {
            grpc_addr,
            http_addr,
            task,
        })
    }
}
