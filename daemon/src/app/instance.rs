//! An opened instance: HSMs logged in, store open, principals loaded; and the
//! instance's own keys (CA, audit key, MFA sealing key), made through `bootstrap`.

use super::backends::open_backend;
use super::bootstrap::{Existing, Made, bootstrap};
use super::client_files::{ClientIdentity, write_atomic};
use super::{StartError, io};
use crate::audit::{AuditKey, AuditLog, Decision};
use crate::authz::{Principals, Role, pem_fingerprint};
use crate::config::Config;
use crate::hsm::{Backend, HsmPool};
use crate::keys::{Backends, KeyRegistry};
use crate::metrics::Metrics;
use crate::mfa::{Mfa, MfaSettings, NewEnrolment, SealingKey};
use crate::pki::timestamps::TsaKey;
use crate::pki::{self, CaRecord, Subject};
use crate::store::integrity::ProtectedStore;
use crate::store::{self, Namespace, Store};
use std::collections::BTreeMap;
use std::sync::Arc;

/// An opened instance: HSMs logged in, store open.
pub struct Instance {
    pub(super) config: Config,
    pub(super) store: Arc<dyn Store>,
    /// The records that grant power, MAC'd in the HSM.
    pub(super) protected: ProtectedStore,
    /// Records given a MAC at this start (a store from before record MACs).
    migrated: u64,
    pub(super) backends: Arc<Backends>,
    pub(super) principals: Arc<Principals>,
    pub(super) metrics: Arc<Metrics>,
}

impl Instance {
    /// Opens every backend (logging in once each) and the store.
    pub async fn open(config: Config) -> Result<Self, StartError> {
        Self::open_with(config, Vec::new()).await
    }

    /// Like [`Instance::open`], with extra, already opened backends (a YubiHSM
    /// MockHsm, say).
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
                .with_timer(metrics.hsm_timer(&name));
            pools.insert(name, pool);
        }
        let backends = Arc::new(
            Backends::new(pools, config.default_backend().to_string())
                .map_err(StartError::Config)?,
        );
        crate::files::private_dir(&config.data_dir)?;
        let store_dir = config.store_dir();
        let store = store::open(&store_dir, config.store.engine)?;
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
    pub(super) async fn audit_start(
        &self,
        audit: &AuditLog,
        keys: &KeyRegistry,
    ) -> Result<(), StartError> {
        let mut events: Vec<(&str, Decision, String, String)> = Vec::new();
        if self.migrated > 0 {
            let why = format!(
                "{} records written before record MACs now carry one",
                self.migrated
            );
            events.push(("MigrateRecords", Decision::Allowed, String::new(), why));
        }
        for (name, why) in keys.refused().chain(self.principals.refused()) {
            events.push(("RefuseRecord", Decision::Denied, name.clone(), why.clone()));
        }
        for (action, decision, target, reason) in &events {
            let entry = crate::audit::Entry {
                principal: "keywardd",
                action,
                target,
                decision: *decision,
                reason,
                request_hash: "",
            };
            audit
                .append(entry)
                .await
                .map_err(|e| StartError::Config(format!("cannot write the audit log: {e}")))?;
        }
        Ok(())
    }

    /// The CA record, if the instance is initialised.
    pub async fn ca(&self) -> Result<Option<CaRecord>, StartError> {
        Ok(store::get_json(self.store.as_ref(), Namespace::Meta, "ca").await?)
    }

    pub(super) fn ca_pool(&self) -> Result<&HsmPool, StartError> {
        self.backends
            .get(self.config.ca_backend())
            .map_err(StartError::from)
    }

    /// Generates the CA key inside the HSM and the self-signed CA certificate, and
    /// issues the first admin's client identity. Refuses an initialised instance.
    pub async fn initialise(&self, admin: &str) -> Result<ClientIdentity, StartError> {
        if self.ca().await?.is_some() {
            return Err(StartError::AlreadyInitialised);
        }
        crate::keys::validate_name(admin).map_err(StartError::Config)?;
        let pool = self.ca_pool()?;
        let backend = pool.backend().name().to_string();
        // The instance's own keys (CA, audit, time-stamping) follow the CA's backend.
        let algorithm = pki::instance_key::choose(
            self.config.ca.algorithm,
            pool.backend().algorithms(),
            &backend,
        )
        .map_err(StartError::Config)?;
        let cn = self.config.ca.common_name.clone();
        let ca: CaRecord = bootstrap(
            self.store.as_ref(),
            pool,
            "ca",
            Existing::Refuse,
            move |s| {
                let key = s.generate("ca", algorithm)?;
                match pki::self_sign_ca(s, &backend, &key.hsm_id, &key.public_key_der, &cn) {
                    Ok(record) => Ok(Made {
                        record,
                        hsm_id: key.hsm_id,
                    }),
                    Err(e) => {
                        let _ = s.destroy(&key.hsm_id);
                        Err(e)
                    }
                }
            },
        )
        .await?;
        tracing::info!(fingerprint = %pki::ca_fingerprint(&ca), "Keyward CA created in the HSM");
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
    pub(super) async fn audit_key(&self, ca: &CaRecord) -> Result<AuditKey, StartError> {
        let pool = self.ca_pool()?;
        // The same kind of key as the CA's.
        let algorithm = hex::decode(&ca.public_key)
            .ok()
            .and_then(|spki| pki::instance_key::algorithm_of(&spki).ok())
            .ok_or_else(|| {
                StartError::Config("the stored CA record's public key is unreadable".into())
            })?;
        let backend = pool.backend().name().to_string();
        bootstrap(
            self.store.as_ref(),
            pool,
            "audit_key",
            Existing::Use,
            move |s| {
                let k = s.generate("audit", algorithm)?;
                Ok(Made {
                    record: AuditKey {
                        backend,
                        hsm_id: k.hsm_id.clone(),
                        public_key: hex::encode(&k.public_key_der),
                    },
                    hsm_id: k.hsm_id,
                })
            },
        )
        .await
    }

    /// The time-stamping authority's key and certificate: generated inside the CA's
    /// HSM and certified by the CA on first start, then reused.
    pub(super) async fn tsa_key(&self, ca: &CaRecord) -> Result<TsaKey, StartError> {
        let pool = self.ca_pool()?;
        let backend = pool.backend().name().to_string();
        let ca = ca.clone();
        bootstrap(
            self.store.as_ref(),
            pool,
            "tsa_key",
            Existing::Use,
            move |s| {
                let record = TsaKey::make(s, backend, &ca)?;
                let hsm_id = record.hsm_id.clone();
                Ok(Made { record, hsm_id })
            },
        )
        .await
    }

    /// Second factors, with the key that seals TOTP secrets (generated inside the CA's
    /// HSM on first use).
    pub async fn mfa(&self) -> Result<Mfa, StartError> {
        let pool = self.ca_pool()?;
        let backend = pool.backend().name().to_string();
        let key = bootstrap(
            self.store.as_ref(),
            pool,
            "mfa_key",
            Existing::Use,
            move |s| {
                let hsm_id = s.generate_sealing_key("mfa")?;
                Ok(Made {
                    record: SealingKey {
                        backend,
                        hsm_id: hsm_id.clone(),
                    },
                    hsm_id,
                })
            },
        )
        .await?;
        let settings = MfaSettings {
            required: self.config.mfa.required,
            max_failures: self.config.mfa.max_failures.max(1),
            lockout: std::time::Duration::from_secs(self.config.mfa.lockout_seconds),
        };
        Ok(Mfa::new(
            self.protected.clone(),
            self.backends.clone(),
            key,
            settings,
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
    pub(super) async fn server_identity(
        &self,
        ca: &CaRecord,
    ) -> Result<(String, String), StartError> {
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
}
