//! The `[mfa]`, `[audit]`, `[signing]`, `[tsa]` and `[store]` sections of keywardd.toml, with
//! their defaults.

use serde::Deserialize;

/// MFA settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MfaConfig {
    /// Require a one-time code for key and principal management and for signing with
    /// keys whose policy says so.
    #[serde(default = "yes")]
    pub required: bool,
    /// Wrong codes before a lockout.
    #[serde(default = "default_failures")]
    pub max_failures: u32,
    /// Lockout length in seconds.
    #[serde(default = "default_lockout")]
    pub lockout_seconds: u64,
}

fn default_failures() -> u32 {
    5
}
fn default_lockout() -> u64 {
    300
}

impl Default for MfaConfig {
    fn default() -> Self {
        Self {
            required: true,
            max_failures: default_failures(),
            lockout_seconds: default_lockout(),
        }
    }
}

/// The audit log's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Record every request (turn off only to measure its cost).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Sign the chain head after this many records...
    #[serde(default = "default_checkpoint_records")]
    pub checkpoint_records: u64,
    /// ...or after this many seconds, whichever comes first.
    #[serde(default = "default_checkpoint_seconds")]
    pub checkpoint_seconds: u64,
}

fn yes() -> bool {
    true
}
fn default_checkpoint_records() -> u64 {
    1000
}
fn default_checkpoint_seconds() -> u64 {
    10
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            checkpoint_records: default_checkpoint_records(),
            checkpoint_seconds: default_checkpoint_seconds(),
        }
    }
}

/// What signature and attestation layers carry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningSettings {
    /// The version's certificate, the CA and an RFC 3161 time-stamp from Keyward's TSA,
    /// as cosign writes them, so that verifiers trust a key by its name through the CA
    /// (default). Off: the signature alone, as `cosign sign --key` writes it; verifiers
    /// must then pin each version's public key.
    #[serde(default = "yes")]
    pub certificates: bool,
}

impl Default for SigningSettings {
    fn default() -> Self {
        Self { certificates: true }
    }
}

/// The time-stamping authority's HTTP endpoint (`POST /v1/timestamp`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TsaSettings {
    /// Queries stamped at once over HTTP; more get 503 with Retry-After, so that
    /// callers of the unauthenticated endpoint cannot crowd signing out of the HSM.
    /// 0: the endpoint is not served (layers are still stamped).
    #[serde(default = "default_http_concurrency")]
    pub http_concurrency: usize,
    /// Queries stamped per second over HTTP at most (0: no cap): the endpoint needs no
    /// credentials, so its share of the machine is bounded. A caller waits for its turn
    /// up to two seconds, then gets 503 with Retry-After.
    #[serde(default = "default_http_per_second")]
    pub http_per_second: u32,
}

fn default_http_per_second() -> u32 {
    200
}

fn default_http_concurrency() -> usize {
    4
}

impl Default for TsaSettings {
    fn default() -> Self {
        Self {
            http_concurrency: default_http_concurrency(),
            http_per_second: default_http_per_second(),
        }
    }
}

/// `[approvals]`: how long finished approvals stay among the current ones.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalSettings {
    /// Finished approvals older than this (`30d`) move to the archive, where
    /// `keyward approvals list --archived` still lists them.
    #[serde(default = "default_keep")]
    pub keep: String,
}

fn default_keep() -> String {
    "30d".into()
}

impl Default for ApprovalSettings {
    fn default() -> Self {
        Self {
            keep: default_keep(),
        }
    }
}

impl ApprovalSettings {
    /// `keep` in seconds, or what is wrong with it.
    pub fn keep_seconds(&self) -> Result<u64, String> {
        let s = keyward_client::duration::parse(&self.keep)
            .map_err(|e| format!("[approvals] keep: {e}"))?;
        if s < 3600 {
            return Err(format!(
                "[approvals] keep {:?} is under an hour: approvals would leave the current list while callers wait on them",
                self.keep
            ));
        }
        Ok(s.min(crate::keys::MAX_PERIOD_SECONDS))
    }
}

/// Where the daemon keeps its state, under `data_dir/store`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    /// The embedded engine, `redb` or `sled`. Unset, a data directory keeps the
    /// engine it holds and a new one gets redb, whose memory stays within a bounded
    /// page cache however much was written; set, the daemon refuses a directory that
    /// holds the other (`keywardd migrate-store` moves a sled store to redb).
    #[serde(default)]
    pub engine: Option<crate::store::Engine>,
}
