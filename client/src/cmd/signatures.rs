//! `keyward signatures list`: the signature ledger; `keyward signatures revoke`: one
//! image's signature by a key, withdrawn without revoking the key.

use super::{Ctx, Show};
use clap::Subcommand;
use keyward_client::proto;

#[derive(Subcommand, Clone)]
pub enum SignaturesCommand {
    /// Signatures and attestations Keyward pushed, oldest first.
    List {
        /// Only this key.
        #[arg(long)]
        key: Option<String>,
        /// Only this version of the key.
        #[arg(long = "version", requires = "key")]
        key_version: Option<u32>,
        /// Signed at or after this RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// Signed before this RFC 3339 time.
        #[arg(long)]
        until: Option<String>,
        /// Only registry/repository names matching this glob.
        #[arg(long)]
        repository: Option<String>,
    },
    /// Revoke one image's signature by a key (not the key): verification refuses it and
    /// the revocation list names it (needs the revoker role). Irreversible.
    Revoke {
        /// registry/repository@sha256:... (a signature covers a digest).
        image: String,
        /// The key that signed it.
        #[arg(long)]
        key: String,
        /// Why (default cessation: the image must no longer be trusted).
        #[arg(long, value_parser = ["key-compromise", "superseded", "cessation"])]
        reason: Option<String>,
    },
}

impl Show for proto::RevokeSignatureResponse {
    fn text(&self) {
        let versions: Vec<String> = self.versions.iter().map(|v| format!("v{v}")).collect();
        println!(
            "revoked the signature of {} by {}: verification refuses it, and the revocation list names it",
            self.digest,
            versions.join(", ")
        );
    }
}

impl Show for Vec<proto::LedgerEntry> {
    fn text(&self) {
        let rows: Vec<Vec<String>> = self
            .iter()
            .map(|e| {
                let what = if e.kind == "blob" {
                    let size = super::count(e.size, "byte");
                    format!("{} ({size}, {})", e.reference, e.digest)
                } else {
                    format!("{}/{}@{}", e.registry, e.repository, e.digest)
                };
                let derived = match e.derived_from.as_str() {
                    "" => "-".to_string(),
                    from => from.to_string(),
                };
                vec![
                    e.time.clone(),
                    e.kind.clone(),
                    format!("{} v{}", e.key, e.version),
                    e.requester.clone(),
                    derived,
                    what,
                ]
            })
            .collect();
        super::table(
            &["TIME", "KIND", "KEY", "BY", "RE-SIGNS", "WHAT"],
            &rows,
            "no signatures",
        );
    }
}

impl SignaturesCommand {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let (key, key_version, since, until, repository) = match self {
            SignaturesCommand::List {
                key,
                key_version,
                since,
                until,
                repository,
            } => (key, key_version, since, until, repository),
            SignaturesCommand::Revoke { image, key, reason } => {
                let reason = match reason.as_deref() {
                    Some("key-compromise") => proto::RevocationReason::KeyCompromise,
                    Some("superseded") => proto::RevocationReason::Superseded,
                    _ => proto::RevocationReason::Cessation,
                };
                let r = ctx
                    .client
                    .revoke_signature(proto::RevokeSignatureRequest {
                        reference: image,
                        key,
                        reason: reason as i32,
                    })
                    .await?;
                ctx.show(&r);
                return Ok(());
            }
        };
        let req = proto::ListSignaturesRequest {
            key: key.unwrap_or_default(),
            since: since.unwrap_or_default(),
            until: until.unwrap_or_default(),
            repository: repository.unwrap_or_default(),
            version: key_version,
            ..Default::default()
        };
        ctx.show(&ctx.client.list_signatures_all(req).await?);
        Ok(())
    }
}
