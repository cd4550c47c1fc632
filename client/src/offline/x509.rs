//! The few certificate checks a verifier that trusts keys by name makes, on the DER
//! reader in `der.rs`: signed by a CA key (ECDSA P-256, as the Keyward CA signs),
//! valid at a time, its URI SANs and Sigstore OIDC-issuer extension.

use crate::der::{Element, element, pem_der};
use time::OffsetDateTime;

/// A parsed certificate.
pub struct Cert {
    /// The DER certificate.
    pub der: Vec<u8>,
    tbs: Vec<u8>,
    signature: Vec<u8>,
    /// DER SubjectPublicKeyInfo.
    pub spki: Vec<u8>,
    /// Validity.
    pub not_before: OffsetDateTime,
    /// Validity.
    pub not_after: OffsetDateTime,
    /// URI subject alternative names.
    pub uris: Vec<String>,
    /// Sigstore's OIDC issuer (1.3.6.1.4.1.57264.1.8, else .1.1).
    pub issuer: Option<String>,
}

const SAN: &[u8] = &[0x55, 0x1d, 0x11];
const ISSUER_V2: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0x83, 0xbf, 0x30, 0x01, 0x08];
const ISSUER_V1: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0x83, 0xbf, 0x30, 0x01, 0x01];

pub use crate::der::children;

/// A UTCTime (0x17) or GeneralizedTime (0x18, fraction allowed), in UTC.
pub fn asn1_time(e: &Element<'_>) -> Option<OffsetDateTime> {
    let text = std::str::from_utf8(e.contents).ok()?.strip_suffix('Z')?;
    let text = text.split('.').next()?;
    let full = match (e.tag, text.len()) {
        (0x17, 12) => {
            let yy: i32 = text[..2].parse().ok()?;
            format!("{}{text}", if yy < 50 { "20" } else { "19" })
        }
        (0x18, 14) => text.to_string(),
        _ => return None,
    };
    let n = |r: std::ops::Range<usize>| full.get(r)?.parse::<u32>().ok();
    let date = time::Date::from_calendar_date(
        n(0..4)? as i32,
        time::Month::try_from(n(4..6)? as u8).ok()?,
        n(6..8)? as u8,
    )
    .ok()?;
    let t = time::Time::from_hms(n(8..10)? as u8, n(10..12)? as u8, n(12..14)? as u8).ok()?;
    Some(date.with_time(t).assume_utc())
}

impl Cert {
    /// Reads a DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, String> {
        let bad = |what: &str| format!("the certificate is not usable: {what}");
        let cert = element(der).ok_or_else(|| bad("not DER"))?;
        let parts = children(cert.contents);
        let [tbs, _alg, sig, ..] = parts.as_slice() else {
            return Err(bad("not a certificate"));
        };
        let mut fields = children(tbs.contents);
        if fields.first().is_some_and(|f| f.tag == 0xa0) {
            fields.remove(0);
        }
        if fields.len() < 6 {
            return Err(bad("too few fields"));
        }
        let validity = children(fields[3].contents);
        let [from, to] = validity.as_slice() else {
            return Err(bad("no validity"));
        };
        let mut c = Cert {
            der: cert.whole.to_vec(),
            tbs: tbs.whole.to_vec(),
            signature: sig.contents.get(1..).unwrap_or_default().to_vec(),
            spki: fields[5].whole.to_vec(),
            not_before: asn1_time(from).ok_or_else(|| bad("bad notBefore"))?,
            not_after: asn1_time(to).ok_or_else(|| bad("bad notAfter"))?,
            uris: Vec::new(),
            issuer: None,
        };
        let extensions = fields.iter().find(|f| f.tag == 0xa3).map(|f| f.contents);
        let list = extensions.and_then(element).map(|e| children(e.contents));
        let (mut v1, mut v2) = (None, None);
        for ext in list.unwrap_or_default() {
            let parts = children(ext.contents);
            let (Some(oid), Some(value)) = (parts.first(), parts.last()) else {
                continue;
            };
            match oid.contents {
                SAN => {
                    for name in element(value.contents)
                        .map(|e| children(e.contents))
                        .unwrap_or_default()
                    {
                        if name.tag == 0x86 {
                            c.uris
                                .push(String::from_utf8_lossy(name.contents).into_owned());
                        }
                    }
                }
                ISSUER_V2 => {
                    v2 = element(value.contents)
                        .map(|e| String::from_utf8_lossy(e.contents).into_owned());
                }
                ISSUER_V1 => v1 = Some(String::from_utf8_lossy(value.contents).into_owned()),
                _ => {}
            }
        }
        c.issuer = v2.or(v1);
        Ok(c)
    }

    /// Reads a PEM certificate.
    pub fn from_pem(pem: &str) -> Result<Self, String> {
        Self::from_der(&pem_der(pem)?)
    }

    /// Every certificate in a PEM file, in order.
    pub fn all_pem(pem: &str) -> Result<Vec<Self>, String> {
        pem.split_inclusive("-----END CERTIFICATE-----")
            .filter(|p| p.contains("-----BEGIN CERTIFICATE-----"))
            .map(Self::from_pem)
            .collect()
    }

    /// Whether `issuer`'s key (ECDSA P-256 or RSA, with SHA-256, as Keyward's CA
    /// signs) signed this certificate.
    pub fn signed_by(&self, issuer: &Cert) -> bool {
        crate::signature::verifies(&issuer.spki, &self.tbs, &self.signature)
    }

    /// Whether it is valid at `t`.
    pub fn valid_at(&self, t: OffsetDateTime) -> bool {
        self.not_before <= t && t <= self.not_after
    }
}
