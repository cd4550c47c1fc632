//! Keys and key versions: records, the version state machine, and the operations that
//! touch both the HSM and the store (create, rotate, sign).

mod backends;
pub mod certificates;
mod history;
mod policy;
mod reconcile;
mod record;
mod revoke;
mod version_ref;
mod write;

pub use backends::Backends;
pub use policy::{PolicyChange, weakenings};
pub use record::{
    KeyRecord, KeyVersion, MAX_PERIOD_SECONDS, Purpose, RotationPolicy, VersionState,
    validate_name, validate_scope,
};
pub(crate) use revoke::rfc3339;
pub use revoke::{Revocation, RevocationReason, RevokeEffect, RevokeRequest};
pub use version_ref::VersionRef;
pub use write::{FollowUp, Rotated, no_follow_up};

use crate::authz::SignPermit;
use crate::hsm::public_key::fingerprint;
use crate::hsm::{Algorithm, HsmError, SignInput};
use crate::pki::{CaRecord, PkiError};
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
    #[error(
        "key {0:?} has no active version (its last one was revoked): rotate it (keyward key rotate {0}) to sign again"
    )]
    NoActiveVersion(String),
    /// The key or version is not in a state that allows the request.
    #[error("{0}")]
    FailedPrecondition(String),
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
    /// Another request changed the key at the same time, in a way this one cannot
    /// build on.
    #[error("{0}")]
    Conflict(String),
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
    /// Private keys whose usage was corrected to sign-only (`what: CKA_DECRYPT true
    /// -> false`), or whose signing was taken away (versions revoked as compromised).
    pub usage_corrected: Vec<String>,
    /// Private keys that can do more than Keyward wants and whose module would not
    /// change it.
    pub usage_refused: Vec<String>,
    /// Versions revoked as compromised whose HSM object can still sign (the module
    /// refused to take `CKA_SIGN` away): destroy them.
    pub revoked_can_sign: Vec<String>,
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
    /// The CRL distribution point written into new versions' certificates.
    crl_url: Option<String>,
    /// New versions' certificates name their key as `prefix + name` and this issuer.
    identity: Option<(String, String)>,
    /// How long the certificates of keys without a rotation schedule last.
    certificate_validity: time::Duration,
}

impl std::fmt::Debug for KeyRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRegistry").finish_non_exhaustive()
    }
}

fn now() -> OffsetDateTime {
    crate::clock::now()
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
            crl_url: None,
            identity: None,
            certificate_validity: certificates::DEFAULT_VALIDITY,
        })
    }

    /// Certificates of versions made from now on name `url` as their CRL
    /// distribution point.
    pub fn with_crl_url(mut self, url: String) -> Self {
        self.crl_url = Some(url);
        self
    }

    /// Certificates of versions made from now on name their key as the URI
    /// `prefix` + key name and carry `issuer`, so that a verifier trusts the key by
    /// name through the CA, whichever version signed.
    pub fn with_identity(mut self, prefix: String, issuer: String) -> Self {
        self.identity = Some((prefix, issuer));
        self
    }

    /// The identity and issuer a key's certificates carry, if the instance names them.
    pub fn identity_of(&self, key: &str) -> Option<(String, String)> {
        self.identity
            .as_ref()
            .map(|(prefix, issuer)| (format!("{prefix}{key}"), issuer.clone()))
    }

    /// The issuer key versions' certificates carry, if the instance names one.
    pub fn issuer(&self) -> Option<&str> {
        self.identity.as_ref().map(|(_, issuer)| issuer.as_str())
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

    /// Signs with the version the permit pinned (`permit.version()`: the one the
    /// caller's ledger entry and annotations name); refused if that version has been
    /// revoked or destroyed since. Only a [`SignPermit`] (the signing checks passed)
    /// opens this door.
    pub async fn sign(&self, permit: &SignPermit, input: SignInput) -> Result<Vec<u8>, KeyError> {
        let mut one = self.sign_many(permit, vec![input]).await?;
        one.pop().ok_or_else(|| {
            KeyError::Hsm(HsmError::Device {
                op: "sign",
                detail: "no signature came back".into(),
            })
        })
    }

    /// Signs every input with the permit's pinned version, as [`KeyRegistry::sign`]:
    /// every input is checked before the first is signed, and the signatures come back
    /// in order, all or none. The HSM signs them in runs of [`SIGN_RUN`] per hand-off
    /// to its worker thread, so that other requests interleave with a long batch.
    pub async fn sign_many(
        &self,
        permit: &SignPermit,
        inputs: Vec<SignInput>,
    ) -> Result<Vec<Vec<u8>>, KeyError> {
        let pinned = permit.version();
        let rec = pinned.key();
        let name = rec.name.as_str();
        let version = pinned.number();
        let now = self.get(name)?;
        if let Some(v) = now.version(version)
            && matches!(v.state, VersionState::Revoked | VersionState::Destroyed)
        {
            return Err(KeyError::FailedPrecondition(format!(
                "key {name:?} version {version} was {} while the request was in flight; nothing was signed",
                v.state.as_str()
            )));
        }
        let algorithm = rec.algorithm;
        for (i, input) in inputs.iter().enumerate() {
            check_input(name, algorithm, input).map_err(|e| match e {
                KeyError::InvalidArgument(why) if inputs.len() > 1 => {
                    KeyError::InvalidArgument(format!("item {i}: {why}; nothing was signed"))
                }
                other => other,
            })?;
        }
        let pool = self.backends.get(&rec.backend)?;
        let hsm_id = pinned.version().hsm_id.clone();
        let lost = |e: HsmError| match e {
            HsmError::KeyNotFound(_) => KeyError::FailedPrecondition(format!(
                "key {name:?} version {version}: its object is missing from backend {}; nothing was signed (the start-up reconciliation logs it): rotate the key or restore the object",
                rec.backend
            )),
            other => KeyError::Hsm(other),
        };
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
                .map_err(lost)?;
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
        let mut signatures = Vec::with_capacity(inputs.len());
        let mut inputs = inputs.into_iter();
        loop {
            let run: Vec<SignInput> = inputs.by_ref().take(SIGN_RUN).collect();
            if run.is_empty() {
                return Ok(signatures);
            }
            let id = hsm_id.clone();
            let signed = pool
                .run("sign", move |s| {
                    run.iter()
                        .map(|input| s.sign(&id, algorithm, input))
                        .collect::<Result<Vec<_>, _>>()
                })
                .await
                .map_err(lost)?;
            signatures.extend(signed);
        }
    }
}

/// Signatures made per hand-off to an HSM worker thread in [`KeyRegistry::sign_many`].
pub const SIGN_RUN: usize = 32;

/// Refuses an input the key's algorithm cannot sign.
fn check_input(name: &str, algorithm: Algorithm, input: &SignInput) -> Result<(), KeyError> {
    match (input, algorithm) {
        (SignInput::Digest(..), Algorithm::Ed25519) => Err(KeyError::InvalidArgument(format!(
            "key {name:?} is ed25519, which signs whole messages (pure EdDSA): send the message, not a digest"
        ))),
        (SignInput::Digest(d, bytes), _) if bytes.len() != d.digest_len() => {
            Err(KeyError::InvalidArgument(format!(
                "a {d} digest is {} bytes, got {}",
                d.digest_len(),
                bytes.len()
            )))
        }
        _ => Ok(()),
    }
}
