//! Signing container images: cosign simple-signing signatures and in-toto attestations
//! pushed next to the image, verification, and the signature ledger.

pub mod formats;
pub mod ledger;
pub mod verify;

use crate::hsm::{Algorithm, DigestAlgorithm, SignInput};
use crate::keys::{KeyError, KeyRecord, KeyRegistry, VersionState};
use crate::registry::{ImageRef, Registries, RegistryError, sha256_digest};
use crate::store::StoreError;
use base64::Engine;
use formats::*;
use ledger::{LedgerEntry, SignatureLedger};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use time::OffsetDateTime;

/// Errors of image signing, verification and the ledger.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Key lookup or signing failed.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The registry failed or refused.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The request is malformed.
    #[error("{0}")]
    InvalidArgument(String),
    /// Policy refuses the request.
    #[error("{0}")]
    PermissionDenied(String),
    /// The ledger could not be written or read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One signature or attestation made (or found already present).
#[derive(Debug, Clone)]
pub struct Signed {
    /// The reference as requested (or the index's, for platform manifests).
    pub reference: String,
    /// The signed manifest digest.
    pub digest: String,
    /// `registry/repository:sha256-<hex>.sig`.
    pub pushed_to: String,
    /// Key version used.
    pub version: u32,
    /// True when this key version had already signed this digest: nothing was added.
    pub already_signed: bool,
}

/// A signature that verified.
#[derive(Debug, Clone)]
pub struct Verified {
    /// Key version that made it.
    pub version: u32,
    /// That version's state.
    pub state: VersionState,
    /// The payload's docker-reference.
    pub docker_reference: String,
    /// The payload's optional fields.
    pub optional: BTreeMap<String, String>,
}

/// What `verify` found.
#[derive(Debug, Clone)]
pub struct Verification {
    /// The image digest checked.
    pub digest: String,
    /// Signatures by this key that verify.
    pub valid: Vec<Verified>,
    /// Other signature layers (other keys, tampered, revoked versions, other images).
    pub rejected: Vec<String>,
}

/// What a ledger entry is made from.
struct Recorded<'a> {
    kind: &'static str,
    image: &'a ImageRef,
    digest: &'a str,
    key: &'a str,
    version: u32,
    fingerprint: String,
    requester: &'a str,
    pushed_to: &'a str,
}

/// Signs images with keys from the registry of keys and pushes the results.
pub struct ImageSigner {
    keys: Arc<KeyRegistry>,
    registries: Registries,
    ledger: SignatureLedger,
    /// One writer per signature tag at a time, so that concurrent signers of the same
    /// image never drop each other's layers.
    tag_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for ImageSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageSigner").finish_non_exhaustive()
    }
}

fn check_scope(rec: &KeyRecord, repository: &str) -> Result<(), ImageError> {
    if rec.scope.is_empty() {
        return Ok(());
    }
    let opts = glob::MatchOptions {
        require_literal_separator: true,
        ..Default::default()
    };
    let allowed = rec.scope.iter().any(|g| {
        glob::Pattern::new(g)
            .map(|p| p.matches_with(repository, opts))
            .unwrap_or(false)
    });
    if allowed {
        Ok(())
    } else {
        Err(ImageError::PermissionDenied(format!(
            "key {:?} may sign only repositories matching {}; {repository} matches none",
            rec.name,
            rec.scope.join(", ")
        )))
    }
}

fn image_capable(rec: &KeyRecord) -> Result<(), ImageError> {
    if rec.algorithm == Algorithm::RsaPss3072 {
        return Err(ImageError::InvalidArgument(format!(
            "key {:?} is rsa-pss-3072: cosign verifies RSA image signatures as PKCS#1 v1.5 only, so image signing needs an ecdsa-p256, ecdsa-p384 or ed25519 key",
            rec.name
        )));
    }
    Ok(())
}

/// What the HSM signs for a message: SHA-256 digest for ECDSA (what cosign verifies,
/// also for P-384), the message itself for Ed25519.
fn sign_input(algorithm: Algorithm, message: &[u8]) -> SignInput {
    match algorithm {
        Algorithm::Ed25519 => SignInput::Message(message.to_vec()),
        _ => SignInput::Digest(
            DigestAlgorithm::Sha256,
            DigestAlgorithm::Sha256.hash(message),
        ),
    }
}

/// Parses an image reference; a malformed one is an invalid argument.
pub fn parse_ref(reference: &str) -> Result<ImageRef, ImageError> {
    ImageRef::parse(reference).map_err(|e| ImageError::InvalidArgument(e.to_string()))
}

impl ImageSigner {
    /// A signer over keys, registries and a ledger.
    pub fn new(keys: Arc<KeyRegistry>, registries: Registries, ledger: SignatureLedger) -> Self {
        Self {
            keys,
            registries,
            ledger,
            tag_locks: Mutex::new(HashMap::new()),
        }
    }

    /// The keys it signs with.
    pub fn keys(&self) -> &Arc<KeyRegistry> {
        &self.keys
    }

    /// The ledger.
    pub fn ledger(&self) -> &SignatureLedger {
        &self.ledger
    }

    /// Writes a ledger entry for a signature or attestation that reached the registry.
    async fn record(&self, r: Recorded<'_>) -> Result<(), ImageError> {
        let entry = LedgerEntry {
            kind: r.kind.to_string(),
            registry: r.image.parsed.registry().to_string(),
            repository: r.image.parsed.repository().to_string(),
            digest: r.digest.to_string(),
            tag: r.image.parsed.tag().unwrap_or_default().to_string(),
            reference: r.image.original.clone(),
            key: r.key.to_string(),
            version: r.version,
            fingerprint: r.fingerprint,
            time: OffsetDateTime::now_utc(),
            requester: r.requester.to_string(),
            pushed_to: r.pushed_to.to_string(),
        };
        Ok(self.ledger.record(&entry).await?)
    }

    fn tag_lock(&self, key: String) -> Arc<tokio::sync::Mutex<()>> {
        self.tag_locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key)
            .or_default()
            .clone()
    }

    /// Signs the image (and with `recursive` every platform manifest of an index).
    pub async fn sign(
        &self,
        requester: &str,
        key: &str,
        reference: &str,
        annotations: BTreeMap<String, String>,
        recursive: bool,
    ) -> Result<Vec<Signed>, ImageError> {
        let (image, targets) = self.plan(key, reference, recursive).await?;
        self.sign_planned(requester, key, &image, &targets, &annotations)
            .await
    }

    /// Checks the key may sign the image and resolves the digests a signature would
    /// cover (the index and, with `recursive`, every platform manifest).
    pub async fn plan(
        &self,
        key: &str,
        reference: &str,
        recursive: bool,
    ) -> Result<(ImageRef, Vec<String>), ImageError> {
        let image = parse_ref(reference)?;
        let rec = self.keys.get(key)?;
        image_capable(&rec)?;
        check_scope(&rec, &image.repository())?;
        let manifest = self.registries.manifest(&image.parsed).await?;
        let mut targets = vec![manifest.digest.clone()];
        if recursive {
            let v: Value = serde_json::from_slice(&manifest.bytes).unwrap_or_default();
            for m in v["manifests"].as_array().into_iter().flatten() {
                if let Some(d) = m["digest"].as_str() {
                    targets.push(d.to_string());
                }
            }
        }
        Ok((image, targets))
    }

    /// Signs digests resolved by [`ImageSigner::plan`] (an approved request signs
    /// exactly what was approved, even if the tag moved since).
    pub async fn sign_planned(
        &self,
        requester: &str,
        key: &str,
        image: &ImageRef,
        targets: &[String],
        annotations: &BTreeMap<String, String>,
    ) -> Result<Vec<Signed>, ImageError> {
        let rec = self.keys.get(key)?;
        let mut out = Vec::new();
        for digest in targets {
            out.push(
                self.sign_digest(requester, &rec.name, image, digest, annotations)
                    .await?,
            );
        }
        Ok(out)
    }

    async fn sign_digest(
        &self,
        requester: &str,
        key: &str,
        image: &ImageRef,
        digest: &str,
        annotations: &BTreeMap<String, String>,
    ) -> Result<Signed, ImageError> {
        let sig_tag = tag_for(digest, "sig");
        let sig_ref = image.with_tag(&sig_tag);
        let pushed_to = format!("{}:{sig_tag}", image.repository());
        let lock = self.tag_lock(pushed_to.clone());
        let _one_writer = lock.lock().await;

        let identity = image.identity();
        let existing = self.registries.manifest_if_exists(&sig_ref).await?;
        let mut layers = existing_layers(existing.as_ref().map(|m| m.bytes.as_slice()));
        let rec = self.keys.get(key)?;
        let active = rec
            .active()
            .ok_or_else(|| KeyError::NoActiveVersion(key.to_string()))?;
        let duplicate = layers.iter().any(|l| {
            l["annotations"][FINGERPRINT_ANNOTATION] == active.fingerprint.as_str()
                && l["annotations"][REFERENCE_ANNOTATION] == identity.as_str()
        });
        if duplicate {
            return Ok(Signed {
                reference: image.original.clone(),
                digest: digest.to_string(),
                pushed_to,
                version: active.version,
                already_signed: true,
            });
        }

        let mut optional = annotations.clone();
        optional.insert("dev.keyward/key".into(), key.to_string());
        optional.insert("dev.keyward/requester".into(), requester.to_string());
        let payload = simple_signing_payload(&identity, digest, &optional);
        let (version, signature) = self
            .keys
            .sign(key, sign_input(rec.algorithm, &payload))
            .await?;
        let fingerprint = rec
            .version(version)
            .map(|v| v.fingerprint.clone())
            .unwrap_or_default();
        let payload_digest = self
            .registries
            .push_blob(&sig_ref, payload.clone(), false)
            .await?;
        let mut ann = BTreeMap::new();
        ann.insert(
            SIGNATURE_ANNOTATION.to_string(),
            base64::engine::general_purpose::STANDARD.encode(&signature),
        );
        ann.insert(FINGERPRINT_ANNOTATION.to_string(), fingerprint.clone());
        ann.insert(KEY_ANNOTATION.to_string(), format!("{key}/v{version}"));
        ann.insert(REFERENCE_ANNOTATION.to_string(), identity.clone());
        layers.push(layer(SIMPLE_SIGNING, &payload, &payload_digest, ann));
        self.push_manifest(&sig_ref, &layers).await?;

        self.record(Recorded {
            kind: "signature",
            image,
            digest,
            key,
            version,
            fingerprint,
            requester,
            pushed_to: &pushed_to,
        })
        .await?;
        Ok(Signed {
            reference: image.original.clone(),
            digest: digest.to_string(),
            pushed_to,
            version,
            already_signed: false,
        })
    }

    /// Blobs first (a registry refuses a manifest naming unknown blobs), then the
    /// manifest in one PUT: a failed push leaves the old manifest in place.
    async fn push_manifest(
        &self,
        tag_ref: &oci_client::Reference,
        layers: &[Value],
    ) -> Result<(), ImageError> {
        let config = config_blob();
        let config_digest = sha256_digest(&config);
        self.registries
            .push_blob(tag_ref, config.clone(), true)
            .await?;
        let manifest = image_manifest(&config, &config_digest, layers);
        self.registries
            .push_manifest(tag_ref, manifest, crate::registry::OCI_MANIFEST)
            .await?;
        Ok(())
    }

    /// Creates an in-toto attestation about the image, signed in a DSSE envelope, and
    /// appends it to `sha256-<hex>.att`.
    pub async fn attest(
        &self,
        requester: &str,
        key: &str,
        reference: &str,
        predicate_type_name: &str,
        predicate: &[u8],
    ) -> Result<(Signed, String), ImageError> {
        let image = parse_ref(reference)?;
        let predicate_type =
            predicate_type(predicate_type_name).map_err(ImageError::InvalidArgument)?;
        let predicate: Value = serde_json::from_slice(predicate).map_err(|e| {
            ImageError::InvalidArgument(format!("the predicate is not valid JSON: {e}"))
        })?;
        let rec = self.keys.get(key)?;
        image_capable(&rec)?;
        check_scope(&rec, &image.repository())?;
        let manifest = self.registries.manifest(&image.parsed).await?;
        let digest = manifest.digest;

        let att_tag = tag_for(&digest, "att");
        let att_ref = image.with_tag(&att_tag);
        let pushed_to = format!("{}:{att_tag}", image.repository());
        let lock = self.tag_lock(pushed_to.clone());
        let _one_writer = lock.lock().await;

        let statement = statement(&image.repository(), &digest, &predicate_type, predicate);
        let pae = dsse_pae(IN_TOTO, &statement);
        let (version, signature) = self.keys.sign(key, sign_input(rec.algorithm, &pae)).await?;
        let fingerprint = rec
            .version(version)
            .map(|v| v.fingerprint.clone())
            .unwrap_or_default();
        let envelope = dsse_envelope(&statement, &signature);
        let existing = self.registries.manifest_if_exists(&att_ref).await?;
        let mut layers = existing_layers(existing.as_ref().map(|m| m.bytes.as_slice()));
        let env_digest = self
            .registries
            .push_blob(&att_ref, envelope.clone(), false)
            .await?;
        let mut ann = BTreeMap::new();
        ann.insert(SIGNATURE_ANNOTATION.to_string(), String::new());
        ann.insert(
            PREDICATE_TYPE_ANNOTATION.to_string(),
            predicate_type.clone(),
        );
        ann.insert(FINGERPRINT_ANNOTATION.to_string(), fingerprint.clone());
        ann.insert(KEY_ANNOTATION.to_string(), format!("{key}/v{version}"));
        layers.push(layer(DSSE_ENVELOPE, &envelope, &env_digest, ann));
        self.push_manifest(&att_ref, &layers).await?;

        self.record(Recorded {
            kind: "attestation",
            image: &image,
            digest: &digest,
            key,
            version,
            fingerprint,
            requester,
            pushed_to: &pushed_to,
        })
        .await?;
        Ok((
            Signed {
                reference: image.original.clone(),
                digest,
                pushed_to,
                version,
                already_signed: false,
            },
            predicate_type,
        ))
    }

    /// Checks the image's signatures against every version of the key. Retired
    /// versions still verify; revoked and destroyed ones do not.
    pub async fn verify(&self, key: &str, reference: &str) -> Result<Verification, ImageError> {
        let image = parse_ref(reference)?;
        let rec = self.keys.get(key)?;
        let manifest = self.registries.manifest(&image.parsed).await?;
        let digest = manifest.digest;
        let sig_ref = image.with_tag(&tag_for(&digest, "sig"));
        let existing = self.registries.manifest_if_exists(&sig_ref).await?;
        let layers = existing_layers(existing.as_ref().map(|m| m.bytes.as_slice()));
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut result = Verification {
            digest: digest.clone(),
            valid: Vec::new(),
            rejected: Vec::new(),
        };
        for (i, l) in layers.iter().enumerate() {
            if l["mediaType"] != SIMPLE_SIGNING {
                continue;
            }
            let (Some(blob_digest), Some(sig_b64)) = (
                l["digest"].as_str(),
                l["annotations"][SIGNATURE_ANNOTATION].as_str(),
            ) else {
                result
                    .rejected
                    .push(format!("layer {i}: no digest or signature"));
                continue;
            };
            let payload = match self.registries.blob(&sig_ref, blob_digest).await {
                Ok(p) => p,
                Err(e) => {
                    result.rejected.push(format!("layer {i}: {e}"));
                    continue;
                }
            };
            let Ok(signature) = b64.decode(sig_b64) else {
                result
                    .rejected
                    .push(format!("layer {i}: signature is not base64"));
                continue;
            };
            let signer = rec
                .versions
                .iter()
                .find(|v| verify::verifies(rec.algorithm, &v.public_key, &payload, &signature));
            let Some(v) = signer else {
                result.rejected.push(format!(
                    "layer {i}: not signed by any version of key {key:?}"
                ));
                continue;
            };
            if matches!(v.state, VersionState::Revoked | VersionState::Destroyed) {
                result.rejected.push(format!(
                    "layer {i}: signed by v{} which is {}",
                    v.version,
                    v.state.as_str()
                ));
                continue;
            }
            let p: Value = serde_json::from_slice(&payload).unwrap_or_default();
            if p["critical"]["image"]["docker-manifest-digest"] != digest.as_str() {
                result
                    .rejected
                    .push(format!("layer {i}: signs another image"));
                continue;
            }
            let docker_reference = p["critical"]["identity"]["docker-reference"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let repo_of_ref = docker_reference
                .rsplit_once(':')
                .filter(|(_, t)| !t.contains('/'))
                .map(|(r, _)| r.to_string())
                .unwrap_or(docker_reference.clone());
            if repo_of_ref != image.repository() {
                result
                    .rejected
                    .push(format!("layer {i}: signed for {docker_reference}"));
                continue;
            }
            let optional = p["optional"]
                .as_object()
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect()
                })
                .unwrap_or_default();
            result.valid.push(Verified {
                version: v.version,
                state: v.state,
                docker_reference,
                optional,
            });
        }
        Ok(result)
    }
}
