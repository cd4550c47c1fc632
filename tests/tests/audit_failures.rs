//! The audit log fails closed: when a checkpoint cannot be signed, nothing that changes
//! state or signs happens until one can, and /healthz says why.

use keyward_tests::refused;
use keyward_tests::served::ServedDaemon;
use std::time::{Duration, Instant};

#[test]
fn a_checkpoint_that_cannot_be_signed_stops_every_state_change() {
    let d = ServedDaemon::start("[mfa]\nrequired = false\n[audit]\ncheckpoint_seconds = 1\n");
    assert!(
        d.keyward(&["key", "create", "k", "--purpose", "blob"])
            .status
            .success()
    );
    let (status, _) = d.http_get("/healthz");
    assert!(status.contains("200"), "{status}");
    // The audit key disappears from the HSM.
    let o = d.pkcs11_tool(&[
        "--delete-object",
        "--type",
        "privkey",
        "--label",
        "keyward:audit",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(d.keyward(&["key", "list"]).status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        let (status, body) = d.http_get("/healthz");
        if status.contains("503") {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "healthz stayed {status}: {}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(body.contains("checkpoint"), "{body}");
    let err = refused(&d.keyward(&["key", "create", "k2"]));
    assert!(
        err.contains("until the audit log can be checkpointed"),
        "{err}"
    );
    let err = refused(&d.keyward(&["sign-blob", "--key", "k", "/etc/hostname"]));
    assert!(
        err.contains("until the audit log can be checkpointed"),
        "{err}"
    );
    // Reads still answer, and say nothing was created.
    let o = d.keyward(&["key", "list"]);
    assert!(o.status.success());
    assert!(!String::from_utf8_lossy(&o.stdout).contains("k2"));
}
