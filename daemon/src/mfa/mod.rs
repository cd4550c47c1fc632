//! RFC 6238 TOTP second factor (SHA-1, 6 digits, 30 s: what authenticator apps use).
//!
//! Secrets are sealed by a key inside the HSM (AES-GCM on PKCS#11, a wrap key on
//! YubiHSM) before they are stored; they are never on disk or in a log in plaintext.
//! A code is accepted once (the time step is remembered per principal), and after
//! `max_failures` wrong codes the principal is locked out of MFA for `lockout`.

use crate::hsm::HsmError;
use crate::keys::Backends;
use crate::store::integrity::{IntegrityError, ProtectedStore};
use crate::store::{Expect, Namespace, Revision, StoreError};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use totp_rs::{Algorithm as TotpAlgorithm, Builder, Secret};
use zeroize::Zeroizing;

/// Why a second factor was refused. Messages never contain the secret or the code.
#[derive(Debug, thiserror::Error)]
pub enum MfaError {
    /// The principal's second-factor state kept changing under this request (many
    /// concurrent requests for one principal); nothing was decided.
    #[error("the second factor of principal {0:?} is being checked by other requests; try again")]
    Busy(String),
    /// The action needs a code and none was given.
    #[error("MFA required: {0} needs a one-time code (pass --otp CODE)")]
    Required(String),
    /// The action needs a code and the principal has no confirmed enrolment.
    #[error(
        "MFA required: {1} needs a one-time code, and principal {0:?} has no MFA enrolment: run `keyward mfa enroll`, then `keyward mfa confirm CODE`"
    )]
    NotEnrolled(String, String),
    /// Too many wrong codes.
    #[error("MFA is locked for principal {principal:?} until {until} after too many wrong codes")]
    Locked {
        /// Who.
        principal: String,
        /// RFC 3339.
        until: String,
    },
    /// The code's time step was used before.
    #[error("this one-time code was already used; wait for the next one")]
    Replayed,
    /// Wrong code.
    #[error("wrong one-time code ({remaining} attempts left before a lockout)")]
    Wrong {
        /// Attempts left.
        remaining: u32,
    },
    /// The code has not the form of a 6-digit code.
    #[error("a one-time code is 6 digits")]
    Malformed,
    /// A confirmed enrolment exists.
    #[error(
        "principal {0:?} is already enrolled: use the code from the authenticator app that holds its Keyward entry (a lost factor needs an admin to remove and re-add the principal)"
    )]
    AlreadyEnrolled(String),
    /// Nothing to confirm.
    #[error("no pending MFA enrolment for principal {0:?}: run `keyward mfa enroll` first")]
    NothingToConfirm(String),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The stored enrolment failed its integrity check, or the MAC key failed.
    #[error(transparent)]
    Integrity(#[from] IntegrityError),
    /// The sealing key failed.
    #[error(transparent)]
    Hsm(#[from] HsmError),
}

/// MFA settings (`[mfa]` in keywardd.toml).
#[derive(Debug, Clone)]
pub struct MfaSettings {
    /// Enforce MFA for key management, principal management and signing with keys
    /// whose policy requires it.
    pub required: bool,
    /// Wrong codes before a lockout.
    pub max_failures: u32,
    /// How long a lockout lasts.
    pub lockout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Enrolment {
    /// The TOTP secret sealed by the HSM key, hex.
    sealed: String,
    /// Sealed with the principal's name as associated data (older enrolments were
    /// not; they are sealed again, bound, when next used).
    #[serde(default)]
    bound: bool,
    confirmed: bool,
    /// Last accepted time step.
    last_step: u64,
    failures: u32,
    #[serde(with = "time::serde::rfc3339::option")]
    locked_until: Option<OffsetDateTime>,
}

/// Where the sealing key is (instance metadata).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SealingKey {
    /// Backend holding it.
    pub backend: String,
    /// Its id.
    pub hsm_id: String,
}

/// The second factor of every principal.
pub struct Mfa {
    store: ProtectedStore,
    backends: Arc<Backends>,
    key: SealingKey,
    settings: MfaSettings,
}

/// How often a change of a principal's second-factor state is tried again when
/// another request (or daemon) changed it first.
const CAS_TRIES: usize = 32;

impl std::fmt::Debug for Mfa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mfa")
            .field("required", &self.settings.required)
            .finish_non_exhaustive()
    }
}

fn totp(secret: &[u8], account: &str) -> Result<totp_rs::Totp, MfaError> {
    Builder::new()
        .with_algorithm(TotpAlgorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(30)
        .with_secret(Secret::from(secret.to_vec()))
        .with_account_name(account)
        .with_issuer(Some("Keyward"))
        .build()
        .map_err(|e| MfaError::Hsm(HsmError::InvalidInput(format!("TOTP: {e}"))))
}

/// A fresh enrolment to show the user once.
pub struct NewEnrolment {
    /// `otpauth://totp/...` for authenticator apps.
    pub uri: Zeroizing<String>,
}

impl Mfa {
    /// MFA over the store, sealing secrets with `key`.
    pub fn new(
        store: ProtectedStore,
        backends: Arc<Backends>,
        key: SealingKey,
        settings: MfaSettings,
    ) -> Self {
        Self {
            store,
            backends,
            key,
            settings,
        }
    }

    /// Whether MFA is enforced.
    pub fn required(&self) -> bool {
        self.settings.required
    }

    async fn seal(&self, principal: &str, secret: Vec<u8>) -> Result<Vec<u8>, MfaError> {
        let pool = self
            .backends
            .get(&self.key.backend)
            .map_err(|e| HsmError::Config(e.to_string()))?;
        let id = self.key.hsm_id.clone();
        let secret = Zeroizing::new(secret);
        let aad = principal.as_bytes().to_vec();
        Ok(pool
            .run("seal", move |s| s.seal(&id, &secret, &aad))
            .await?)
    }

    async fn unseal(
        &self,
        principal: &str,
        sealed: &str,
        bound: bool,
    ) -> Result<Zeroizing<Vec<u8>>, MfaError> {
        let pool = self
            .backends
            .get(&self.key.backend)
            .map_err(|e| HsmError::Config(e.to_string()))?;
        let id = self.key.hsm_id.clone();
        let sealed = hex::decode(sealed).map_err(|e| StoreError::Corrupt {
            key: "mfa".into(),
            detail: e.to_string(),
        })?;
        let aad = if bound {
            principal.as_bytes().to_vec()
        } else {
            Vec::new()
        };
        let plain: Vec<u8> = pool
            .run("unseal", move |s| s.unseal(&id, &sealed, &aad))
            .await?;
        Ok(Zeroizing::new(plain))
    }

    /// Lifts a principal's lockout and forgets its wrong codes (an admin's `principal
    /// unlock`); whether a lockout was in force.
    pub async fn unlock(&self, principal: &str) -> Result<bool, MfaError> {
        for _ in 0..CAS_TRIES {
            let Some((mut e, rev)) = self.load(principal).await? else {
                return Ok(false);
            };
            let locked = e
                .locked_until
                .is_some_and(|until| until > OffsetDateTime::now_utc());
            if e.locked_until.is_none() && e.failures == 0 {
                return Ok(false);
            }
            e.locked_until = None;
            e.failures = 0;
            if self.save_if(principal, &e, Some(rev)).await? {
                return Ok(locked);
            }
        }
        Err(MfaError::Busy(principal.to_string()))
    }

    /// Deletes a principal's second factor (an admin's `mfa reset`, for a lost
    /// authenticator); whether there was one. The principal enrols again.
    pub async fn reset(&self, principal: &str) -> Result<bool, MfaError> {
        let Some((_, rev)) = self.load(principal).await? else {
            return Ok(false);
        };
        let checks = vec![(Namespace::Mfa, principal.to_string(), Expect::At(rev))];
        let delete = vec![(Namespace::Mfa, principal.to_string(), None)];
        if self.store.commit_with(checks, Vec::new(), delete).await? {
            return Ok(true);
        }
        Err(MfaError::Busy(principal.to_string()))
    }

    async fn load(&self, principal: &str) -> Result<Option<(Enrolment, Revision)>, MfaError> {
        Ok(self.store.get_rev(Namespace::Mfa, principal).await?)
    }

    /// Stores `e` if the enrolment is still at `rev` (absent for `None`): two requests,
    /// or two daemons, can never both use one code or both reset a lockout.
    async fn save_if(
        &self,
        principal: &str,
        e: &Enrolment,
        rev: Option<Revision>,
    ) -> Result<bool, MfaError> {
        let expect = rev.map_or(Expect::Absent, Expect::At);
        Ok(self
            .store
            .put_if(Namespace::Mfa, principal, e, expect)
            .await?)
    }

    /// Checks `code` against the stored enrolment (`check` picks it, or refuses), and
    /// stores what the check changed (replay step, failures, lockout) only if nobody
    /// changed the enrolment meanwhile; otherwise checks again against what they wrote.
    async fn checked(
        &self,
        principal: &str,
        code: &str,
        mut check: impl FnMut(Option<Enrolment>) -> Result<Option<Enrolment>, MfaError>,
        then: impl Fn(&mut Enrolment),
    ) -> Result<(), MfaError> {
        for _ in 0..CAS_TRIES {
            let (found, rev) = match self.load(principal).await? {
                Some((e, rev)) => (Some(e), Some(rev)),
                None => (None, None),
            };
            let Some(mut e) = check(found)? else {
                return Ok(());
            };
            let before = e.clone();
            let outcome = self.check_code(principal, &mut e, code).await;
            if outcome.is_ok() {
                then(&mut e);
            }
            if e == before || self.save_if(principal, &e, rev).await? {
                return outcome;
            }
        }
        Err(MfaError::Busy(principal.to_string()))
    }

    /// Starts an enrolment (or replaces an unconfirmed one). With `confirmed`, the
    /// enrolment is active at once (the first admin at `keywardd init`).
    pub async fn enroll(&self, principal: &str, confirmed: bool) -> Result<NewEnrolment, MfaError> {
        let rev = match self.load(principal).await? {
            Some((e, _)) if e.confirmed && !confirmed => {
                return Err(MfaError::AlreadyEnrolled(principal.to_string()));
            }
            Some((_, rev)) => Some(rev),
            None => None,
        };
        let mut secret = Zeroizing::new(vec![0u8; 20]);
        getrandom::getrandom(secret.as_mut_slice()).map_err(|e| HsmError::Device {
            op: "random",
            detail: e.to_string(),
        })?;
        let uri = Zeroizing::new(
            totp(&secret, principal)?
                .to_url()
                .map_err(|e| HsmError::InvalidInput(format!("TOTP URI: {e}")))?,
        );
        let sealed = self.seal(principal, secret.to_vec()).await?;
        let e = Enrolment {
            sealed: hex::encode(sealed),
            bound: true,
            confirmed,
            last_step: 0,
            failures: 0,
            locked_until: None,
        };
        // Written only over the enrolment read above: a concurrent confirm wins.
        if !self.save_if(principal, &e, rev).await? {
            return Err(MfaError::Busy(principal.to_string()));
        }
        Ok(NewEnrolment { uri })
    }

    /// Whether the principal has a confirmed second factor.
    pub async fn enrolled(&self, principal: &str) -> Result<bool, MfaError> {
        Ok(self
            .load(principal)
            .await?
            .is_some_and(|(e, _)| e.confirmed))
    }

    /// Activates a pending enrolment with a first code.
    pub async fn confirm(&self, principal: &str, code: &str) -> Result<(), MfaError> {
        let pick = |found: Option<Enrolment>| match found {
            None => Err(MfaError::NothingToConfirm(principal.to_string())),
            Some(e) if e.confirmed => Ok(None),
            Some(e) => Ok(Some(e)),
        };
        self.checked(principal, code, pick, |e| e.confirmed = true)
            .await
    }

    /// Checks a code for an action that needs MFA.
    pub async fn verify(
        &self,
        principal: &str,
        what: &str,
        code: Option<&str>,
    ) -> Result<(), MfaError> {
        let pick = |found: Option<Enrolment>| match found {
            Some(e) if e.confirmed => match code {
                Some(_) => Ok(Some(e)),
                None => Err(MfaError::Required(what.to_string())),
            },
            _ => Err(MfaError::NotEnrolled(
                principal.to_string(),
                what.to_string(),
            )),
        };
        self.checked(principal, code.unwrap_or_default(), pick, |_| {})
            .await
    }

    /// Checks `code` and updates `e` (replay step, failures, lockout); the caller
    /// stores `e` if it changed.
    async fn check_code(
        &self,
        principal: &str,
        e: &mut Enrolment,
        code: &str,
    ) -> Result<(), MfaError> {
        let now = OffsetDateTime::now_utc();
        if let Some(until) = e.locked_until {
            if until > now {
                return Err(MfaError::Locked {
                    principal: principal.to_string(),
                    until: until.format(&Rfc3339).unwrap_or_default(),
                });
            }
            e.locked_until = None;
            e.failures = 0;
        }
        if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(MfaError::Malformed);
        }
        let secret = self.unseal(principal, &e.sealed, e.bound).await?;
        if !e.bound {
            e.sealed = hex::encode(self.seal(principal, secret.to_vec()).await?);
            e.bound = true;
        }
        let step = totp(&secret, principal)?.check_current(code);
        match step {
            Some(step) if step <= e.last_step => Err(MfaError::Replayed),
            Some(step) => {
                e.last_step = step;
                e.failures = 0;
                Ok(())
            }
            None => {
                e.failures += 1;
                if e.failures >= self.settings.max_failures {
                    let until = now + self.settings.lockout;
                    e.locked_until = Some(until);
                    e.failures = 0;
                    tracing::warn!(principal, until = %until.format(&Rfc3339).unwrap_or_default(), "MFA lockout after too many wrong codes");
                    return Err(MfaError::Locked {
                        principal: principal.to_string(),
                        until: until.format(&Rfc3339).unwrap_or_default(),
                    });
                }
                let remaining = self.settings.max_failures - e.failures;
                Err(MfaError::Wrong { remaining })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_6238_sha1_test_vectors() {
        // RFC 6238 appendix B, SHA-1 seed; the last 6 of the 8 published digits.
        let t = totp(b"12345678901234567890", "rfc").unwrap();
        for (time, code) in [
            (59u64, "287082"),
            (1111111109, "081804"),
            (1111111111, "050471"),
            (1234567890, "005924"),
            (2000000000, "279037"),
        ] {
            assert_eq!(t.generate(time).to_string(), code, "T={time}");
            assert_eq!(t.check(code, time), Some(time / 30));
        }
        assert_eq!(
            t.check("287082", 59 + 90),
            None,
            "outside the one-step skew"
        );
    }
}
