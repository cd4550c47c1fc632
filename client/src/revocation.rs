//! Checking a revocation list offline, as a verifier does without the daemon: the CA's
//! signature over its canonical JSON, the issuer, rollback (a lower sequence than one
//! seen before, per issuer, kept in a state file), freeze (past `next_update`: fail
//! closed), staleness (issued longer ago than a bound the verifier sets) and size.

use crate::der::element;
use serde_json::Value;
use sha2::Digest;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The largest list accepted.
pub const MAX_LIST_BYTES: usize = 1024 * 1024;

/// A list that passed every check.
#[derive(Debug, Clone)]
pub struct CheckedList {
    /// The list (`{"entries", "issued_at", "issuer", ...}`).
    pub list: Value,
    /// Its sequence.
    pub sequence: u64,
    /// When it must be replaced.
    pub next_update: OffsetDateTime,
}

impl CheckedList {
    /// Whether the list revokes version `version` of key `key`, or the version with
    /// this public-key fingerprint.
    pub fn revokes(&self, key: &str, version: u32, fingerprint: &str) -> Option<&Value> {
        self.list["entries"].as_array()?.iter().find(|e| {
            (e["key"] == key && e["version"] == version)
                || (!fingerprint.is_empty() && e["fingerprint"] == fingerprint)
        })
    }
}

/// The highest sequence seen per issuer (CA key fingerprint).
pub type SeenSequences = BTreeMap<String, u64>;

/// The default state file: `$XDG_STATE_HOME/keyward/revocations.json`, or
/// `~/.local/state/keyward/revocations.json`.
pub fn default_state_path() -> PathBuf {
    std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("."))
        .join("keyward/revocations.json")
}

/// Reads the state file (missing: nothing seen yet).
pub fn load_state(path: &Path) -> Result<SeenSequences, String> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map_err(|e| format!("the state file {} is not readable: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(SeenSequences::new()),
        Err(e) => Err(format!(
            "cannot read the state file {}: {e}",
            path.display()
        )),
    }
}

/// Writes the state file atomically.
pub fn save_state(path: &Path, seen: &SeenSequences) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("cannot write the state file {}: {e}", path.display());
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(fail)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(fail)?;
    std::io::Write::write_all(
        &mut tmp,
        serde_json::to_string_pretty(seen)
            .unwrap_or_default()
            .as_bytes(),
    )
    .map_err(fail)?;
    tmp.persist(path).map_err(|e| fail(e.error))?;
    Ok(())
}

/// A DER field: the whole element and its contents.
pub(crate) type Field = (Vec<u8>, Vec<u8>);

/// The fields of a PEM certificate's tbsCertificate after the optional version:
/// serial, signature, issuer, validity, subject, spki, ... (each whole element, and
/// its contents).
pub(crate) fn tbs_fields(pem: &str) -> Result<Vec<Field>, String> {
    let bad = |what: &str| format!("the certificate is not usable: {what}");
    let der = crate::der::pem_der(pem).map_err(|_| bad("not PEM"))?;
    let cert = element(&der).ok_or_else(|| bad("not DER"))?;
    let tbs = element(cert.contents).ok_or_else(|| bad("no tbsCertificate"))?;
    let (mut fields, mut at) = (Vec::new(), tbs.contents);
    while let Some(e) = element(at) {
        at = e.rest;
        if !(fields.is_empty() && e.tag == 0xa0) {
            fields.push((e.whole.to_vec(), e.contents.to_vec()));
        }
    }
    if fields.len() < 6 {
        return Err(bad("too few fields"));
    }
    Ok(fields)
}

/// The DER SubjectPublicKeyInfo of a PEM certificate.
pub fn certificate_spki(pem: &str) -> Result<Vec<u8>, String> {
    Ok(tbs_fields(pem)?.swap_remove(5).0)
}

/// The serial number of a PEM certificate (the INTEGER's content octets).
pub fn certificate_serial(pem: &str) -> Result<Vec<u8>, String> {
    Ok(tbs_fields(pem)?.swap_remove(0).1)
}

/// Checks `bytes`, what `keyward revocations show --output json` prints
/// (`{"list": {...}, "signature": "..."}`), against the CA certificate and what was
/// seen before; records its sequence in `seen` when it passes.
pub fn check(
    bytes: &[u8],
    ca_pem: &str,
    seen: &mut SeenSequences,
    now: OffsetDateTime,
    max_staleness: Option<time::Duration>,
) -> Result<CheckedList, String> {
    use base64::Engine;
    if bytes.len() > MAX_LIST_BYTES {
        return Err(format!(
            "the revocation list is {} bytes, over the 1 MiB a list may have: refused",
            bytes.len()
        ));
    }
    let doc: Value = serde_json::from_slice(bytes)
        .map_err(|e| format!("the revocation list is not JSON: {e}"))?;
    let list = doc["list"].clone();
    let signature = doc["signature"]
        .as_str()
        .ok_or("the revocation list has no signature: refused")?;
    let spki = certificate_spki(ca_pem)?;
    let issuer = hex::encode(sha2::Sha256::digest(&spki));
    if list["issuer_fingerprint"] != issuer.as_str() {
        return Err(format!(
            "the revocation list was issued by CA key {}, not by the CA given ({issuer}): refused",
            list["issuer_fingerprint"].as_str().unwrap_or("?")
        ));
    }
    let sig = base64::engine::general_purpose::STANDARD
        .decode(signature)
        .map_err(|_| "the revocation list's signature is not base64: refused".to_string())?;
    // The canonical form: serde_json's map keeps keys sorted.
    let canonical = serde_json::to_string(&list).unwrap_or_default();
    if !crate::signature::verifies(&spki, canonical.as_bytes(), &sig) {
        return Err("the revocation list's signature does not verify with the CA's key (it was changed, or not signed by this CA): refused".to_string());
    }
    let sequence = list["sequence"]
        .as_u64()
        .ok_or("the revocation list has no sequence: refused")?;
    let time = |field: &str| {
        list[field]
            .as_str()
            .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
            .ok_or_else(|| format!("the revocation list has no valid {field}: refused"))
    };
    let (issued_at, next_update) = (time("issued_at")?, time("next_update")?);
    if let Some(&highest) = seen.get(&issuer)
        && sequence < highest
    {
        return Err(format!(
            "the revocation list has sequence {sequence}, older than sequence {highest} seen before from this CA (a replayed list): refused"
        ));
    }
    if now > next_update {
        return Err(format!(
            "the revocation list expired at {} (next_update); a current one is needed (fetch it again; failing closed)",
            next_update.format(&Rfc3339).unwrap_or_default()
        ));
    }
    if let Some(max) = max_staleness
        && now - issued_at > max
    {
        return Err(format!(
            "the revocation list was issued at {}, longer ago than --max-staleness allows: refused",
            issued_at.format(&Rfc3339).unwrap_or_default()
        ));
    }
    let highest = seen.entry(issuer).or_insert(0);
    *highest = (*highest).max(sequence);
    Ok(CheckedList {
        list,
        sequence,
        next_update,
    })
}
