//! The Keyward CA: its key lives in the HSM; rcgen builds certificates and the HSM
//! signs them. It certifies every key version (code signing), the daemon's TLS server
//! identity and principals' client identities.

use crate::hsm::public_key::{fingerprint, spki_key_bits};
use crate::hsm::{Algorithm, HsmError, HsmSession};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, PublicKeyData, SanType, SerialNumber,
    SignatureAlgorithm, SigningKey,
};
use serde::{Deserialize, Serialize};
use sha2::Digest;
use std::cell::RefCell;
use time::{Duration, OffsetDateTime};

mod crl;
pub mod instance_key;
pub mod timestamps;
pub mod tsa;
pub use crl::{CrlEntry, issue_crl, serial_of};

/// Errors while building or signing certificates.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// The HSM failed to sign.
    #[error(transparent)]
    Hsm(#[from] HsmError),
    /// The certificate could not be built.
    #[error("cannot build certificate: {0}")]
    Build(String),
}

impl From<rcgen::Error> for PkiError {
    fn from(e: rcgen::Error) -> Self {
        PkiError::Build(e.to_string())
    }
}

/// What the store keeps about the CA.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaRecord {
    /// Backend holding the CA key.
    pub backend: String,
    /// The CA key's HSM id.
    pub hsm_id: String,
    /// The CA's common name.
    pub common_name: String,
    /// DER SubjectPublicKeyInfo of the CA key (ECDSA P-256 or RSA: see
    /// [`instance_key`]), hex.
    pub public_key: String,
    /// The self-signed CA certificate, PEM.
    pub certificate_pem: String,
}

/// The CA key inside the HSM, seen by rcgen as a signing key. Lives on one HSM worker
/// thread for the duration of one issuance.
struct HsmCaKey<'s> {
    session: RefCell<&'s mut dyn HsmSession>,
    hsm_id: String,
    spki: Vec<u8>,
    bits: Vec<u8>,
    algorithm: &'static SignatureAlgorithm,
    error: RefCell<Option<HsmError>>,
}

impl PublicKeyData for HsmCaKey<'_> {
    fn der_bytes(&self) -> &[u8] {
        &self.bits
    }
    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.algorithm
    }
}

impl SigningKey for HsmCaKey<'_> {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        let mut session = self.session.borrow_mut();
        instance_key::sign(&mut **session, &self.hsm_id, &self.spki, msg).map_err(|e| {
            *self.error.borrow_mut() = Some(e);
            rcgen::Error::RemoteKeyError
        })
    }
}

/// A subject's public key (no private half needed to be certified).
struct SubjectKey {
    bits: Vec<u8>,
    algorithm: &'static SignatureAlgorithm,
}

impl PublicKeyData for SubjectKey {
    fn der_bytes(&self) -> &[u8] {
        &self.bits
    }
    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.algorithm
    }
}

/// rcgen's name for keys of `a` (for a subject: the key's type; for the CA: also how
/// it signs).
fn rcgen_algorithm(a: Algorithm) -> &'static SignatureAlgorithm {
    match a {
        Algorithm::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        Algorithm::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        Algorithm::Ed25519 => &rcgen::PKCS_ED25519,
        Algorithm::RsaPss3072 | Algorithm::RsaPkcs3072 | Algorithm::RsaPkcs4096 => {
            &rcgen::PKCS_RSA_SHA256
        }
    }
}

fn key_id(spki: &[u8]) -> KeyIdMethod {
    KeyIdMethod::PreSpecified(sha2::Sha256::digest(spki)[..20].to_vec())
}

fn serial() -> Result<SerialNumber, PkiError> {
    let mut b = [0u8; 16];
    getrandom::getrandom(&mut b).map_err(|e| PkiError::Build(e.to_string()))?;
    b[0] &= 0x7f;
    Ok(SerialNumber::from_slice(&b))
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Keyward");
    dn.push(DnType::CommonName, common_name);
    dn
}

fn base_params(common_name: &str, valid_for: Duration) -> Result<CertificateParams, PkiError> {
    valid_until(common_name, crate::clock::now() + valid_for)
}

/// Valid from a few minutes ago (for clocks slightly behind) until `not_after`.
fn valid_until(
    common_name: &str,
    not_after: OffsetDateTime,
) -> Result<CertificateParams, PkiError> {
    let mut p = CertificateParams::default();
    p.not_before = crate::clock::now() - Duration::minutes(5);
    p.not_after = not_after;
    p.distinguished_name = name(common_name);
    p.serial_number = Some(serial()?);
    Ok(p)
}

fn ca_params(common_name: &str, ca_spki: &[u8]) -> Result<CertificateParams, PkiError> {
    let mut p = base_params(common_name, Duration::days(3650))?;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.key_identifier_method = key_id(ca_spki);
    Ok(p)
}

fn ca_key<'s>(
    session: &'s mut dyn HsmSession,
    hsm_id: &str,
    ca_spki: &[u8],
) -> Result<HsmCaKey<'s>, PkiError> {
    Ok(HsmCaKey {
        session: RefCell::new(session),
        hsm_id: hsm_id.to_string(),
        spki: ca_spki.to_vec(),
        bits: spki_key_bits(ca_spki).map_err(PkiError::Build)?,
        algorithm: rcgen_algorithm(instance_key::algorithm_of(ca_spki)?),
        error: RefCell::new(None),
    })
}

/// Turns rcgen's opaque "remote key error" back into the HSM's own error.
fn hsm_first(key: &HsmCaKey<'_>, e: rcgen::Error) -> PkiError {
    match key.error.borrow_mut().take() {
        Some(h) => PkiError::Hsm(h),
        None => e.into(),
    }
}

/// Creates the self-signed CA certificate for a CA key already generated in the HSM.
pub fn self_sign_ca(
    session: &mut dyn HsmSession,
    backend: &str,
    hsm_id: &str,
    ca_spki: &[u8],
    common_name: &str,
) -> Result<CaRecord, PkiError> {
    let key = ca_key(session, hsm_id, ca_spki)?;
    let cert = ca_params(common_name, ca_spki)?
        .self_signed(&key)
        .map_err(|e| hsm_first(&key, e))?;
    Ok(CaRecord {
        backend: backend.to_string(),
        hsm_id: hsm_id.to_string(),
        common_name: common_name.to_string(),
        public_key: hex::encode(ca_spki),
        certificate_pem: cert.pem(),
    })
}

/// What a certificate is for.
pub enum Subject<'a> {
    /// A key version: code signing, named `key/vN`.
    KeyVersion {
        /// Key name.
        key: &'a str,
        /// Version number.
        version: u32,
        /// Where verifiers fetch the CA's CRL (the certificate's CRL distribution
        /// point).
        crl_url: Option<&'a str>,
        /// The identity verifiers match (a URI SAN naming the key, the same for every
        /// version) and the issuer (Sigstore's OIDC-issuer extensions).
        identity: Option<(&'a str, &'a str)>,
        /// The end of its validity: the version's planned retirement plus the
        /// overlap. Signatures made before it keep verifying through their
        /// time-stamps.
        valid_until: OffsetDateTime,
    },
    /// The time-stamping authority: `timeStamping` its only extended key usage,
    /// marked critical as RFC 3161 requires.
    TimeStamping,
    /// The daemon's TLS server identity with these DNS names / IP addresses.
    Server(&'a [String]),
    /// A principal's TLS client identity.
    Client(&'a str),
}

/// Sigstore's OIDC-issuer extensions, which cosign's `--certificate-oidc-issuer`
/// matches: 1.3.6.1.4.1.57264.1.1 holds the issuer's bytes, 1.3.6.1.4.1.57264.1.8 the
/// issuer as a DER UTF8String.
fn issuer_extensions(issuer: &str) -> [rcgen::CustomExtension; 2] {
    let bytes = issuer.as_bytes();
    let utf8 = tsa::tlv(0x0c, bytes);
    [
        rcgen::CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 57264, 1, 1], bytes.to_vec()),
        rcgen::CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 57264, 1, 8], utf8),
    ]
}

/// Issues a certificate for `subject_spki`, signed by the CA key in the HSM.
pub fn issue(
    session: &mut dyn HsmSession,
    ca: &CaRecord,
    subject: Subject<'_>,
    subject_spki: &[u8],
    subject_algorithm: Algorithm,
) -> Result<String, PkiError> {
    let ca_spki = hex::decode(&ca.public_key).map_err(|e| PkiError::Build(e.to_string()))?;
    let mut params = match subject {
        Subject::KeyVersion {
            key,
            version,
            crl_url,
            identity,
            valid_until: end,
        } => {
            let mut p = valid_until(&format!("{key}/v{version}"), end)?;
            p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
            if let Some(url) = crl_url {
                p.crl_distribution_points = vec![rcgen::CrlDistributionPoint {
                    uris: vec![url.to_string()],
                }];
            }
            if let Some((uri, issuer)) = identity {
                p.subject_alt_names
                    .push(SanType::URI(uri.try_into().map_err(
                        |e: rcgen::Error| PkiError::Build(format!("identity {uri:?}: {e}")),
                    )?));
                p.custom_extensions.extend(issuer_extensions(issuer));
            }
            p
        }
        Subject::TimeStamping => {
            let mut p = base_params("Keyward TSA", Duration::days(3650))?;
            p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            // ExtendedKeyUsage ::= SEQUENCE { id-kp-timeStamping } (rcgen writes EKU
            // non-critical, so it goes in as a custom extension).
            let eku = tsa::tlv(
                0x30,
                &tsa::tlv(0x06, &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x08]),
            );
            let mut ext = rcgen::CustomExtension::from_oid_content(&[2, 5, 29, 37], eku);
            ext.set_criticality(true);
            p.custom_extensions.push(ext);
            p
        }
        Subject::Server(names) => {
            let mut p = base_params("keywardd", Duration::days(825))?;
            p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            for n in names {
                p.subject_alt_names.push(match n.parse() {
                    Ok(ip) => SanType::IpAddress(ip),
                    Err(_) => SanType::DnsName(n.as_str().try_into()?),
                });
            }
            p
        }
        Subject::Client(principal) => {
            let mut p = base_params(principal, Duration::days(365))?;
            p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            p
        }
    };
    params.use_authority_key_identifier_extension = true;
    params.key_identifier_method = key_id(subject_spki);
    let subject_key = SubjectKey {
        bits: spki_key_bits(subject_spki).map_err(PkiError::Build)?,
        algorithm: rcgen_algorithm(subject_algorithm),
    };
    let key = ca_key(session, &ca.hsm_id, &ca_spki)?;
    let issuer = Issuer::new(ca_params(&ca.common_name, &ca_spki)?, &key);
    let cert = params
        .signed_by(&subject_key, &issuer)
        .map_err(|e| hsm_first(&key, e))?;
    Ok(cert.pem())
}

/// A software TLS key pair (for the server and client identities, which rustls must
/// hold in memory) with its certificate.
pub struct TlsIdentity {
    /// PKCS#8 PEM private key.
    pub key_pem: zeroize::Zeroizing<String>,
    /// PEM certificate.
    pub certificate_pem: String,
}

/// Generates a P-256 TLS key in software and has the CA certify it.
pub fn issue_tls_identity(
    session: &mut dyn HsmSession,
    ca: &CaRecord,
    subject: Subject<'_>,
) -> Result<TlsIdentity, PkiError> {
    let pair = KeyPair::generate()?;
    let spki = pair.subject_public_key_info();
    let certificate_pem = issue(session, ca, subject, &spki, Algorithm::EcdsaP256)?;
    Ok(TlsIdentity {
        key_pem: zeroize::Zeroizing::new(pair.serialize_pem()),
        certificate_pem,
    })
}

/// Fingerprint (SHA-256 of the SPKI) of the CA key.
pub fn ca_fingerprint(ca: &CaRecord) -> String {
    hex::decode(&ca.public_key)
        .map(|d| fingerprint(&d))
        .unwrap_or_default()
}
