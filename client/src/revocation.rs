//! Checking a revocation list offline, as a verifier does without the daemon: the CA's
//! signature over its canonical JSON, the issuer, rollback (a lower sequence than one
//! seen before, per issuer, kept in a state file), continuity (the list right after the
//! one last accepted must name it as `previous`, and no later list may drop an entry it
//! held), freeze (past `next_update`: fail closed), staleness (issued longer ago than a
//! bound the verifier sets) and size.

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

/// What a verifier keeps of the last list it accepted from one issuer.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum Seen {
    /// The list accepted: its sequence, the SHA-256 (hex) of its canonical JSON, and
    /// what it revoked (which a later list must still revoke).
    Accepted {
        /// Its sequence.
        sequence: u64,
        /// SHA-256 of its canonical JSON, hex.
        hash: String,
        /// Its `entries`.
        entries: Value,
        /// Its `signatures`.
        #[serde(default)]
        signatures: Value,
    },
    /// A state file written by an earlier release: the sequence alone.
    Sequence(u64),
}

impl Seen {
    fn sequence(&self) -> u64 {
        match self {
            Seen::Accepted { sequence, .. } | Seen::Sequence(sequence) => *sequence,
        }
    }
}

/// The last list accepted per issuer (CA key fingerprint).
pub type SeenSequences = BTreeMap<String, Seen>;

/// What of `earlier` (entries and signatures of a list accepted before) `list` no
/// longer holds: a missing version or signature, a compromise moved later, or a
/// revocation made milder.
fn dropped(list: &Value, entries: &Value, signatures: &Value) -> Option<String> {
    let when = |v: &Value| {
        v.as_str()
            .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
    };
    let now_entries = list["entries"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    for old in entries.as_array().into_iter().flatten() {
        let Some(new) = now_entries
            .iter()
            .find(|e| e["key"] == old["key"] && e["version"] == old["version"])
        else {
            return Some(format!(
                "key {} v{} is no longer on it",
                old["key"], old["version"]
            ));
        };
        let reason_kept = new["reason"] == old["reason"] || new["reason"] == "key-compromise";
        let since_kept = match (
            when(&old["compromised_since"]),
            when(&new["compromised_since"]),
        ) {
            (Some(o), Some(n)) => n <= o,
            (Some(_), None) => false,
            (None, _) => true,
        };
        if new["fingerprint"] != old["fingerprint"] || !reason_kept || !since_kept {
            return Some(format!(
                "key {} v{}'s revocation was made milder",
                old["key"], old["version"]
            ));
        }
    }
    let now_signatures = list["signatures"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    for old in signatures.as_array().into_iter().flatten() {
        let kept = now_signatures.iter().any(|s| {
            s["key"] == old["key"] && s["version"] == old["version"] && s["digest"] == old["digest"]
        });
        if !kept {
            return Some(format!(
                "the revoked signature of {} by key {} v{} is no longer on it",
                old["digest"], old["key"], old["version"]
            ));
        }
    }
    None
}

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
    let hash = hex::encode(sha2::Sha256::digest(canonical.as_bytes()));
    match seen.get(&issuer) {
        Some(last) if sequence < last.sequence() => {
            return Err(format!(
                "the revocation list has sequence {sequence}, older than sequence {} seen before from this CA (a replayed list): refused",
                last.sequence()
            ));
        }
        Some(Seen::Accepted {
            sequence: last,
            hash: last_hash,
            entries,
            signatures,
        }) => {
            if sequence == *last && hash != *last_hash {
                return Err(format!(
                    "the revocation list has sequence {sequence}, as the one accepted before, but other contents (two lists with one sequence): refused"
                ));
            }
            if sequence == last + 1 && list["previous"].as_str() != Some(last_hash.as_str()) {
                return Err(format!(
                    "the revocation list {sequence} does not follow list {last} accepted before (its previous is {}, that list's hash is {last_hash}): refused",
                    list["previous"].as_str().unwrap_or("missing")
                ));
            }
            if let Some(lost) = dropped(&list, entries, signatures) {
                return Err(format!(
                    "the revocation list {sequence} drops what list {last} accepted before held: {lost}: refused"
                ));
            }
        }
        _ => {}
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
    seen.insert(
        issuer,
        Seen::Accepted {
            sequence,
            hash,
            entries: list["entries"].clone(),
            signatures: list["signatures"].clone(),
        },
    );
    Ok(CheckedList {
        list,
        sequence,
        next_update,
    })
}
