//! Changes of key records: create, rotate, policy. No lock: each change reads the
//! stored record with its revision, decides, and writes only if the record is still at
//! that revision; when another writer (another request, another daemon sharing the
//! store) got there first, it reads again and decides again.

use super::{
    Algorithm, KeyError, KeyRecord, KeyRegistry, KeyVersion, PolicyChange, Purpose, VersionState,
    fingerprint, now, validate_name, validate_scope,
};
use crate::hsm::HsmError;
use crate::pki::{self, PkiError, Subject};
use crate::store::{Expect, Namespace, Revision};
use std::sync::Arc;

/// How many times a change is re-applied after losing a race before it gives up.
const ATTEMPTS: usize = 16;

impl KeyRegistry {
    pub(super) fn remember(&self, rec: KeyRecord) -> Arc<KeyRecord> {
        let rec = Arc::new(rec);
        self.cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(rec.name.clone(), rec.clone());
        rec
    }

    /// The stored record (not the cache: another daemon may have changed it) with its
    /// revision.
    async fn read_rev(&self, name: &str) -> Result<(KeyRecord, Revision), KeyError> {
        if let Some(why) = self.refused.get(name) {
            return Err(KeyError::Refused {
                name: name.to_string(),
                why: why.clone(),
            });
        }
        match self
            .store
            .get_rev::<KeyRecord>(Namespace::Keys, name)
            .await?
        {
            Some((rec, rev)) if rec.name == name => Ok((rec, rev)),
            Some(_) => Err(KeyError::Refused {
                name: name.to_string(),
                why: "its stored record names another key".into(),
            }),
            None => Err(KeyError::NotFound(name.to_string())),
        }
    }

    /// Applies `change` to the stored record and writes it if nobody changed the
    /// record in between; otherwise reads it again and re-applies `change`. `change`
    /// sees the latest record each time and may refuse it.
    pub(super) async fn update(
        &self,
        name: &str,
        mut change: impl FnMut(&mut KeyRecord) -> Result<(), KeyError>,
    ) -> Result<Arc<KeyRecord>, KeyError> {
        for _ in 0..ATTEMPTS {
            let (mut rec, rev) = self.read_rev(name).await?;
            change(&mut rec)?;
            if self
                .store
                .put_if(Namespace::Keys, name, &rec, Expect::At(rev))
                .await?
            {
                return Ok(self.remember(rec));
            }
            tracing::debug!(key = name, "key record changed under a write; retrying");
        }
        Err(KeyError::Conflict(format!(
            "key {name:?} is being changed by other requests; try again"
        )))
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

    pub(super) async fn destroy_quietly(&self, backend: &str, hsm_id: &str) {
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
    /// stored (the name was taken meanwhile, or the store failed), the HSM object is
    /// deleted again.
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
        if self.get(name).is_ok() || self.refused.contains_key(name) {
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
        let stored = self
            .store
            .put_if(Namespace::Keys, name, &rec, Expect::Absent)
            .await;
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
    /// signs). Two rotations at once make one new version, not two: the one that
    /// stores second finds its version number taken, deletes its HSM object and says
    /// so. If the record cannot be stored, the new HSM object is deleted.
    pub async fn rotate(&self, name: &str) -> Result<Arc<KeyRecord>, KeyError> {
        let (current, _) = self.read_rev(name).await?;
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
        let stored = self
            .update(name, |rec| {
                if rec.version(next).is_some() {
                    return Err(KeyError::Conflict(format!(
                        "key {name:?} was rotated by another request at the same time (its version {next} exists); this rotation made no version"
                    )));
                }
                for v in &mut rec.versions {
                    if v.state == VersionState::Active {
                        v.state = VersionState::Retired;
                        v.retired_at = Some(now());
                    }
                }
                rec.versions.push(fresh.clone());
                Ok(())
            })
            .await;
        if stored.is_err() {
            self.destroy_quietly(&current.backend, &hsm_id).await;
        }
        stored
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
        self.update(name, |rec| {
            let change = change.clone();
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
            Ok(())
        })
        .await
    }
}
