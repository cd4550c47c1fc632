//! A second real PKCS#11 module: opencryptoki 3.8's software token, which offers RSA,
//! AES-CBC and HMAC but no EC and no AES-GCM, and reports its clock as "hh:mm:ss"
//! instead of PKCS#11's format. Its token is found despite the clock; what it can do
//! is read from its mechanism list, not assumed; an instance with its CA on SoftHSM
//! keeps RSA keys on it, each key signing on its own token; an instance with nothing
//! but opencryptoki refuses to start and says why. The token is system-wide: these
//! tests run one at a time (nextest group `opencryptoki`), each on a fresh token made
//! by `scripts/opencryptoki.sh` (root, as CI runs).

use keyward_tests::registry::TestRegistry;
use keyward_tests::served::ServedDaemon;
use keyward_tests::verifiers::openssl_verifies;
use keyward_tests::{bin, cosign_verify, refused, run_ok};
use std::path::Path;
use std::process::Command;

const MODULE: &str = "/usr/lib/x86_64-linux-gnu/pkcs11/libopencryptoki.so";
const PIN: &str = "24681357";

fn fresh_token() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/opencryptoki.sh");
    run_ok(Command::new("bash").arg(script).env("KEYWARD_OCK_PIN", PIN));
}

/// A `[[backend]]` for the opencryptoki token, its PIN in a file under `dir`.
fn backend(dir: &Path) -> String {
    let pin = dir.join("ock-pin");
    std::fs::write(&pin, PIN).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&pin, std::fs::Permissions::from_mode(0o600)).unwrap();
    format!(
        "[[backend]]\ntype = \"pkcs11\"\nname = \"ock\"\nmodule = \"{MODULE}\"\ntoken_label = \"keyward\"\npin_file = \"{}\"\n",
        pin.display()
    )
}

/// `pkcs11-tool` logged in to the opencryptoki token.
fn ock_tool(args: &[&str]) -> std::process::Output {
    Command::new("pkcs11-tool")
        .args([
            "--module",
            MODULE,
            "--token-label",
            "keyward",
            "--login",
            "--pin",
            PIN,
        ])
        .args(args)
        .output()
        .expect("pkcs11-tool (package opensc)")
}

/// The labels of the private keys on the opencryptoki token.
fn ock_keys() -> String {
    String::from_utf8_lossy(&ock_tool(&["--list-objects", "--type", "privkey"]).stdout).into_owned()
}

/// `keyward ARGS` as the admin, which must succeed; its output.
fn ok(d: &ServedDaemon, args: &[&str]) -> String {
    let o = d.keyward(args);
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn opencryptoki_alone_cannot_hold_the_instance_keys_and_init_says_why() {
    fresh_token();
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("keywardd.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"data\"\n[listen]\ngrpc = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\n{}",
            backend(tmp.path())
        ),
    )
    .unwrap();
    let out = Command::new(bin("keywardd"))
        .args(["init", "--config"])
        .arg(&config)
        .arg("--out")
        .arg(tmp.path().join("ops"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "init succeeded on an RSA-only token");
    // The token was found (its clock did not make it unreadable); the refusal names
    // what is missing and what to do.
    assert!(!err.contains("parsing string as integer"), "{err}");
    assert!(err.contains("cannot hold the instance's keys"), "{err}");
    assert!(err.contains("no CKM_EC_KEY_PAIR_GEN, CKM_ECDSA"), "{err}");
    assert!(
        err.contains("supported: rsa-pss-3072, rsa-pkcs1-3072"),
        "{err}"
    );
    assert!(
        ock_keys().trim().is_empty(),
        "init left keys behind: {}",
        ock_keys()
    );
}

#[test]
fn one_instance_two_hsms_each_key_signs_on_its_own_token() {
    fresh_token();
    let pins = tempfile::tempdir().unwrap();
    let mut d = ServedDaemon::start(&format!(
        "[mfa]\nrequired = false\n{}",
        backend(pins.path())
    ));

    // What each token can do, as its mechanism list says.
    let backends: serde_json::Value =
        serde_json::from_str(&ok(&d, &["-o", "json", "backends"])).unwrap();
    let ock = backends
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "ock")
        .unwrap();
    assert_eq!(
        ock["algorithms"],
        serde_json::json!(["rsa-pss-3072", "rsa-pkcs1-3072", "rsa-pkcs1-4096"]),
        "{ock}"
    );
    let missing = ock["missing"].to_string();
    assert!(
        missing.contains("ecdsa-p256: no CKM_EC_KEY_PAIR_GEN, CKM_ECDSA"),
        "{missing}"
    );
    assert!(
        missing.contains("sealing (aes-gcm): no CKM_AES_GCM"),
        "{missing}"
    );
    assert!(
        missing.contains(
            "instance keys (CA, audit, time-stamping: ecdsa-p256): no CKM_EC_KEY_PAIR_GEN"
        ),
        "{missing}"
    );
    let hsm = backends
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "hsm")
        .unwrap();
    assert!(
        hsm["algorithms"].to_string().contains("ecdsa-p256"),
        "{hsm}"
    );
    assert!(ok(&d, &["backends"]).contains("cannot: ecdsa-p256: no CKM_EC_KEY_PAIR_GEN"));

    // An algorithm the token lacks is refused for that backend, with why.
    let why = refused(&d.keyward(&["key", "create", "ec", "--backend", "ock"]));
    assert!(
        why.contains("not supported by backend ock: it has no CKM_EC_KEY_PAIR_GEN, CKM_ECDSA (supported: rsa-pss-3072, rsa-pkcs1-3072, rsa-pkcs1-4096)"),
        "{why}"
    );

    // An RSA key on opencryptoki, an EC key on SoftHSM: each signs on its own token.
    let args = ["--purpose", "blob"];
    ok(
        &d,
        &[
            &[
                "key",
                "create",
                "rk",
                "--backend",
                "ock",
                "--algorithm",
                "rsa-pss-3072",
            ][..],
            &args,
        ]
        .concat(),
    );
    ok(&d, &[&["key", "create", "ek"][..], &args].concat());
    assert!(ock_keys().contains("keyward:rk/v1"), "{}", ock_keys());
    assert!(!ock_keys().contains("keyward:ek/v1"), "{}", ock_keys());
    let soft = String::from_utf8_lossy(
        &d.pkcs11_tool(&["--list-objects", "--type", "privkey"])
            .stdout,
    )
    .into_owned();
    assert!(
        soft.contains("keyward:ek/v1") && !soft.contains("keyward:rk"),
        "{soft}"
    );

    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("artifact");
    std::fs::write(&file, b"built on two HSMs\n").unwrap();
    for rotate in [false, true] {
        if rotate {
            ok(&d, &["key", "rotate", "rk"]);
            assert!(ock_keys().contains("keyward:rk/v2"), "{}", ock_keys());
        }
        let public = work.path().join("rk.pem");
        std::fs::write(&public, ok(&d, &["key", "public", "rk"])).unwrap();
        let sig = work.path().join("rk.sig");
        let b64 = ok(&d, &["sign-blob", "--key", "rk", file.to_str().unwrap()]);
        use base64::Engine;
        std::fs::write(
            &sig,
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .unwrap(),
        )
        .unwrap();
        assert!(
            openssl_verifies("rsa-pss-3072", &public, &sig, &file),
            "openssl rejected rk's signature"
        );
    }
    ok(&d, &["sign-blob", "--key", "ek", file.to_str().unwrap()]);

    // An image signed on opencryptoki with RSA PKCS#1 v1.5 (CKM_RSA_PKCS over a
    // DigestInfo Keyward builds: the module has no CKM_SHA256_RSA_PKCS), checked by cosign.
    let reg = TestRegistry::start();
    reg.push_image("ock:v1", "ock");
    let image = format!("{}/ock:v1", reg.addr);
    ok(
        &d,
        &[
            "key",
            "create",
            "ri",
            "--backend",
            "ock",
            "--algorithm",
            "rsa-pkcs1-3072",
        ],
    );
    ok(&d, &["sign", "--key", "ri", &image]);
    let public = work.path().join("ri.pem");
    std::fs::write(&public, ok(&d, &["key", "public", "ri"])).unwrap();
    let o = cosign_verify(&public, &image, None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(ock_keys().contains("keyward:ri/v1"), "{}", ock_keys());

    // A restart finds every key on its own token again, and reconciliation has nothing
    // to report.
    d.restart();
    ok(&d, &["sign-blob", "--key", "rk", file.to_str().unwrap()]);
    ok(&d, &["sign-blob", "--key", "ek", file.to_str().unwrap()]);
    reg.push_image("ock:v2", "ock2");
    ok(
        &d,
        &["sign", "--key", "ri", &format!("{}/ock:v2", reg.addr)],
    );
    assert!(!d.log().contains("HSM object is missing"), "{}", d.log());
    // An object deleted behind Keyward's back on opencryptoki is named at the next start.
    let deleted = ock_tool(&[
        "--delete-object",
        "--type",
        "privkey",
        "--label",
        "keyward:ri/v1",
    ]);
    assert!(
        deleted.status.success(),
        "{}",
        String::from_utf8_lossy(&deleted.stderr)
    );
    d.restart();
    let log = d.log();
    let missing = log
        .lines()
        .find(|l| l.contains("HSM object is missing"))
        .unwrap_or_else(|| panic!("no reconciliation report: {log}"));
    assert!(
        missing.contains("ri/v1") && missing.contains("ock"),
        "{missing}"
    );
    reg.push_image("ock:v3", "ock3");
    let v3 = format!("{}/ock:v3", reg.addr);
    let why = refused(&d.keyward(&["sign", "--key", "ri", &v3]));
    assert!(
        why.contains("key \"ri\" version 1: its object is missing from backend ock"),
        "{why}"
    );
}
