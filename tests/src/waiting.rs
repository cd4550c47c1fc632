//! What a command printed when its request may wait for approval: exit status 3 with
//! `"pending": true`, never 0.

use std::process::Output;

/// The JSON a command printed when its request only went into the approval queue:
/// exit status 3 (not 0: `keyward sign IMAGE && deploy` must not deploy). Fails the
/// test otherwise.
pub fn pending(o: &Output) -> serde_json::Value {
    assert_eq!(
        o.status.code(),
        Some(3),
        "expected a request waiting for approval (exit 3): {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON output");
    assert_eq!(v["pending"], true, "{v}");
    v
}

/// The JSON a command printed that either did its work (exit 0) or put its request
/// in the approval queue (`"pending": true`, exit 3); fails the test otherwise.
pub fn answer(o: &Output) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| {
        panic!(
            "no JSON on stdout: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    });
    let want = if v["pending"] == true { 3 } else { 0 };
    assert_eq!(
        o.status.code(),
        Some(want),
        "{v} {}",
        String::from_utf8_lossy(&o.stderr)
    );
    v
}
