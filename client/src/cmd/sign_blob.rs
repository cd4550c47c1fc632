//! `keyward sign-blob FILE...`: one file through `SignDigest` (which waits for
//! approvals when the key needs them), several through `SignDigests`, up to 1,000 per
//! request, with one authorisation per request. Files are hashed here, so that large
//! files never travel to the daemon (Ed25519 keys sign whole messages: those are sent).

use super::approvals::wait_for;
use super::outcome::Outcome;
use super::{Ctx, Show};
use anyhow::Context;
use base64::Engine;
use clap::Args;
use keyward_client::proto;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Items per `SignDigests` request (the daemon's limit).
const BATCH: usize = 1000;

#[derive(Args, Clone)]
#[command(
    after_help = "Examples:\n  keyward sign-blob --key files --output-signature app.tar.sig app.tar\n  keyward -o json sign-blob --key files dist/*.tar   # one request per 1,000 files"
)]
pub struct SignBlob {
    /// Key to sign with (its active version signs).
    #[arg(long)]
    key: String,
    /// Also write the base64 signature to this file (one file only).
    #[arg(long)]
    output_signature: Option<PathBuf>,
    /// If the key needs approvals, wait for them and then print the signature (one
    /// file only: keys that need approvals do not sign batches).
    #[arg(long)]
    wait: bool,
    /// The files to sign; several are signed in batches, one request per 1,000.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

/// A blob signature, base64.
#[derive(Serialize)]
struct BlobSignature {
    key: String,
    version: u32,
    algorithm: String,
    digest_algorithm: String,
    signature: String,
}

/// One file's signature in a batch.
#[derive(Serialize)]
struct FileSignature {
    file: String,
    #[serde(flatten)]
    signature: BlobSignature,
}

impl Show for Vec<FileSignature> {
    /// One file: the signature alone (as `cosign sign-blob` prints it); several: each
    /// signature beside its file.
    fn text(&self) {
        if let [one] = self.as_slice() {
            return println!("{}", one.signature.signature);
        }
        for f in self {
            println!("{}  {}", f.signature.signature, f.file);
        }
    }
}

/// What the daemon signs for `file` with a key of `algorithm`.
fn item(algorithm: &str, file: &Path) -> anyhow::Result<proto::SignItem> {
    use sha2::Digest;
    let data = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let mut item = proto::SignItem {
        file_name: file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        size: data.len() as u64,
        ..Default::default()
    };
    match algorithm {
        "ed25519" => item.message = data,
        "ecdsa-p384" => {
            item.digest_algorithm = "sha384".into();
            item.digest = sha2::Sha384::digest(&data).to_vec();
        }
        _ => {
            item.digest_algorithm = "sha256".into();
            item.digest = sha2::Sha256::digest(&data).to_vec();
        }
    }
    Ok(item)
}

impl SignBlob {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let k = ctx
            .client
            .get_key(proto::GetKeyRequest {
                name: self.key.clone(),
            })
            .await?;
        if let [file] = self.files.as_slice() {
            let item = item(&k.algorithm, file)?;
            let name = file.display().to_string();
            return self.one(ctx, item, name).await;
        }
        if self.output_signature.is_some() || self.wait {
            return Err(super::exit::Failure::Usage(
                "--output-signature and --wait apply to one file; with several, each signature is printed beside its file".into(),
            )
            .into());
        }
        let mut out = Vec::with_capacity(self.files.len());
        for files in self.files.chunks(BATCH) {
            let items = files
                .iter()
                .map(|f| item(&k.algorithm, f))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let r = ctx
                .client
                .sign_digests(proto::SignDigestsRequest {
                    key: self.key.clone(),
                    items,
                })
                .await?;
            anyhow::ensure!(
                r.signatures.len() == files.len(),
                "the daemon answered {} signatures for {} files",
                r.signatures.len(),
                files.len()
            );
            for (file, s) in files.iter().zip(r.signatures) {
                out.push(FileSignature {
                    file: file.display().to_string(),
                    signature: BlobSignature {
                        key: r.key.clone(),
                        version: r.version,
                        algorithm: r.algorithm.clone(),
                        digest_algorithm: s.digest_algorithm,
                        signature: base64::engine::general_purpose::STANDARD.encode(&s.signature),
                    },
                });
            }
        }
        ctx.show(&Outcome::signed(out));
        Ok(())
    }

    async fn one(self, ctx: &Ctx, item: proto::SignItem, file: String) -> anyhow::Result<()> {
        let c = &ctx.client;
        let mut r = c
            .sign_digest(proto::SignDigestRequest {
                key: self.key,
                digest_algorithm: item.digest_algorithm,
                digest: item.digest,
                message: item.message,
                file_name: item.file_name,
                size: item.size,
            })
            .await?;
        let mut approved_by = Vec::new();
        if r.pending {
            if !self.wait {
                ctx.show(&Outcome::<FileSignature>::waiting(&r.approval_id));
                return Err(super::exit::Failure::Pending(r.approval_id).into());
            }
            let a = wait_for(c, &r.approval_id).await?;
            r.signature = base64::engine::general_purpose::STANDARD
                .decode(&a.signature)
                .context("the approval's signature is not base64")?;
            r.version = a.version.unwrap_or_default();
            approved_by = a.approved_by;
        }
        let b64 = base64::engine::general_purpose::STANDARD.encode(&r.signature);
        if let Some(p) = &self.output_signature {
            std::fs::write(p, &b64).with_context(|| format!("cannot write {}", p.display()))?;
        }
        let signed = vec![FileSignature {
            file,
            signature: BlobSignature {
                key: r.key,
                version: r.version,
                algorithm: r.algorithm,
                digest_algorithm: r.digest_algorithm,
                signature: b64,
            },
        }];
        ctx.show(&match approved_by.is_empty() {
            true => Outcome::signed(signed),
            false => Outcome::approved(&r.approval_id, approved_by, signed),
        });
        Ok(())
    }
}
