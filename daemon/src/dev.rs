//! `keywardd dev`: a self-contained instance in one directory, for trying Keyward out.
//!
//! The directory holds its own SoftHSM token (`softhsm2.conf`, `tokens/`), the token's
//! PINs in 0600 files, the store, the CA and the admin identity. SoftHSM reads its
//! configuration path from `SOFTHSM2_CONF` only, so `keywardd dev` re-executes itself
//! with that variable set instead of changing its own environment.

use crate::app::{StartError, write_atomic};
use std::path::{Path, PathBuf};

/// Label of the dev token.
pub const TOKEN_LABEL: &str = "keyward-dev";
/// Default SoftHSM2 module on Debian.
pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// Files of a dev directory.
#[derive(Debug, Clone)]
pub struct DevLayout {
    /// The directory.
    pub dir: PathBuf,
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> StartError {
    move |source| StartError::Io { what, source }
}

impl DevLayout {
    /// Creates the directory (0700) if needed. An existing directory must belong to
    /// this user and be writable by no one else: it receives the token's PINs.
    pub fn create(dir: &Path) -> Result<Self, StartError> {
        use std::os::unix::fs::DirBuilderExt;
        if std::fs::symlink_metadata(dir).is_ok() {
            crate::files::check_trusted_dir(dir)?;
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io(format!("cannot create {}", dir.display())))?;
        let dir = dir
            .canonicalize()
            .map_err(io(format!("cannot resolve {}", dir.display())))?;
        Ok(Self { dir })
    }

    /// `softhsm2.conf` of this instance.
    pub fn softhsm_conf(&self) -> PathBuf {
        self.dir.join("softhsm2.conf")
    }
    /// The token's user PIN file.
    pub fn pin_file(&self) -> PathBuf {
        self.dir.join("pin")
    }
    /// The token's SO PIN file.
    pub fn so_pin_file(&self) -> PathBuf {
        self.dir.join("so-pin")
    }
    /// The daemon configuration written for this instance.
    pub fn config_file(&self) -> PathBuf {
        self.dir.join("keywardd.toml")
    }
    /// The client configuration, written once the daemon serves.
    pub fn client_config(&self) -> PathBuf {
        self.dir.join("client.toml")
    }

    /// Writes `softhsm2.conf` and the token directory if missing.
    pub fn write_softhsm_conf(&self) -> Result<(), StartError> {
        let tokens = self.dir.join("tokens");
        std::fs::create_dir_all(&tokens)
            .map_err(io(format!("cannot create {}", tokens.display())))?;
        if !self.softhsm_conf().exists() {
            let text = format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
                tokens.display()
            );
            write_atomic(&self.softhsm_conf(), text.as_bytes(), 0o600)?;
        }
        Ok(())
    }

    /// Reads a PIN file, creating it with a random PIN first if missing.
    fn pin(&self, path: &Path) -> Result<zeroize::Zeroizing<String>, StartError> {
        if !path.exists() {
            let mut raw = zeroize::Zeroizing::new([0u8; 16]);
            getrandom::getrandom(raw.as_mut()).map_err(|e| StartError::Config(e.to_string()))?;
            let pin = zeroize::Zeroizing::new(hex::encode(raw.as_ref()));
            write_atomic(path, format!("{}\n", pin.as_str()).as_bytes(), 0o600)?;
        }
        crate::hsm::pkcs11::PinSource::File(path.to_path_buf())
            .read()
            .map_err(|e| StartError::Config(e.to_string()))
    }

    /// Makes sure the token exists (initialising it with fresh PINs on first start) and
    /// writes `keywardd.toml` for it.
    pub fn prepare(
        &self,
        module: &Path,
        grpc: &str,
        http: &str,
        audit: bool,
        require_mfa: bool,
    ) -> Result<(), StartError> {
        let so = self.pin(&self.so_pin_file())?;
        let user = self.pin(&self.pin_file())?;
        // A token made before lives in tokens/; only an empty tokens/ gets a new one.
        let fresh = std::fs::read_dir(self.dir.join("tokens"))
            .map(|mut d| d.next().is_none())
            .unwrap_or(true);
        crate::hsm::pkcs11::ensure_token(module, TOKEN_LABEL, &so, &user, fresh).map_err(
            |source| StartError::Hsm {
                backend: "softhsm".into(),
                source,
            },
        )?;
        let text = format!(
            "# Written by `keywardd dev`; run with SOFTHSM2_CONF={conf}\n\
             data_dir = \"data\"\n\
             [listen]\ngrpc = {grpc:?}\nhttp = {http:?}\n\n\
             [[backend]]\ntype = \"pkcs11\"\nname = \"softhsm\"\nmodule = {module:?}\n\
             token_label = {TOKEN_LABEL:?}\npin_file = \"pin\"\n\n\
             [audit]\nenabled = {audit}\n\n\
             [mfa]\nrequired = {require_mfa}\n\n\
             # A registry that is down is tried again within 5 s (not 5 minutes), and\n\
             # keys are checked against their rotation policy every second.\n\
             [jobs]\nretry_base_ms = 250\nretry_max_ms = 5000\nschedule_seconds = 1\n",
            conf = self.softhsm_conf().display(),
            module = module.display().to_string(),
        );
        write_atomic(&self.config_file(), text.as_bytes(), 0o600)
    }
}

/// The lock a running dev instance holds on its directory (`keywardd.lock`, with its
/// pid); released when the process ends, however it ends.
#[derive(Debug)]
pub struct InstanceLock {
    _file: std::fs::File,
}

/// The addresses a dev instance listened on last, kept in `listen.toml`.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Remembered {
    grpc: Option<std::net::SocketAddr>,
    http: Option<std::net::SocketAddr>,
}

impl DevLayout {
    /// Takes the instance lock before anything in the directory is touched: a second
    /// `keywardd dev --dir D` is refused naming the process that runs D, and changes
    /// nothing.
    pub fn lock(&self) -> Result<InstanceLock, StartError> {
        use std::io::{Read, Seek, Write};
        let path = self.dir.join("keywardd.lock");
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io(format!("cannot open {}", path.display())))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                return Err(StartError::Config(format!(
                    "another keywardd (pid {}) runs the dev instance in {}: stop it first, or use another --dir; nothing was changed",
                    pid.trim(),
                    self.dir.display()
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(io(format!("cannot lock {}", path.display()))(e));
            }
        }
        let pid = std::process::id().to_string();
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(pid.as_bytes()))
            .map_err(io(format!("cannot write {}", path.display())))?;
        Ok(InstanceLock { _file: file })
    }

    /// The addresses to listen on: those asked for, except that port 0 (any free port)
    /// is the port this instance had before when it is free, so that every
    /// `client.toml` written for it stays valid across restarts.
    pub fn listen_addrs(
        &self,
        grpc: std::net::SocketAddr,
        http: std::net::SocketAddr,
    ) -> (std::net::SocketAddr, std::net::SocketAddr) {
        let text = std::fs::read_to_string(self.dir.join("listen.toml")).unwrap_or_default();
        let before: Remembered = toml::from_str(&text).unwrap_or_default();
        let pick = |asked: std::net::SocketAddr, before: Option<std::net::SocketAddr>| match before
        {
            Some(b) if asked.port() == 0 && b.ip() == asked.ip() => {
                if std::net::TcpListener::bind(b).is_ok() {
                    return b;
                }
                tracing::warn!(
                    "port {} of this dev instance is taken; listening on another one (client.toml files naming {b} need --endpoint)",
                    b.port()
                );
                asked
            }
            _ => asked,
        };
        (pick(grpc, before.grpc), pick(http, before.http))
    }

    /// Keeps the addresses the instance listens on for its next start.
    pub fn remember_addrs(
        &self,
        grpc: std::net::SocketAddr,
        http: std::net::SocketAddr,
    ) -> Result<(), StartError> {
        let r = Remembered {
            grpc: Some(grpc),
            http: Some(http),
        };
        let text = format!(
            "# The addresses this dev instance listens on, kept across restarts.\n{}",
            toml::to_string(&r).unwrap_or_default()
        );
        write_atomic(&self.dir.join("listen.toml"), text.as_bytes(), 0o600)
    }
}
