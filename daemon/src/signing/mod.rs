//! Signing container images: cosign simple-signing signatures and in-toto attestations
//! pushed next to the image, verification, and the signature ledger.

pub mod attest;
pub mod blob;
pub mod formats;
pub mod ledger;
mod resign;
pub mod verify;

pub use resign::NotResigned;

use crate::authz::SignPermit;
use crate::hsm::{Algorithm, DigestAlgorithm, SignInput};
use crate::keys::{KeyError, KeyRecord, KeyRegistry, VersionState};
use crate::oci::{ImageRef, Registries, RegistryError, sha256_digest};
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
    /// For a deferred ledger entry: the entry the caller records (also when the
    /// signature was found already made: an interrupted run may have pushed it).
    pub ledger: Option<LedgerEntry>,
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
    /// The caller records the entry itself (returned in [`Signed::ledger`]), in its
    /// own transaction: a campaign, with its item's result.
    deferred: bool,
    kind: &'static str,
    image: &'a ImageRef,
    digest: &'a str,
    /// Who signed with which key version: the ledger entry names what it pinned.
    permit: &'a SignPermit,
    pushed_to: &'a str,
}

/// The annotations that name the signer on a signature or attestation layer: the key
/// version's fingerprint and `name/vN`, as the permit pinned them.
fn signer_annotations(permit: &SignPermit) -> BTreeMap<String, String> {
    let v = permit.version();
    BTreeMap::from([
        (
            FINGERPRINT_ANNOTATION.to_string(),
            v.fingerprint().to_string(),
        ),
        (KEY_ANNOTATION.to_string(), v.label()),
    ])
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

    /// The ledger entry of a signature or attestation that reached the registry.
    fn entry(r: &Recorded<'_>) -> LedgerEntry {
        LedgerEntry {
            kind: r.kind.to_string(),
            registry: r.image.parsed.registry().to_string(),
            repository: r.image.parsed.repository().to_string(),
            digest: r.digest.to_string(),
            tag: r.image.parsed.tag().unwrap_or_default().to_string(),
            reference: r.image.original.clone(),
            key: r.permit.key_name().to_string(),
            version: r.permit.version().number(),
            fingerprint: r.permit.version().fingerprint().to_string(),
            time: OffsetDateTime::now_utc(),
            requester: r.permit.principal().to_string(),
            pushed_to: r.pushed_to.to_string(),
            size: 0,
            request_hash: String::new(),
        }
    }

    /// The lock of one signature tag. Locks nobody holds are dropped once there are
    /// many, so that requests naming ever new images cannot grow the map for ever.
    fn tag_lock(&self, key: String) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.tag_locks.lock().unwrap_or_else(|p| p.into_inner());
        if locks.len() >= 1024 {
            locks.retain(|_, l| Arc::strong_count(l) > 1);
        }
        locks.entry(key).or_default().clone()
    }

    /// Signs the image (and with `recursive` every platform manifest of an index).
    pub async fn sign(
        &self,
        permit: &SignPermit,
        reference: &str,
        annotations: BTreeMap<String, String>,
        recursive: bool,
    ) -> Result<Vec<Signed>, ImageError> {
        let (image, targets) = self
            .plan(permit.key_name(), reference, recursive, &annotations)
            .await?;
        self.sign_planned(permit, &image, &targets, &annotations)
            .await
    }

    /// Checks the key may sign the image with these annotations (the `dev.keyward/`
    /// ones are Keyward's) and resolves the digests a signature would cover (the index
    /// and, with `recursive`, every platform manifest). Every signing request, direct or
    /// filed for approval, is planned here.
    pub async fn plan(
        &self,
        key: &str,
        reference: &str,
        recursive: bool,
        annotations: &BTreeMap<String, String>,
    ) -> Result<(ImageRef, Vec<String>), ImageError> {
        if let Some(k) = annotations.keys().find(|k| k.starts_with(RESERVED_PREFIX)) {
            return Err(ImageError::InvalidArgument(format!(
                "annotation {k:?} is reserved: Keyward sets the {RESERVED_PREFIX} annotations itself (key, version, fingerprint, requester); choose another name"
            )));
        }
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
    /// The key's scope and algorithm are checked here, on the signing path itself.
    pub async fn sign_planned(
        &self,
        permit: &SignPermit,
        image: &ImageRef,
        targets: &[String],
        annotations: &BTreeMap<String, String>,
    ) -> Result<Vec<Signed>, ImageError> {
        let rec = permit.key();
        image_capable(rec)?;
        check_scope(rec, &image.repository())?;
        let mut out = Vec::new();
        for digest in targets {
            out.push(
                self.sign_digest(permit, image, digest, annotations, false)
                    .await?,
            );
        }
        Ok(out)
    }

    /// Signs one digest and appends the signature to its `.sig` tag. The tag is
    /// read-modify-write: after pushing, the tag is read again, and if another writer
    /// (another daemon) replaced it meanwhile without our layer, our layer is appended
    /// to what is there now and pushed again, so that no writer's signature is lost.
    /// `deferred`: the caller records the ledger entry (see [`Signed::ledger`]).
    pub(crate) async fn sign_digest(
        &self,
        permit: &SignPermit,
        image: &ImageRef,
        digest: &str,
        annotations: &BTreeMap<String, String>,
        deferred: bool,
    ) -> Result<Signed, ImageError> {
        let sig_tag = tag_for(digest, "sig");
        let sig_ref = image.with_tag(&sig_tag);
        let pushed_to = format!("{}:{sig_tag}", image.repository());
        let lock = self.tag_lock(pushed_to.clone());
        let _one_writer = lock.lock().await;

        let identity = image.identity();
        let (key, requester) = (permit.key_name(), permit.principal());
        let (rec, active) = (permit.key(), permit.version().version());
        let recorded = Recorded {
            deferred,
            kind: "signature",
            image,
            digest,
            permit,
            pushed_to: &pushed_to,
        };
        let mut ours: Option<Value> = None;
        for _ in 0..5 {
            let existing = self.registries.manifest_if_exists(&sig_ref).await?;
            let mut layers = existing_layers(existing.as_ref().map(|m| m.bytes.as_slice()));
            if let Some(l) = &ours {
                if layers.iter().any(|x| x["digest"] == l["digest"]) {
                    return self.published(recorded).await;
                }
                tracing::warn!(signature = %sig_ref, "another writer replaced the signature tag without our layer; appending it again");
            } else if self
                .already_signed(&sig_ref, &layers, rec, active, digest, &identity)
                .await
            {
                return Ok(Signed {
                    reference: image.original.clone(),
                    digest: digest.to_string(),
                    pushed_to: pushed_to.clone(),
                    version: active.version,
                    already_signed: true,
                    ledger: deferred.then(|| Self::entry(&recorded)),
                });
            }
            let l = match &ours {
                Some(l) => l.clone(),
                None => {
                    let mut optional = annotations.clone();
                    optional.insert(KEY_ANNOTATION.into(), key.to_string());
                    optional.insert(VERSION_OPTIONAL.into(), active.version.to_string());
                    optional.insert(FINGERPRINT_ANNOTATION.into(), active.fingerprint.clone());
                    optional.insert("dev.keyward/requester".into(), requester.to_string());
                    let payload = simple_signing_payload(&identity, digest, &optional);
                    let signature = self
                        .keys
                        .sign(permit, sign_input(rec.algorithm, &payload))
                        .await?;
                    let payload_digest = self
                        .registries
                        .push_blob(&sig_ref, payload.clone(), false)
                        .await?;
                    let mut ann = signer_annotations(permit);
                    ann.insert(
                        SIGNATURE_ANNOTATION.to_string(),
                        base64::engine::general_purpose::STANDARD.encode(&signature),
                    );
                    ann.insert(REFERENCE_ANNOTATION.to_string(), identity.clone());
                    let l = layer(SIMPLE_SIGNING, &payload, &payload_digest, ann);
                    ours = Some(l.clone());
                    l
                }
            };
            layers.push(l);
            self.push_manifest(&sig_ref, &layers).await?;
        }
        Err(ImageError::Registry(RegistryError::Protocol {
            registry: image.parsed.registry().to_string(),
            detail: format!(
                "the signature tag {pushed_to} kept changing under us; our signature was not kept, try again"
            ),
        }))
    }

    /// Pushes the manifest with its new layer, then records the ledger entry (only
    /// what reached the registry is recorded), and says what was made.
    async fn publish(
        &self,
        tag_ref: &oci_client::Reference,
        layers: &[Value],
        r: Recorded<'_>,
    ) -> Result<Signed, ImageError> {
        self.push_manifest(tag_ref, layers).await?;
        self.published(r).await
    }

    /// Records what reached the registry (or hands the entry to the caller) and says
    /// what was made.
    async fn published(&self, r: Recorded<'_>) -> Result<Signed, ImageError> {
        let entry = Self::entry(&r);
        let ledger = if r.deferred {
            Some(entry)
        } else {
            self.ledger.record(&entry).await?;
            None
        };
        Ok(Signed {
            reference: r.image.original.clone(),
            digest: r.digest.to_string(),
            pushed_to: r.pushed_to.to_string(),
            version: r.permit.version().number(),
            already_signed: false,
            ledger,
        })
    }

    /// Whether this key version's signature of this digest for this identity is really
    /// there: decided by verifying the layer's payload and signature with the
    /// version's public key, never from annotations alone (anyone with push rights can
    /// plant a layer that claims to be ours).
    async fn already_signed(
        &self,
        sig_ref: &oci_client::Reference,
        layers: &[Value],
        rec: &KeyRecord,
        active: &crate::keys::KeyVersion,
        digest: &str,
        identity: &str,
    ) -> bool {
        let b64 = base64::engine::general_purpose::STANDARD;
        for l in layers.iter().filter(|l| {
            l["mediaType"] == SIMPLE_SIGNING
                && l["annotations"][FINGERPRINT_ANNOTATION] == active.fingerprint.as_str()
                && l["annotations"][REFERENCE_ANNOTATION] == identity
        }) {
            let (Some(blob), Some(sig)) = (
                l["digest"].as_str(),
                l["annotations"][SIGNATURE_ANNOTATION].as_str(),
            ) else {
                continue;
            };
            let (Ok(payload), Ok(sig)) =
                (self.registries.blob(sig_ref, blob).await, b64.decode(sig))
            else {
                continue;
            };
            let Ok(p) = serde_json::from_slice::<SimpleSigning>(&payload) else {
                continue;
            };
            if p.critical.image.docker_manifest_digest == digest
                && p.critical.identity.docker_reference == identity
                && verify::verifies(rec.algorithm, &active.public_key, &payload, &sig)
            {
                return true;
            }
            tracing::warn!(signature = %sig_ref, layer = blob, "a signature layer claims this key version but does not verify; signing again");
        }
        false
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
            .push_manifest(tag_ref, manifest, crate::oci::OCI_MANIFEST)
            .await?;
        Ok(())
    }
}
