//! Principals and roles: every request is checked against the caller's registered
//! certificate and roles, and refusals say which role is missing.

use keyward_tests::DevDaemon;
use std::path::Path;
use std::process::Output;

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok_as(d: &DevDaemon, cfg: &Path, args: &[&str]) -> String {
    let o = d.keyward_as(cfg, args);
    assert!(
        o.status.success(),
        "keyward {args:?} failed: {}",
        stderr(&o)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn denied_as(d: &DevDaemon, cfg: &Path, args: &[&str]) -> String {
    let o = d.keyward_as(cfg, args);
    assert!(!o.status.success(), "keyward {args:?} was allowed");
    stderr(&o)
}

#[test]
fn roles_decide_what_each_principal_may_do() {
    let d = DevDaemon::start();
    d.ok(&["key", "create", "release", "--purpose", "blob"]);
    let alice = d.add_principal("alice", "signer");
    let olga = d.add_principal("olga", "auditor");
    let kim = d.add_principal("kim", "key-admin");

    // The new principal's key was made on the client, readable by its owner only.
    let key = alice.parent().unwrap().join("alice.key");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
    assert_eq!(mode & 0o077, 0);
    let me: serde_json::Value =
        serde_json::from_str(&ok_as(&d, &alice, &["-o", "json", "whoami"])).unwrap();
    assert_eq!(me["name"], "alice");
    assert_eq!(me["roles"][0], "signer");

    // A signer signs and reads, but does not manage keys or principals.
    ok_as(
        &d,
        &alice,
        &["sign-blob", "--key", "release", "/etc/hostname"],
    );
    ok_as(&d, &alice, &["key", "list"]);
    let err = denied_as(&d, &alice, &["key", "create", "mine"]);
    assert!(err.contains("principal \"alice\" may not create keys: that needs the role key-admin or admin (it has: signer)"), "{err}");
    assert!(err.contains("permission denied"), "{err}");
    let err = denied_as(
        &d,
        &alice,
        &[
            "principal",
            "add",
            "eve",
            "--role",
            "admin",
            "--out",
            "/tmp/never/eve.toml",
        ],
    );
    assert!(err.contains("needs the role admin"), "{err}");
    assert!(!Path::new("/tmp/never/eve.crt").exists());
    let err = denied_as(&d, &alice, &["signatures", "list"]);
    assert!(err.contains("read the signature ledger"), "{err}");

    // An auditor reads the ledger but does not sign.
    ok_as(&d, &olga, &["signatures", "list"]);
    let err = denied_as(
        &d,
        &olga,
        &["sign-blob", "--key", "release", "/etc/hostname"],
    );
    assert!(
        err.contains("needs the role signer or admin (it has: auditor)"),
        "{err}"
    );

    // A key admin creates and rotates keys but does not sign.
    ok_as(&d, &kim, &["key", "create", "team", "--purpose", "blob"]);
    ok_as(&d, &kim, &["key", "rotate", "team"]);
    denied_as(&d, &kim, &["sign-blob", "--key", "team", "/etc/hostname"]);

    let list: serde_json::Value =
        serde_json::from_str(&d.ok(&["-o", "json", "principal", "list"])).unwrap();
    let names: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["admin", "alice", "kim", "olga"]);
    assert_eq!(list[0]["created_by"], "keywardd init");
    assert_eq!(list[1]["created_by"], "admin");
}

#[test]
fn a_removed_principal_is_refused_from_the_next_request_on() {
    let d = DevDaemon::start();
    d.ok(&["key", "create", "release", "--purpose", "blob"]);
    let bob = d.add_principal("bob", "signer");
    ok_as(
        &d,
        &bob,
        &["sign-blob", "--key", "release", "/etc/hostname"],
    );
    d.ok(&["principal", "remove", "bob"]);
    let err = denied_as(
        &d,
        &bob,
        &["sign-blob", "--key", "release", "/etc/hostname"],
    );
    assert!(
        err.contains("principal \"bob\" was removed") && err.contains("unauthenticated"),
        "{err}"
    );
    let shown: serde_json::Value =
        serde_json::from_str(&d.ok(&["-o", "json", "principal", "show", "bob"])).unwrap();
    assert_eq!(shown["removed"], true);
    // The name may be given again, to a new certificate: the old one never comes
    // back to life.
    d.ok(&[
        "principal",
        "add",
        "bob",
        "--role",
        "signer",
        "--out",
        d.dir.join("bob2/client.toml").to_str().unwrap(),
    ]);
    let err = denied_as(&d, &bob, &["whoami"]);
    assert!(err.contains("not the one registered"), "{err}");
    // The last admin cannot be removed.
    let err = d.fails(&["principal", "remove", "admin"]);
    assert!(err.contains("last admin"), "{err}");
    d.ok(&["whoami"]);
}

#[test]
fn key_signers_limit_who_may_sign_with_a_key() {
    let d = DevDaemon::start();
    d.ok(&["key", "create", "prod", "--purpose", "blob"]);
    let alice = d.add_principal("alice", "signer");
    let bob = d.add_principal("bob", "signer");
    d.ok(&["key", "policy", "set", "prod", "--signers", "alice"]);
    let shown: serde_json::Value =
        serde_json::from_str(&d.ok(&["-o", "json", "key", "policy", "show", "prod"])).unwrap();
    assert_eq!(shown["signers"][0], "alice");
    ok_as(&d, &alice, &["sign-blob", "--key", "prod", "/etc/hostname"]);
    let err = denied_as(&d, &bob, &["sign-blob", "--key", "prod", "/etc/hostname"]);
    assert!(
        err.contains("principal \"bob\" is not among the signers of key \"prod\" (alice)"),
        "{err}"
    );
    let err = d.fails(&["key", "policy", "set", "prod", "--signers", "mallory"]);
    assert!(err.contains("no principal named \"mallory\""), "{err}");
    // "Any signer" again is a weakening: it waits for a second key-admin.
    let kira = d.add_principal("kira", "key-admin");
    let pending = d.held(&["key", "policy", "set", "prod", "--signers", ""]);
    assert_eq!(pending["pending"], true, "{pending}");
    denied_as(&d, &bob, &["sign-blob", "--key", "prod", "/etc/hostname"]);
    ok_as(
        &d,
        &kira,
        &["approve", pending["approval_id"].as_str().unwrap()],
    );
    ok_as(&d, &bob, &["sign-blob", "--key", "prod", "/etc/hostname"]);
}

#[test]
fn bad_principal_requests_are_explained() {
    let d = DevDaemon::start();
    let out = d.dir.join("x.toml");
    let err = d.fails(&[
        "principal",
        "add",
        "x",
        "--role",
        "superuser",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        err.contains("unknown role \"superuser\"")
            && err.contains("signer, approver, key-admin, revoker, auditor, admin"),
        "{err}"
    );
    let err = d.fails(&[
        "principal",
        "add",
        "Bad Name",
        "--role",
        "signer",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(err.contains("invalid principal name"), "{err}");
    let err = d.fails(&["principal", "show", "nobody"]);
    assert!(err.contains("principal \"nobody\" not found"), "{err}");
    assert!(!out.exists());
}

#[test]
fn two_admins_removing_each_other_at_once_leave_one_admin() {
    for round in 0..3 {
        let d = DevDaemon::start();
        let ann = d.add_principal("ann", "admin");
        let ben = d.add_principal("ben", "admin");
        // Only these two admins are left; each removes the other at the same time.
        ok_as(&d, &ann, &["principal", "remove", "admin"]);
        let (by_ann, by_ben) = std::thread::scope(|s| {
            let x = s.spawn(|| d.keyward_as(&ann, &["principal", "remove", "ben"]));
            let y = s.spawn(|| d.keyward_as(&ben, &["principal", "remove", "ann"]));
            (x.join().unwrap(), y.join().unwrap())
        });
        assert!(
            by_ann.status.success() != by_ben.status.success(),
            "round {round}: exactly one removal may succeed: {} / {}",
            stderr(&by_ann),
            stderr(&by_ben)
        );
        let (survivor, gone, name) = if by_ann.status.success() {
            (&ann, "ben", "ann")
        } else {
            (&ben, "ann", "ben")
        };
        let shown: serde_json::Value = serde_json::from_str(&ok_as(
            &d,
            survivor,
            &["-o", "json", "principal", "show", gone],
        ))
        .unwrap();
        assert_eq!(shown["removed"], true);
        // The survivor is still an admin, and the last one.
        ok_as(&d, survivor, &["principal", "list"]);
        let err = denied_as(&d, survivor, &["principal", "remove", name]);
        assert!(err.contains("last admin"), "{err}");
    }
}

#[test]
fn a_removed_name_can_be_given_again_as_a_new_identity_without_the_old_factor() {
    let d = DevDaemon::start();
    let old = d.add_principal("sam", "signer");
    keyward_tests::enrol(&d, &old);
    // An active name is taken.
    let o = d.keyward(&[
        "principal",
        "add",
        "sam",
        "--role",
        "signer",
        "--out",
        "/tmp/x.toml",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("already exists"), "{}", stderr(&o));

    d.ok(&["principal", "remove", "sam"]);
    let new = d.dir.join("new-sam/client.toml");
    d.ok(&[
        "principal",
        "add",
        "sam",
        "--role",
        "signer",
        "--out",
        new.to_str().unwrap(),
    ]);
    let me: serde_json::Value =
        serde_json::from_str(&ok_as(&d, &new, &["-o", "json", "whoami"])).unwrap();
    assert_eq!(
        (me["name"].as_str(), me["removed"].as_bool()),
        (Some("sam"), Some(false))
    );
    // The old certificate stays refused.
    let err = denied_as(&d, &old, &["whoami"]);
    assert!(err.contains("not the one registered"), "{err}");
    // The old second factor is gone: the new sam enrols afresh.
    keyward_tests::enrol(&d, &new);
}
