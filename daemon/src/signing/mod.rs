//! Signing container images: cosign simple-signing signatures and in-toto attestations
//! pushed next to the image, verification, and the signature ledger.

pub mod attest;
pub mod blob;
pub mod formats;
pub mod ledger;
mod prune;
mod push;
mod reattest;
mod resign;
pub mod verify;

pub use prune::Pruned;
pub use resign::NotResigned;

use crate::authz::SignPermit;
use crate::hsm::{Algorithm, DigestAlgorithm, SignInput};
use crate::keys::{KeyError, KeyRecord, KeyRegistry, VersionState};
use crate::oci::{ImageRef, Registries, RegistryError};
use crate::pki::timestamps::{Tsa, TsaError};
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
    /// When the ledger says this version signed it (none: the ledger has no record).
    pub signed_at: Option<OffsetDateTime>,
    /// Whether the version was in service (activated, not yet retired) at that time.
    pub valid_when_signed: Option<bool>,
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

/// Signs images with keys from the registry of keys and pushes the results.
pub struct ImageSigner {
    keys: Arc<KeyRegistry>,
    registries: Registries,
    ledger: SignatureLedger,
    /// One writer per signature tag at a time, so that concurrent signers of the same
    /// image never drop each other's layers.
    tag_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Single signatures revoked without their key: verification refuses them.
    revoked: Option<Arc<crate::revocation::signatures::RevokedSignatures>>,
    /// Time-stamps every signature layer.
    tsa: Option<Arc<Tsa>>,
    /// Layers carry the version's certificate and the CA.
    certificates: bool,
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

/// Whether `rec`'s current scope covers `repository` (`registry/repository`); the
/// error says which patterns it has.
pub fn in_scope(rec: &KeyRecord, repository: &str) -> Result<(), String> {
    check_scope(rec, repository).map_err(|e| e.to_string())
}

fn image_capable(rec: &KeyRecord) -> Result<(), ImageError> {
    if rec.algorithm == Algorithm::RsaPss3072 {
        return Err(ImageError::InvalidArgument(format!(
            "key {:?} is rsa-pss-3072: cosign verifies RSA image signatures as PKCS#1 v1.5 only, so image signing needs an ecdsa-p256, ecdsa-p384, ed25519, rsa-pkcs1-3072 or rsa-pkcs1-4096 key",
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
            revoked: None,
            tsa: None,
            certificates: true,
        }
    }

    /// What every signature layer says of its signer: key, version, fingerprint, and
    /// (unless built [`without_certificates`](Self::without_certificates), as cosign
    /// writes them) the version's certificate and the CA's, so that verifiers can trust
    /// the key by its name through the CA instead of pinning a public key.
    fn signer_annotations(&self, permit: &SignPermit) -> BTreeMap<String, String> {
        let v = permit.version();
        let mut out = BTreeMap::from([
            (
                FINGERPRINT_ANNOTATION.to_string(),
                v.fingerprint().to_string(),
            ),
            (KEY_ANNOTATION.to_string(), v.label()),
        ]);
        let certificate = &v.version().certificate_pem;
        if self.certificates && !certificate.is_empty() {
            out.insert(CERTIFICATE_ANNOTATION.to_string(), certificate.clone());
            out.insert(
                CHAIN_ANNOTATION.to_string(),
                self.keys.ca().certificate_pem.clone(),
            );
        }
        out
    }

    /// Layers carry the signature alone, as `cosign sign --key` writes it: no
    /// certificate, chain or time-stamp (`[signing] certificates = false`).
    pub fn without_certificates(mut self) -> Self {
        self.certificates = false;
        self.tsa = None;
        self
    }

    /// Every signature layer gets an RFC 3161 time-stamp from `tsa` (over the
    /// signature, or over an attestation's DSSE envelope), so that it keeps verifying
    /// after its certificate ends.
    pub fn with_tsa(mut self, tsa: Arc<Tsa>) -> Self {
        self.tsa = Some(tsa);
        self
    }

    /// The time-stamp of `data`, as cosign stores it in a layer's annotations (none
    /// without a TSA). Callers make it while the layer's blob is being pushed.
    async fn stamp(&self, data: &[u8]) -> Result<Option<(String, String)>, ImageError> {
        let Some(tsa) = &self.tsa else {
            return Ok(None);
        };
        let reply = tsa.stamp_data(data).await.map_err(|e| match e {
            TsaError::Hsm(h) => ImageError::Key(KeyError::Hsm(h)),
            other => ImageError::Key(KeyError::FailedPrecondition(format!(
                "the signature could not be time-stamped: {other}"
            ))),
        })?;
        let b64 = base64::engine::general_purpose::STANDARD.encode(reply);
        Ok(Some((
            TIMESTAMP_ANNOTATION.to_string(),
            serde_json::json!({ "SignedRFC3161Timestamp": b64 }).to_string(),
        )))
    }

    /// Verification refuses the signatures in `revoked`.
    pub fn with_revoked_signatures(
        mut self,
        revoked: Arc<crate::revocation::signatures::RevokedSignatures>,
    ) -> Self {
        self.revoked = Some(revoked);
        self
    }

    /// Which versions of `versions` the ledger says signed `digest` in `repository`
    /// (`registry/repository`).
    pub async fn signed_by(
        &self,
        key: &str,
        versions: &[u32],
        image: &ImageRef,
        digest: &str,
    ) -> Result<Vec<u32>, ImageError> {
        let mut out = Vec::new();
        for v in versions {
            if self
                .ledger
                .has_mark_for(
                    key,
                    *v,
                    image.parsed.registry(),
                    image.parsed.repository(),
                    digest,
                )
                .await?
            {
                out.push(*v);
            }
        }
        Ok(out)
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
            time: r.permit.issued_at(),
            requester: r.permit.principal().to_string(),
            pushed_to: r.pushed_to.to_string(),
            size: 0,
            request_hash: String::new(),
            derived_from: String::new(),
        }
    }

    /// The lock of one signature tag. Locks nobody holds are dropped once there are
    /// many, so that requests naming ever new images cannot grow the map for ever.
    pub(super) fn tag_lock(&self, key: String) -> Arc<tokio::sync::Mutex<()>> {
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
}
