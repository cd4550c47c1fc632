//! Rotation: a key gets a new active version; the old one verifies and never signs.

use keyward_tests::DevDaemon;

#[test]
fn two_rotations_at_once_make_one_version_each_or_say_why_and_leave_no_hsm_object_behind() {
    let d = DevDaemon::start();
    d.ok(&["key", "create", "race", "--purpose", "blob"]);
    let outs = std::thread::scope(|s| {
        let runs: Vec<_> = (0..3)
            .map(|_| s.spawn(|| d.keyward(&["key", "rotate", "race"])))
            .collect();
        runs.into_iter()
            .map(|r| r.join().unwrap())
            .collect::<Vec<_>>()
    });
    let rotated = outs.iter().filter(|o| o.status.success()).count();
    assert!(rotated >= 1, "no rotation succeeded");
    for o in outs.iter().filter(|o| !o.status.success()) {
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("rotated by another request at the same time"),
            "{err}"
        );
    }
    let key: serde_json::Value =
        serde_json::from_str(&d.ok(&["-o", "json", "key", "show", "race"])).unwrap();
    let versions = key["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 1 + rotated, "{key}");
    let active: Vec<_> = versions.iter().filter(|v| v["state"] == "active").collect();
    assert_eq!(active.len(), 1, "{key}");
    assert_eq!(active[0]["version"], 1 + rotated as u64);
    // A rotation that lost deleted the key pair it had generated.
    let on_token = d
        .token_keys()
        .iter()
        .filter(|k| {
            k["label"]
                .as_str()
                .unwrap_or("")
                .starts_with("keyward:race/")
        })
        .count();
    assert_eq!(on_token, versions.len(), "{:?}", d.token_keys());
}
