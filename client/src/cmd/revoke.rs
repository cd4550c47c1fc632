//! `keyward key revoke NAME --version N --reason R [--compromised-since T] [--destroy]`.

use super::{Ctx, Show};
use clap::Args;
use keyward_client::proto;
use keyward_proto::names::revocation_reason_name;
use serde::Serialize;

#[derive(Args, Clone)]
#[command(
    after_help = "Examples:\n  keyward key revoke release --version 1 --reason superseded\n  keyward key revoke release --version 1 --reason key-compromise --compromised-since 2026-12-01T00:00:00Z"
)]
pub struct Revoke {
    /// Key name.
    name: String,
    /// The version to revoke (keyward key show NAME lists them).
    #[arg(long)]
    version: u32,
    /// Why: key-compromise (the private key may be in other hands), superseded
    /// (replaced; nothing suggests a compromise) or cessation (no longer used).
    #[arg(long, value_parser = ["key-compromise", "superseded", "cessation"])]
    reason: String,
    /// From when the key must be taken to be in other hands (RFC 3339:
    /// 2026-05-01T12:00:00Z); key-compromise only. Revoking a revoked version again can
    /// only move this earlier.
    #[arg(long)]
    compromised_since: Option<String>,
    /// Also destroy the version's HSM object, so that it can never sign again on any
    /// module (irreversible; the revocation stays on every list). Also for a version
    /// revoked before.
    #[arg(long)]
    destroy: bool,
}

fn reason(r: &str) -> proto::RevocationReason {
    match r {
        "key-compromise" => proto::RevocationReason::KeyCompromise,
        "superseded" => proto::RevocationReason::Superseded,
        "cessation" => proto::RevocationReason::Cessation,
        _ => proto::RevocationReason::Unspecified,
    }
}

/// The key after a revocation, or the approval it waits for; JSON prints the
/// response (`key`, `pending`, `approval_id`, `approvals_needed`).
#[derive(Serialize)]
#[serde(transparent)]
struct Revoked {
    response: proto::RevokeKeyVersionResponse,
    #[serde(skip)]
    version: u32,
}

impl Show for Revoked {
    fn text(&self) {
        let r = &self.response;
        let key = r.key.clone().unwrap_or_default();
        if r.pending {
            let id = &r.approval_id;
            println!(
                "{} v{}: the key's policy makes revocations wait for {} by other revokers; nothing is revoked yet: keyward approvals show {id}; keyward approve {id}",
                key.name,
                self.version,
                super::count(r.approvals_needed, "approval")
            );
            return;
        }
        if let Some(v) = key.versions.iter().find(|v| v.version == self.version) {
            let since = match v.compromised_since.as_str() {
                "" => String::new(),
                t => format!(", compromised since {t}"),
            };
            println!(
                "{} v{} revoked at {} by {} ({}{since}): it never signs again{}.",
                key.name,
                v.version,
                v.revoked_at,
                v.revoked_by,
                revocation_reason_name(v.revocation_reason),
                if v.state == proto::VersionState::Destroyed as i32 {
                    ", and its HSM object is destroyed"
                } else {
                    ""
                },
            );
            println!(
                "  Refused from now on by: keyward verify (online and --offline, which read the signed revocation list),
                   notation and openssl -crl_check (through the CRL).
                   Still accepted by: cosign verify --key or by certificate identity, Kyverno, policy-controller and podman
                   (they read no revocation list). For those, take its layers off the images:
                   keyward incident revoke --key {} --version {} --compromised-since TIME --remove-signatures",
                key.name, v.version,
            );
        }
        if key.active_version == 0 {
            println!(
                "{} has no active version now: keyward key rotate {} makes one",
                key.name, key.name
            );
        }
    }
}

impl Revoke {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let response = ctx
            .client
            .revoke_key_version(proto::RevokeKeyVersionRequest {
                name: self.name.clone(),
                version: self.version,
                reason: reason(&self.reason) as i32,
                compromised_since: self.compromised_since.unwrap_or_default(),
                destroy: self.destroy,
            })
            .await?;
        let pending = response.pending.then(|| response.approval_id.clone());
        ctx.show(&Revoked {
            response,
            version: self.version,
        });
        match pending {
            Some(id) => Err(super::exit::Failure::Pending(id).into()),
            None => Ok(()),
        }
    }
}
