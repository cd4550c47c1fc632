//! Job and item records as stored (`Namespace::Jobs`, `Namespace::JobItems`, both
//! MAC'd: a job signs with the authority of whoever started it, so a record planted in
//! the store must not be able to start or steer one).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Where a job is in its life.
///
/// ```text
/// queued -> running -> done | failed      (failed: some items failed; `retry` re-queues them)
///    \         |  ^
///     \        v  |
///      \---> paused        cancelled (from queued, running or paused)
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobState {
    /// Waiting for the runner.
    Queued,
    /// The runner works on it.
    Running,
    /// Stopped by a user; `resume` goes on where it stopped.
    Paused,
    /// Every item done or skipped.
    Done,
    /// Finished, with items that failed (see the failures).
    Failed,
    /// Stopped for good by a user.
    Cancelled,
}

impl JobState {
    /// The name users see and type.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Paused => "paused",
            JobState::Done => "done",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    /// Parses a state name; the error lists the valid ones.
    pub fn parse(s: &str) -> Result<Self, String> {
        [
            JobState::Queued,
            JobState::Running,
            JobState::Paused,
            JobState::Done,
            JobState::Failed,
            JobState::Cancelled,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
        .ok_or_else(|| {
            format!(
                "unknown job state {s:?}; states: queued, running, paused, done, failed, cancelled"
            )
        })
    }

    /// Whether the runner has work to do for a job in this state.
    pub fn is_runnable(self) -> bool {
        matches!(self, JobState::Queued | JobState::Running)
    }

    /// Whether the job is over (nothing will change it but `retry`).
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            JobState::Done | JobState::Failed | JobState::Cancelled
        )
    }
}

/// What a re-signing campaign signs: every image the ledger shows signed by
/// `key` version `from_version` (and matching the filters), with the key's active
/// version at the time each item runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResignSpec {
    /// The key.
    pub key: String,
    /// The version whose signatures are re-made.
    pub from_version: u32,
    /// Only repositories (`registry/repository`) matching this glob.
    #[serde(default)]
    pub repository: Option<String>,
    /// Only signatures made at or after this time.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub since: Option<OffsetDateTime>,
    /// Only signatures made before this time (an incident: before the compromise).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub until: Option<OffsetDateTime>,
    /// Set when a rotation started it: that version becomes `retired` when the
    /// campaign is done.
    #[serde(default)]
    pub retire_when_done: bool,
}

/// What a prune removes: the signature layers of one retired key version, from the
/// images the active version has signed too, once the policy's overlap is over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruneSpec {
    /// The key.
    pub key: String,
    /// The retired version whose layers go.
    pub version: u32,
    /// Only signatures made at or after this time (an incident: from the compromise).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub since: Option<OffsetDateTime>,
    /// The version is compromised: its layers go whether or not the active version
    /// has signed the image too.
    #[serde(default)]
    pub compromised: bool,
}

/// What a revocation of derived signatures covers: every signature re-made (however
/// many re-signings away) from the condemned signatures of `key` version `version`:
/// those it made from `since` on (a compromise; none: all of them), or the one of
/// `signature` (revoked on its own).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokeDerivedSpec {
    /// The key.
    pub key: String,
    /// The version whose condemned signatures were re-made.
    pub version: u32,
    /// Signatures made from this time on are condemned (a compromise).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub since: Option<OffsetDateTime>,
    /// `registry/repository@digest` of the one signature revoked on its own.
    #[serde(default)]
    pub signature: Option<String>,
    /// Also remove the derived signatures' layers from the registries.
    #[serde(default)]
    pub remove: bool,
    /// The reason each derived signature is revoked with (the original's).
    pub reason: crate::keys::RevocationReason,
}

/// Approved requests whose signing a crash interrupted (found at start-up, before the
/// API served), to sign now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeSpec {
    /// Approval ids.
    pub approvals: Vec<String>,
}

/// What a job does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum JobKind {
    /// Re-sign what one key version signed.
    Resign(ResignSpec),
    /// Remove a retired version's signatures after the overlap.
    Prune(PruneSpec),
    /// Sign approved requests a crash interrupted.
    ResumeApprovals(ResumeSpec),
    /// Revoke (and with `remove`, remove) what was re-made from condemned signatures.
    RevokeDerived(RevokeDerivedSpec),
}

impl JobKind {
    /// The kind's name.
    pub fn name(&self) -> &'static str {
        match self {
            JobKind::Resign(_) => "resign",
            JobKind::Prune(_) => "prune",
            JobKind::ResumeApprovals(_) => "resume-approvals",
            JobKind::RevokeDerived(_) => "revoke-derived",
        }
    }

    /// The key and version it works on.
    pub fn key_version(&self) -> (&str, u32) {
        match self {
            JobKind::Resign(s) => (&s.key, s.from_version),
            JobKind::Prune(s) => (&s.key, s.version),
            JobKind::ResumeApprovals(_) => ("", 0),
            JobKind::RevokeDerived(s) => (&s.key, s.version),
        }
    }
}

/// A job as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobRecord {
    /// `job-` and 16 hex digits.
    pub id: String,
    /// What it does.
    pub kind: JobKind,
    /// Where it is.
    pub state: JobState,
    /// The authority it runs with: the principal who started it, or `scheduler`.
    pub started_by: String,
    /// Why it exists, in words (`rotation of release to v2`).
    pub reason: String,
    /// When it was made.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Last change.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// When it finished.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    /// Whether every item has been listed (items are listed in batches, each with
    /// the cursor, before they run).
    pub listed: bool,
    /// Where listing goes on: the last source record (ledger key) listed.
    pub cursor: String,
    /// Items listed.
    pub total: u64,
    /// Items done.
    pub done: u64,
    /// Items skipped (with their reason).
    pub skipped: u64,
    /// Items that failed (with their reason; `retry` re-queues them).
    pub failed: u64,
    /// Why the job itself could not go on, if it could not.
    #[serde(default)]
    pub error: Option<String>,
}

impl JobRecord {
    /// A queued job.
    pub fn new(id: String, kind: JobKind, started_by: &str, reason: String) -> Self {
        let now = crate::clock::now();
        Self {
            id,
            kind,
            state: JobState::Queued,
            started_by: started_by.to_string(),
            reason,
            created_at: now,
            updated_at: now,
            finished_at: None,
            listed: false,
            cursor: String::new(),
            total: 0,
            done: 0,
            skipped: 0,
            failed: 0,
            error: None,
        }
    }
}

/// Where an item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ItemState {
    /// To do (maybe not before `next_attempt_at`).
    Queued,
    /// Done.
    Done,
    /// Not done, for a reason that doing it again would not change.
    Skipped,
    /// Not done; `retry` tries again.
    Failed,
}

impl ItemState {
    /// The name users see.
    pub fn as_str(self) -> &'static str {
        match self {
            ItemState::Queued => "queued",
            ItemState::Done => "done",
            ItemState::Skipped => "skipped",
            ItemState::Failed => "failed",
        }
    }
}

/// One unit of a job: for a re-signing campaign, one image digest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobItem {
    /// Registry host (the unit of concurrency limits and of "registry down").
    pub registry: String,
    /// The reference the original signature was made for (its tag included), which
    /// the new signature's identity repeats.
    pub reference: String,
    /// The signed digest.
    pub digest: String,
    /// The ledger row of the signature the item is about (a campaign's original),
    /// read again when the item runs; empty for items of other kinds.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub origin: String,
    /// Where it is.
    pub state: ItemState,
    /// Why it was skipped or failed, or why its last attempt did not finish.
    #[serde(default)]
    pub reason: Option<String>,
    /// Attempts made.
    #[serde(default)]
    pub attempts: u32,
    /// Not before this time.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub next_attempt_at: Option<OffsetDateTime>,
}

impl JobItem {
    /// A queued item about `registry`'s `reference@digest`, whose source is ledger row
    /// `origin` (empty: none).
    pub fn queued(registry: String, reference: String, digest: String, origin: String) -> Self {
        Self {
            registry,
            reference,
            digest,
            origin,
            state: ItemState::Queued,
            reason: None,
            attempts: 0,
            next_attempt_at: None,
        }
    }
}

/// An item's key under its job: `job-.../<hash of registry, reference and digest>`, so
/// that listing the same image twice (after a restart, or from two ledger entries)
/// makes one item.
pub fn item_key(job: &str, registry: &str, reference: &str, digest: &str) -> String {
    use sha2::Digest;
    let h = sha2::Sha256::digest(format!("{registry}\n{reference}\n{digest}").as_bytes());
    format!("{job}/{}", hex::encode(&h[..12]))
}

/// A new job id: `job-`, the time it was made counted down (so that ids sort newest
/// first and a listing reads one page of records, not all of them), and 8 random
/// bytes.
pub fn new_id() -> Result<String, String> {
    let mut b = [0u8; 8];
    getrandom::getrandom(&mut b).map_err(|e| format!("no randomness for a job id: {e}"))?;
    let micros = u64::try_from(crate::clock::now().unix_timestamp_nanos() / 1000).unwrap_or(0);
    Ok(format!("job-{:016x}{}", u64::MAX - micros, hex::encode(b)))
}
