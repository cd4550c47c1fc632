//! Revocations and incidents as the tests ask for them.

use crate::DevDaemon;
use std::path::Path;
use std::process::Output;

fn as_(d: &DevDaemon, who: Option<&Path>, args: &[&str]) -> Output {
    match who {
        Some(c) => d.keyward_as(c, args),
        None => d.keyward(args),
    }
}

fn with_since(
    d: &DevDaemon,
    who: Option<&Path>,
    head: &[&str],
    since: &str,
    extra: &[&str],
) -> Output {
    let mut args = head.to_vec();
    args.extend(["--compromised-since", since]);
    args.extend(extra);
    as_(d, who, &args)
}

/// `keyward -o json incident revoke --key KEY --version N --compromised-since SINCE
/// EXTRA...`, as `who` (none: the admin).
pub fn incident(
    d: &DevDaemon,
    who: Option<&Path>,
    (key, version): (&str, u32),
    since: &str,
    extra: &[&str],
) -> Output {
    let v = version.to_string();
    let head = [
        "-o",
        "json",
        "incident",
        "revoke",
        "--key",
        key,
        "--version",
        &v,
    ];
    with_since(d, who, &head, since, extra)
}

/// `keyward key revoke KEY --version N --reason key-compromise --compromised-since
/// SINCE EXTRA...`, as `who` (none: the admin).
pub fn revoke_compromised(
    d: &DevDaemon,
    who: Option<&Path>,
    (key, version): (&str, u32),
    since: &str,
    extra: &[&str],
) -> Output {
    let v = version.to_string();
    let head = [
        "key",
        "revoke",
        key,
        "--version",
        &v,
        "--reason",
        "key-compromise",
    ];
    with_since(d, who, &head, since, extra)
}

/// Every ledger entry of `key` (`signatures list --key KEY -o json`).
pub fn ledger(d: &DevDaemon, key: &str) -> Vec<serde_json::Value> {
    let all: serde_json::Value =
        serde_json::from_str(&d.ok(&["-o", "json", "signatures", "list", "--key", key]))
            .expect("JSON");
    all.as_array().cloned().unwrap_or_default()
}

/// An RFC 3339 time.
pub fn time(s: &str) -> time::OffsetDateTime {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{s:?}: {e}"))
}
