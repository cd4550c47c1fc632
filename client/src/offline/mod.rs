//! Verifying an image's signatures without the daemon: the key's CA-signed history
//! says which public keys to trust, the revocation list (a file, or pulled from a
//! registry) what to refuse.

pub mod by_identity;
pub mod registry;
mod stamp;
pub mod x509;

use crate::revocation::{self, CheckedList, SeenSequences, certificate_spki};
use base64::Engine;
use registry::{Repo, split};
use serde::Serialize;
use serde_json::Value;
use sha2::Digest;

/// Why offline verification could not give an answer: a registry could not be
/// reached (try again), or what it was given is refused (the answer is "no").
#[derive(Debug, Clone, thiserror::Error)]
pub enum Failure {
    /// A registry could not be reached or did not answer.
    #[error("{0}")]
    Unreachable(String),
    /// The inputs (history, list, CA, signatures) are refused.
    #[error("{0}")]
    Refused(String),
}

impl From<String> for Failure {
    fn from(s: String) -> Self {
        Failure::Refused(s)
    }
}

impl From<&str> for Failure {
    fn from(s: &str) -> Self {
        Failure::Refused(s.to_string())
    }
}

/// What offline verification found.
#[derive(Debug, Clone, Serialize)]
pub struct OfflineResult {
    /// The image digest checked.
    pub digest: String,
    /// Versions whose signature verifies and is not revoked.
    pub valid: Vec<u32>,
    /// Other layers, with why.
    pub rejected: Vec<String>,
    /// The revocation list's sequence used.
    pub revocation_sequence: u64,
}

/// One version a verifier trusts: number, state, fingerprint, public key (DER SPKI).
struct Trusted {
    version: u32,
    state: String,
    fingerprint: String,
    key: Vec<u8>,
}

/// Checks the CA's signature over a key history (`keyward key history --output json`)
/// and returns its key name and versions.
fn trusted_versions(history: &[u8], ca_pem: &str) -> Result<(String, Vec<Trusted>), String> {
    let mut doc: Value =
        serde_json::from_slice(history).map_err(|e| format!("the key history is not JSON: {e}"))?;
    let sig = doc
        .as_object_mut()
        .and_then(|o| o.remove("signature"))
        .and_then(|s| s.as_str().map(str::to_string))
        .ok_or("the key history has no signature")?;
    let ca = certificate_spki(ca_pem)?;
    let sig = base64::engine::general_purpose::STANDARD
        .decode(sig)
        .map_err(|_| "the key history's signature is not base64")?;
    let canonical = serde_json::to_string(&doc).unwrap_or_default();
    if !crate::signature::verifies(&ca, canonical.as_bytes(), &sig) {
        return Err(
            "the key history's signature does not verify with the CA's key: refused".into(),
        );
    }
    let key = doc["key"].as_str().unwrap_or_default().to_string();
    let mut out = Vec::new();
    for v in doc["versions"].as_array().cloned().unwrap_or_default() {
        let fingerprint = v["fingerprint"].as_str().unwrap_or_default().to_string();
        let spki = certificate_spki(v["certificate"].as_str().unwrap_or_default())?;
        if hex::encode(sha2::Sha256::digest(&spki)) != fingerprint {
            return Err(format!(
                "the key history's certificate of v{} does not carry its fingerprint: refused",
                v["version"]
            ));
        }
        out.push(Trusted {
            version: v["version"].as_u64().unwrap_or(0) as u32,
            state: v["state"].as_str().unwrap_or_default().to_string(),
            fingerprint,
            key: spki,
        });
    }
    Ok((key, out))
}

/// The revocation list from a file, or pulled from `registry/repository` (`latest`).
async fn revocation_bytes(source: &str) -> Result<Vec<u8>, Failure> {
    if std::path::Path::new(source).exists() {
        return std::fs::read(source).map_err(|e| format!("cannot read {source}: {e}").into());
    }
    let (registry, repository, tag) = split(source)?;
    let repo = Repo::new(&registry, &repository)?;
    let (manifest, _) = repo
        .manifest(&tag)
        .await?
        .ok_or_else(|| format!("{source} holds no revocation list (no {tag} tag)"))?;
    let m: Value = serde_json::from_slice(&manifest).map_err(|e| e.to_string())?;
    let layer = |i: usize| {
        m["layers"][i]["digest"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let (list, sig) = (repo.blob(&layer(0)).await?, repo.blob(&layer(1)).await?);
    if list.len() > revocation::MAX_LIST_BYTES {
        return Err(format!("{source}'s revocation list is over 1 MiB: refused").into());
    }
    let list: Value = serde_json::from_slice(&list).map_err(|e| e.to_string())?;
    Ok(
        serde_json::json!({"list": list, "signature": String::from_utf8_lossy(&sig)})
            .to_string()
            .into_bytes(),
    )
}

/// The revocation list from `revocations` (a file or a registry repository), checked
/// against the CA and what was seen before.
async fn checked_list(
    revocations: &str,
    ca_pem: &str,
    seen: &mut SeenSequences,
    max_staleness: Option<time::Duration>,
) -> Result<CheckedList, Failure> {
    Ok(revocation::check(
        &revocation_bytes(revocations).await?,
        ca_pem,
        seen,
        time::OffsetDateTime::now_utc(),
        max_staleness,
    )?)
}

/// The image's repository, its digest, and the layers of its cosign signature
/// manifest (none when it has none).
async fn signature_layers(image: &str) -> Result<(Repo, String, Vec<Value>), Failure> {
    let (registry, repository, reference) = split(image)?;
    let repo = Repo::new(&registry, &repository)?;
    let (_, digest) = repo
        .manifest(&reference)
        .await?
        .ok_or_else(|| format!("{image} not found"))?;
    let sig_tag = format!("{}.sig", digest.replace(':', "-"));
    let Some((sig_manifest, _)) = repo.manifest(&sig_tag).await? else {
        return Ok((repo, digest, Vec::new()));
    };
    let m: Value = serde_json::from_slice(&sig_manifest).map_err(|e| e.to_string())?;
    let layers = m["layers"].as_array().cloned().unwrap_or_default();
    Ok((repo, digest, layers))
}

/// Why the list refuses a signature of `digest` by `key` v`version` (public key
/// `fingerprint`): the version is revoked, or this one signature is. None: it does not.
fn revocation_refusal(
    list: &CheckedList,
    (key, version, fingerprint): (&str, u32, &str),
    digest: &str,
) -> Option<String> {
    let text = |e: &Value, f: &str| e[f].as_str().unwrap_or("?").to_string();
    if let Some(e) = list.revokes(key, version, fingerprint) {
        return Some(format!(
            "signed by {key} v{version} which the revocation list revokes ({}, revoked at {})",
            text(e, "reason"),
            text(e, "revoked_at")
        ));
    }
    let e = list.list["signatures"]
        .as_array()?
        .iter()
        .find(|e| e["key"] == key && e["version"] == version && e["digest"] == digest)?;
    Some(format!(
        "this signature by {key} v{version} is revoked ({})",
        text(e, "reason")
    ))
}

impl OfflineResult {
    /// Nothing found yet for `digest`, checked against list `sequence`.
    fn new(digest: &str, sequence: u64) -> Self {
        Self {
            digest: digest.to_string(),
            valid: Vec::new(),
            rejected: Vec::new(),
            revocation_sequence: sequence,
        }
    }
}

/// Verifies `image`'s signatures against the history's versions and the list.
pub async fn verify(
    image: &str,
    ca_pem: &str,
    history: &[u8],
    revocations: &str,
    seen: &mut SeenSequences,
    max_staleness: Option<time::Duration>,
) -> Result<OfflineResult, Failure> {
    let (key, versions) = trusted_versions(history, ca_pem)?;
    let list = checked_list(revocations, ca_pem, seen, max_staleness).await?;
    let (repo, digest, layers) = signature_layers(image).await?;
    let mut result = OfflineResult::new(&digest, list.sequence);
    let b64 = base64::engine::general_purpose::STANDARD;
    for (i, layer) in layers.iter().enumerate() {
        let sig = layer["annotations"]["dev.cosignproject.cosign/signature"]
            .as_str()
            .and_then(|s| b64.decode(s).ok());
        let payload = repo
            .blob(layer["digest"].as_str().unwrap_or_default())
            .await?;
        let signer = sig.and_then(|sig| {
            versions
                .iter()
                .find(|v| crate::signature::verifies(&v.key, &payload, &sig))
        });
        let Some(v) = signer else {
            result.rejected.push(format!(
                "layer {i}: not signed by any version of key {key:?}"
            ));
            continue;
        };
        let p: Value = serde_json::from_slice(&payload).unwrap_or_default();
        if p["critical"]["image"]["docker-manifest-digest"] != digest.as_str() {
            result
                .rejected
                .push(format!("layer {i}: signs another image"));
            continue;
        }
        if let Some(why) = revocation_refusal(&list, (&key, v.version, &v.fingerprint), &digest) {
            result.rejected.push(format!("layer {i}: {why}"));
            continue;
        }
        if !matches!(
            v.state.as_str(),
            "active" | "retiring" | "retired" | "pending"
        ) {
            result.rejected.push(format!(
                "layer {i}: signed by v{} which is {}",
                v.version, v.state
            ));
            continue;
        }
        result.valid.push(v.version);
    }
    Ok(result)
}
