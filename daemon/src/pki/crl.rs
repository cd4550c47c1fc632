//! The X.509 CRL (RFC 5280) of revoked key versions' code-signing certificates, signed
//! by the CA key in the HSM: `cRLNumber` is the revocation list's sequence,
//! `nextUpdate` its `next_update`, reason codes and `invalidityDate` (the start of a
//! compromise) per entry.

use super::{Issuer, PkiError, ca_key, ca_params, hsm_first, key_id};
use crate::hsm::HsmSession;
use rcgen::{CertificateRevocationListParams, RevocationReason, RevokedCertParams, SerialNumber};
use time::OffsetDateTime;

/// One revoked certificate.
#[derive(Debug, Clone)]
pub struct CrlEntry {
    /// The certificate (PEM) whose serial number is revoked.
    pub certificate_pem: String,
    /// When it was revoked.
    pub revoked_at: OffsetDateTime,
    /// RFC 5280 reason.
    pub reason: crate::keys::RevocationReason,
    /// When the key is taken to have been compromised.
    pub invalidity: Option<OffsetDateTime>,
}

/// The serial number of a PEM certificate (the INTEGER's content octets).
pub fn serial_of(certificate_pem: &str) -> Result<Vec<u8>, PkiError> {
    keyward_client::revocation::certificate_serial(certificate_pem).map_err(PkiError::Build)
}

/// `n` as the content octets of a positive DER INTEGER (no leading zeros but one
/// before a high bit).
fn positive(n: u64) -> Vec<u8> {
    let be = n.to_be_bytes();
    let start = be.iter().position(|b| *b != 0).unwrap_or(be.len() - 1);
    let mut v = be[start..].to_vec();
    if v[0] & 0x80 != 0 {
        v.insert(0, 0);
    }
    v
}

fn reason(r: crate::keys::RevocationReason) -> RevocationReason {
    match r {
        crate::keys::RevocationReason::KeyCompromise => RevocationReason::KeyCompromise,
        crate::keys::RevocationReason::Superseded => RevocationReason::Superseded,
        crate::keys::RevocationReason::Cessation => RevocationReason::CessationOfOperation,
    }
}

/// Issues the CRL (DER) numbered `number`, valid from `this_update` to `next_update`.
pub fn issue_crl(
    session: &mut dyn HsmSession,
    ca: &super::CaRecord,
    number: u64,
    this_update: OffsetDateTime,
    next_update: OffsetDateTime,
    entries: &[CrlEntry],
) -> Result<Vec<u8>, PkiError> {
    let ca_spki = hex::decode(&ca.public_key).map_err(|e| PkiError::Build(e.to_string()))?;
    let mut revoked_certs = Vec::with_capacity(entries.len());
    for e in entries {
        revoked_certs.push(RevokedCertParams {
            serial_number: SerialNumber::from_slice(&serial_of(&e.certificate_pem)?),
            revocation_time: e.revoked_at,
            reason_code: Some(reason(e.reason)),
            invalidity_date: e.invalidity,
        });
    }
    let params = CertificateRevocationListParams {
        this_update,
        next_update,
        crl_number: SerialNumber::from_slice(&positive(number)),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: key_id(&ca_spki),
    };
    let key = ca_key(session, &ca.hsm_id, &ca_spki)?;
    let issuer = Issuer::new(ca_params(&ca.common_name, &ca_spki)?, &key);
    let crl = params.signed_by(&issuer).map_err(|e| hsm_first(&key, e))?;
    Ok(crl.der().to_vec())
}
