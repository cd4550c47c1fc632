//! Keys and key versions: records, the version state machine, and the operations that
//! touch both the HSM and the store (create, rotate, sign).

mod backends;
mod policy;
mod reconcile;
mod record;
mod version_ref;

pub use backends::Backends;
pub use policy::{PolicyChange, weakenings};
pub use record::{KeyRecord, KeyVersion, Purpose, VersionState, validate_name, validate_scope};
pub use version_ref::VersionRef;

use crate::authz::SignPermit;
use crate::hsm::public_key::fingerprint;
use crate::hsm::{Algorithm, HsmError, SignInput};
use crate::pki::{self, CaRecord, PkiError, Subject};
use crate::store::integrity::{IntegrityError, ProtectedStore};
use crate::store::{Namespace, StoreError};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use time::OffsetDateTime;

/// Errors of key operations. `api` turns them into gRPC statuses.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// No key has this name.
    #[error("key {0:?} not found")]
    NotFound(String),
    /// A key with this name exists.
    #[error("key {0:?} already exists")]
    AlreadyExists(String),
    /// The key has no such version.
    #[error("key {name:?} has no version {version}")]
    VersionNotFound {
        /// Key name.
        name: String,
        /// Version asked for.
        version: u32,
    },
    /// The key has no active version to sign with.
    #[error("key {0:?} has no active version")]
    NoActiveVersion(String),
    /// The request is malformed.
    #[error("{0}")]
    InvalidArgument(String),
    /// The HSM failed or refused.
    #[error(transparent)]
    Hsm(#[from] HsmError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored record failed its integrity check, or the MAC key failed.
    #[error(transparent)]
    Integrity(#[from] IntegrityError),
    /// The key's stored record was refused at start-up.
    #[error("key {name:?} is not used: {why}")]
    Refused {
        /// Key name.
        name: String,
        /// Why.
        why: String,
    },
    /// A certificate could not be issued.
    #[error(transparent)]
    Pki(#[from] PkiError),
}

/// What the start-up comparison of store and HSMs found. Nothing is deleted.
#[derive(Debug, Default, Clone)]
pub struct Reconciliation {
    /// Key versions the store lists whose HSM object is missing: `key/vN on backend (id)`.
    pub missing_on_hsm: Vec<String>,
    /// Keyward-labelled HSM objects the store does not know: `backend: id (label)`.
    pub unknown_on_hsm: Vec<String>,
    /// Objects with no CKA_ID (half-written by an interrupted generation).
    pub without_id: Vec<String>,
}

/// All keys, cached in memory over the store. Writes go to the store first.
pub struct KeyRegistry {
    store: ProtectedStore,
    backends: Arc<Backends>,
    ca: Arc<CaRecord>,
    cache: RwLock<HashMap<String, Arc<KeyRecord>>>,
    /// Keys whose stored record failed its integrity check, and why.
    refused: HashMap<String, String>,
    /// HSM objects already checked to be the key version they are used as.
    verified_objects: RwLock<std::collections::HashSet<String>>,
    /// Serialises create and rotate so that two rotations never race on one record.
    writes: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for KeyRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRegistry").finish_non_exhaustive()
    }
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

impl KeyRegistry {
    /// Loads every key record from the store.
    /// A record whose MAC fails is not loaded: requests naming it are refused and say
    /// why.
    pub async fn load(
        store: ProtectedStore,
        backends: Arc<Backends>,
        ca: Arc<CaRecord>,
    ) -> Result<Self, KeyError> {
        let mut cache = HashMap::new();
        let mut refused = HashMap::new();
        for (name, rec) in store.list::<KeyRecord>(Namespace::Keys).await? {
            match rec {
                Ok(rec) if rec.name == name => {
                    cache.insert(name, Arc::new(rec));
                }
                Ok(_) => {
                    tracing::error!(key = %name, "a stored key record names another key; it is not used");
                    refused.insert(name, "its stored record names another key".to_string());
                }
                Err(e) => {
                    tracing::error!(key = %name, error = %e, "key record refused");
                    refused.insert(name, e.to_string());
                }
            }
        }
        Ok(Self {
            store,
            backends,
            ca,
            cache: RwLock::new(cache),
            refused,
            verified_objects: RwLock::new(Default::default()),
            writes: tokio::sync::Mutex::new(()),
        })
    }

    /// Keys whose stored record was refused at start-up, and why.
    pub fn refused(&self) -> impl Iterator<Item = (&String, &String)> {
        self.refused.iter()
    }

    /// The backends keys live on.
    pub fn backends(&self) -> &Arc<Backends> {
        &self.backends
    }

    /// The CA that certifies key versions.
    pub fn ca(&self) -> &CaRecord {
        &self.ca
    }

    /// A key by name.
    pub fn get(&self, name: &str) -> Result<Arc<KeyRecord>, KeyError> {
        self.cache
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
            .ok_or_else(|| match self.refused.get(name) {
                Some(why) => KeyError::Refused {
                    name: name.to_string(),
                    why: why.clone(),
                },
                None => KeyError::NotFound(name.to_string()),
            })
    }

    /// All keys, by name.
    pub fn list(&self) -> Vec<Arc<KeyRecord>> {
        let mut all: Vec<_> = self
            .cache
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    fn remember(&self, rec: KeyRecord) -> Arc<KeyRecord> {
        let rec = Arc::new(rec);
        self.cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(rec.name.clone(), rec.clone());
        rec
    }

    /// Generates a key pair in the HSM and certifies it. If certifying fails, the HSM
    /// object is deleted again.
    async fn new_version(
        &self,
        name: &str,
        backend: &str,
        algorithm: Algorithm,
        version: u32,
    ) -> Result<KeyVersion, KeyError> {
        let pool = self.backends.get(backend)?;
        let label = format!("{name}/v{version}");
        let generated = pool
            .run("generate", move |s| s.generate(&label, algorithm))
            .await
            .map_err(KeyError::Hsm)?;
        let ca = self.ca.clone();
        let ca_pool = self.backends.get(&ca.backend)?;
        let (key, spki) = (name.to_string(), generated.public_key_der.clone());
        let cert: Result<String, PkiError> = ca_pool
            .run("certify", move |s| {
                pki::issue(
                    s,
                    &ca,
                    Subject::KeyVersion { key: &key, version },
                    &spki,
                    algorithm,
                )
            })
            .await;
        let certificate_pem = match cert {
            Ok(c) => c,
            Err(e) => {
                self.destroy_quietly(backend, &generated.hsm_id).await;
                return Err(e.into());
            }
        };
        Ok(KeyVersion {
            version,
            state: VersionState::Active,
            fingerprint: fingerprint(&generated.public_key_der),
            hsm_id: generated.hsm_id,
            public_key: generated.public_key_der,
            certificate_pem,
            created_at: now(),
            activated_at: Some(now()),
            retired_at: None,
        })
    }

    async fn destroy_quietly(&self, backend: &str, hsm_id: &str) {
        let Ok(pool) = self.backends.get(backend) else {
            return;
        };
        let id = hsm_id.to_string();
        let destroyed: Result<(), HsmError> = pool.run("destroy", move |s| s.destroy(&id)).await;
        if let Err(e) = destroyed {
            tracing::error!(backend, hsm_id, error = %e, "could not delete an HSM key after a failed operation; reconciliation will report it");
        }
    }

    /// Creates a key with its first, active version. Atomic: if the record cannot be
    /// stored, the HSM object is deleted and the store's error returned.
    pub async fn create(
        &self,
        name: &str,
        algorithm: &str,
        backend: &str,
        scope: Vec<String>,
        purpose: Purpose,
    ) -> Result<Arc<KeyRecord>, KeyError> {
        validate_name(name).map_err(KeyError::InvalidArgument)?;
        validate_scope(&scope).map_err(KeyError::InvalidArgument)?;
        let algorithm = if algorithm.is_empty() {
            Algorithm::EcdsaP256
        } else {
            Algorithm::parse(algorithm).map_err(KeyError::InvalidArgument)?
        };
        let pool = self.backends.get(backend)?;
        pool.backend().check_algorithm(algorithm)?;
        let backend = pool.backend().name().to_string();

        let _w = self.writes.lock().await;
        if self.get(name).is_ok() {
            return Err(KeyError::AlreadyExists(name.to_string()));
        }
        let v1 = self.new_version(name, &backend, algorithm, 1).await?;
        let hsm_id = v1.hsm_id.clone();
        let rec = KeyRecord {
            name: name.to_string(),
            algorithm,
            backend: backend.clone(),
            created_at: now(),
            versions: vec![v1],
            scope,
            signers: Vec::new(),
            require_mfa: false,
            approvers: Vec::new(),
            approvals: 0,
            purpose,
        };
        let stored = self.store.create(Namespace::Keys, name, &rec).await;
        match stored {
            Ok(true) => Ok(self.remember(rec)),
            Ok(false) => {
                self.destroy_quietly(&backend, &hsm_id).await;
                Err(KeyError::AlreadyExists(name.to_string()))
            }
            Err(e) => {
                self.destroy_quietly(&backend, &hsm_id).await;
                Err(e.into())
            }
        }
    }

    /// Makes a new version active and retires the old one (it still verifies, never
    /// signs). If the record cannot be stored, the new HSM object is deleted.
    pub async fn rotate(&self, name: &str) -> Result<Arc<KeyRecord>, KeyError> {
        let _w = self.writes.lock().await;
        let current = self.get(name)?;
        let next = current
            .versions
            .iter()
            .map(|v| v.version)
            .max()
            .unwrap_or(0)
            + 1;
        let fresh = self
            .new_version(name, &current.backend, current.algorithm, next)
            .await?;
        let hsm_id = fresh.hsm_id.clone();
        let mut rec = (*current).clone();
        for v in &mut rec.versions {
            if v.state == VersionState::Active {
                v.state = VersionState::Retired;
                v.retired_at = Some(now());
            }
        }
        rec.versions.push(fresh);
        match self.store.put(Namespace::Keys, name, &rec).await {
            Ok(()) => Ok(self.remember(rec)),
            Err(e) => {
                self.destroy_quietly(&current.backend, &hsm_id).await;
                Err(e.into())
            }
        }
    }

    /// Changes a key's policy; fields left `None` stay as they are.
    pub async fn set_policy(
        &self,
        name: &str,
        change: PolicyChange,
    ) -> Result<Arc<KeyRecord>, KeyError> {
        if let Some(scope) = &change.scope {
            validate_scope(scope).map_err(KeyError::InvalidArgument)?;
        }
        let _w = self.writes.lock().await;
        let mut rec = (*self.get(name)?).clone();
        if let Some(scope) = change.scope {
            rec.scope = scope;
        }
        if let Some(signers) = change.signers {
            rec.signers = signers;
        }
        if let Some(m) = change.require_mfa {
            rec.require_mfa = m;
        }
        if let Some(a) = change.approvers {
            rec.approvers = a;
        }
        if let Some(p) = change.purpose {
            rec.purpose = p;
        }
        if let Some(n) = change.approvals {
            if n > 0 && !rec.approvers.is_empty() && (rec.approvers.len() as u32) < n {
                return Err(KeyError::InvalidArgument(format!(
                    "{n} approvals cannot be reached with {} named approvers",
                    rec.approvers.len()
                )));
            }
            rec.approvals = n;
        }
        self.store.put(Namespace::Keys, name, &rec).await?;
        Ok(self.remember(rec))
    }

    /// Signs with the version the permit pinned (`permit.version()`: the one the
    /// caller's ledger entry and annotations name); refused if that version has been
    /// revoked or destroyed since. Only a [`SignPermit`] (the signing checks passed)
    /// opens this door.
    pub async fn sign(&self, permit: &SignPermit, input: SignInput) -> Result<Vec<u8>, KeyError> {
        let pinned = permit.version();
        let rec = pinned.key();
        let name = rec.name.as_str();
        let version = pinned.number();
        let now = self.get(name)?;
        if let Some(v) = now.version(version)
            && matches!(v.state, VersionState::Revoked | VersionState::Destroyed)
        {
            return Err(KeyError::Refused {
                name: name.to_string(),
                why: format!(
                    "version {version} was {} while the request was in flight",
                    v.state.as_str()
                ),
            });
        }
        let algorithm = rec.algorithm;
        match (&input, algorithm) {
            (SignInput::Digest(..), Algorithm::Ed25519) => {
                return Err(KeyError::InvalidArgument(format!(
                    "key {name:?} is ed25519, which signs whole messages (pure EdDSA): send the message, not a digest"
                )));
            }
            (SignInput::Digest(d, bytes), _) if bytes.len() != d.digest_len() => {
                return Err(KeyError::InvalidArgument(format!(
                    "a {d} digest is {} bytes, got {}",
                    d.digest_len(),
                    bytes.len()
                )));
            }
            _ => {}
        }
        let pool = self.backends.get(&rec.backend)?;
        let hsm_id = pinned.version().hsm_id.clone();
        // The HSM object must be this version's own (checked once per object).
        let checked = self
            .verified_objects
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&hsm_id);
        if !checked {
            let (id, label) = (hsm_id.clone(), pinned.label());
            let own = pool
                .run("check-object", move |s| s.is_object(&id, &label))
                .await
                .map_err(KeyError::Hsm)?;
            if !own {
                tracing::error!(key = %rec.name, version, hsm_id = %hsm_id, "a key version names an HSM object that is not its own; refusing to sign");
                return Err(KeyError::Refused {
                    name: rec.name.clone(),
                    why: format!("version {version} names an HSM object that is not its own"),
                });
            }
            self.verified_objects
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(hsm_id.clone());
        }
        pool.run("sign", move |s| s.sign(&hsm_id, algorithm, &input))
            .await
            .map_err(KeyError::Hsm)
    }
}
