//! `keyward signatures list`: the signature ledger.

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
}

impl Show for Vec<proto::LedgerEntry> {
    fn text(&self) {
        for e in self {
            println!(
                "{}  {:<11} {}/{}@{}  {} v{}  by {}",
                e.time, e.kind, e.registry, e.repository, e.digest, e.key, e.version, e.requester
            );
        }
    }
}

impl SignaturesCommand {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let SignaturesCommand::List {
            key,
            key_version,
            since,
            until,
            repository,
        } = self;
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
