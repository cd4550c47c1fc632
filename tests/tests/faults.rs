//! Bad configuration, wrong secrets, foreign clients and HSM faults: each gets a clear
//! error, never a panic, and nothing stored is lost.

use keyward_client::proto;
use keyward_tests::{DevDaemon, SOFTHSM_MODULE, bin};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn serve(dir: &std::path::Path, config: &std::path::Path) -> Output {
    Command::new(bin("keywardd"))
        .args(["serve", "--config"])
        .arg(config)
        .env("SOFTHSM2_CONF", dir.join("softhsm2.conf"))
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn wrong_pin_stops_the_daemon_at_once_without_locking_the_token() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = DevDaemon::start_in(tmp.path()).unwrap();
    d.ok(&["key", "create", "survivor"]);
    let public = d.ok(&["key", "public", "survivor"]);
    d.stop_cleanly();

    let good = std::fs::read(tmp.path().join("pin")).unwrap();
    std::fs::write(tmp.path().join("pin"), "0000wrong\n").unwrap();
    for _ in 0..3 {
        let started = Instant::now();
        let err = DevDaemon::start_in(tmp.path())
            .err()
            .expect("started with a wrong PIN");
        assert!(err.contains("refused the PIN"), "{err}");
        assert!(!err.contains("0000wrong"), "the PIN was echoed: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "retried instead of stopping"
        );
    }
    std::fs::write(tmp.path().join("pin"), good).unwrap();
    let d = DevDaemon::start_in(tmp.path()).unwrap();
    assert_eq!(d.ok(&["key", "public", "survivor"]), public);
}

#[test]
fn configuration_errors_name_the_field_the_label_or_the_module() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = DevDaemon::start_in(tmp.path()).unwrap();
    d.stop_cleanly();
    let original = std::fs::read_to_string(tmp.path().join("keywardd.toml")).unwrap();

    let bad = tmp.path().join("typo.toml");
    std::fs::write(&bad, original.replace("token_label", "token_lable")).unwrap();
    let out = serve(tmp.path(), &bad);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("token_lable"), "{}", stderr(&out));

    std::fs::write(&bad, format!("{original}\nlisten_adress = \"x\"\n")).unwrap();
    let out = serve(tmp.path(), &bad);
    assert!(
        stderr(&out).contains("unknown field `listen_adress`"),
        "{}",
        stderr(&out)
    );

    std::fs::write(
        &bad,
        original.replace("\"keyward-dev\"", "\"no-such-token\""),
    )
    .unwrap();
    let out = serve(tmp.path(), &bad);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no token labelled \"no-such-token\""),
        "{}",
        stderr(&out)
    );

    std::fs::write(
        &bad,
        original.replace(SOFTHSM_MODULE, "/nonexistent/libpkcs11.so"),
    )
    .unwrap();
    let out = serve(tmp.path(), &bad);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("/nonexistent/libpkcs11.so"),
        "{}",
        stderr(&out)
    );

    let out = serve(tmp.path(), &tmp.path().join("missing.toml"));
    assert!(
        stderr(&out).contains("cannot read configuration"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    // The instance is intact after all that.
    let d = DevDaemon::start_in(tmp.path()).unwrap();
    d.ok(&["key", "list"]);
}

#[test]
fn init_refuses_an_initialised_instance_and_a_second_daemon_refuses_a_busy_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let d = DevDaemon::start_in(tmp.path()).unwrap();
    d.ok(&["key", "create", "kept"]);
    // Second daemon on the same directory while the first runs.
    let out = serve(tmp.path(), &tmp.path().join("keywardd.toml"));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("in use by another keywardd"),
        "{}",
        stderr(&out)
    );
    drop(d);

    let ca = std::fs::read_to_string(tmp.path().join("ca.pem")).unwrap();
    let out = Command::new(bin("keywardd"))
        .args(["init", "--config"])
        .arg(tmp.path().join("keywardd.toml"))
        .args(["--admin", "mallory", "--out"])
        .arg(tmp.path().join("mallory"))
        .env("SOFTHSM2_CONF", tmp.path().join("softhsm2.conf"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("already initialised"),
        "{}",
        stderr(&out)
    );
    assert!(!tmp.path().join("mallory").exists());
    let d = DevDaemon::start_in(tmp.path()).unwrap();
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("ca.pem")).unwrap(),
        ca
    );
    d.ok(&["key", "show", "kept"]);
}

#[test]
fn init_creates_a_ca_in_the_hsm_and_an_admin_who_can_connect() {
    // A production-style instance: a token made with softhsm2-util, keywardd init, serve.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    keyward_tests::softhsm_token(dir, "prod", "123456", "654321");
    std::fs::write(
        dir.join("keywardd.toml"),
        format!(
            "data_dir = \"data\"\n[listen]\ngrpc = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\n\
             [[backend]]\ntype = \"pkcs11\"\nname = \"hsm\"\nmodule = \"{SOFTHSM_MODULE}\"\n\
             token_label = \"prod\"\npin_env = \"TEST_TOKEN_PIN\"\n"
        ),
    )
    .unwrap();
    let out = Command::new(bin("keywardd"))
        .args(["init", "--config"])
        .arg(dir.join("keywardd.toml"))
        .args(["--admin", "alice", "--out"])
        .arg(dir.join("alice"))
        .env("SOFTHSM2_CONF", dir.join("softhsm2.conf"))
        .env("TEST_TOKEN_PIN", "123456")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let verdict = Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(dir.join("alice/ca.pem"))
        .arg(dir.join("alice/alice.crt"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&verdict.stdout).contains(": OK"));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.join("alice/alice.key"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o077, 0, "client key readable by others");
    // The PIN never lands in a log or a file Keyward writes.
    for entry in walk(dir) {
        if entry.starts_with(dir.join("tokens")) {
            continue;
        }
        let text = std::fs::read(&entry).unwrap_or_default();
        assert!(
            !text.windows(6).any(|w| w == b"123456"),
            "PIN found in {}",
            entry.display()
        );
    }
    assert!(!stderr(&out).contains("123456"));
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn clients_without_a_keyward_certificate_are_refused_at_the_handshake() {
    let d = DevDaemon::start();
    let stranger = DevDaemon::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
        let ca = std::fs::read(d.dir.join("ca.pem")).unwrap();
        let attempt = |identity: Option<Identity>| {
            let mut tls = ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(ca.clone()))
                .domain_name("localhost");
            if let Some(i) = identity {
                tls = tls.identity(i);
            }
            let endpoint = d.endpoint.clone();
            async move {
                let ch = Channel::from_shared(endpoint)
                    .unwrap()
                    .tls_config(tls)
                    .unwrap()
                    .connect()
                    .await?;
                let mut c = proto::key_service_client::KeyServiceClient::new(ch);
                c.list_keys(proto::ListKeysRequest::default())
                    .await
                    .map_err(|s| Box::new(s) as Box<dyn std::error::Error + Send + Sync>)?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            }
        };
        // No client certificate.
        assert!(
            attempt(None).await.is_err(),
            "a client without a certificate was served"
        );
        // A certificate from another Keyward CA.
        let foreign = Identity::from_pem(
            std::fs::read(stranger.dir.join("admin.crt")).unwrap(),
            std::fs::read(stranger.dir.join("admin.key")).unwrap(),
        );
        assert!(
            attempt(Some(foreign)).await.is_err(),
            "a certificate from another CA was served"
        );
        // The instance's own admin is served.
        let own = Identity::from_pem(
            std::fs::read(d.dir.join("admin.crt")).unwrap(),
            std::fs::read(d.dir.join("admin.key")).unwrap(),
        );
        attempt(Some(own)).await.expect("the admin was refused");
    });
}

#[test]
fn start_up_survives_another_process_logging_in_to_the_token() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = DevDaemon::start_in(tmp.path()).unwrap();
    d.ok(&["key", "create", "busy", "--purpose", "blob"]);
    d.stop_cleanly();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (s2, dir) = (stop.clone(), tmp.path().to_path_buf());
    let pin = std::fs::read_to_string(dir.join("pin"))
        .unwrap()
        .trim()
        .to_string();
    let other = std::thread::spawn(move || {
        let mut logins = 0;
        while !s2.load(std::sync::atomic::Ordering::Relaxed) {
            let o = Command::new("pkcs11-tool")
                .env("SOFTHSM2_CONF", dir.join("softhsm2.conf"))
                .args([
                    "--module",
                    SOFTHSM_MODULE,
                    "--token-label",
                    "keyward-dev",
                    "--login",
                    "--pin",
                    &pin,
                    "--list-objects",
                ])
                .output()
                .unwrap();
            if o.status.success() {
                logins += 1;
            }
        }
        logins
    });
    for _ in 0..5 {
        let mut d = DevDaemon::start_in(tmp.path())
            .unwrap_or_else(|e| panic!("start failed while another process logged in: {e}"));
        d.ok(&["sign-blob", "--key", "busy", "/etc/hostname"]);
        d.stop_cleanly();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(
        other.join().unwrap() > 0,
        "the other process never logged in"
    );
}

#[test]
fn start_up_reports_versions_missing_from_the_hsm_and_deletes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = DevDaemon::start_in(tmp.path()).unwrap();
    let created: serde_json::Value =
        serde_json::from_str(&d.ok(&["-o", "json", "key", "create", "lost", "--purpose", "blob"]))
            .unwrap();
    d.ok(&["key", "create", "fine", "--purpose", "blob"]);
    let id = created["versions"][0]["hsm_id"]
        .as_str()
        .unwrap()
        .to_string();
    d.stop_cleanly();
    let pin = std::fs::read_to_string(tmp.path().join("pin"))
        .unwrap()
        .trim()
        .to_string();
    for ty in ["privkey", "pubkey"] {
        let o = d.pkcs11_tool(&[
            "--login",
            "--pin",
            &pin,
            "--delete-object",
            "--type",
            ty,
            "--id",
            &id,
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let d = DevDaemon::start_in(tmp.path()).unwrap();
    let log = d.log();
    assert!(log.contains("lost/v1 on softhsm"), "{log}");
    assert!(log.contains("HSM object is missing"), "{log}");
    assert!(!log.contains("fine/v1"), "{log}");
    // The record is kept; signing with it says what is wrong, the other key still signs.
    d.ok(&["key", "show", "lost"]);
    let err = d.fails(&["sign-blob", "--key", "lost", "/etc/hostname"]);
    assert!(
        err.contains("key \"lost\" version 1: its object is missing from backend softhsm"),
        "{err}"
    );
    d.ok(&["sign-blob", "--key", "fine", "/etc/hostname"]);
    // CA key, audit key, time-stamping key and "fine".
    assert_eq!(d.token_keys().len(), 4, "objects were deleted");
}
