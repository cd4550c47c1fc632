//! The contract a script relies on, tried as a script and a person use the CLI: one
//! exit status per outcome, JSON errors under `--output json`, a closed pipe that
//! ends the command quietly, and the conventions (version, help topics, completions,
//! man pages, an endpoint override).

use keyward_tests::registry::TestRegistry;
use keyward_tests::{DevDaemon, bin, pending};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output, Stdio};

fn code(o: &Output) -> Option<i32> {
    o.status.code()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The JSON error a command printed on stderr under `-o json`.
fn json_error(o: &Output) -> serde_json::Value {
    let e: serde_json::Value = serde_json::from_slice(&o.stderr)
        .unwrap_or_else(|_| panic!("stderr is not one JSON value: {}", stderr(o)));
    assert!(
        e["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{e}"
    );
    assert_eq!(e["error"]["details"]["exit_code"], code(o).unwrap(), "{e}");
    e
}

#[test]
fn each_exit_status_means_one_outcome() {
    let reg = TestRegistry::start();
    let d = DevDaemon::start();
    let digest = reg.push_image("app:v1", "contract");
    let image = format!("{}/app@{digest}", reg.addr);
    d.ok(&["key", "create", "img"]);

    // 1: verification ran and found nothing valid.
    let o = d.keyward(&["verify", "--key", "img", &image]);
    assert_eq!(code(&o), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("no valid signature"), "{}", stderr(&o));
    d.ok(&["sign", "--key", "img", &image]);
    d.ok(&["verify", "--key", "img", &image]);

    // 2: usage: an unknown flag, a key that does not exist, an unreadable file.
    for args in [
        vec!["sign", "--key", "img", "--no-such-flag", image.as_str()],
        vec!["sign", "--key", "nope", image.as_str()],
        vec!["sign-blob", "--key", "img", "/nonexistent/file"],
        vec!["sign", "--key", "img", "-a", "no-equals", image.as_str()],
    ] {
        let o = d.keyward(&args);
        assert_eq!(code(&o), Some(2), "{args:?}: {}", stderr(&o));
    }

    // 5: the registry cannot be reached (nothing listens on port 1).
    let o = d.keyward(&["verify", "--key", "img", "127.0.0.1:1/app:v1"]);
    assert_eq!(code(&o), Some(5), "{}", stderr(&o));
    // 5: the daemon cannot be reached, by flag and by environment.
    let o = d.keyward(&["--endpoint", "https://127.0.0.1:1", "key", "list"]);
    assert_eq!(code(&o), Some(5), "{}", stderr(&o));
    assert!(stderr(&o).contains("127.0.0.1:1"), "{}", stderr(&o));
    let o = Command::new(bin("keyward"))
        .env("KEYWARD_CONFIG", d.client_config())
        .env("KEYWARD_ENDPOINT", "https://127.0.0.1:1")
        .args(["key", "list"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(code(&o), Some(5), "{}", stderr(&o));

    // 4: refused: a signer may not create keys.
    let sam = d.add_principal("sam", "signer");
    let o = d.keyward_as(&sam, &["key", "create", "mine"]);
    assert_eq!(code(&o), Some(4), "{}", stderr(&o));

    // 3: the request only went into the approval queue: `sign && deploy` does not
    // deploy.
    let ann = d.add_principal("ann", "approver");
    d.ok(&["key", "policy", "set", "img", "--approvals", "1"]);
    let script = format!(
        "{} sign --key img {image} && echo DEPLOYED",
        bin("keyward").display()
    );
    let o = Command::new("sh")
        .args(["-c", &script])
        .env("KEYWARD_CONFIG", d.client_config())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(code(&o), Some(3), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(!out.contains("DEPLOYED"), "{out}");
    assert!(out.contains("approval required"), "{out}");
    let held = pending(&d.keyward(&["-o", "json", "sign", "--key", "img", &image]));
    let ids = || -> Vec<String> {
        let l: serde_json::Value =
            serde_json::from_str(&d.ok(&["-o", "json", "approvals", "list", "--pending"])).unwrap();
        l.as_array()
            .unwrap()
            .iter()
            .filter_map(|a| a["id"].as_str().map(str::to_string))
            .collect()
    };
    let known = ids();
    assert!(known.len() == 2, "{known:?}");

    // 4: with --wait, a denial while waiting (another image: the same request again
    // is the same approval).
    let other = reg.push_image("app:v2", "contract two");
    let cfg = d.client_config();
    let img = format!("{}/app@{other}", reg.addr);
    let waiter = std::thread::spawn(move || {
        Command::new(bin("keyward"))
            .env("KEYWARD_CONFIG", cfg)
            .args(["sign", "--wait", "--key", "img", &img])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    });
    assert!(held["approval_id"].as_str().is_some(), "{held}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let id = loop {
        assert!(
            std::time::Instant::now() < deadline && !waiter.is_finished(),
            "the waiting request never showed up among the pending ones"
        );
        let new = ids().into_iter().find(|id| !known.contains(id));
        if let Some(id) = new {
            break id;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let o = d.keyward_as(&ann, &["deny", &id, "--reason", "not this one"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = waiter.join().unwrap();
    assert_eq!(code(&o), Some(4), "{}", stderr(&o));
    assert!(stderr(&o).contains("not this one"), "{}", stderr(&o));
}

#[test]
fn under_json_output_errors_are_json_on_stderr() {
    let d = DevDaemon::start();
    let sam = d.add_principal("sam", "signer");
    let o = d.keyward_as(&sam, &["-o", "json", "key", "create", "mine"]);
    let e = json_error(&o);
    assert_eq!(e["error"]["code"], "permission_denied", "{e}");
    assert!(o.stdout.is_empty());

    let o = d.keyward(&["-o", "json", "key", "show", "nope"]);
    assert_eq!(json_error(&o)["error"]["code"], "not_found");

    // A usage error is JSON too, when the command line asked for JSON.
    let o = d.keyward(&["--output", "json", "sign", "--no-such-flag"]);
    let e = json_error(&o);
    assert_eq!(
        (code(&o), &e["error"]["code"]),
        (Some(2), &"usage".into()),
        "{e}"
    );

    let o = d.keyward(&["-o", "json", "--endpoint", "https://127.0.0.1:1", "whoami"]);
    let e = json_error(&o);
    assert_eq!(
        (code(&o), &e["error"]["code"]),
        (Some(5), &"unavailable".into()),
        "{e}"
    );
}

#[test]
fn a_closed_pipe_ends_the_command_quietly() {
    let d = DevDaemon::start();
    for args in [
        vec!["audit", "export"],
        vec!["-o", "json", "signatures", "list"],
        vec!["help", "exit-codes"],
    ] {
        // The reader is gone before the command writes its first line, as with
        // `keyward audit export | head -0`.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let o = Command::new(bin("keyward"))
            .env("KEYWARD_CONFIG", d.client_config())
            .args(&args)
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert!(!stderr(&o).contains("panicked"), "{args:?}: {}", stderr(&o));
        assert_eq!(
            o.status.signal(),
            Some(libc_sigpipe()),
            "{args:?}: {:?} {}",
            o.status,
            stderr(&o)
        );
    }
}

/// SIGPIPE's number on Linux.
fn libc_sigpipe() -> i32 {
    13
}

#[test]
fn version_help_topics_completions_and_man_pages() {
    let d = DevDaemon::start();
    let v: serde_json::Value = serde_json::from_str(&d.ok(&["-o", "json", "version"])).unwrap();
    let ours = env!("CARGO_PKG_VERSION");
    assert_eq!(v["client"]["version"], ours, "{v}");
    assert_eq!(v["daemon"]["version"], ours, "{v}");
    assert_eq!(v["daemon"]["endpoint"], d.endpoint.as_str(), "{v}");
    let text = d.ok(&["version"]);
    assert!(text.contains(&format!("keywardd {ours}")), "{text}");
    // The daemon unreachable: the client's version, then status 5.
    let o = d.keyward(&["--endpoint", "https://127.0.0.1:1", "version"]);
    assert_eq!(code(&o), Some(5));
    assert!(String::from_utf8_lossy(&o.stdout).contains(&format!("keyward {ours}")));

    // One exit-status table, in the CLI and in the README.
    let table = d.ok(&["help", "exit-codes"]);
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    for (n, words) in [
        (0, "done"),
        (1, "no valid signature"),
        (2, "usage"),
        (3, "waits for approval"),
        (4, "refused"),
        (5, "could not complete"),
    ] {
        assert!(table.contains(&format!("  {n}  ")), "{n}: {table}");
        assert!(table.contains(words), "{words}: {table}");
        let row = readme.lines().find(|l| l.starts_with(&format!("| {n} |")));
        assert!(
            row.is_some_and(|r| r.contains(words)),
            "README row {n}: {row:?}"
        );
    }
    let sign = d.ok(&["help", "sign"]);
    assert!(sign.contains("Usage: keyward sign"), "{sign}");
    // The most used commands show examples in their help.
    for cmd in [
        &["sign"][..],
        &["sign-blob"],
        &["verify"],
        &["attest"],
        &["key", "create"],
        &["key", "revoke"],
        &["approve"],
        &["principal", "add"],
        &["audit", "export"],
        &["incident", "revoke"],
        &["resign"],
    ] {
        let help = d.ok(&[&["help"], cmd].concat());
        assert!(help.contains("Examples:\n  keyward "), "{cmd:?}: {help}");
    }
    let o = d.keyward(&["help", "no-such-topic"]);
    assert_eq!(code(&o), Some(2));

    let bash = d.ok(&["completion", "bash"]);
    assert!(bash.contains("complete -F _keyward"), "{bash:.200}");
    for shell in ["zsh", "fish"] {
        assert!(!d.ok(&["completion", shell]).is_empty());
    }
    let man = tempfile::tempdir().unwrap();
    d.ok(&["man", "--dir", man.path().to_str().unwrap()]);
    for page in ["keyward.1", "keyward-sign.1", "keyward-key-create.1"] {
        let text = std::fs::read_to_string(man.path().join(page)).unwrap();
        assert!(text.starts_with(".ie") || text.contains(".TH"), "{page}");
    }
}

#[test]
fn a_dev_instance_refuses_a_second_start_untouched_and_keeps_its_ports() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = DevDaemon::start_in(tmp.path()).unwrap();
    let sam = d.add_principal("sam", "signer");
    let files = ["client.toml", "keywardd.toml"].map(|f| tmp.path().join(f));
    let before = files.clone().map(|f| std::fs::read(f).unwrap());

    // A second start in the same directory says who holds it and changes nothing.
    let o = Command::new(bin("keywardd"))
        .args(["dev", "--dir"])
        .arg(tmp.path())
        .args(["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
        .env_remove("SOFTHSM2_CONF")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!o.status.success());
    let pid = d.pid().unwrap();
    assert!(
        stderr(&o).contains(&format!(
            "another keywardd (pid {pid}) runs the dev instance"
        )),
        "{}",
        stderr(&o)
    );
    assert_eq!(files.clone().map(|f| std::fs::read(f).unwrap()), before);
    assert!(d.keyward_as(&sam, &["whoami"]).status.success());

    // Restarted on port 0, it takes the ports it had: sam's client.toml still works.
    let endpoint = d.endpoint.clone();
    d.stop_cleanly();
    let d = DevDaemon::start_in(tmp.path()).unwrap();
    assert_eq!(d.endpoint, endpoint);
    let o = d.keyward_as(&sam, &["whoami"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn scope_takes_one_syntax_everywhere_and_refuses_what_is_no_pattern() {
    let d = DevDaemon::start();
    let scope = |key: &str| -> serde_json::Value {
        let k: serde_json::Value =
            serde_json::from_str(&d.ok(&["-o", "json", "key", "show", key])).unwrap();
        k["scope"].clone()
    };
    let two = serde_json::json!(["r.example/a/*", "r.example/b/*"]);
    d.ok(&[
        "key",
        "create",
        "k",
        "--scope",
        "r.example/a/*",
        "--scope",
        "r.example/b/*",
    ]);
    assert_eq!(scope("k"), two);
    d.ok(&[
        "key",
        "create",
        "k2",
        "--scope",
        "r.example/a/*,r.example/b/*",
    ]);
    assert_eq!(scope("k2"), two);
    // Narrowing applies at once, in either spelling.
    d.ok(&[
        "key",
        "create",
        "k3",
        "--scope",
        "r.example/a/*,r.example/b/*,r.example/c/*",
    ]);
    d.ok(&["key", "scope", "k3", "r.example/a/*,r.example/b/*"]);
    assert_eq!(scope("k3"), two);
    d.ok(&["key", "policy", "set", "k3", "--scope", "r.example/a/*"]);
    assert_eq!(scope("k3"), serde_json::json!(["r.example/a/*"]));
    d.ok(&["key", "scope", "k", "r.example/a/*"]);

    for bad in [
        "not a glob!!",
        "no-repository",
        "r.example/Team/*",
        "r.example/a/[*",
    ] {
        for args in [
            vec!["key", "scope", "k", bad],
            vec!["key", "policy", "set", "k", "--scope", bad],
            vec!["key", "create", "k4", "--scope", bad],
        ] {
            let o = d.keyward(&args);
            assert_eq!(code(&o), Some(2), "{args:?}: {}", stderr(&o));
            assert!(
                stderr(&o).contains("invalid scope pattern"),
                "{args:?}: {}",
                stderr(&o)
            );
        }
    }
    assert_eq!(scope("k"), serde_json::json!(["r.example/a/*"]));
}

#[test]
fn lists_are_tables_with_headers_and_nothing_on_stdout_when_empty() {
    let d = DevDaemon::start();
    let o = d.keyward(&["jobs", "list"]);
    assert!(o.status.success() && o.stdout.is_empty(), "{o:?}");
    assert!(stderr(&o).contains("no jobs"), "{}", stderr(&o));
    d.ok(&["key", "create", "a-long-key-name"]);
    d.ok(&["key", "create", "k", "--purpose", "blob"]);
    let keys = d.ok(&["key", "list"]);
    let lines: Vec<&str> = keys.lines().collect();
    assert_eq!(lines.len(), 3, "{keys}");
    assert!(lines[0].starts_with("NAME "), "{keys}");
    // Columns line up: each column starts where its header does.
    let col = lines[0].find("PURPOSE").unwrap();
    assert_eq!(lines[1].find("image"), Some(col), "{keys}");
    assert_eq!(lines[2].find("blob"), Some(col), "{keys}");
    assert!(!keys.contains('\t'), "{keys}");
}
