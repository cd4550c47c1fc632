//! Local files as an attacker on the same machine sees them: `keywardd dev` refuses a
//! directory someone else controls, state on disk is private whatever the umask, and
//! the CLI does not write a key through a looser file.

use keyward_tests::DevDaemon;
use std::process::Command;

fn mode(p: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn keywardd_dev_refuses_a_directory_someone_else_controls() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    // Another local user pre-created the directory, hoping to receive the PIN.
    let theirs = tmp.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
    let err = DevDaemon::start_in(&theirs)
        .err()
        .expect("a foreign directory was accepted");
    assert!(err.contains("belongs to user id 65534"), "{err}");
    assert!(!theirs.join("pin").exists());

    let open = tmp.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = DevDaemon::start_in(&open)
        .err()
        .expect("a world-writable directory was accepted");
    assert!(err.contains("may be written by other users"), "{err}");
    assert!(!open.join("pin").exists());
}

#[test]
fn state_on_disk_is_private_whatever_the_umask() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("inst");
    let log = std::fs::File::create(tmp.path().join("log")).unwrap();
    let child = Command::new("sh")
        .args(["-c", "umask 000; exec \"$0\" \"$@\""])
        .arg(keyward_tests::bin("keywardd"))
        .args(["dev", "--dir"])
        .arg(&dir)
        .args(["--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"])
        .env_remove("SOFTHSM2_CONF")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let _guard = keyward_tests::ChildGuard(child);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !dir.join("client.toml").exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            std::fs::read_to_string(tmp.path().join("log")).unwrap()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    for d in [dir.clone(), dir.join("data"), dir.join("data/store")] {
        assert_eq!(mode(&d), 0o700, "{}", d.display());
    }
    for f in ["pin", "so-pin", "admin.key", "client.toml", "keywardd.toml"] {
        assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
    }
    for e in std::fs::read_dir(dir.join("data/store")).unwrap().flatten() {
        if e.file_type().unwrap().is_file() {
            assert_eq!(mode(&e.path()), 0o600, "{}", e.path().display());
        }
    }
}

#[test]
fn the_cli_tightens_a_key_file_it_overwrites() {
    use std::os::unix::fs::PermissionsExt;
    let d = DevDaemon::start();
    let out = d.dir.join("people/carol");
    std::fs::create_dir_all(&out).unwrap();
    let key = out.join("carol.key");
    std::fs::write(&key, "old").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    d.ok(&[
        "principal",
        "add",
        "carol",
        "--role",
        "signer",
        "--out",
        out.join("client.toml").to_str().unwrap(),
    ]);
    assert_eq!(mode(&key), 0o600);
    assert!(
        std::fs::read_to_string(&key)
            .unwrap()
            .contains("PRIVATE KEY")
    );
}
