//! Secret keys on a PKCS#11 token: AES-256 for sealing small secrets (AES-GCM, with
//! associated data that binds a sealed secret to its owner) and HMAC-SHA256 for the
//! integrity of stored records. Both are generated sensitive and non-extractable.

use super::{LABEL_PREFIX, device};
use crate::hsm::HsmError;
use cryptoki::error::Error as CkError;
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;

/// Which secret key.
pub(super) enum Kind {
    /// AES-256, encrypt/decrypt.
    Sealing,
    /// Generic secret for HMAC-SHA256, sign/verify.
    Mac,
}

/// Generates a secret key labelled `keyward:<label>`; returns its hex CKA_ID.
pub(super) fn generate(session: &Session, label: &str, kind: Kind) -> Result<String, HsmError> {
    let mut id = vec![0u8; 16];
    getrandom::getrandom(&mut id).map_err(|e| HsmError::Device {
        op: "generate",
        detail: e.to_string(),
    })?;
    let mut template = vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::ValueLen(32u64.into()),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Id(id.clone()),
        Attribute::Label(format!("{LABEL_PREFIX}{label}").into_bytes()),
    ];
    let mechanism = match kind {
        Kind::Sealing => {
            template.extend([
                Attribute::KeyType(KeyType::AES),
                Attribute::Encrypt(true),
                Attribute::Decrypt(true),
            ]);
            Mechanism::AesKeyGen
        }
        Kind::Mac => {
            template.extend([
                Attribute::KeyType(KeyType::GENERIC_SECRET),
                Attribute::Sign(true),
                Attribute::Verify(true),
            ]);
            Mechanism::GenericSecretKeyGen
        }
    };
    session
        .generate_key(&mechanism, &template)
        .map_err(|e| device("generate secret key", e))?;
    Ok(hex::encode(id))
}

/// The associated data of a sealed secret: a fixed prefix and the caller's binding.
fn associated(aad: &[u8]) -> Vec<u8> {
    let mut out = b"keyward-seal".to_vec();
    if !aad.is_empty() {
        out.push(0);
        out.extend_from_slice(aad);
    }
    out
}

/// A fresh random 96-bit IV for [`seal`].
pub(super) fn new_iv() -> Result<[u8; 12], HsmError> {
    let mut iv = [0u8; 12];
    getrandom::getrandom(&mut iv).map_err(|e| HsmError::Device {
        op: "seal",
        detail: e.to_string(),
    })?;
    Ok(iv)
}

/// AES-GCM with the IV `iv`; returns IV || ciphertext || tag.
pub(super) fn seal(
    session: &Session,
    key: ObjectHandle,
    iv: [u8; 12],
    plaintext: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, CkError> {
    let mut iv_param = iv;
    let aad = associated(aad);
    let params = GcmParams::new(&mut iv_param, &aad, 128u64.into())?;
    let ct = session.encrypt(&Mechanism::AesGcm(params), key, plaintext)?;
    let mut out = iv.to_vec();
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Opens what [`seal`] made with the same `aad` (the caller checked that `sealed` is
/// at least IV and tag long); fails if either was altered.
pub(super) fn unseal(
    session: &Session,
    key: ObjectHandle,
    sealed: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, CkError> {
    let mut iv = [0u8; 12];
    iv.copy_from_slice(&sealed[..12]);
    let aad = associated(aad);
    let params = GcmParams::new(&mut iv, &aad, 128u64.into())?;
    session.decrypt(&Mechanism::AesGcm(params), key, &sealed[12..])
}
