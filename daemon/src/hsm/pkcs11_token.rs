//! Opening the token: settings and the PIN, module loading, the slot list (and for
//! `keywardd dev`, making the token), retries of the transient failures SoftHSM shows
//! while another process uses the token, the login and the first handle map.

use super::*;

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
        let (ctx, ours) = match initialised(&settings.module) {
            Ok(loaded) => loaded,
            Err(HsmError::Device { detail, .. }) => {
                last = detail;
                continue;
            }
            Err(e) => return Err(e),
        };
        match find_slot(&ctx, &settings.token_label) {
            Ok(Some(slot)) => return Ok((ctx, slot)),
            Ok(None) => {
                last = format!("no token labelled {:?}", settings.token_label);
            }
            Err(e) => last = e.to_string(),
        }
        // The next attempt initialises afresh, so that the module reads its tokens again.
        if ours {
            let _ = ctx.finalize();
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
            if info.clock_on_token() && info.utc_time().is_none() {
                // cryptoki as patched in vendor/: a clock that is not PKCS#11's
                // YYYYMMDDhhmmss00 (opencryptoki 3.8) reads as none. Keyward does not use it.
                tracing::info!(
                    token = label,
                    "the token reports its clock in a non-PKCS#11 format; ignored"
                );
            }
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
    let (ctx, ours) = initialised(module)?;
    let made = make_token(&ctx, label, (so_pin, user_pin), fresh);
    if ours {
        let _ = ctx.finalize();
    }
    made
}

/// Loads `module` and initialises it. Modules are never unloaded (see the cryptoki
/// patch in vendor/), so one this process initialised before, for another backend or
/// token, says so; that is not an error. True when this call initialised it.
fn initialised(module: &Path) -> Result<(Pkcs11, bool), HsmError> {
    let ctx = Pkcs11::new(module).map_err(|e| {
        HsmError::Config(format!(
            "cannot load PKCS#11 module {}: {e}",
            module.display()
        ))
    })?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) => Ok((ctx, true)),
        Err(e) if is_rv(&e, RvError::CryptokiAlreadyInitialized) => Ok((ctx, false)),
        Err(e) => Err(device("initialise", e)),
    }
}

/// Finds the token labelled `label` or, with `fresh`, initialises one in a free slot.
fn make_token(
    ctx: &Pkcs11,
    label: &str,
    (so_pin, user_pin): (&str, &str),
    fresh: bool,
) -> Result<bool, HsmError> {
    if find_slot(ctx, label)
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
    let slot = find_slot(ctx, label)
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
        let offered = ctx
            .get_mechanism_list(slot)
            .map_err(|e| device("list mechanisms", e))?;
        let objects = Arc::new(Objects {
            handles: RwLock::new(HashMap::new()),
            generation: RwLock::new(()),
            miss: Mutex::new(()),
            secrets: RwLock::new(HashMap::new()),
            gcm: offered.contains(&cryptoki::mechanism::MechanismType::AES_GCM),
        });
        let caps = super::caps::from_mechanisms(&offered);
        for (what, why) in &caps.missing {
            tracing::info!(backend = %settings.name, what = %what, why = %why, "not offered by this token");
        }
        let backend = Self {
            settings,
            ctx,
            slot,
            objects,
            caps,
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
