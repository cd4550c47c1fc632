//! Changes of key records: create, rotate, policy. No lock: each change reads the
//! stored record with its revision, decides, and writes only if the record is still at
//! that revision; when another writer (another request, another daemon sharing the
//! store) got there first, it reads again and decides again.

use super::{
    Algorithm, KeyError, KeyRecord, KeyRegistry, KeyVersion, PolicyChange, Purpose, VersionState,
    certificates, fingerprint, now, validate_name, validate_scope,
};
use crate::hsm::HsmError;
use crate::store::{Expect, Namespace, Revision, to_json};
use std::sync::Arc;
use time::OffsetDateTime;

/// How many times a change is re-applied after losing a race before it gives up.
const ATTEMPTS: usize = 16;

/// What a rotation writes with the activation of the new version, given the key and
/// the version that was active: records (namespace, key, JSON) created in the same
/// transaction, such as the re-signing job for the old version. None: the old version
/// is retired at once. An error stops the rotation before anything changes.
pub type FollowUp<'a> =
    &'a (dyn Fn(&KeyRecord, u32) -> Result<Vec<(Namespace, String, Vec<u8>)>, String> + Sync);

/// The follow-up of a rotation that starts nothing: the old version is retired at once.
pub fn no_follow_up(_: &KeyRecord, _: u32) -> Result<Vec<(Namespace, String, Vec<u8>)>, String> {
    Ok(Vec::new())
}

/// What a rotation did.
#[derive(Debug, Clone)]
pub struct Rotated {
    /// The key as it is now.
    pub key: Arc<KeyRecord>,
    /// The version that was active before.
    pub previous: Option<u32>,
    /// The new active version.
    pub version: u32,
}

fn raced(name: &str, version: u32) -> KeyError {
    KeyError::Conflict(format!(
        "key {name:?} was rotated by another request at the same time (its version {version} exists); this rotation made no version"
    ))
}

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
        valid_until: OffsetDateTime,
    ) -> Result<KeyVersion, KeyError> {
        let pool = self.backends.get(backend)?;
        let label = format!("{name}/v{version}");
        let generated = pool
            .run("generate", move |s| s.generate(&label, algorithm))
            .await
            .map_err(KeyError::Hsm)?;
        let spki = (generated.public_key_der.clone(), algorithm);
        let cert = self.certify(name, version, spki, valid_until).await;
        let certificate_pem = match cert {
            Ok(c) => c,
            Err(e) => {
                self.destroy_quietly(backend, &generated.hsm_id).await;
                return Err(e);
            }
        };
        Ok(KeyVersion {
            version,
            state: VersionState::Active,
            fingerprint: fingerprint(&generated.public_key_der),
            hsm_id: generated.hsm_id,
            public_key: generated.public_key_der,
            certificate_pem,
            earlier_certificates: Vec::new(),
            created_at: now(),
            activated_at: Some(now()),
            retired_at: None,
            prune_job: None,
            revocation: None,
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
        let pool = self.backends.get(backend)?;
        let algorithm = if algorithm.is_empty() {
            default_algorithm(pool.backend().algorithms(), purpose)
        } else {
            Algorithm::parse(algorithm).map_err(KeyError::InvalidArgument)?
        };
        pool.backend().check_algorithm(algorithm)?;
        let backend = pool.backend().name().to_string();
        if self.get(name).is_ok() || self.refused.contains_key(name) {
            return Err(KeyError::AlreadyExists(name.to_string()));
        }
        let until = now() + self.certificate_validity();
        let v1 = self
            .new_version(name, &backend, algorithm, 1, until)
            .await?;
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
            revoke_approvals: 0,
            rotation: Default::default(),
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

    /// Rotates a key in two steps, each stored before the next: a new version is
    /// generated and certified and stored as `pending` (verifiers can learn it before
    /// it signs), then it becomes active and the old active version `retiring` (when
    /// `follow_up` starts a re-signing campaign for it: its records are written in the
    /// same transaction) or `retired`. A pending version left by an interrupted
    /// rotation is the one the next rotation activates. Two rotations at once make one
    /// new version: the other says so, and deletes the HSM object it made.
    /// `at` is the rotation's time (the scheduler's clock, or now).
    pub async fn rotate(
        &self,
        name: &str,
        follow_up: FollowUp<'_>,
        at: OffsetDateTime,
    ) -> Result<Rotated, KeyError> {
        let (current, _) = self.read_rev(name).await?;
        let pending = current
            .versions
            .iter()
            .find(|v| v.state == VersionState::Pending)
            .map(|v| v.version);
        let next = match pending {
            Some(n) => n,
            None => self.add_pending(&current).await?,
        };
        let rotated = self.activate(name, next, follow_up, at).await?;
        // A version prepared earlier was certified for an activation that came later.
        match self.renew_if_due(name, at).await {
            Ok(Some(_)) => Ok(Rotated {
                key: self.get(name)?,
                ..rotated
            }),
            Ok(None) => Ok(rotated),
            Err(e) => {
                tracing::error!(key = name, error = %e, "cannot renew the new version's certificate; the scheduler tries again");
                Ok(rotated)
            }
        }
    }

    /// Generates, certifies and stores a pending version; returns its number.
    async fn add_pending(&self, current: &KeyRecord) -> Result<u32, KeyError> {
        let name = current.name.as_str();
        let next = current
            .versions
            .iter()
            .map(|v| v.version)
            .max()
            .unwrap_or(0)
            + 1;
        let mut fresh = self
            .new_version(
                name,
                &current.backend,
                current.algorithm,
                next,
                certificates::planned_end(&current.rotation, now(), self.certificate_validity()),
            )
            .await?;
        fresh.state = VersionState::Pending;
        fresh.activated_at = None;
        let hsm_id = fresh.hsm_id.clone();
        let stored = self
            .update(name, |rec| {
                if rec.version(next).is_some() {
                    return Err(raced(name, next));
                }
                rec.versions.push(fresh.clone());
                Ok(())
            })
            .await;
        if let Err(e) = stored {
            self.destroy_quietly(&current.backend, &hsm_id).await;
            return Err(e);
        }
        Ok(next)
    }

    /// Makes pending version `next` active.
    async fn activate(
        &self,
        name: &str,
        next: u32,
        follow_up: FollowUp<'_>,
        now: OffsetDateTime,
    ) -> Result<Rotated, KeyError> {
        for _ in 0..ATTEMPTS {
            let (mut rec, rev) = self.read_rev(name).await?;
            if rec
                .version(next)
                .is_none_or(|v| v.state != VersionState::Pending)
            {
                return Err(raced(name, next));
            }
            let previous = rec.active().map(|v| v.version);
            let extra = match previous {
                Some(p) => follow_up(&rec, p).map_err(KeyError::InvalidArgument)?,
                None => Vec::new(),
            };
            for v in &mut rec.versions {
                if v.state == VersionState::Active {
                    v.state = if extra.is_empty() {
                        VersionState::Retired
                    } else {
                        VersionState::Retiring
                    };
                    v.retired_at = Some(now);
                } else if v.version == next {
                    v.state = VersionState::Active;
                    v.activated_at = Some(now);
                }
            }
            let mut checks = vec![(Namespace::Keys, name.to_string(), Expect::At(rev))];
            let mut puts = vec![(Namespace::Keys, name.to_string(), to_json(&rec)?)];
            for (ns, key, json) in extra {
                checks.push((ns, key.clone(), Expect::Absent));
                puts.push((ns, key, json));
            }
            if self.store.commit(checks, puts, Vec::new()).await? {
                return Ok(Rotated {
                    key: self.remember(rec),
                    previous,
                    version: next,
                });
            }
        }
        Err(KeyError::Conflict(format!(
            "key {name:?} is being changed by other requests; try again"
        )))
    }

    /// Moves a `retiring` version to `retired` (its re-signing campaign is done).
    /// Does nothing for a version in another state.
    pub async fn retire(&self, name: &str, version: u32) -> Result<Arc<KeyRecord>, KeyError> {
        self.update(name, |rec| {
            for v in &mut rec.versions {
                if v.version == version && v.state == VersionState::Retiring {
                    v.state = VersionState::Retired;
                }
            }
            Ok(())
        })
        .await
    }

    /// Records that `version`'s prune job started, creating the job's record (`job`:
    /// id and JSON) in the same transaction; `false` when one was started before.
    pub async fn start_prune(
        &self,
        name: &str,
        version: u32,
        job: (&str, Vec<u8>),
    ) -> Result<bool, KeyError> {
        for _ in 0..ATTEMPTS {
            let (mut rec, rev) = self.read_rev(name).await?;
            let Some(v) = rec.versions.iter_mut().find(|v| v.version == version) else {
                return Err(KeyError::VersionNotFound {
                    name: name.to_string(),
                    version,
                });
            };
            if v.prune_job.is_some() {
                return Ok(false);
            }
            v.prune_job = Some(job.0.to_string());
            let checks = vec![
                (Namespace::Keys, name.to_string(), Expect::At(rev)),
                (Namespace::Jobs, job.0.to_string(), Expect::Absent),
            ];
            let puts = vec![
                (Namespace::Keys, name.to_string(), to_json(&rec)?),
                (Namespace::Jobs, job.0.to_string(), job.1.clone()),
            ];
            if self.store.commit(checks, puts, Vec::new()).await? {
                self.remember(rec);
                return Ok(true);
            }
        }
        Err(KeyError::Conflict(format!(
            "key {name:?} is being changed by other requests; try again"
        )))
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
        self.update(name, |rec| change.apply(rec)).await
    }
}

/// The algorithm of a key created without one: ECDSA P-256, or on a backend without it
/// the first it offers that suits `purpose` (image signatures cosign verifies: not
/// RSA-PSS). A backend offering nothing suitable gets P-256, refused with its reasons.
fn default_algorithm(offered: &[Algorithm], purpose: Purpose) -> Algorithm {
    let suits = |a: &Algorithm| purpose != Purpose::Image || *a != Algorithm::RsaPss3072;
    if offered.contains(&Algorithm::EcdsaP256) {
        return Algorithm::EcdsaP256;
    }
    Algorithm::ALL
        .into_iter()
        .find(|a| offered.contains(a) && suits(a))
        .unwrap_or(Algorithm::EcdsaP256)
}
