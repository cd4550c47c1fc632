//! PKCS#11 backend (cryptoki): SoftHSM2 in tests and the demo, any PKCS#11 module in
//! production.
//!
//! One `Pkcs11` context per backend and one login for the daemon's whole life: a
//! dedicated session stays open and logged in so that object handles stay valid.
//! Private keys are looked up once at start-up (one `C_FindObjects` over all private
//! keys) into a CKA_ID -> handle map; a `C_FindObjects` per request would scan the whole
//! token every time (9 signatures/s at 3,000 keys on SoftHSM).

use super::public_key::{ec_spki, ecdsa_raw_to_der, rsa_spki, unwrap_ec_point};
use super::{
    Algorithm, Backend, DigestAlgorithm, GeneratedKey, HsmError, HsmObject, HsmSession,
    KeyProtection, SignInput, UsageCheck,
};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use zeroize::Zeroizing;

const P256_OID: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const P384_OID: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
const ED25519_OID: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];

#[path = "pkcs11_caps.rs"]
mod caps;
#[path = "pkcs11_secret.rs"]
mod secret;
#[path = "pkcs11_session.rs"]
mod session;
#[path = "pkcs11_token.rs"]
mod token;
#[path = "pkcs11_usage.rs"]
mod usage;

pub use token::{PinSource, Pkcs11Settings, ensure_token};

/// Labels of objects Keyward creates start with this.
pub const LABEL_PREFIX: &str = "keyward:";

/// Lookup state shared by all sessions of one backend.
struct Objects {
    /// CKA_ID -> private key handle, valid for this process and login.
    handles: RwLock<HashMap<Vec<u8>, ObjectHandle>>,
    /// Held for writing while a key is generated or destroyed, for reading during
    /// `C_FindObjects`: SoftHSM fails a Find that races a generation and can leave
    /// half-written objects behind.
    generation: RwLock<()>,
    /// Serialises lookups after a cache miss, so that misses cannot pile up token scans.
    miss: Mutex<()>,
    /// CKA_ID and key type -> secret key handle, or none (sealing and record MAC
    /// keys): a Find scans the whole token, so each is looked up once.
    secrets: RwLock<HashMap<Vec<u8>, Option<ObjectHandle>>>,
    /// Whether the token offers AES-GCM (new sealing keys use it, else encrypt-then-MAC).
    gcm: bool,
}

/// A PKCS#11 token.
pub struct Pkcs11Backend {
    settings: Pkcs11Settings,
    ctx: Pkcs11,
    slot: Slot,
    objects: Arc<Objects>,
    /// What the token's mechanism list offers.
    caps: super::Capabilities,
    /// Kept open and logged in for the backend's whole life: once every session of the
    /// login is closed, all handles become invalid.
    _login: Mutex<Session>,
}

impl std::fmt::Debug for Pkcs11Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Backend")
            .field("name", &self.settings.name)
            .field("module", &self.settings.module)
            .field("token_label", &self.settings.token_label)
            .finish_non_exhaustive()
    }
}

pub(crate) fn device(op: &'static str, e: CkError) -> HsmError {
    match e {
        CkError::Pkcs11(RvError::DeviceMemory, _) => HsmError::OutOfSpace(e.to_string()),
        CkError::Pkcs11(RvError::PinIncorrect, _) => HsmError::WrongPin("the token".into()),
        _ => HsmError::Device {
            op,
            detail: e.to_string(),
        },
    }
}

fn is_rv(e: &CkError, rv: RvError) -> bool {
    matches!(e, CkError::Pkcs11(r, _) if *r == rv)
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}
fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

fn object_id(session: &Session, handle: ObjectHandle) -> Result<Option<Vec<u8>>, HsmError> {
    let attrs = session
        .get_attributes(handle, &[AttributeType::Id])
        .map_err(|e| device("read CKA_ID", e))?;
    Ok(attrs.into_iter().find_map(|a| match a {
        Attribute::Id(id) if !id.is_empty() => Some(id),
        _ => None,
    }))
}

impl Backend for Pkcs11Backend {
    fn name(&self) -> &str {
        &self.settings.name
    }
    fn kind(&self) -> &'static str {
        "pkcs11"
    }
    fn algorithms(&self) -> &[Algorithm] {
        &self.caps.algorithms
    }
    fn capabilities(&self) -> super::Capabilities {
        self.caps.clone()
    }
    fn open_session(&self) -> Result<Box<dyn HsmSession>, HsmError> {
        let session = self
            .ctx
            .open_rw_session(self.slot)
            .map_err(|e| device("open session", e))?;
        Ok(Box::new(Pkcs11Session {
            session,
            objects: self.objects.clone(),
        }))
    }
}

/// A PKCS#11 session owned by one worker thread.
struct Pkcs11Session {
    session: Session,
    objects: Arc<Objects>,
}

fn parse_id(hsm_id: &str) -> Result<Vec<u8>, HsmError> {
    hex::decode(hsm_id).map_err(|_| HsmError::KeyNotFound(hsm_id.to_string()))
}

impl HsmSession for Pkcs11Session {
    fn generate(&mut self, label: &str, algorithm: Algorithm) -> Result<GeneratedKey, HsmError> {
        let mut id = vec![0u8; 16];
        getrandom::getrandom(&mut id).map_err(|e| HsmError::Device {
            op: "generate",
            detail: format!("no randomness for the key id: {e}"),
        })?;
        let label = format!("{LABEL_PREFIX}{label}").into_bytes();
        let common_pub = [
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Verify(true),
            Attribute::Encrypt(false),
            Attribute::Wrap(false),
            Attribute::Id(id.clone()),
            Attribute::Label(label.clone()),
        ];
        let mut private = vec![
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Id(id.clone()),
            Attribute::Label(label),
        ];
        private.extend(usage::private_template());
        let (mechanism, mut public) = match algorithm {
            Algorithm::EcdsaP256 => (
                Mechanism::EccKeyPairGen,
                vec![Attribute::EcParams(P256_OID.to_vec())],
            ),
            Algorithm::EcdsaP384 => (
                Mechanism::EccKeyPairGen,
                vec![Attribute::EcParams(P384_OID.to_vec())],
            ),
            Algorithm::Ed25519 => (
                Mechanism::EccEdwardsKeyPairGen,
                vec![Attribute::EcParams(ED25519_OID.to_vec())],
            ),
            Algorithm::RsaPss3072 | Algorithm::RsaPkcs3072 | Algorithm::RsaPkcs4096 => (
                Mechanism::RsaPkcsKeyPairGen,
                vec![
                    Attribute::ModulusBits(algorithm.rsa_bits().unwrap_or(3072).into()),
                    Attribute::PublicExponent(vec![0x01, 0x00, 0x01]),
                    Attribute::KeyType(KeyType::RSA),
                ],
            ),
        };
        public.extend_from_slice(&common_pub);
        let generated = {
            let _exclusive = write(&self.objects.generation);
            self.session
                .generate_key_pair(&mechanism, &public, &private)
        };
        let (pub_h, priv_h) = match generated {
            Ok(pair) => pair,
            Err(e) => {
                // A failed generation can leave half-written objects carrying our id.
                let _exclusive = write(&self.objects.generation);
                let _ = self.destroy_by_id(&id);
                return Err(device("generate key", e));
            }
        };
        match self.public_key_der(pub_h, algorithm) {
            Ok(public_key_der) => {
                write(&self.objects.handles).insert(id.clone(), priv_h);
                Ok(GeneratedKey {
                    hsm_id: hex::encode(&id),
                    public_key_der,
                })
            }
            Err(e) => {
                let _exclusive = write(&self.objects.generation);
                let _ = self.destroy_by_id(&id);
                Err(e)
            }
        }
    }

    fn sign(
        &mut self,
        hsm_id: &str,
        algorithm: Algorithm,
        input: &SignInput,
    ) -> Result<Vec<u8>, HsmError> {
        if algorithm == Algorithm::Ed25519 && matches!(input, SignInput::Digest(..)) {
            return Err(HsmError::InvalidInput(
                "ed25519 keys sign whole messages (pure EdDSA), not digests: send the message"
                    .into(),
            ));
        }
        let id = parse_id(hsm_id)?;
        let mut handle = self.handle(&id)?;
        let mut retried = false;
        let raw = loop {
            match self.sign_once(handle, algorithm, input) {
                Ok(sig) => break sig,
                // The handle went stale (object destroyed and re-created elsewhere):
                // look the key up again, once.
                Err(e)
                    if !retried
                        && (is_rv(&e, RvError::ObjectHandleInvalid)
                            || is_rv(&e, RvError::KeyHandleInvalid)) =>
                {
                    self.forget(&id);
                    handle = self.handle(&id)?;
                    retried = true;
                }
                // A key another process has just written can fail its first C_Sign.
                Err(e) if !retried && is_rv(&e, RvError::GeneralError) => {
                    std::thread::sleep(Duration::from_millis(10));
                    retried = true;
                }
                Err(e) => return Err(device("sign", e)),
            }
        };
        ecdsa_raw_to_der(algorithm, &raw)
    }

    fn is_object(&mut self, hsm_id: &str, label: &str) -> Result<bool, HsmError> {
        let handle = self.handle(&parse_id(hsm_id)?)?;
        let attrs = self
            .session
            .get_attributes(handle, &[AttributeType::Label])
            .map_err(|e| device("read CKA_LABEL", e))?;
        let expected = format!("{LABEL_PREFIX}{label}").into_bytes();
        Ok(attrs
            .into_iter()
            .any(|a| matches!(a, Attribute::Label(l) if l == expected)))
    }

    fn protection(&mut self, hsm_id: &str) -> Result<KeyProtection, HsmError> {
        let handle = self.handle(&parse_id(hsm_id)?)?;
        let attrs = self
            .session
            .get_attributes(
                handle,
                &[
                    AttributeType::Sensitive,
                    AttributeType::Extractable,
                    AttributeType::NeverExtractable,
                ],
            )
            .map_err(|e| device("read attributes", e))?;
        let mut p = KeyProtection {
            sensitive: false,
            extractable: true,
            never_extractable: false,
        };
        for a in attrs {
            match a {
                Attribute::Sensitive(v) => p.sensitive = v,
                Attribute::Extractable(v) => p.extractable = v,
                Attribute::NeverExtractable(v) => p.never_extractable = v,
                _ => {}
            }
        }
        Ok(p)
    }

    fn restrict_usage(&mut self, hsm_id: &str, sign: bool) -> Result<UsageCheck, HsmError> {
        let handle = self.handle(&parse_id(hsm_id)?)?;
        usage::restrict(&self.session, handle, sign)
    }

    fn list_objects(&mut self) -> Result<Vec<HsmObject>, HsmError> {
        let _find = read(&self.objects.generation);
        let found = self
            .session
            .find_objects(&[Attribute::Class(ObjectClass::PRIVATE_KEY)])
            .map_err(|e| device("find keys", e))?;
        let mut out = Vec::with_capacity(found.len());
        for h in found {
            let attrs = self
                .session
                .get_attributes(h, &[AttributeType::Id, AttributeType::Label])
                .map_err(|e| device("read attributes", e))?;
            let mut obj = HsmObject {
                hsm_id: String::new(),
                label: String::new(),
            };
            for a in attrs {
                match a {
                    Attribute::Id(id) => obj.hsm_id = hex::encode(id),
                    Attribute::Label(l) => obj.label = String::from_utf8_lossy(&l).into_owned(),
                    _ => {}
                }
            }
            out.push(obj);
        }
        Ok(out)
    }

    fn generate_sealing_key(&mut self, label: &str) -> Result<String, HsmError> {
        let _exclusive = write(&self.objects.generation);
        secret::generate(
            &self.session,
            label,
            secret::Kind::Sealing,
            self.objects.gcm,
        )
    }

    fn seal(&mut self, key_id: &str, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, HsmError> {
        if let Some(mac) = self.find_secret_key(key_id, KeyType::GENERIC_SECRET)? {
            let iv = secret::new_iv::<16>()?;
            return self.with_secret(key_id, KeyType::AES, "seal", |aes| {
                secret::seal_etm(&self.session, (aes, mac), iv, plaintext, aad)
            });
        }
        let iv = secret::new_iv::<12>()?;
        self.with_secret(key_id, KeyType::AES, "seal", |key| {
            secret::seal(&self.session, key, iv, plaintext, aad)
        })
    }

    fn unseal(&mut self, key_id: &str, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, HsmError> {
        if let Some(mac) = self.find_secret_key(key_id, KeyType::GENERIC_SECRET)? {
            return self.with_secret(key_id, KeyType::AES, "unseal", |aes| {
                secret::unseal_etm(&self.session, (aes, mac), sealed, aad)
                    .unwrap_or(Err(CkError::InvalidValue))
            });
        }
        if sealed.len() < 12 + 16 {
            return Err(HsmError::InvalidInput("sealed secret is too short".into()));
        }
        self.with_secret(key_id, KeyType::AES, "unseal", |key| {
            secret::unseal(&self.session, key, sealed, aad)
        })
    }

    fn find_secret(&mut self, label: &str) -> Result<Option<String>, HsmError> {
        let _find = read(&self.objects.generation);
        let found = self
            .session
            .find_objects(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::Label(format!("{LABEL_PREFIX}{label}").into_bytes()),
            ])
            .map_err(|e| device("find secret key", e))?;
        let Some(h) = found.first() else {
            return Ok(None);
        };
        let attrs = self
            .session
            .get_attributes(*h, &[AttributeType::Id])
            .map_err(|e| device("read attributes", e))?;
        Ok(attrs.into_iter().find_map(|a| match a {
            Attribute::Id(id) => Some(hex::encode(id)),
            _ => None,
        }))
    }

    fn generate_mac_key(&mut self, label: &str) -> Result<String, HsmError> {
        let _exclusive = write(&self.objects.generation);
        secret::generate(&self.session, label, secret::Kind::Mac, self.objects.gcm)
    }

    fn mac(&mut self, key_id: &str, data: &[u8]) -> Result<Vec<u8>, HsmError> {
        self.with_secret(key_id, KeyType::GENERIC_SECRET, "mac", |key| {
            self.session.sign(&Mechanism::Sha256Hmac, key, data)
        })
    }

    fn destroy(&mut self, hsm_id: &str) -> Result<(), HsmError> {
        let id = parse_id(hsm_id)?;
        let _exclusive = write(&self.objects.generation);
        self.forget(&id);
        match self.destroy_by_id(&id) {
            Ok(0) => Err(HsmError::KeyNotFound(hsm_id.to_string())),
            Ok(_) => Ok(()),
            Err(e) => Err(device("destroy key", e)),
        }
    }
}
