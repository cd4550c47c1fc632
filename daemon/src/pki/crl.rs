//! The X.509 CRL (RFC 5280) of revoked key versions' code-signing certificates, signed
//! by the CA key in the HSM: `cRLNumber` is the revocation list's sequence,
//! `nextUpdate` its `next_update`, reason codes and `invalidityDate` (the start of a
//! compromise) per entry.

use super::{Issuer, PkiError, ca_key, ca_params, hsm_first, key_id};
use crate::hsm::HsmSession;
use base64::Engine;
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

/// One DER element at the start of `der`: (tag, contents, rest).
fn element(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |a, b| (a << 8) | *b as usize);
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The serial number of a PEM certificate (the INTEGER's content octets).
pub fn serial_of(certificate_pem: &str) -> Result<Vec<u8>, PkiError> {
    let bad = |what: &str| PkiError::Build(format!("cannot read a certificate's serial: {what}"));
    let body: String = certificate_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .map_err(|_| bad("not PEM"))?;
    let (_, cert, _) = element(&der).ok_or_else(|| bad("not DER"))?;
    let (_, tbs, _) = element(cert).ok_or_else(|| bad("no tbsCertificate"))?;
    let (tag, first, rest) = element(tbs).ok_or_else(|| bad("empty tbsCertificate"))?;
    // [0] EXPLICIT version comes first when present.
    let serial = if tag == 0xa0 {
        element(rest).ok_or_else(|| bad("no serial"))?
    } else {
        (tag, first, rest)
    };
    match serial {
        (0x02, bytes, _) => Ok(bytes.to_vec()),
        _ => Err(bad("no INTEGER serial")),
    }
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
