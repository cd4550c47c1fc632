//! Helpers for end-to-end tests: start the real `keywardd` on a fresh SoftHSM token,
//! run the real `keyward` CLI against it, and inspect the token from outside.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub mod revoke;
pub mod schema;
mod waiting;

pub use waiting::{answer, pending};
mod token;
pub use token::{softhsm_token, token_keys};

/// Debian's SoftHSM2 module.
pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// Path of a workspace binary (built by `cargo build --workspace` before the tests).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test>  ->  target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace binaries first (scripts/test.sh does)",
        path.display()
    );
    path
}

/// A `keywardd dev` process on its own directory and SoftHSM token.
pub struct DevDaemon {
    /// The instance directory.
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    child: Option<Child>,
    /// gRPC endpoint (`https://127.0.0.1:PORT`).
    pub endpoint: String,
    /// `host:port` of /healthz and /metrics.
    pub http_addr: String,
}

impl DevDaemon {
    /// Writes key `key`'s active public key (PEM) into the daemon's directory; returns
    /// the file, for cosign and openssl.
    pub fn public_key_file(&self, key: &str) -> PathBuf {
        let p = self.dir.join(format!("{key}.pub.pem"));
        std::fs::write(&p, self.ok(&["key", "public", key])).expect("write public key");
        p
    }
}

impl DevDaemon {
    /// Starts a daemon in a fresh temporary directory.
    pub fn start() -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let mut d = Self::start_in(&dir).unwrap_or_else(|e| panic!("keywardd dev failed: {e}"));
        d._tmp = Some(tmp);
        d
    }

    /// Starts `keywardd dev --dir DIR`; on failure returns what the daemon printed.
    pub fn start_in(dir: &Path) -> Result<Self, String> {
        // No Docker credentials from the environment unless a test gives some.
        let none = dir.join("no-docker-config");
        Self::start_with(dir, &[("DOCKER_CONFIG", &none)])
    }

    /// Like [`DevDaemon::start_in`] on a store engine (`sled`, `redb`).
    pub fn start_on_engine(dir: &Path, engine: &str) -> Result<Self, String> {
        let none = dir.join("no-docker-config");
        Self::start_dev(
            dir,
            &["--store-engine", engine],
            &[("DOCKER_CONFIG", &none)],
        )
    }

    /// Like [`DevDaemon::start_in`] with extra environment variables.
    pub fn start_with(dir: &Path, envs: &[(&str, &Path)]) -> Result<Self, String> {
        Self::start_dev(dir, &[], envs)
    }

    /// `keywardd dev` with extra arguments and environment variables.
    pub fn start_dev(dir: &Path, args: &[&str], envs: &[(&str, &Path)]) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        // A client.toml left by an earlier run would look like readiness.
        let _ = std::fs::remove_file(dir.join("client.toml"));
        let log = std::fs::File::create(dir.join("daemon.log")).map_err(|e| e.to_string())?;
        let out = std::fs::File::create(dir.join("daemon.out")).map_err(|e| e.to_string())?;
        let mut child = Command::new(bin("keywardd"))
            .args(["dev", "--dir"])
            .arg(dir)
            .args(["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
            .args(args)
            .envs(envs.iter().map(|(k, v)| (*k, *v)))
            .env_remove("SOFTHSM2_CONF")
            .stdout(out)
            .stderr(log)
            .spawn()
            .map_err(|e| e.to_string())?;
        let client = dir.join("client.toml");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if client.exists() {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(dir.join("daemon.log")).unwrap_or_default();
                return Err(format!("keywardd exited with {status}: {log}"));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err("keywardd did not become ready within 60 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let endpoint = keyward_client::ClientConfig::load(&client)
            .map_err(|e| e.to_string())?
            .endpoint;
        let banner = std::fs::read_to_string(dir.join("daemon.out")).unwrap_or_default();
        let http_addr = banner
            .split("http://")
            .nth(1)
            .and_then(|s| s.split('/').next())
            .unwrap_or_default()
            .to_string();
        Ok(Self {
            dir: dir.to_path_buf(),
            _tmp: None,
            child: Some(child),
            endpoint,
            http_addr,
        })
    }

    /// `keywardd dev --require-mfa` in `dir`; returns the daemon and the admin's TOTP
    /// secret (base32) from the banner.
    pub fn start_with_mfa(dir: &Path) -> (Self, String) {
        let d = Self::start_dev(
            dir,
            &["--require-mfa"],
            &[("DOCKER_CONFIG", &dir.join("none"))],
        )
        .unwrap_or_else(|e| panic!("keywardd dev --require-mfa failed: {e}"));
        let banner = std::fs::read_to_string(dir.join("daemon.out")).expect("banner");
        assert!(banner.contains("MFA enforced"), "{banner}");
        (d, otpauth_secret(&banner))
    }

    /// Path of the client configuration.
    pub fn client_config(&self) -> PathBuf {
        self.dir.join("client.toml")
    }

    /// Runs `keyward ARGS` against this daemon.
    pub fn keyward(&self, args: &[&str]) -> Output {
        keyward_with(&self.client_config(), args)
    }

    /// Registers a principal with these roles (comma separated); returns its
    /// client.toml.
    pub fn add_principal(&self, name: &str, roles: &str) -> PathBuf {
        let file = self.dir.join("people").join(name).join("client.toml");
        let path = file.to_str().expect("utf-8 path");
        self.ok(&["principal", "add", name, "--role", roles, "--out", path]);
        file
    }

    /// Runs `keyward ARGS` with another principal's client configuration.
    pub fn keyward_as(&self, config: &Path, args: &[&str]) -> Output {
        keyward_with(config, args)
    }

    /// Runs `keyward ARGS`, asserts success, returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.keyward(args);
        assert!(
            out.status.success(),
            "keyward {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    /// Runs `keyward -o json ARGS` whose request waits for approval (exit 3); returns
    /// what it printed.
    pub fn held(&self, args: &[&str]) -> serde_json::Value {
        pending(&self.keyward(&[&["-o", "json"], args].concat()))
    }

    /// Runs `keyward ARGS`, asserts failure, returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.keyward(args);
        assert!(
            !out.status.success(),
            "keyward {args:?} unexpectedly succeeded"
        );
        String::from_utf8(out.stderr).expect("utf-8 output")
    }

    /// A typed client connected to this daemon.
    pub async fn client(&self) -> keyward_client::Client {
        let cfg = keyward_client::ClientConfig::load(&self.client_config()).expect("client.toml");
        keyward_client::Client::connect(&cfg)
            .await
            .expect("connect")
    }

    /// What the daemon logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }

    /// Stops the daemon with SIGTERM and waits up to 10 s for it; returns its exit
    /// status, or `None` if it had to be killed.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// The daemon's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Kills the daemon with SIGKILL, as a crash or power cut would.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The token's user PIN.
    pub fn pin(&self) -> String {
        std::fs::read_to_string(self.dir.join("pin"))
            .expect("pin file")
            .trim()
            .to_string()
    }

    /// Private keys on this instance's token, read with cryptoki in a separate process.
    pub fn token_keys(&self) -> Vec<serde_json::Value> {
        token_keys(&self.dir, &[])
    }
}

impl DevDaemon {
    /// `pkcs11-tool` against this instance's token.
    pub fn pkcs11_tool(&self, args: &[&str]) -> Output {
        Command::new("pkcs11-tool")
            .env("SOFTHSM2_CONF", self.dir.join("softhsm2.conf"))
            .args(["--module", SOFTHSM_MODULE, "--token-label", "keyward-dev"])
            .args(args)
            .output()
            .expect("run pkcs11-tool (package opensc)")
    }

    /// GET on the HTTP listener; returns (status line, body).
    pub fn http_get(&self, path: &str) -> (String, String) {
        http_get(&self.http_addr, path)
    }
}

impl DevDaemon {
    /// Stops the daemon and asserts that SIGTERM made it exit with success.
    pub fn stop_cleanly(&mut self) {
        match self.stop() {
            Some(status) => assert!(
                status.success(),
                "keywardd exited with {status}: {}",
                self.log()
            ),
            None => panic!("keywardd did not exit within 10 s of SIGTERM"),
        }
    }
}

impl Drop for DevDaemon {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

pub mod campaign;
pub mod hostile;
mod mfa;
pub mod modules;
pub mod registry;
pub mod served;
pub mod verifiers;

pub use mfa::{enrol, otpauth_secret, pyotp, wait_for_fresh_step};

/// Path of the cosign binary installed by `scripts/install-deps.sh`.
pub fn cosign() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools/bin/cosign");
    assert!(
        p.exists(),
        "{} is missing: run scripts/install-deps.sh (scripts/test.sh does)",
        p.display()
    );
    p
}

/// Kills a child process when dropped, so that a failing test leaves no daemon behind.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs a command, asserting success; returns stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Calls an RPC by its method path (`/keyward.v1.Service/Method`) with any request
/// message; the answer's content is ignored. Reaches methods the typed client does
/// not have.
pub async fn call_raw<M>(
    client: &keyward_client::Client,
    path: &str,
    request: M,
) -> Result<(), tonic::Status>
where
    M: prost::Message + Default + Send + Sync + 'static,
{
    let mut grpc = tonic::client::Grpc::new(client.channel.clone());
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let path = path
        .parse()
        .map_err(|_| tonic::Status::invalid_argument("bad method path"))?;
    let codec = tonic_prost::ProstCodec::<M, ()>::default();
    grpc.unary(tonic::Request::new(request), path, codec)
        .await
        .map(|_| ())
}

/// GET `path` from `addr` over plain HTTP/1.1; returns (status line, body).
pub fn http_get(addr: &str, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect http");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read");
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    (
        head.lines().next().unwrap_or_default().to_string(),
        body.to_string(),
    )
}

/// Runs `keyward ARGS` with the client configuration `config`, no standard input.
pub fn keyward_with(config: &Path, args: &[&str]) -> Output {
    Command::new(bin("keyward"))
        .env("KEYWARD_CONFIG", config)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run keyward")
}

/// The JSON a successful command printed (`-o json`); fails the test otherwise.
pub fn json_ok(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).expect("JSON output")
}

/// What a refused command printed on stderr; fails the test if it succeeded.
pub fn refused(o: &Output) -> String {
    assert!(
        !o.status.success(),
        "unexpectedly allowed: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `cosign verify --key KEY IMAGE` offline, over plain HTTP to loopback registries,
/// with the Docker credentials of `docker_config` (none when `None`).
pub fn cosign_verify(key: &Path, image: &str, docker_config: Option<&Path>) -> Output {
    let mut cmd = Command::new(cosign());
    cmd.args(["verify", "--key"]).arg(key).args([
        "--insecure-ignore-tlog=true",
        "--allow-http-registry",
        image,
    ]);
    if let Some(d) = docker_config {
        cmd.env("DOCKER_CONFIG", d);
    } else {
        cmd.env("DOCKER_CONFIG", "/nonexistent");
    }
    cmd.output().expect("run cosign")
}
