//! A production-style instance: an operator's token (SoftHSM, or another module),
//! `keywardd init`, then `keywardd serve` with a keywardd.toml the test extends.

use crate::modules::Module;
use crate::{ChildGuard, bin, otpauth_secret};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A `keywardd serve` process.
pub struct ServedDaemon {
    /// Its directory (token, config, admin identity `ops/`).
    pub dir: PathBuf,
    /// The admin's TOTP secret (base32).
    pub admin_secret: String,
    /// `127.0.0.1:PORT` of /healthz and /metrics.
    pub http_addr: String,
    /// The module its backend `hsm` (the CA's) is on.
    pub module: Module,
    serve: ChildGuard,
    grpc_port: u16,
    _tmp: tempfile::TempDir,
}

/// `keywardd ARGS --config DIR/keywardd.toml` with the test token's environment.
fn daemon(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin("keywardd"));
    c.args(args)
        .arg("--config")
        .arg(dir.join("keywardd.toml"))
        .env("SOFTHSM2_CONF", dir.join("softhsm2.conf"))
        .env("TOKEN_PIN", "246810")
        .env("DOCKER_CONFIG", dir.join("no-docker"));
    c
}

/// `keywardd serve`, logging to DIR/serve.log (appended), once it listens on `port`.
fn serve(dir: &Path, port: u16) -> ChildGuard {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("serve.log"))
        .expect("log");
    let serve = ChildGuard(
        daemon(dir, &["serve"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("keywardd serve"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "keywardd serve did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    serve
}

impl ServedDaemon {
    /// Initialises and serves an instance on SoftHSM whose keywardd.toml ends with
    /// `extra`.
    pub fn start(extra: &str) -> Self {
        Self::start_on(Module::SoftHsm, extra)
    }

    /// Initialises and serves an instance whose one backend before `extra`, `hsm`,
    /// is a fresh token of `module`.
    pub fn start_on(module: Module, extra: &str) -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let backend = module.fresh_backend(&dir, "hsm");
        let free = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port()
        };
        let (port, http_port) = (free(), free());
        std::fs::write(
            dir.join("keywardd.toml"),
            format!(
                "data_dir = \"data\"\n\
                 [listen]\ngrpc = \"127.0.0.1:{port}\"\nhttp = \"127.0.0.1:{http_port}\"\n\
                 {backend}{extra}\n"
            ),
        )
        .expect("write keywardd.toml");
        let out = daemon(&dir, &["init"])
            .args(["--admin", "ops", "--out"])
            .arg(dir.join("ops"))
            .output()
            .expect("keywardd init");
        assert!(
            out.status.success(),
            "keywardd init: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let admin_secret = otpauth_secret(&String::from_utf8_lossy(&out.stdout));
        let serve = serve(&dir, port);
        Self {
            dir,
            admin_secret,
            http_addr: format!("127.0.0.1:{http_port}"),
            module,
            serve,
            grpc_port: port,
            _tmp: tmp,
        }
    }

    /// Stops `keywardd serve` (SIGTERM) and starts it again on the same instance;
    /// returns once it says it is serving (its start-up reports are in the log).
    pub fn restart(&mut self) {
        let serving = || self.log().matches("keywardd serving").count();
        let before = serving();
        let pid = self.serve.0.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let _ = self.serve.0.wait();
        self.serve = serve(&self.dir, self.grpc_port);
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.log().matches("keywardd serving").count() <= before {
            assert!(
                Instant::now() < deadline,
                "keywardd did not serve again: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The admin's client.toml.
    pub fn client_config(&self) -> PathBuf {
        self.dir.join("ops/client.toml")
    }

    /// Runs `keyward ARGS` as the admin.
    pub fn keyward(&self, args: &[&str]) -> Output {
        crate::keyward_with(&self.client_config(), args)
    }

    /// Runs `keyward ARGS` as the admin, which must succeed; its standard output.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.keyward(args);
        assert!(
            o.status.success(),
            "keyward {args:?}: {}",
            crate::verifiers::output_text(&o)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Deletes the private key labelled `keyward:LABEL` from the token of `module` (one
    /// of this instance's backends) behind Keyward's back, restarts, and returns the
    /// start-up reconciliation's report of it.
    pub fn delete_key_and_restart(&mut self, module: Module, label: &str) -> String {
        let o = module.tool(
            &self.dir,
            &[
                "--delete-object",
                "--type",
                "privkey",
                "--label",
                &format!("keyward:{label}"),
            ],
        );
        assert!(o.status.success(), "{}", crate::verifiers::output_text(&o));
        self.restart();
        let log = self.log();
        log.lines()
            .find(|l| l.contains("HSM object is missing"))
            .unwrap_or_else(|| panic!("no reconciliation report: {log}"))
            .to_string()
    }

    /// What `keywardd serve` logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("serve.log")).unwrap_or_default()
    }

    /// Whether the daemon process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.serve.0.try_wait(), Ok(None))
    }

    /// GET on the HTTP listener; returns (status line, body).
    pub fn http_get(&self, path: &str) -> (String, String) {
        crate::http_get(&self.http_addr, path)
    }

    /// `pkcs11-tool` logged in to this instance's token.
    pub fn pkcs11_tool(&self, args: &[&str]) -> Output {
        self.module.tool(&self.dir, args)
    }

    /// The instance directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }
}
