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
    KeyProtection, SignInput,
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

#[path = "pkcs11_secret.rs"]
mod secret;

/// Labels of objects Keyward creates start with this.
pub const LABEL_PREFIX: &str = "keyward:";

/// Where the user PIN comes from. The PIN itself is never stored in configuration.
#[derive(Debug, Clone)]
pub enum PinSource {
    /// A file holding the PIN (trailing newline ignored).
    File(PathBuf),
    /// An environment variable holding the PIN.
    Env(String),
}

impl PinSource {
    /// Reads the PIN into memory that is wiped when dropped.
    pub fn read(&self) -> Result<Zeroizing<String>, HsmError> {
        let raw = match self {
            PinSource::File(p) => Zeroizing::new(std::fs::read_to_string(p).map_err(|e| {
                HsmError::Config(format!("cannot read PIN file {}: {e}", p.display()))
            })?),
            PinSource::Env(v) => Zeroizing::new(
                std::env::var(v)
                    .map_err(|_| HsmError::Config(format!("the PIN variable {v} is not set")))?,
            ),
        };
        let pin = Zeroizing::new(raw.trim_end_matches(['\r', '\n']).to_string());
        if pin.is_empty() {
            return Err(HsmError::Config("the configured PIN is empty".into()));
        }
        Ok(pin)
    }
}

/// Settings of a PKCS#11 backend.
#[derive(Debug, Clone)]
pub struct Pkcs11Settings {
    /// The backend's name in the configuration.
    pub name: String,
    /// Path of the PKCS#11 module (`.so`).
    pub module: PathBuf,
    /// Label of the token; slot ids change, labels do not.
    pub token_label: String,
    /// Where the user PIN comes from.
    pub pin: PinSource,
}

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
    /// CKA_ID -> secret key handle (sealing and record MAC keys): a Find scans the
    /// whole token, so each is looked up once.
    secrets: RwLock<HashMap<Vec<u8>, ObjectHandle>>,
}

/// A PKCS#11 token.
pub struct Pkcs11Backend {
    settings: Pkcs11Settings,
    ctx: Pkcs11,
    slot: Slot,
    objects: Arc<Objects>,
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

/// Loads the module and finds the token, retrying transient failures: another process
/// logging in to the same token while we initialise can make SoftHSM report the token
/// missing or fail with CKR_GENERAL_ERROR.
fn open_token(settings: &Pkcs11Settings) -> Result<(Pkcs11, Slot), HsmError> {
    if !settings.module.exists() {
        return Err(HsmError::Config(format!(
            "PKCS#11 module {} does not exist (for SoftHSM2 install the softhsm2 package: /usr/lib/softhsm/libsofthsm2.so)",
            settings.module.display()
        )));
    }
    let mut delay = Duration::from_millis(20);
    let mut last = String::new();
    for attempt in 0..8 {
        if attempt > 0 {
            tracing::warn!(backend = %settings.name, attempt, error = %last, "retrying PKCS#11 start-up");
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(500));
        }
        let ctx = Pkcs11::new(&settings.module).map_err(|e| {
            HsmError::Config(format!(
                "cannot load PKCS#11 module {}: {e}",
                settings.module.display()
            ))
        })?;
        if let Err(e) = ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            last = e.to_string();
            continue;
        }
        match find_slot(&ctx, &settings.token_label) {
            Ok(Some(slot)) => return Ok((ctx, slot)),
            Ok(None) => {
                last = format!("no token labelled {:?}", settings.token_label);
            }
            Err(e) => last = e.to_string(),
        }
    }
    if last.starts_with("no token labelled") {
        return Err(HsmError::Config(format!(
            "no token labelled {:?} in PKCS#11 module {} (initialise one, e.g. softhsm2-util --init-token --free --label {:?})",
            settings.token_label,
            settings.module.display(),
            settings.token_label
        )));
    }
    Err(HsmError::Config(format!(
        "cannot open PKCS#11 module {}: {last}",
        settings.module.display()
    )))
}

fn find_slot(ctx: &Pkcs11, label: &str) -> Result<Option<Slot>, CkError> {
    for slot in ctx.get_slots_with_token()? {
        let info = ctx.get_token_info(slot)?;
        if info.label().trim_end() == label {
            return Ok(Some(slot));
        }
    }
    Ok(None)
}

/// Initialises a fresh token with the given label and PINs unless one with that label
/// exists. Used by `keywardd dev` for its self-contained SoftHSM token. With `fresh`
/// false the token was made before: if it is not (yet) in the slot list, which SoftHSM
/// does while another process writes it, this waits and retries, and fails rather
/// than make a second, empty token that would hide the first one's keys.
pub fn ensure_token(
    module: &Path,
    label: &str,
    so_pin: &str,
    user_pin: &str,
    fresh: bool,
) -> Result<bool, HsmError> {
    retry_transient(label, || {
        ensure_token_once(module, label, so_pin, user_pin, fresh)
    })
}

/// Retries an operation that failed with a device error (another process logging in to
/// the token can make SoftHSM answer CKR_GENERAL_ERROR), with backoff; other errors
/// (wrong PIN, configuration) are returned at once.
fn retry_transient<T>(
    what: &str,
    mut f: impl FnMut() -> Result<T, HsmError>,
) -> Result<T, HsmError> {
    let mut delay = Duration::from_millis(25);
    let mut attempt = 0;
    loop {
        match f() {
            Err(HsmError::Device { op, detail }) if attempt < 10 => {
                tracing::warn!(token = %what, op, error = %detail, attempt, "retrying PKCS#11 start-up");
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(500));
                attempt += 1;
            }
            other => return other,
        }
    }
}

fn ensure_token_once(
    module: &Path,
    label: &str,
    so_pin: &str,
    user_pin: &str,
    fresh: bool,
) -> Result<bool, HsmError> {
    let ctx = Pkcs11::new(module).map_err(|e| {
        HsmError::Config(format!(
            "cannot load PKCS#11 module {}: {e}",
            module.display()
        ))
    })?;
    ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .map_err(|e| device("initialise", e))?;
    if find_slot(&ctx, label)
        .map_err(|e| device("list tokens", e))?
        .is_some()
    {
        return Ok(false);
    }
    if !fresh {
        return Err(HsmError::Device {
            op: "find token",
            detail: format!(
                "token {label:?} exists in this instance's directory but is not in the slot list"
            ),
        });
    }
    let free = ctx
        .get_slots_with_token()
        .map_err(|e| device("list slots", e))?
        .into_iter()
        .find(|s| {
            ctx.get_token_info(*s)
                .map(|i| !i.token_initialized())
                .unwrap_or(false)
        })
        .ok_or_else(|| HsmError::Config("no free slot to initialise a token in".into()))?;
    let so = AuthPin::new(so_pin.into());
    ctx.init_token(free, &so, label)
        .map_err(|e| device("initialise token", e))?;
    let slot = find_slot(&ctx, label)
        .map_err(|e| device("list tokens", e))?
        .ok_or_else(|| HsmError::Config(format!("token {label:?} vanished after init")))?;
    let session = ctx
        .open_rw_session(slot)
        .map_err(|e| device("open session", e))?;
    session
        .login(UserType::So, Some(&so))
        .map_err(|e| device("SO login", e))?;
    session
        .init_pin(&AuthPin::new(user_pin.into()))
        .map_err(|e| device("set user PIN", e))?;
    Ok(true)
}

impl Pkcs11Backend {
    /// Opens the token, logs in once and loads the CKA_ID -> handle map.
    ///
    /// A wrong PIN fails at once and is not retried, so that the token's retry counter
    /// is not run down by a daemon in a restart loop.
    pub fn open(settings: Pkcs11Settings) -> Result<Self, HsmError> {
        // Another process logging in to the same token while we start can make SoftHSM
        // fail a login or a lookup with CKR_GENERAL_ERROR: those are retried. A wrong PIN
        // or a configuration error is final.
        retry_transient(&settings.token_label, || Self::open_once(&settings))
    }

    fn open_once(settings: &Pkcs11Settings) -> Result<Self, HsmError> {
        let settings = settings.clone();
        let pin = settings.pin.read()?;
        let (ctx, slot) = open_token(&settings)?;
        let login = ctx
            .open_rw_session(slot)
            .map_err(|e| device("open session", e))?;
        match login.login(UserType::User, Some(&AuthPin::new(pin.as_str().into()))) {
            Ok(()) => {}
            Err(e) if is_rv(&e, RvError::UserAlreadyLoggedIn) => {}
            Err(e) if is_rv(&e, RvError::PinIncorrect) => {
                return Err(HsmError::WrongPin(format!(
                    "token {:?}",
                    settings.token_label
                )));
            }
            Err(e) if is_rv(&e, RvError::PinLocked) => {
                return Err(HsmError::Config(format!(
                    "the user PIN of token {:?} is locked; unlock it with the SO PIN",
                    settings.token_label
                )));
            }
            Err(e) => return Err(device("login", e)),
        }
        drop(pin);
        let objects = Arc::new(Objects {
            handles: RwLock::new(HashMap::new()),
            generation: RwLock::new(()),
            miss: Mutex::new(()),
            secrets: RwLock::new(HashMap::new()),
        });
        let backend = Self {
            settings,
            ctx,
            slot,
            objects,
            _login: Mutex::new(login),
        };
        backend.load_handles()?;
        Ok(backend)
    }

    fn load_handles(&self) -> Result<(), HsmError> {
        let session = self
            .ctx
            .open_rw_session(self.slot)
            .map_err(|e| device("open session", e))?;
        let _find = read(&self.objects.generation);
        let found = session
            .find_objects(&[Attribute::Class(ObjectClass::PRIVATE_KEY)])
            .map_err(|e| device("find keys", e))?;
        let mut map = HashMap::with_capacity(found.len());
        for handle in found {
            if let Some(id) = object_id(&session, handle)? {
                map.insert(id, handle);
            }
        }
        tracing::debug!(backend = %self.settings.name, keys = map.len(), "loaded key handles");
        *write(&self.objects.handles) = map;
        Ok(())
    }
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
        &Algorithm::ALL
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

impl Pkcs11Session {
    /// The private key handle for a CKA_ID: from the map, or after a miss from one Find.
    fn handle(&self, id: &[u8]) -> Result<ObjectHandle, HsmError> {
        if let Some(h) = read(&self.objects.handles).get(id) {
            return Ok(*h);
        }
        let _one_at_a_time = self.objects.miss.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = read(&self.objects.handles).get(id) {
            return Ok(*h);
        }
        let found = {
            let _find = read(&self.objects.generation);
            self.session
                .find_objects(&[
                    Attribute::Class(ObjectClass::PRIVATE_KEY),
                    Attribute::Id(id.to_vec()),
                ])
                .map_err(|e| device("find key", e))?
        };
        let h = *found
            .first()
            .ok_or_else(|| HsmError::KeyNotFound(hex::encode(id)))?;
        write(&self.objects.handles).insert(id.to_vec(), h);
        Ok(h)
    }

    /// A secret (sealing) key by CKA_ID; these are few and looked up rarely.
    fn secret_key(&self, hsm_id: &str) -> Result<ObjectHandle, HsmError> {
        let id = parse_id(hsm_id)?;
        if let Some(h) = read(&self.objects.secrets).get(&id) {
            return Ok(*h);
        }
        let found = {
            let _find = read(&self.objects.generation);
            self.session
                .find_objects(&[
                    Attribute::Class(ObjectClass::SECRET_KEY),
                    Attribute::Id(id.clone()),
                ])
                .map_err(|e| device("find secret key", e))?
        };
        let h = *found
            .first()
            .ok_or_else(|| HsmError::KeyNotFound(hsm_id.to_string()))?;
        write(&self.objects.secrets).insert(id, h);
        Ok(h)
    }

    /// Runs an operation on a secret key; a stale cached handle is looked up again once.
    fn with_secret<T>(
        &self,
        hsm_id: &str,
        op: &'static str,
        f: impl Fn(ObjectHandle) -> Result<T, HsmError>,
    ) -> Result<T, HsmError> {
        let handle = self.secret_key(hsm_id)?;
        match f(handle) {
            // cryptoki's text for CKR_OBJECT_HANDLE_INVALID and CKR_KEY_HANDLE_INVALID.
            Err(HsmError::Device { detail, .. }) if detail.contains("handle is not valid") => {
                write(&self.objects.secrets).remove(&parse_id(hsm_id)?);
                f(self.secret_key(hsm_id)?).map_err(|e| match e {
                    HsmError::Device { detail, .. } => HsmError::Device { op, detail },
                    other => other,
                })
            }
            other => other,
        }
    }

    fn forget(&self, id: &[u8]) {
        write(&self.objects.handles).remove(id);
    }

    fn sign_once(
        &self,
        handle: ObjectHandle,
        algorithm: Algorithm,
        input: &SignInput,
    ) -> Result<Vec<u8>, CkError> {
        match algorithm {
            Algorithm::EcdsaP256 | Algorithm::EcdsaP384 => {
                let (_, digest) = input.digest_or_hash(algorithm.default_digest());
                self.session.sign(&Mechanism::Ecdsa, handle, &digest)
            }
            Algorithm::Ed25519 => {
                let SignInput::Message(m) = input else {
                    return Err(CkError::InvalidValue);
                };
                let params = EddsaParams::new(EddsaSignatureScheme::Pure);
                self.session.sign(&Mechanism::Eddsa(params), handle, m)
            }
            Algorithm::RsaPss3072 => {
                let (dalg, digest) = input.digest_or_hash(algorithm.default_digest());
                let (hash_alg, mgf) = match dalg {
                    DigestAlgorithm::Sha256 => (MechanismType::SHA256, PkcsMgfType::MGF1_SHA256),
                    DigestAlgorithm::Sha384 => (MechanismType::SHA384, PkcsMgfType::MGF1_SHA384),
                    DigestAlgorithm::Sha512 => (MechanismType::SHA512, PkcsMgfType::MGF1_SHA512),
                };
                let params = PkcsPssParams {
                    hash_alg,
                    mgf,
                    s_len: (dalg.digest_len() as u64).into(),
                };
                self.session
                    .sign(&Mechanism::RsaPkcsPss(params), handle, &digest)
            }
        }
    }

    fn public_key_der(
        &self,
        public: ObjectHandle,
        algorithm: Algorithm,
    ) -> Result<Vec<u8>, HsmError> {
        if algorithm == Algorithm::RsaPss3072 {
            let attrs = self
                .session
                .get_attributes(
                    public,
                    &[AttributeType::Modulus, AttributeType::PublicExponent],
                )
                .map_err(|e| device("read public key", e))?;
            let (mut n, mut e) = (Vec::new(), Vec::new());
            for a in attrs {
                match a {
                    Attribute::Modulus(v) => n = v,
                    Attribute::PublicExponent(v) => e = v,
                    _ => {}
                }
            }
            return rsa_spki(&n, &e);
        }
        let attrs = self
            .session
            .get_attributes(public, &[AttributeType::EcPoint])
            .map_err(|e| device("read public key", e))?;
        let point = attrs
            .into_iter()
            .find_map(|a| match a {
                Attribute::EcPoint(p) => Some(p),
                _ => None,
            })
            .ok_or_else(|| HsmError::Device {
                op: "read public key",
                detail: "the module returned no CKA_EC_POINT".into(),
            })?;
        ec_spki(algorithm, &unwrap_ec_point(&point))
    }

    fn destroy_by_id(&self, id: &[u8]) -> Result<usize, CkError> {
        let found = self.session.find_objects(&[Attribute::Id(id.to_vec())])?;
        let n = found.len();
        for h in found {
            self.session.destroy_object(h)?;
        }
        Ok(n)
    }
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
            Attribute::Id(id.clone()),
            Attribute::Label(label.clone()),
        ];
        let private = vec![
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Id(id.clone()),
            Attribute::Label(label),
        ];
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
            Algorithm::RsaPss3072 => (
                Mechanism::RsaPkcsKeyPairGen,
                vec![
                    Attribute::ModulusBits(3072u64.into()),
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
        secret::generate(&self.session, label, secret::Kind::Sealing)
    }

    fn seal(&mut self, key_id: &str, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, HsmError> {
        self.with_secret(key_id, "seal", |key| {
            secret::seal(&self.session, key, plaintext, aad)
        })
    }

    fn unseal(&mut self, key_id: &str, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, HsmError> {
        self.with_secret(key_id, "unseal", |key| {
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
        secret::generate(&self.session, label, secret::Kind::Mac)
    }

    fn mac(&mut self, key_id: &str, data: &[u8]) -> Result<Vec<u8>, HsmError> {
        self.with_secret(key_id, "mac", |key| {
            self.session
                .sign(&Mechanism::Sha256Hmac, key, data)
                .map_err(|e| device("mac", e))
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
