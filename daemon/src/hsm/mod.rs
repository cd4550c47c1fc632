//! HSM backends: the [`Backend`] trait, its PKCS#11 and YubiHSM implementations, and the
//! [`pool::HsmPool`] that runs blocking HSM calls on dedicated threads.
//!
//! A backend hands out [`HsmSession`]s. Each session belongs to one pool thread for its
//! whole life (a PKCS#11 session is `Send` but not `Sync`), so no HSM call ever runs on
//! the async runtime's threads.

pub mod algorithm;
pub mod pkcs11;
pub mod pool;
pub mod public_key;
pub mod yubihsm;

pub use algorithm::{Algorithm, DigestAlgorithm};
pub use pool::HsmPool;

/// What to sign: a digest computed by the caller, or a whole message.
#[derive(Debug, Clone)]
pub enum SignInput {
    /// A digest of the artifact, made with the named algorithm.
    Digest(DigestAlgorithm, Vec<u8>),
    /// The message itself (required for Ed25519, which signs messages, not digests).
    Message(Vec<u8>),
}

impl SignInput {
    /// The digest to sign for a hash-then-sign algorithm: the given one, or the
    /// message hashed with `default`.
    pub fn digest_or_hash(&self, default: DigestAlgorithm) -> (DigestAlgorithm, Vec<u8>) {
        match self {
            SignInput::Digest(alg, d) => (*alg, d.clone()),
            SignInput::Message(m) => (default, default.hash(m)),
        }
    }
}

/// A key pair freshly generated inside an HSM.
#[derive(Debug, Clone)]
pub struct GeneratedKey {
    /// The backend's name for the object: hex CKA_ID (PKCS#11) or `0x`-prefixed object id
    /// (YubiHSM).
    pub hsm_id: String,
    /// The public half as DER SubjectPublicKeyInfo.
    pub public_key_der: Vec<u8>,
}

/// How a private key is protected, as the HSM reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyProtection {
    /// The private value can never be read in plaintext.
    pub sensitive: bool,
    /// The key may be exported (wrapped) at all.
    pub extractable: bool,
    /// The key has never been extractable since it was generated.
    pub never_extractable: bool,
}

/// What [`HsmSession::restrict_usage`] found on a private key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageCheck {
    /// Usage attributes it set as Keyward wants them (`CKA_DECRYPT true -> false`).
    pub corrected: Vec<String>,
    /// Usage the module would not take away, with why.
    pub refused: Vec<String>,
}

/// A private-key object found on an HSM.
#[derive(Debug, Clone)]
pub struct HsmObject {
    /// The backend's id for the object; empty when the object has none (a half-written
    /// PKCS#11 object).
    pub hsm_id: String,
    /// The object's label.
    pub label: String,
}

/// Errors from HSM backends. Messages never contain PINs or key material.
#[derive(Debug, thiserror::Error)]
pub enum HsmError {
    /// The backend cannot make keys of this algorithm.
    #[error(
        "algorithm {algorithm} is not supported by backend {backend}{why} (supported: {supported})"
    )]
    Unsupported {
        /// The requested algorithm.
        algorithm: String,
        /// The backend asked.
        backend: String,
        /// What the device lacks for it (`": it has no CKM_..."`), when known.
        why: String,
        /// What it does support, comma separated.
        supported: String,
    },
    /// The key object is not on the HSM.
    #[error("key object {0} was not found on the HSM")]
    KeyNotFound(String),
    /// The HSM has no room for another object.
    #[error("the HSM is out of space: {0}")]
    OutOfSpace(String),
    /// The configured PIN or password was refused.
    #[error(
        "the HSM refused the PIN for {0}; Keyward does not retry, so that the token is not locked: check the PIN file or variable"
    )]
    WrongPin(String),
    /// The backend is misconfigured (module, token label, PIN source).
    #[error("{0}")]
    Config(String),
    /// The request does not fit the key (digest length, message for Ed25519, ...).
    #[error("{0}")]
    InvalidInput(String),
    /// Any other failure reported by the device.
    #[error("HSM operation {op} failed: {detail}")]
    Device {
        /// What was being done.
        op: &'static str,
        /// The device's answer.
        detail: String,
    },
    /// The HSM worker pool has shut down.
    #[error("the HSM worker pool is not running")]
    PoolClosed,
}

/// What a backend can do, as discovered from the device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Key algorithms it generates and signs with.
    pub algorithms: Vec<Algorithm>,
    /// What else the instance can use it for (sealing, record MACs).
    pub features: Vec<String>,
    /// What it cannot do, and why: (algorithm or feature, what the device lacks).
    pub missing: Vec<(String, String)>,
}

/// A configured HSM. Implementations are shared between threads; the work happens in
/// the sessions they open.
pub trait Backend: Send + Sync {
    /// The name this backend has in the configuration.
    fn name(&self) -> &str;
    /// `pkcs11` or `yubihsm`.
    fn kind(&self) -> &'static str;
    /// Algorithms this backend can generate and sign with.
    fn algorithms(&self) -> &[Algorithm];
    /// What it can do (algorithms, features) and what it cannot, with why.
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            algorithms: self.algorithms().to_vec(),
            ..Default::default()
        }
    }
    /// Opens a session for one worker thread.
    fn open_session(&self) -> Result<Box<dyn HsmSession>, HsmError>;

    /// Refuses an algorithm this backend cannot do, naming the ones it can.
    fn check_algorithm(&self, algorithm: Algorithm) -> Result<(), HsmError> {
        if self.algorithms().contains(&algorithm) {
            return Ok(());
        }
        let name = algorithm.to_string();
        let why = self
            .capabilities()
            .missing
            .into_iter()
            .find(|(what, _)| *what == name)
            .map(|(_, why)| format!(": it has {why}"))
            .unwrap_or_default();
        Err(HsmError::Unsupported {
            algorithm: name,
            backend: self.name().to_string(),
            why,
            supported: self
                .algorithms()
                .iter()
                .map(|a| a.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }
}

/// One session with an HSM, owned by one worker thread.
pub trait HsmSession: Send {
    /// Generates a key pair whose private half is sensitive and non-extractable.
    /// On failure nothing is left on the HSM.
    fn generate(&mut self, label: &str, algorithm: Algorithm) -> Result<GeneratedKey, HsmError>;
    /// Signs with the private key `hsm_id`. ECDSA signatures come back ASN.1 DER;
    /// Ed25519 and RSA-PSS signatures in their raw standard form.
    fn sign(
        &mut self,
        hsm_id: &str,
        algorithm: Algorithm,
        input: &SignInput,
    ) -> Result<Vec<u8>, HsmError>;
    /// Whether the private key `hsm_id` is the object Keyward made for `label` (its
    /// label is `keyward:<label>`): a signing request refuses any object that is not
    /// the key version it names (the CA, audit, sealing or another key's object).
    fn is_object(&mut self, hsm_id: &str, label: &str) -> Result<bool, HsmError>;
    /// Reads how the private key is protected.
    fn protection(&mut self, hsm_id: &str) -> Result<KeyProtection, HsmError>;
    /// Makes the private key `hsm_id` able to sign (when `sign`) and to do nothing
    /// else, where the module allows it; reports what it corrected and what the module
    /// refused. A backend whose keys are made for one use only has nothing to correct.
    fn restrict_usage(&mut self, hsm_id: &str, sign: bool) -> Result<UsageCheck, HsmError> {
        let _ = (hsm_id, sign);
        Ok(UsageCheck::default())
    }
    /// Lists the private keys on the HSM.
    fn list_objects(&mut self) -> Result<Vec<HsmObject>, HsmError>;
    /// Deletes a key pair (private and public objects).
    fn destroy(&mut self, hsm_id: &str) -> Result<(), HsmError>;
    /// Generates a non-extractable secret key for sealing small secrets (AES-256 on
    /// PKCS#11, an AES-CCM wrap key on YubiHSM); returns its id.
    fn generate_sealing_key(&mut self, label: &str) -> Result<String, HsmError>;
    /// Encrypts a small secret inside the HSM (authenticated: AES-GCM or AES-CCM),
    /// bound to `aad` (who it belongs to): it opens only with the same `aad`.
    fn seal(&mut self, key_id: &str, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, HsmError>;
    /// Decrypts what [`HsmSession::seal`] made; fails if it or `aad` was altered.
    fn unseal(&mut self, key_id: &str, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, HsmError>;
    /// Generates a non-extractable HMAC-SHA256 key for the integrity of stored records;
    /// returns its id.
    fn generate_mac_key(&mut self, label: &str) -> Result<String, HsmError>;
    /// HMAC-SHA256 of `data` with the key `key_id`.
    fn mac(&mut self, key_id: &str, data: &[u8]) -> Result<Vec<u8>, HsmError>;
    /// The id of a secret key Keyward made with this label (`keyward:<label>`), if any.
    fn find_secret(&mut self, label: &str) -> Result<Option<String>, HsmError>;
}
