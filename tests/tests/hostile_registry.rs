//! The registry is not trusted: a loopback server of the test's own plays a hostile
//! registry (huge manifests, bodies that drip, bearer realms that point elsewhere,
//! error pages full of internal detail) against the real daemon.

use keyward_tests::DevDaemon;
use keyward_tests::hostile::{HostileRegistry, Reply, Request};
use keyward_tests::refused;
use keyward_tests::served::ServedDaemon;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn ok(status: u16) -> Reply {
    Reply::Full(status, Vec::new(), Vec::new())
}

const MANIFEST: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#;

#[test]
fn a_huge_manifest_is_refused_without_reading_it_all() {
    let reg = HostileRegistry::start(|r: &Request| match r.path.as_str() {
        "/v2/" => ok(200),
        _ => Reply::Endless(64 * 1024 * 1024, b' '),
    });
    let d = DevDaemon::start();
    d.ok(&["key", "create", "k"]);
    let err = refused(&d.keyward(&["sign", "--key", "k", &format!("{}/app:v1", reg.addr)]));
    assert!(err.contains("larger than 4194304 bytes"), "{err}");
    // The daemon is still there and answers.
    d.ok(&["key", "list"]);
}

#[test]
fn a_registry_that_drips_is_cut_off_at_the_deadline() {
    let reg = HostileRegistry::start(|r: &Request| match r.path.as_str() {
        "/v2/" => ok(200),
        _ => Reply::Drip(Duration::from_millis(200)),
    });
    let d = ServedDaemon::start("[mfa]\nrequired = false\n[oci]\noperation_timeout_seconds = 2\n");
    assert!(d.keyward(&["key", "create", "k"]).status.success());
    let started = Instant::now();
    let err = refused(&d.keyward(&["sign", "--key", "k", &format!("{}/app:v1", reg.addr)]));
    assert!(err.contains("did not finish within 2 s"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the deadline did not hold"
    );
    assert!(d.keyward(&["key", "list"]).status.success());
}

#[test]
fn a_bearer_realm_on_another_host_or_over_http_is_never_asked() {
    let asked = Arc::new(AtomicUsize::new(0));
    let counter = asked.clone();
    let token_service = HostileRegistry::start(move |_: &Request| {
        counter.fetch_add(1, Ordering::SeqCst);
        Reply::Full(200, Vec::new(), br#"{"token":"stolen"}"#.to_vec())
    });
    let elsewhere = format!("http://{}/token", token_service.addr);
    let reg = HostileRegistry::start(move |_: &Request| {
        Reply::Full(
            401,
            vec![(
                "WWW-Authenticate".into(),
                format!("Bearer realm=\"{elsewhere}\",service=\"reg\""),
            )],
            Vec::new(),
        )
    });
    let d = DevDaemon::start();
    d.ok(&["key", "create", "k"]);
    let err = refused(&d.keyward(&["verify", "--key", "k", &format!("{}/app:v1", reg.addr)]));
    assert!(
        err.contains("not on") && err.contains("token_hosts"),
        "{err}"
    );
    assert_eq!(
        asked.load(Ordering::SeqCst),
        0,
        "the foreign token service was asked"
    );

    let plain = HostileRegistry::start(|_: &Request| {
        Reply::Full(
            401,
            vec![(
                "WWW-Authenticate".into(),
                "Bearer realm=\"http://tokens.internal.example/t\"".into(),
            )],
            Vec::new(),
        )
    });
    let err = refused(&d.keyward(&["verify", "--key", "k", &format!("{}/app:v1", plain.addr)]));
    assert!(err.contains("https only"), "{err}");
}

#[test]
fn a_bearer_token_from_the_registrys_own_realm_is_used() {
    let realm_base = Arc::new(std::sync::Mutex::new(String::new()));
    let base = realm_base.clone();
    let reg = HostileRegistry::start(move |r: &Request| {
        let realm = format!("http://{}/token", base.lock().unwrap());
        match (r.path.as_str(), r.authorization.as_deref()) {
            (p, _) if p.starts_with("/token") => {
                assert!(p.contains("scope=repository%3Aapp%3Apull"), "{p}");
                Reply::Full(200, Vec::new(), br#"{"token":"t0k3n"}"#.to_vec())
            }
            (p, Some("Bearer t0k3n")) if p.contains("/manifests/v1") => Reply::Full(
                200,
                vec![(
                    "Content-Type".into(),
                    "application/vnd.oci.image.manifest.v1+json".into(),
                )],
                MANIFEST.as_bytes().to_vec(),
            ),
            (p, Some("Bearer t0k3n")) if p.contains("/manifests/") => ok(404),
            _ => Reply::Full(
                401,
                vec![(
                    "WWW-Authenticate".into(),
                    format!("Bearer realm=\"{realm}\",service=\"reg\""),
                )],
                Vec::new(),
            ),
        }
    });
    *realm_base.lock().unwrap() = reg.addr.clone();
    let d = DevDaemon::start();
    d.ok(&["key", "create", "k"]);
    // The manifest was fetched with the token; the image just has no signature.
    let err = refused(&d.keyward(&["verify", "--key", "k", &format!("{}/app:v1", reg.addr)]));
    assert!(err.contains("no valid signature"), "{err}");
}

#[test]
fn registry_error_bodies_are_summarised_not_echoed() {
    let reg = HostileRegistry::start(|r: &Request| match r.path.as_str() {
        "/v2/" => ok(200),
        _ => Reply::Full(
            500,
            vec![("Content-Type".into(), "application/json".into())],
            br#"{"errors":[{"code":"UNKNOWN","message":"db-password=hunter2 on 10.1.2.3"}]}"#
                .to_vec(),
        ),
    });
    let d = DevDaemon::start();
    d.ok(&["key", "create", "k"]);
    let err = refused(&d.keyward(&["sign", "--key", "k", &format!("{}/app:v1", reg.addr)]));
    assert!(err.contains("HTTP 500 (UNKNOWN)"), "{err}");
    assert!(
        !err.contains("hunter2") && !err.contains("10.1.2.3"),
        "{err}"
    );
    let audit = d.ok(&["audit", "export"]);
    assert!(
        !audit.contains("hunter2"),
        "an error body reached the audit log"
    );
}
