//! What every command prints under `--output json` is what its JSON Schema
//! (`client/schemas/cli.json`) says, whatever the count or the outcome, and the README's
//! JSON examples are too.

use keyward_tests::registry::TestRegistry;
use keyward_tests::schema::{check, conforms};
use keyward_tests::{DevDaemon, answer};
use std::process::Output;

fn out(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|_| {
        panic!(
            "not JSON: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

/// Runs `keyward -o json ARGS` (done, or waiting for approval) and checks its output
/// against `schema`.
fn json_as(
    d: &DevDaemon,
    who: Option<&std::path::Path>,
    schema: &str,
    args: &[&str],
) -> serde_json::Value {
    let args = [&["-o", "json"], args].concat();
    let o = match who {
        Some(cfg) => d.keyward_as(cfg, &args),
        None => d.keyward(&args),
    };
    let v = answer(&o);
    conforms(schema, &v);
    v
}

#[test]
fn every_command_prints_what_its_schema_says_whatever_the_outcome() {
    let reg = TestRegistry::start();
    let d = DevDaemon::start();
    let digest = reg.push_image("app:v1", "schemas");
    let image = format!("{}/app@{digest}", reg.addr);
    let j = |schema: &str, args: &[&str]| json_as(&d, None, schema, args);

    j("key create", &["key", "create", "img"]);
    j(
        "key create",
        &["key", "create", "files", "--purpose", "blob"],
    );
    j("key show", &["key", "show", "img"]);
    j("key list", &["key", "list"]);
    j("whoami", &["whoami"]);
    j("version", &["version"]);
    j("audit head", &["audit", "head"]);

    // Signing: one file, several files, an image, an attestation.
    let blob = d.dir.join("a.txt");
    std::fs::write(&blob, "a").unwrap();
    let b = blob.to_str().unwrap();
    let one = j("sign-blob", &["sign-blob", "--key", "files", b]);
    let two = j(
        "sign-blob",
        &["sign-blob", "--key", "files", b, "/etc/hostname"],
    );
    assert_eq!(
        (
            one["signatures"].as_array().map(Vec::len),
            two["signatures"].as_array().map(Vec::len)
        ),
        (Some(1), Some(2))
    );
    j("sign", &["sign", "--key", "img", &image]);
    let predicate = d.dir.join("p.json");
    std::fs::write(&predicate, r#"{"builder":{"id":"x"}}"#).unwrap();
    j(
        "attest",
        &[
            "attest",
            "--key",
            "img",
            "--predicate",
            predicate.to_str().unwrap(),
            &image,
        ],
    );
    j("verify", &["verify", "--key", "img", &image]);
    j("signatures list", &["signatures", "list"]);

    // The same commands when the request waits for approval.
    let ann = d.add_principal("ann", "approver");
    j(
        "key policy set",
        &["key", "policy", "set", "files", "--approvals", "1"],
    );
    j(
        "key policy set",
        &["key", "policy", "set", "img", "--approvals", "1"],
    );
    let held = j("sign-blob", &["sign-blob", "--key", "files", b]);
    assert_eq!(held["pending"], true, "{held}");
    let other = reg.push_image("app:v2", "schemas two");
    j(
        "sign",
        &["sign", "--key", "img", &format!("{}/app@{other}", reg.addr)],
    );
    j(
        "attest",
        &[
            "attest",
            "--key",
            "img",
            "--predicate",
            predicate.to_str().unwrap(),
            &image,
        ],
    );
    j("approvals list", &["approvals", "list"]);
    let id = held["approval_id"].as_str().unwrap();
    j("approvals show", &["approvals", "show", id]);
    json_as(&d, Some(&ann), "approve", &["approve", id]);
    // A weakening waits for a second key-admin.
    j(
        "key policy set",
        &["key", "policy", "set", "files", "--approvals", "0"],
    );

    j("jobs list", &["jobs", "list"]);
    j("principal list", &["principal", "list"]);
    j("principal show", &["principal", "show", "ann"]);
    let cfg = d.dir.join("people/otto/client.toml");
    j(
        "principal add",
        &[
            "principal",
            "add",
            "otto",
            "--role",
            "signer",
            "--out",
            cfg.to_str().unwrap(),
        ],
    );
    json_as(&d, Some(&cfg), "mfa enroll", &["mfa", "enroll"]);
    j("backends", &["backends"]);
    let trust = d.dir.join("trust");
    let t = trust.to_str().unwrap();
    j("trust export", &["trust", "export", t]);
    j("trust export", &["trust", "export", t, "--key", "img"]);
    j("trust export", &["trust", "export", t, "--key", "files"]);
    j("revocations status", &["revocations", "status"]);

    let rotated = j("key rotate", &["key", "rotate", "img"]);
    if let Some(id) = rotated["job_id"].as_str() {
        j("jobs show", &["jobs", "show", id]);
    }
    j("key rotate", &["key", "rotate", "files"]);
    j(
        "key revoke",
        &[
            "key",
            "revoke",
            "files",
            "--version",
            "1",
            "--reason",
            "superseded",
        ],
    );
    j(
        "incident revoke",
        &[
            "incident",
            "revoke",
            "--key",
            "img",
            "--version",
            "1",
            "--compromised-since",
            "2026-01-01T00:00:00Z",
            "--dry-run",
        ],
    );

    // Errors, from the daemon and from the command line.
    for args in [
        vec!["-o", "json", "key", "show", "nope"],
        vec!["-o", "json", "sign", "--no-such-flag"],
        vec![
            "-o",
            "json",
            "--endpoint",
            "https://127.0.0.1:1",
            "key",
            "list",
        ],
        vec![
            "-o",
            "json",
            "verify",
            "--key",
            "img",
            &format!("{}/app:nothing-here", reg.addr),
        ],
    ] {
        let o = d.keyward(&args);
        assert!(!o.status.success(), "{args:?}");
        let e: serde_json::Value = serde_json::from_slice(&o.stderr).unwrap();
        conforms("error", &e);
    }
    // A schema that does not fit is noticed: the check itself can fail.
    let shown = out(&d.keyward(&["-o", "json", "key", "show", "img"]));
    assert!(check("key list", &shown).is_err());
    assert!(check("no such command", &shown).is_err());
}

#[test]
fn the_readmes_json_examples_are_what_the_schemas_say() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let mut checked = Vec::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        let Some(name) = line
            .strip_prefix("<!-- schema: ")
            .and_then(|l| l.strip_suffix(" -->"))
        else {
            continue;
        };
        assert_eq!(lines.next(), Some("```json"), "after the marker for {name}");
        let body: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
        let v: serde_json::Value = serde_json::from_str(&body.join("\n"))
            .unwrap_or_else(|e| panic!("README example for {name} is not JSON: {e}"));
        conforms(name, &v);
        checked.push(name.to_string());
    }
    for group in [
        "sign",
        "sign-blob",
        "verify",
        "key show",
        "key rotate",
        "key policy set",
        "approvals list",
        "signatures list",
        "error",
    ] {
        assert!(
            checked.iter().any(|c| c == group),
            "no README example for {group}: {checked:?}"
        );
    }
}
