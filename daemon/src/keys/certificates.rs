//! Key versions' certificates: each is valid from its version's activation to the
//! planned retirement plus the overlap (the rotation policy), or for the instance's
//! default when the key has no schedule; an active version whose certificate nears its
//! end gets a new one for the same public key, so that it never signs under an expired
//! certificate. Signatures made under an earlier certificate keep verifying after it
//! expires, through their time-stamps; a revoked version's every certificate is on the
//! CRL.

use super::{KeyError, KeyRecord, KeyRegistry, RotationPolicy, VersionState};
use crate::hsm::Algorithm;
use crate::pki::{self, PkiError, Subject};
use std::sync::Arc;
use time::{Duration, OffsetDateTime};

/// A version's certificate lasts this long when its key has no rotation schedule
/// (`[ca] certificate_days`).
pub const DEFAULT_VALIDITY: Duration = Duration::days(365);

/// A scheduled key's active certificate is renewed when it would end within this (a
/// rotation that is late, failing or waiting must not leave it signing under an
/// expired certificate).
const RENEW_AHEAD: Duration = Duration::days(1);

/// The end of the certificate of a version activated at `from`: its planned
/// retirement plus the overlap, or `from + default` without a schedule.
pub fn planned_end(
    rotation: &RotationPolicy,
    from: OffsetDateTime,
    default: Duration,
) -> OffsetDateTime {
    match rotation.every_seconds {
        Some(every) => later(later(from, every), rotation.overlap_seconds.unwrap_or(0)),
        None => from.checked_add(default).unwrap_or(FOREVER),
    }
}

/// The end of time as X.509 writes it (RFC 5280: "no well-defined expiration date"):
/// where date arithmetic on a stored policy would leave the calendar.
pub const FOREVER: OffsetDateTime = time::macros::datetime!(9999-12-31 23:59:59 UTC);

/// `t` plus `seconds`, or [`FOREVER`] where that leaves the calendar (a policy stored
/// before its values were bounded must not stop the scheduler).
pub fn later(t: OffsetDateTime, seconds: u64) -> OffsetDateTime {
    i64::try_from(seconds)
        .ok()
        .and_then(|s| t.checked_add(Duration::seconds(s)))
        .map_or(FOREVER, |end| end.min(FOREVER))
}

/// When a PEM certificate stops being valid (the client's certificate reader, which
/// offline verifiers use too).
pub fn not_after(pem: &str) -> Result<OffsetDateTime, String> {
    keyward_client::offline::x509::Cert::from_pem(pem).map(|c| c.not_after)
}

/// If the active version of `rec` needs a new certificate at `now`: (version, the new
/// certificate's end).
pub fn renewal_due(
    rec: &KeyRecord,
    now: OffsetDateTime,
    default: Duration,
) -> Option<(u32, OffsetDateTime)> {
    let v = rec.active()?;
    let end = not_after(&v.certificate_pem).ok()?;
    let activated = v.activated_at.unwrap_or(v.created_at);
    let wanted = match rec.rotation.every_seconds {
        Some(_) => {
            let planned = planned_end(&rec.rotation, activated, default);
            if end - now < RENEW_AHEAD {
                let overlap = rec.rotation.overlap_seconds.unwrap_or(0);
                planned.max(
                    later(now, overlap)
                        .checked_add(RENEW_AHEAD * 2)
                        .unwrap_or(FOREVER),
                )
            } else {
                planned
            }
        }
        None if end - now < default / 4 => now.checked_add(default).unwrap_or(FOREVER),
        None => return None,
    };
    (wanted > end + Duration::hours(1)).then_some((v.version, wanted))
}

impl KeyRegistry {
    /// How long the certificates of keys without a schedule last (default: a year).
    pub fn with_certificate_validity(mut self, validity: Duration) -> Self {
        self.certificate_validity = validity;
        self
    }

    /// How long the certificates of keys without a schedule last.
    pub fn certificate_validity(&self) -> Duration {
        self.certificate_validity
    }

    /// Has the CA certify `spki` as version `version` of key `name`, valid until
    /// `valid_until`.
    pub(super) async fn certify(
        &self,
        name: &str,
        version: u32,
        (spki, algorithm): (Vec<u8>, Algorithm),
        valid_until: OffsetDateTime,
    ) -> Result<String, KeyError> {
        let ca = self.ca.clone();
        let ca_pool = self.backends.get(&ca.backend)?;
        let key = name.to_string();
        let crl_url = self.crl_url.clone();
        let identity = self.identity_of(name);
        let cert: Result<String, PkiError> = ca_pool
            .run("certify", move |s| {
                pki::issue(
                    s,
                    &ca,
                    Subject::KeyVersion {
                        key: &key,
                        version,
                        crl_url: crl_url.as_deref(),
                        identity: identity.as_ref().map(|(u, i)| (u.as_str(), i.as_str())),
                        valid_until,
                    },
                    &spki,
                    algorithm,
                )
            })
            .await;
        Ok(cert?)
    }

    /// Gives the active version of `name` a new certificate for the same public key
    /// when it needs one at `now` (see [`renewal_due`]); the earlier certificate is
    /// kept with the version (for the CRL, should it be revoked). Returns the version
    /// renewed and the new certificate's end, or None when nothing was due.
    pub async fn renew_if_due(
        &self,
        name: &str,
        now: OffsetDateTime,
    ) -> Result<Option<(u32, OffsetDateTime)>, KeyError> {
        let rec = self.get(name)?;
        let Some((version, until)) = renewal_due(&rec, now, self.certificate_validity) else {
            return Ok(None);
        };
        let Some(v) = rec.version(version) else {
            return Ok(None);
        };
        let old = v.certificate_pem.clone();
        let pem = self
            .certify(name, version, (v.public_key.clone(), rec.algorithm), until)
            .await?;
        let mut renewed = false;
        self.update(name, |rec| {
            renewed = false;
            if let Some(v) = rec.versions.iter_mut().find(|v| v.version == version)
                && v.state == VersionState::Active
                && v.certificate_pem == old
            {
                v.earlier_certificates
                    .push(std::mem::take(&mut v.certificate_pem));
                v.certificate_pem = pem.clone();
                renewed = true;
            }
            Ok(())
        })
        .await?;
        Ok(renewed.then_some((version, until)))
    }

    /// Renews every active certificate due at `now`: (key, version, new end).
    pub async fn renew_due(
        &self,
        now: OffsetDateTime,
    ) -> Vec<Result<(String, u32, OffsetDateTime), (String, KeyError)>> {
        let mut out = Vec::new();
        let due: Vec<Arc<KeyRecord>> = self
            .list()
            .into_iter()
            .filter(|k| renewal_due(k, now, self.certificate_validity).is_some())
            .collect();
        for k in due {
            match self.renew_if_due(&k.name, now).await {
                Ok(Some((v, until))) => out.push(Ok((k.name.clone(), v, until))),
                Ok(None) => {}
                Err(e) => out.push(Err((k.name.clone(), e))),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_policy_past_the_calendar_ends_at_forever_instead_of_panicking() {
        let now = OffsetDateTime::now_utc();
        for (every, overlap) in [
            (Some(u64::MAX), Some(u64::MAX)),
            (Some(1_000_000_000 * 86_400), None),
            (Some(i64::MAX as u64), Some(1)),
        ] {
            let rotation = RotationPolicy {
                every_seconds: every,
                overlap_seconds: overlap,
                ..Default::default()
            };
            assert_eq!(planned_end(&rotation, now, DEFAULT_VALIDITY), FOREVER);
        }
        let rotation = RotationPolicy {
            every_seconds: Some(86_400),
            overlap_seconds: Some(3600),
            ..Default::default()
        };
        assert_eq!(
            planned_end(&rotation, now, DEFAULT_VALIDITY),
            now + Duration::seconds(86_400 + 3600)
        );
        assert_eq!(
            planned_end(&RotationPolicy::default(), FOREVER, DEFAULT_VALIDITY),
            FOREVER
        );
    }
}
