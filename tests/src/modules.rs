//! The PKCS#11 modules the portability tests run on: SoftHSM2 (a token per test, in its
//! own directory) and opencryptoki 3.8's software token (system-wide: made fresh by
//! `scripts/opencryptoki.sh` for each test, whose tests run one at a time).

use crate::{SOFTHSM_MODULE, run_ok, softhsm_token};
use std::path::Path;
use std::process::{Command, Output};

/// opencryptoki's PKCS#11 library, as Debian installs it.
pub const OPENCRYPTOKI_MODULE: &str = "/usr/lib/x86_64-linux-gnu/pkcs11/libopencryptoki.so";
/// The user PIN the tests give opencryptoki's token (it takes 4-8 characters).
pub const OPENCRYPTOKI_PIN: &str = "24681357";
/// The SoftHSM token label and user PIN of an instance under test.
const SOFTHSM_LABEL: &str = "prod";
const SOFTHSM_PIN: &str = "246810";

/// A PKCS#11 module a test runs an instance on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Module {
    /// SoftHSM2: every mechanism Keyward uses.
    SoftHsm,
    /// opencryptoki's soft token: RSA, AES-CBC, HMAC; no EC, no AES-GCM.
    OpenCryptoki,
}

impl Module {
    /// The library path.
    pub fn library(self) -> &'static str {
        match self {
            Module::SoftHsm => SOFTHSM_MODULE,
            Module::OpenCryptoki => OPENCRYPTOKI_MODULE,
        }
    }

    /// (token label, user PIN).
    fn token(self) -> (&'static str, &'static str) {
        match self {
            Module::SoftHsm => (SOFTHSM_LABEL, SOFTHSM_PIN),
            Module::OpenCryptoki => ("keyward", OPENCRYPTOKI_PIN),
        }
    }

    /// Makes a fresh token (SoftHSM's under `dir`, with `dir/softhsm2.conf`) and returns
    /// the `[[backend]]` entry named `name` for it; its PIN comes from `TOKEN_PIN`
    /// (SoftHSM) or a file in `dir` (opencryptoki), the two ways operators give one.
    pub fn fresh_backend(self, dir: &Path, name: &str) -> String {
        let (label, pin) = self.token();
        let pin_source = match self {
            Module::SoftHsm => {
                softhsm_token(dir, label, pin, "13579");
                "pin_env = \"TOKEN_PIN\"".to_string()
            }
            Module::OpenCryptoki => {
                let script =
                    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/opencryptoki.sh");
                run_ok(
                    Command::new("bash")
                        .arg(script)
                        .arg(label)
                        .env("KEYWARD_OCK_PIN", pin),
                );
                let file = dir.join(format!("{name}-pin"));
                std::fs::write(&file, pin).expect("write the PIN file");
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
                    .expect("chmod the PIN file");
                format!("pin_file = \"{}\"", file.display())
            }
        };
        format!(
            "[[backend]]\ntype = \"pkcs11\"\nname = \"{name}\"\nmodule = \"{}\"\ntoken_label = \"{label}\"\n{pin_source}\n",
            self.library()
        )
    }

    /// `pkcs11-tool ARGS` logged in to the token (SoftHSM's under `dir`).
    pub fn tool(self, dir: &Path, args: &[&str]) -> Output {
        let (label, pin) = self.token();
        Command::new("pkcs11-tool")
            .env("SOFTHSM2_CONF", dir.join("softhsm2.conf"))
            .args(["--module", self.library(), "--token-label", label])
            .args(["--login", "--pin", pin])
            .args(args)
            .output()
            .expect("run pkcs11-tool (package opensc)")
    }

    /// The labels of the private keys on the token (SoftHSM's under `dir`).
    pub fn private_keys(self, dir: &Path) -> String {
        let o = self.tool(dir, &["--list-objects", "--type", "privkey"]);
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}
