//! Image signing against registries that need credentials, lie or are missing, and
//! the limits a key's scope and the ledger put on it: the real distribution registry,
//! checked by cosign.

use keyward_tests::registry::TestRegistry;
use keyward_tests::{DevDaemon, cosign_verify};
use std::process::Command;

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap()
}

#[test]
fn basic_auth_registries_take_docker_config_credentials() {
    let reg = TestRegistry::start_with_auth("ci", "s3cret-pass");
    let digest = reg.push_image("private/app:v1", "private");
    let image = format!("{}/private/app:v1", reg.addr);
    let docker = reg.docker_config();
    let tmp = tempfile::tempdir().unwrap();
    let d = DevDaemon::start_with(tmp.path(), &[("DOCKER_CONFIG", &docker)]).unwrap();
    d.ok(&["key", "create", "k"]);
    let signed = json(&d.ok(&["-o", "json", "sign", "--key", "k", &image]));
    assert_eq!(signed["signatures"][0]["digest"], digest.as_str());
    assert!(
        cosign_verify(&d.public_key_file("k"), &image, Some(&docker))
            .status
            .success()
    );
    assert!(!d.log().contains("s3cret-pass"), "registry password logged");

    // Without credentials: a clear authentication error naming the registry.
    let anon = DevDaemon::start();
    anon.ok(&["key", "create", "k"]);
    let err = anon.fails(&["sign", "--key", "k", &image]);
    assert!(
        err.contains(&format!("registry {} refused authentication", reg.addr)),
        "{err}"
    );
    assert!(err.contains("unauthenticated"), "{err}");
    assert_eq!(anon.ok(&["signatures", "list"]).trim(), "");
}

#[test]
fn bad_references_missing_images_and_unreachable_registries_are_named() {
    let reg = TestRegistry::start();
    let d = DevDaemon::start();
    reg.push_image("app:v1", "errors");
    d.ok(&["key", "create", "k"]);
    let err = d.fails(&["sign", "--key", "k", "Not A/Reference::"]);
    assert!(
        err.contains("malformed image reference") && err.contains("invalid argument"),
        "{err}"
    );
    let err = d.fails(&["sign", "--key", "k", &format!("{}/app:nope", reg.addr)]);
    assert!(
        err.contains("not found") && err.contains("app:nope"),
        "{err}"
    );
    let err = d.fails(&["sign", "--key", "k", &format!("{}/ghost:v1", reg.addr)]);
    assert!(err.contains("(not found)"), "{err}");
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let err = d.fails(&["sign", "--key", "k", &format!("{closed}/app:v1")]);
    assert!(
        err.contains(&format!("registry {closed} is unreachable")) && err.contains("(unavailable)"),
        "{err}"
    );
    let err = d.fails(&["sign", "--key", "ghost", &format!("{}/app:v1", reg.addr)]);
    assert!(err.contains("key \"ghost\" not found"), "{err}");
    d.ok(&["key", "create", "rsa", "--algorithm", "rsa-pss-3072"]);
    let err = d.fails(&["sign", "--key", "rsa", &format!("{}/app:v1", reg.addr)]);
    assert!(err.contains("PKCS#1 v1.5"), "{err}");
    assert_eq!(
        d.ok(&["signatures", "list"]).trim(),
        "",
        "failed requests were recorded"
    );
}

#[test]
fn scope_policy_refuses_repositories_outside_the_key_scope() {
    let reg = TestRegistry::start();
    let d = DevDaemon::start();
    reg.push_image("prod/api:v1", "prod");
    reg.push_image("dev/api:v1", "dev");
    let scope = format!("{}/prod/*", reg.addr);
    d.ok(&["key", "create", "prod-key", "--scope", &scope]);
    d.ok(&[
        "sign",
        "--key",
        "prod-key",
        &format!("{}/prod/api:v1", reg.addr),
    ]);
    let err = d.fails(&[
        "sign",
        "--key",
        "prod-key",
        &format!("{}/dev/api:v1", reg.addr),
    ]);
    assert!(
        err.contains("permission denied") && err.contains(&scope),
        "{err}"
    );
    // `*` does not cross a path segment.
    reg.push_image("prod/team/api:v1", "nested");
    let err = d.fails(&[
        "sign",
        "--key",
        "prod-key",
        &format!("{}/prod/team/api:v1", reg.addr),
    ]);
    assert!(err.contains("matches none"), "{err}");
    // Widening the scope is a weakening: a second key-admin approves it.
    let kira = d.add_principal("kira", "key-admin");
    let pending = d.held(&["key", "scope", "prod-key", &format!("{}/prod/**", reg.addr)]);
    assert_eq!(pending["pending"], true, "{pending}");
    let id = pending["approval_id"].as_str().unwrap();
    let o = d.keyward_as(&kira, &["approve", id]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    d.ok(&[
        "sign",
        "--key",
        "prod-key",
        &format!("{}/prod/team/api:v1", reg.addr),
    ]);
    let err = d.fails(&["key", "scope", "prod-key", "[unclosed"]);
    assert!(err.contains("invalid scope pattern"), "{err}");
}

#[test]
fn the_ledger_answers_what_a_key_signed_and_a_failed_push_records_nothing() {
    let mut reg = TestRegistry::start();
    let d = DevDaemon::start();
    let a = reg.push_image("a/app:v1", "ledger-a");
    reg.push_image("b/app:v1", "ledger-b");
    d.ok(&["key", "create", "k1"]);
    d.ok(&["key", "create", "k2"]);
    let before = time_now();
    d.ok(&["sign", "--key", "k1", &format!("{}/a/app:v1", reg.addr)]);
    d.ok(&["sign", "--key", "k2", &format!("{}/b/app:v1", reg.addr)]);
    let all = json(&d.ok(&["-o", "json", "signatures", "list"]));
    assert_eq!(all.as_array().unwrap().len(), 2);
    let k1 = json(&d.ok(&["-o", "json", "signatures", "list", "--key", "k1"]));
    assert_eq!(k1.as_array().unwrap().len(), 1);
    let e = &k1[0];
    assert_eq!(e["digest"], a.as_str());
    assert_eq!(e["repository"], "a/app");
    assert_eq!(e["tag"], "v1");
    assert_eq!(e["requester"], "admin");
    assert_eq!(e["version"], 1);
    assert_eq!(
        e["pushed_to"],
        format!("{}/a/app:{}.sig", reg.addr, a.replace(':', "-"))
    );
    let by_repo = json(&d.ok(&[
        "-o",
        "json",
        "signatures",
        "list",
        "--repository",
        &format!("{}/b/*", reg.addr),
    ]));
    assert_eq!(by_repo.as_array().unwrap().len(), 1);
    assert_eq!(by_repo[0]["key"], "k2");
    let since = json(&d.ok(&["-o", "json", "signatures", "list", "--since", &before]));
    assert_eq!(since.as_array().unwrap().len(), 2);
    let until = json(&d.ok(&["-o", "json", "signatures", "list", "--until", &before]));
    assert_eq!(until.as_array().unwrap().len(), 0);
    let err = d.fails(&["signatures", "list", "--since", "yesterday"]);
    assert!(err.contains("RFC 3339"), "{err}");

    // The registry goes read-only: the push fails, nothing is recorded, and the
    // existing signature manifest still holds k1's signature.
    reg.restart(true);
    let err = d.fails(&["sign", "--key", "k2", &format!("{}/a/app:v1", reg.addr)]);
    assert!(err.contains(&reg.addr), "{err}");
    assert_eq!(
        json(&d.ok(&["-o", "json", "signatures", "list"]))
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(reg.sig_layers("a/app", &a).len(), 1);
    assert!(
        cosign_verify(
            &d.public_key_file("k1"),
            &format!("{}/a/app:v1", reg.addr),
            None
        )
        .status
        .success()
    );
}

fn time_now() -> String {
    let out = Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%S.%NZ"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn a_registry_that_lies_about_the_digest_is_refused() {
    // A fake registry that serves a manifest under a digest it does not have.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        use std::io::{BufRead, BufReader, Write};
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            let _ = reader.read_line(&mut request_line);
            loop {
                let mut l = String::new();
                if reader.read_line(&mut l).unwrap_or(0) == 0 || l == "\r\n" {
                    break;
                }
            }
            let body = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":2},"layers":[]}"#;
            let lie = format!("sha256:{}", "1".repeat(64));
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nDocker-Content-Digest: {lie}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let mut s = stream;
            let _ = s.write_all(head.as_bytes());
            if !request_line.starts_with("HEAD") {
                let _ = s.write_all(body);
            }
        }
    });
    let d = DevDaemon::start();
    d.ok(&["key", "create", "k"]);
    let err = d.fails(&["sign", "--key", "k", &format!("{addr}/app:v1")]);
    assert!(err.contains("does not match its digest"), "{err}");
    assert_eq!(d.ok(&["signatures", "list"]).trim(), "");
}

#[test]
fn registry_credentials_from_the_daemon_configuration() {
    // A production-style instance (init + serve) whose keywardd.toml carries the
    // registry's credentials in a [[registry]] entry, the password in a variable.
    use keyward_tests::{SOFTHSM_MODULE, bin};
    use std::process::{Command, Stdio};
    let reg = TestRegistry::start_with_auth("deployer", "from-config-pass");
    let image = format!("{}/svc/api:v3", reg.addr);
    reg.push_image("svc/api:v3", "configured credentials");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let conf = keyward_tests::softhsm_token(dir, "prod", "246810", "13579");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        dir.join("keywardd.toml"),
        format!(
            "data_dir = \"data\"\n[listen]\ngrpc = \"127.0.0.1:{port}\"\nhttp = \"127.0.0.1:0\"\n\
             [[backend]]\ntype = \"pkcs11\"\nname = \"hsm\"\nmodule = \"{SOFTHSM_MODULE}\"\ntoken_label = \"prod\"\npin_env = \"TOKEN_PIN\"\n\
             [[registry]]\nhost = \"{}\"\nusername = \"deployer\"\npassword_env = \"REGISTRY_PASSWORD\"\n",
            reg.addr
        ),
    )
    .unwrap();
    let daemon = |args: &[&str]| {
        let mut c = Command::new(bin("keywardd"));
        c.args(args)
            .arg("--config")
            .arg(dir.join("keywardd.toml"))
            .env("SOFTHSM2_CONF", &conf)
            .env("TOKEN_PIN", "246810")
            .env("REGISTRY_PASSWORD", "from-config-pass")
            .env("DOCKER_CONFIG", dir.join("no-docker"));
        c
    };
    let out = daemon(&["init"])
        .args(["--admin", "ops", "--out"])
        .arg(dir.join("ops"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // init enrols the admin's TOTP; key creation needs a code.
    let secret = keyward_tests::otpauth_secret(&String::from_utf8_lossy(&out.stdout));
    let log = std::fs::File::create(dir.join("serve.log")).unwrap();
    let mut serve = keyward_tests::ChildGuard(
        daemon(&["serve"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "keywardd serve did not listen"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let cli = |args: &[&str]| {
        Command::new(bin("keyward"))
            .env("KEYWARD_CONFIG", dir.join("ops/client.toml"))
            .args(args)
            .output()
            .unwrap()
    };
    keyward_tests::wait_for_fresh_step();
    let created = cli(&[
        "key",
        "create",
        "svc",
        "--otp",
        &keyward_tests::pyotp(&secret, 0),
    ]);
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let signed = cli(&["sign", "--key", "svc", &image]);
    assert!(
        signed.status.success(),
        "{}",
        String::from_utf8_lossy(&signed.stderr)
    );
    let public = dir.join("svc.pem");
    std::fs::write(&public, cli(&["key", "public", "svc"]).stdout).unwrap();
    assert!(
        cosign_verify(&public, &image, Some(&reg.docker_config()))
            .status
            .success()
    );
    let _ = Command::new("kill")
        .args(["-TERM", &serve.0.id().to_string()])
        .status();
    let status = serve.0.wait().unwrap();
    assert!(status.success(), "{status}");
    let log = std::fs::read_to_string(dir.join("serve.log")).unwrap();
    assert!(
        !log.contains("from-config-pass") && !log.contains("246810"),
        "a secret was logged: {log}"
    );
}
