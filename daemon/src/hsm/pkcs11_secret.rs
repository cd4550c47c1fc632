//! Secret keys on a PKCS#11 token: AES-256 for sealing small secrets, with associated
//! data that binds a sealed secret to its owner, and HMAC-SHA256 for the integrity of
//! stored records. All are generated sensitive and non-extractable.
//!
//! Sealing uses AES-GCM where the token offers it. A token without AES-GCM (many
//! FIPS-configured units, opencryptoki's soft token) gets encrypt-then-MAC inside the
//! HSM instead: the sealing key is then two objects under one CKA_ID, an AES key for
//! AES-CBC-PAD and an HMAC key, and a sealed secret is
//! `0x01 || IV(16) || ciphertext || HMAC-SHA256(prefix, associated data, 0x01 || IV || ciphertext)`.
//! Which construction a key uses is read from the token (whether its HMAC half exists),
//! so a sealed secret opens wherever its key lives.

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

/// The first octet of an encrypt-then-MAC sealed secret.
pub(super) const ETM: u8 = 1;
/// Length of the HMAC-SHA256 tag.
const TAG: usize = 32;

/// Generates a secret key labelled `keyward:<label>`; returns its hex CKA_ID. A sealing
/// key on a token without AES-GCM (`gcm` false) gets its HMAC half under the same id.
pub(super) fn generate(
    session: &Session,
    label: &str,
    kind: Kind,
    gcm: bool,
) -> Result<String, HsmError> {
    let mut id = vec![0u8; 16];
    getrandom::getrandom(&mut id).map_err(|e| HsmError::Device {
        op: "generate",
        detail: e.to_string(),
    })?;
    let etm = matches!(kind, Kind::Sealing) && !gcm;
    create(session, label, &id, kind)?;
    if etm && let Err(e) = create(session, label, &id, Kind::Mac) {
        for h in session
            .find_objects(&[Attribute::Id(id.clone())])
            .unwrap_or_default()
        {
            let _ = session.destroy_object(h);
        }
        return Err(e);
    }
    Ok(hex::encode(id))
}

/// Creates one secret key object with CKA_ID `id`.
fn create(session: &Session, label: &str, id: &[u8], kind: Kind) -> Result<(), HsmError> {
    let mut template = vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::ValueLen(32u64.into()),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        // Some modules default these to true: a derivable or wrapping secret key is a
        // door to its value (derive an extractable key from it; wrap with it).
        Attribute::Derive(false),
        Attribute::Wrap(false),
        Attribute::Unwrap(false),
        Attribute::Id(id.to_vec()),
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
    Ok(())
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

/// A fresh random IV: 12 octets for [`seal`], 16 for [`seal_etm`].
pub(super) fn new_iv<const N: usize>() -> Result<[u8; N], HsmError> {
    let mut iv = [0u8; N];
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

/// What the HMAC of an encrypt-then-MAC sealed secret covers: a prefix, the associated
/// data (length-prefixed), then `0x01 || IV || ciphertext`.
fn etm_mac_input(body: &[u8], aad: &[u8]) -> Vec<u8> {
    let aad = associated(aad);
    let mut out = b"keyward-seal-etm".to_vec();
    out.extend_from_slice(&(aad.len() as u64).to_be_bytes());
    out.extend_from_slice(&aad);
    out.extend_from_slice(body);
    out
}

/// AES-CBC-PAD with the IV `iv`, then HMAC-SHA256, both inside the HSM.
pub(super) fn seal_etm(
    session: &Session,
    (aes, mac): (ObjectHandle, ObjectHandle),
    iv: [u8; 16],
    plaintext: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, CkError> {
    let ct = session.encrypt(&Mechanism::AesCbcPad(iv), aes, plaintext)?;
    let mut out = vec![ETM];
    out.extend_from_slice(&iv);
    out.extend_from_slice(&ct);
    let tag = session.sign(&Mechanism::Sha256Hmac, mac, &etm_mac_input(&out, aad))?;
    out.extend_from_slice(&tag);
    Ok(out)
}

/// Opens what [`seal_etm`] made with the same `aad`: the HSM checks the HMAC before
/// anything is decrypted. `None` when `sealed` is not in that form.
pub(super) fn unseal_etm(
    session: &Session,
    (aes, mac): (ObjectHandle, ObjectHandle),
    sealed: &[u8],
    aad: &[u8],
) -> Option<Result<Vec<u8>, CkError>> {
    if sealed.len() < 1 + 16 + 16 + TAG || sealed[0] != ETM {
        return None;
    }
    let (body, tag) = sealed.split_at(sealed.len() - TAG);
    Some((|| {
        session.verify(&Mechanism::Sha256Hmac, mac, &etm_mac_input(body, aad), tag)?;
        let mut iv = [0u8; 16];
        iv.copy_from_slice(&body[1..17]);
        session.decrypt(&Mechanism::AesCbcPad(iv), aes, &body[17..])
    })())
}
