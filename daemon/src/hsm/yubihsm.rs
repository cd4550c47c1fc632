//! YubiHSM2 backend (the `yubihsm` crate) over the HTTP connector or USB.
//!
//! Keys are generated without the `exportable-under-wrap` capability, so the device
//! never lets them out. `yubihsm::Client` serialises commands over its one
//! authenticated session; every worker holds a clone of it.

use super::public_key::ec_spki;
use super::{
    Algorithm, Backend, GeneratedKey, HsmError, HsmObject, HsmSession, KeyProtection, SignInput,
    UsageCheck,
};
use yubihsm::{Capability, Client, Connector, Credentials, Domain, asymmetric, object};

/// A YubiHSM2 (or, in tests, the crate's MockHsm).
pub struct YubiHsmBackend {
    name: String,
    client: Client,
}

impl std::fmt::Debug for YubiHsmBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("YubiHsmBackend")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

const ALGORITHMS: [Algorithm; 3] = [
    Algorithm::EcdsaP256,
    Algorithm::EcdsaP384,
    Algorithm::Ed25519,
];

fn device(op: &'static str, e: impl std::fmt::Display) -> HsmError {
    HsmError::Device {
        op,
        detail: e.to_string(),
    }
}

fn parse_id(hsm_id: &str) -> Result<object::Id, HsmError> {
    hsm_id
        .strip_prefix("0x")
        .and_then(|h| u16::from_str_radix(h, 16).ok())
        .ok_or_else(|| HsmError::KeyNotFound(hsm_id.to_string()))
}

fn format_id(id: object::Id) -> String {
    format!("0x{id:04x}")
}

impl YubiHsmBackend {
    /// Connects and authenticates. The password in `credentials` is used once and
    /// wiped by the crate when the credentials are dropped.
    pub fn open(
        name: &str,
        connector: Connector,
        credentials: Credentials,
    ) -> Result<Self, HsmError> {
        let client = Client::open(connector, credentials, true).map_err(|e| {
            let text = e.to_string();
            if text.contains("authentication") || text.contains("Auth") {
                HsmError::WrongPin(format!("YubiHSM backend {name}"))
            } else {
                HsmError::Config(format!("cannot connect to YubiHSM backend {name}: {text}"))
            }
        })?;
        Ok(Self {
            name: name.to_string(),
            client,
        })
    }
}

impl Backend for YubiHsmBackend {
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> &'static str {
        "yubihsm"
    }
    fn algorithms(&self) -> &[Algorithm] {
        &ALGORITHMS
    }
    fn open_session(&self) -> Result<Box<dyn HsmSession>, HsmError> {
        Ok(Box::new(YubiHsmSession {
            client: self.client.clone(),
        }))
    }
}

struct YubiHsmSession {
    client: Client,
}

impl YubiHsmSession {
    fn free_id(&self) -> Result<object::Id, HsmError> {
        let used: std::collections::HashSet<object::Id> = self
            .client
            .list_objects(&[])
            .map_err(|e| device("list objects", e))?
            .into_iter()
            .map(|e| e.object_id)
            .collect();
        for _ in 0..64 {
            let mut b = [0u8; 2];
            getrandom::getrandom(&mut b).map_err(|e| device("generate", e))?;
            let id = u16::from_be_bytes(b);
            if id != 0 && id != 0xffff && !used.contains(&id) {
                return Ok(id);
            }
        }
        Err(HsmError::OutOfSpace(
            "no free object id on the YubiHSM".into(),
        ))
    }
}

impl HsmSession for YubiHsmSession {
    fn generate(&mut self, label: &str, algorithm: Algorithm) -> Result<GeneratedKey, HsmError> {
        let (alg, capability) = match algorithm {
            Algorithm::EcdsaP256 => (asymmetric::Algorithm::EcP256, Capability::SIGN_ECDSA),
            Algorithm::EcdsaP384 => (asymmetric::Algorithm::EcP384, Capability::SIGN_ECDSA),
            Algorithm::Ed25519 => (asymmetric::Algorithm::Ed25519, Capability::SIGN_EDDSA),
            Algorithm::RsaPss3072 | Algorithm::RsaPkcs3072 | Algorithm::RsaPkcs4096 => {
                return Err(HsmError::Unsupported {
                    why: String::new(),
                    algorithm: algorithm.to_string(),
                    backend: "yubihsm".into(),
                    supported: ALGORITHMS.map(Algorithm::as_str).join(", "),
                });
            }
        };
        let id = self.free_id()?;
        // YubiHSM labels hold 40 bytes.
        let text: String = format!("keyward:{label}").chars().take(40).collect();
        let label = object::Label::from(text.as_str());
        self.client
            .generate_asymmetric_key(id, label, Domain::DOM1, capability, alg)
            .map_err(|e| {
                let t = e.to_string();
                if t.contains("storage") || t.contains("Storage") {
                    HsmError::OutOfSpace(t)
                } else {
                    device("generate key", t)
                }
            })?;
        let public = match self.client.get_public_key(id) {
            Ok(p) => p,
            Err(e) => {
                let _ = self.client.delete_object(id, object::Type::AsymmetricKey);
                return Err(device("read public key", e));
            }
        };
        let point = match algorithm {
            Algorithm::Ed25519 => public.bytes.clone(),
            _ => {
                let mut p = vec![0x04];
                p.extend_from_slice(&public.bytes);
                p
            }
        };
        match ec_spki(algorithm, &point) {
            Ok(public_key_der) => Ok(GeneratedKey {
                hsm_id: format_id(id),
                public_key_der,
            }),
            Err(e) => {
                let _ = self.client.delete_object(id, object::Type::AsymmetricKey);
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
        let id = parse_id(hsm_id)?;
        match algorithm {
            Algorithm::EcdsaP256 | Algorithm::EcdsaP384 => {
                let (_, digest) = input.digest_or_hash(algorithm.default_digest());
                self.client
                    .sign_ecdsa_prehash_raw(id, digest)
                    .map_err(|e| device("sign", e))
            }
            Algorithm::Ed25519 => {
                let SignInput::Message(m) = input else {
                    return Err(HsmError::InvalidInput(
                        "ed25519 keys sign whole messages (pure EdDSA), not digests: send the message"
                            .into(),
                    ));
                };
                self.client
                    .sign_ed25519(id, m.as_slice())
                    .map(|s| s.to_bytes().to_vec())
                    .map_err(|e| device("sign", e))
            }
            Algorithm::RsaPss3072 | Algorithm::RsaPkcs3072 | Algorithm::RsaPkcs4096 => {
                Err(HsmError::Unsupported {
                    why: String::new(),
                    algorithm: algorithm.to_string(),
                    backend: "yubihsm".into(),
                    supported: ALGORITHMS.map(Algorithm::as_str).join(", "),
                })
            }
        }
    }

    fn restrict_usage(&mut self, hsm_id: &str, sign: bool) -> Result<UsageCheck, HsmError> {
        // Keyward's objects carry one signing capability from generation; a YubiHSM
        // cannot take a capability from an object afterwards.
        let mut check = UsageCheck::default();
        if !sign {
            check.refused.push(format!(
                "object {hsm_id}: a YubiHSM cannot take the signing capability from an object; destroy it (keyward key revoke NAME --version N --reason key-compromise --destroy)"
            ));
        }
        Ok(check)
    }

    fn protection(&mut self, hsm_id: &str) -> Result<KeyProtection, HsmError> {
        let id = parse_id(hsm_id)?;
        let info = self
            .client
            .get_object_info(id, object::Type::AsymmetricKey)
            .map_err(|e| device("read object info", e))?;
        let extractable = info
            .capabilities
            .contains(Capability::EXPORTABLE_UNDER_WRAP);
        Ok(KeyProtection {
            // A YubiHSM never reveals a private key in plaintext.
            sensitive: true,
            extractable,
            never_extractable: !extractable && info.origin == object::Origin::Generated,
        })
    }

    fn is_object(&mut self, hsm_id: &str, label: &str) -> Result<bool, HsmError> {
        let id = parse_id(hsm_id)?;
        let info = self
            .client
            .get_object_info(id, object::Type::AsymmetricKey)
            .map_err(|e| device("read object info", e))?;
        let expected: String = format!("keyward:{label}").chars().take(40).collect();
        Ok(info.label.to_string() == expected)
    }

    fn list_objects(&mut self) -> Result<Vec<HsmObject>, HsmError> {
        let entries = self
            .client
            .list_objects(&[object::Filter::Type(object::Type::AsymmetricKey)])
            .map_err(|e| device("list objects", e))?;
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            let info = self
                .client
                .get_object_info(e.object_id, object::Type::AsymmetricKey)
                .map_err(|e| device("read object info", e))?;
            out.push(HsmObject {
                hsm_id: format_id(e.object_id),
                label: info.label.to_string(),
            });
        }
        Ok(out)
    }

    fn destroy(&mut self, hsm_id: &str) -> Result<(), HsmError> {
        let id = parse_id(hsm_id)?;
        self.client
            .delete_object(id, object::Type::AsymmetricKey)
            .map_err(|e| device("destroy key", e))
    }

    fn generate_sealing_key(&mut self, label: &str) -> Result<String, HsmError> {
        let id = self.free_id()?;
        let text: String = format!("keyward:{label}").chars().take(40).collect();
        self.client
            .generate_wrap_key(
                id,
                object::Label::from(text.as_str()),
                Domain::DOM1,
                Capability::WRAP_DATA | Capability::UNWRAP_DATA,
                Capability::empty(),
                yubihsm::wrap::Algorithm::Aes256Ccm,
            )
            .map_err(|e| device("generate sealing key", e))?;
        Ok(format_id(id))
    }

    /// YubiHSM wrap_data has no associated data: the binding is wrapped with the
    /// secret (length, binding, secret) and checked when unwrapped.
    fn seal(&mut self, key_id: &str, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, HsmError> {
        let id = parse_id(key_id)?;
        let len = u16::try_from(aad.len())
            .map_err(|_| HsmError::InvalidInput("sealing binding is too long".into()))?;
        let mut framed = zeroize::Zeroizing::new(len.to_be_bytes().to_vec());
        framed.extend_from_slice(aad);
        framed.extend_from_slice(plaintext);
        self.client
            .wrap_data(id, framed.to_vec())
            .map(|m| m.into_vec())
            .map_err(|e| device("seal", e))
    }

    fn unseal(&mut self, key_id: &str, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, HsmError> {
        let id = parse_id(key_id)?;
        let msg = yubihsm::wrap::Message::from_vec(sealed.to_vec())
            .map_err(|e| HsmError::InvalidInput(format!("sealed secret is malformed: {e}")))?;
        let framed = zeroize::Zeroizing::new(
            self.client
                .unwrap_data(id, msg)
                .map_err(|e| device("unseal", e))?,
        );
        let wrong = || HsmError::InvalidInput("the sealed secret belongs to someone else".into());
        let len = framed
            .get(..2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
            .ok_or_else(wrong)?;
        if framed.get(2..2 + len) != Some(aad) {
            return Err(wrong());
        }
        Ok(framed[2 + len..].to_vec())
    }

    fn find_secret(&mut self, label: &str) -> Result<Option<String>, HsmError> {
        let text: String = format!("keyward:{label}").chars().take(40).collect();
        let entries = self
            .client
            .list_objects(&[object::Filter::Label(object::Label::from(text.as_str()))])
            .map_err(|e| device("list objects", e))?;
        Ok(entries
            .into_iter()
            .find(|e| matches!(e.object_type, object::Type::HmacKey | object::Type::WrapKey))
            .map(|e| format_id(e.object_id)))
    }

    fn generate_mac_key(&mut self, label: &str) -> Result<String, HsmError> {
        let id = self.free_id()?;
        let text: String = format!("keyward:{label}").chars().take(40).collect();
        self.client
            .generate_hmac_key(
                id,
                object::Label::from(text.as_str()),
                Domain::DOM1,
                Capability::SIGN_HMAC | Capability::VERIFY_HMAC,
                yubihsm::hmac::Algorithm::Sha256,
            )
            .map_err(|e| device("generate mac key", e))?;
        Ok(format_id(id))
    }

    fn mac(&mut self, key_id: &str, data: &[u8]) -> Result<Vec<u8>, HsmError> {
        let id = parse_id(key_id)?;
        self.client
            .sign_hmac(id, data.to_vec())
            .map(|t| t.into_vec())
            .map_err(|e| device("mac", e))
    }
}
