//! Wire formats: cosign "simple signing" payloads and signature manifests, in-toto
//! statements in DSSE envelopes, stored the way cosign stores them.

use base64::Engine;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Layer media type of a cosign simple-signing payload.
pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// Layer media type of a DSSE envelope (attestations).
pub const DSSE_ENVELOPE: &str = "application/vnd.dsse.envelope.v1+json";
/// Annotation carrying the base64 signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// Annotation naming an attestation's predicate type.
pub const PREDICATE_TYPE_ANNOTATION: &str = "predicateType";
/// Annotation with the fingerprint of the key version that signed.
pub const FINGERPRINT_ANNOTATION: &str = "dev.keyward/fingerprint";
/// The signing key version's certificate (PEM), as cosign writes it.
pub const CERTIFICATE_ANNOTATION: &str = "dev.sigstore.cosign/certificate";
/// The chain above that certificate (the Keyward CA, PEM), as cosign writes it.
pub const CHAIN_ANNOTATION: &str = "dev.sigstore.cosign/chain";
/// An RFC 3161 time-stamp of the signature (or DSSE envelope), as cosign writes it:
/// `{"SignedRFC3161Timestamp": "<base64 DER TimeStampResp>"}`.
pub const TIMESTAMP_ANNOTATION: &str = "dev.sigstore.cosign/rfc3161timestamp";
/// Annotation with `key/vN`.
pub const KEY_ANNOTATION: &str = "dev.keyward/key";
/// Annotation with the signed docker-reference.
pub const REFERENCE_ANNOTATION: &str = "dev.keyward/docker-reference";
/// Annotations under this prefix are Keyward's own; a request cannot set them.
pub const RESERVED_PREFIX: &str = "dev.keyward/";
/// The payload's `optional` field naming the key version that signed.
pub const VERSION_OPTIONAL: &str = "dev.keyward/version";
/// in-toto payload type in DSSE.
pub const IN_TOTO: &str = "application/vnd.in-toto+json";

/// `sha256-<hex>.sig` / `.att` for an image digest.
pub fn tag_for(digest: &str, suffix: &str) -> String {
    format!("{}.{suffix}", digest.replace(':', "-"))
}

/// The simple-signing payload. `identity` is the reference as requested (with its
/// tag); `optional` carries annotations and Keyward's facts.
pub fn simple_signing_payload(
    identity: &str,
    digest: &str,
    optional: &BTreeMap<String, String>,
) -> Vec<u8> {
    let mut v = json!({
        "critical": {
            "identity": {"docker-reference": identity},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature"
        }
    });
    if !optional.is_empty() {
        v["optional"] = json!(optional);
    }
    serde_json::to_vec(&v).unwrap_or_default()
}

/// A cosign simple-signing payload as read back from a registry.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct SimpleSigning {
    /// What the signature is about.
    pub critical: Critical,
}

/// `critical` of a simple-signing payload.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Critical {
    /// The identity the signature claims.
    pub identity: Identity,
    /// The signed manifest.
    pub image: SignedImage,
}

/// `critical.identity`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Identity {
    /// The reference as requested.
    #[serde(rename = "docker-reference")]
    pub docker_reference: String,
}

/// `critical.image`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct SignedImage {
    /// `sha256:<hex>`.
    #[serde(rename = "docker-manifest-digest")]
    pub docker_manifest_digest: String,
}

/// A layer descriptor with annotations.
pub fn layer(
    media_type: &str,
    data: &[u8],
    digest: &str,
    annotations: BTreeMap<String, String>,
) -> Value {
    json!({
        "mediaType": media_type,
        "size": data.len(),
        "digest": digest,
        "annotations": annotations,
    })
}

/// The layers of an existing signature/attestation manifest (empty if none).
pub fn existing_layers(manifest: Option<&[u8]>) -> Vec<Value> {
    manifest
        .and_then(|m| serde_json::from_slice::<Value>(m).ok())
        .and_then(|v| v["layers"].as_array().cloned())
        .unwrap_or_default()
}

/// The config blob of signature and attestation manifests. Verifiers read only the
/// layers, so one constant config serves every manifest of a repository and is uploaded
/// once.
pub fn config_blob() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "architecture": "",
        "config": {},
        "created": "0001-01-01T00:00:00Z",
        "history": [],
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": []}
    }))
    .unwrap_or_default()
}

/// An OCI image manifest over a config blob and layers.
pub fn image_manifest(config: &[u8], config_digest: &str, layers: &[Value]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": crate::oci::OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "size": config.len(),
            "digest": config_digest,
        },
        "layers": layers,
    }))
    .unwrap_or_default()
}

/// DSSE pre-authentication encoding: what a DSSE signature covers.
pub fn dsse_pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// A DSSE envelope with one signature.
pub fn dsse_envelope(payload: &[u8], signature: &[u8]) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD;
    serde_json::to_vec(&json!({
        "payloadType": IN_TOTO,
        "payload": b64.encode(payload),
        "signatures": [{"keyid": "", "sig": b64.encode(signature)}],
    }))
    .unwrap_or_default()
}

/// An in-toto statement about one image.
pub fn statement(subject: &str, digest: &str, predicate_type: &str, predicate: Value) -> Vec<u8> {
    let hex = digest.trim_start_matches("sha256:");
    serde_json::to_vec(&json!({
        "_type": "https://in-toto.io/Statement/v0.1",
        "predicateType": predicate_type,
        "subject": [{"name": subject, "digest": {"sha256": hex}}],
        "predicate": predicate,
    }))
    .unwrap_or_default()
}

/// cosign's `--type` names and their predicate type URIs; anything with `://` is taken
/// as a custom URI.
pub fn predicate_type(name: &str) -> Result<String, String> {
    let known = [
        ("slsaprovenance", "https://slsa.dev/provenance/v0.2"),
        ("slsaprovenance02", "https://slsa.dev/provenance/v0.2"),
        ("slsaprovenance1", "https://slsa.dev/provenance/v1"),
        ("spdx", "https://spdx.dev/Document"),
        ("spdxjson", "https://spdx.dev/Document"),
        ("cyclonedx", "https://cyclonedx.org/bom"),
        ("vuln", "https://cosign.sigstore.dev/attestation/vuln/v1"),
        ("custom", "https://cosign.sigstore.dev/attestation/v1"),
    ];
    if let Some((_, uri)) = known.iter().find(|(n, _)| *n == name) {
        return Ok(uri.to_string());
    }
    if name.contains("://") {
        return Ok(name.to_string());
    }
    Err(format!(
        "unknown predicate type {name:?}: use one of {} or a URI",
        known.map(|(n, _)| n).join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_and_pae() {
        assert_eq!(tag_for("sha256:abc", "sig"), "sha256-abc.sig");
        assert_eq!(dsse_pae("t", b"hi"), b"DSSEv1 1 t 2 hi");
    }

    #[test]
    fn payload_names_reference_and_digest() {
        let p = simple_signing_payload("r/a:v1", "sha256:00", &BTreeMap::new());
        let v: Value = serde_json::from_slice(&p).unwrap();
        assert_eq!(v["critical"]["identity"]["docker-reference"], "r/a:v1");
        assert_eq!(
            v["critical"]["image"]["docker-manifest-digest"],
            "sha256:00"
        );
        assert!(v.get("optional").is_none());
    }

    #[test]
    fn predicate_types() {
        assert_eq!(
            predicate_type("slsaprovenance").unwrap(),
            "https://slsa.dev/provenance/v0.2"
        );
        assert_eq!(predicate_type("https://x/y").unwrap(), "https://x/y");
        assert!(predicate_type("sbom").unwrap_err().contains("cyclonedx"));
    }
}
