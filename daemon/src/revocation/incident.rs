//! Incident response in one request: stop the version signing, list what it signed
//! before and after the compromise, rotate first when it was the active version,
//! re-sign what it signed before the compromise with the active version (a resumable
//! campaign), publish the revocation list, and report. Re-running it after a partial
//! run finishes what is missing: an existing revocation is kept, a rotation already
//! made is not repeated, and the campaign finds the signatures already made.

use super::Revocations;
use super::publish::Publisher;
use crate::audit::{AuditLog, Decision, Entry};
use crate::jobs::resign::Resigner;
use crate::jobs::{JobKind, Jobs, PruneSpec, ResignSpec, RevokeDerivedSpec};
use crate::keys::{
    KeyError, KeyRecord, KeyRegistry, Purpose, RevocationReason, RevokeEffect, RevokeRequest,
    VersionState, no_follow_up, rfc3339,
};
use crate::signing::ledger::{LedgerQuery, SignatureLedger};
use serde::Serialize;
use std::sync::Arc;
use time::OffsetDateTime;

/// Images signed after the compromise named in a report, at most.
const LISTED: usize = 100;

/// What an incident asks for.
#[derive(Debug, Clone)]
pub struct IncidentRequest {
    /// Key name.
    pub name: String,
    /// The compromised version.
    pub version: u32,
    /// From when the key is taken to be in other hands.
    pub compromised_since: OffsetDateTime,
    /// Who runs it (audited as the authority of the rotation and the campaign).
    pub by: String,
    /// Plan and count only.
    pub dry_run: bool,
    /// Also remove the version's layers from images it signed from the compromise on.
    pub remove_signatures: bool,
    /// Who approved it, when the key's policy made it wait for approvals.
    pub approved_by: Vec<String>,
}

/// What an incident did (or, dry, would do).
#[derive(Debug, Clone, Default, Serialize)]
pub struct IncidentReport {
    /// Image signatures by the version before the compromise (re-signed).
    pub signed_before: u64,
    /// Image signatures by the version from the compromise on (not re-signed).
    pub signed_after: u64,
    /// `registry/repository@digest` of images signed from the compromise on (at most
    /// 100).
    pub after_compromise: Vec<String>,
    /// The version was active: a new one is made first.
    pub needs_rotation: bool,
    /// The version the rotation made.
    pub rotated_to: Option<u32>,
    /// The campaign re-signing what was signed before the compromise.
    pub resign_job: Option<String>,
    /// The job removing the version's layers from images signed after it.
    pub remove_job: Option<String>,
    /// The revocation list's sequence.
    pub list_sequence: u64,
    /// Publishing targets that do not hold that list yet.
    pub registries_behind: Vec<String>,
    /// The audit record holding this report (0: none, a dry run or a failed write).
    pub audit_seq: u64,
    /// The version was revoked exactly so already: nothing new was revoked, and jobs
    /// an earlier run started are reported, not started again.
    pub already_revoked: bool,
    /// The compromise the incident acted on: the recorded one (a request may only move
    /// it earlier).
    #[serde(with = "time::serde::rfc3339::option")]
    pub compromised_since: Option<OffsetDateTime>,
    /// Signatures re-made from the condemned ones (by rotation campaigns, say): they
    /// share their fate and are revoked (and with `remove_signatures`, removed).
    pub derived_condemned: u64,
    /// `registry/repository@digest by key vN` of those (at most 100).
    pub derived: Vec<String>,
    /// The job revoking them.
    pub derived_job: Option<String>,
}

/// Runs incidents.
pub struct Incidents {
    keys: Arc<KeyRegistry>,
    /// Lists and counts what was derived from condemned signatures.
    resigner: Option<Arc<Resigner>>,
    jobs: Arc<Jobs>,
    ledger: SignatureLedger,
    lists: Arc<Revocations>,
    publisher: Arc<Publisher>,
    audit: Arc<AuditLog>,
}

impl std::fmt::Debug for Incidents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incidents").finish_non_exhaustive()
    }
}

impl Incidents {
    /// Over the keys, jobs, ledger, lists, publisher and the audit log its reports go to.
    pub fn new(
        keys: Arc<KeyRegistry>,
        jobs: Arc<Jobs>,
        ledger: SignatureLedger,
        (lists, publisher): (Arc<Revocations>, Arc<Publisher>),
        audit: Arc<AuditLog>,
    ) -> Self {
        Self {
            keys,
            resigner: None,
            jobs,
            ledger,
            lists,
            publisher,
            audit,
        }
    }

    /// Counts what was derived from the condemned signatures with `resigner`.
    pub fn with_resigner(mut self, resigner: Arc<Resigner>) -> Self {
        self.resigner = Some(resigner);
        self
    }

    /// Revokes a version (from the moment this returns it never signs) and issues
    /// the list; the one way both `key revoke` and an approved revocation take. A
    /// version revoked as compromised condemns what was re-made from its signatures
    /// since the compromise: a job revokes those.
    pub async fn revoke_version(&self, req: &RevokeRequest) -> Result<Arc<KeyRecord>, KeyError> {
        let k = self.keys.revoke(req).await?;
        tracing::warn!(principal = %req.by, key = %req.name, version = req.version, reason = req.reason.as_str(), "key version revoked");
        if let Some(v) = k.version(req.version).filter(|v| v.compromised()) {
            let since = v.revocation.as_ref().and_then(|r| r.compromised_since);
            self.revoke_derived(derived_spec(&req.name, req.version, since, false), &req.by)
                .await?;
        }
        self.lists.issue_after_change().await;
        Ok(k)
    }

    /// Makes sure every version revoked as compromised has its job revoking what was
    /// re-made from its condemned signatures (a crash between a revocation and that
    /// job's start is finished here, at start-up).
    pub async fn ensure_derived_jobs(&self) {
        for rec in self.keys.list() {
            for v in rec.versions.iter().filter(|v| v.compromised()) {
                let since = v.revocation.as_ref().and_then(|r| r.compromised_since);
                let by = v
                    .revocation
                    .as_ref()
                    .map_or("keywardd", |r| r.revoked_by.as_str());
                let spec = derived_spec(&rec.name, v.version, since, false);
                if let Err(e) = self.revoke_derived(spec, by).await {
                    tracing::error!(key = %rec.name, version = v.version, error = %e, "cannot start the revocation of derived signatures; tried again at the next start");
                }
            }
        }
    }

    /// Starts the job that revokes what was re-made from condemned signatures (once:
    /// the same job again is found, not started twice); its id.
    pub async fn revoke_derived(
        &self,
        spec: RevokeDerivedSpec,
        by: &str,
    ) -> Result<String, KeyError> {
        let reason = match &spec.signature {
            Some(s) => format!(
                "signatures re-made from {s} by key {} v{} share its revocation",
                spec.key, spec.version
            ),
            None => format!(
                "signatures re-made from what key {} v{} signed since its compromise share its revocation",
                spec.key, spec.version
            ),
        };
        self.start_once(JobKind::RevokeDerived(spec), by, reason)
            .await
    }

    /// Writes the report to the audit log; its sequence number, 0 if that failed
    /// (the incident stands either way and the daemon log says why).
    async fn record(&self, req: &IncidentRequest, report: &IncidentReport) -> u64 {
        let target = format!("{} v{}", req.name, req.version);
        let detail = serde_json::json!({
            "key": req.name,
            "version": req.version,
            "compromised_since": rfc3339(report.compromised_since.unwrap_or(req.compromised_since)),
            "by": req.by,
            "approved_by": req.approved_by,
            "remove_signatures": req.remove_signatures,
            "report": report,
        });
        let entry = Entry {
            principal: &req.by,
            action: "IncidentReport",
            target: &target,
            decision: Decision::Allowed,
            reason: "",
            request_hash: "",
        };
        match self.audit.append_signed(entry, detail).await {
            Ok(seq) => seq,
            Err(e) => {
                tracing::error!(key = %req.name, version = req.version, error = %e, "the incident's report could not be written to the audit log");
                0
            }
        }
    }

    /// Starts one of the incident's jobs with its authority; returns the job's id.
    async fn start(&self, kind: JobKind, by: &str, reason: String) -> Result<String, KeyError> {
        let what = kind.name();
        self.jobs
            .start(kind, by, reason)
            .await
            .map(|j| j.id)
            .map_err(|e| {
                KeyError::FailedPrecondition(format!("the {what} job could not start: {e}"))
            })
    }

    /// Counts the version's image signatures before and after the compromise.
    async fn count(
        &self,
        req: &IncidentRequest,
        since: OffsetDateTime,
        report: &mut IncidentReport,
    ) -> Result<(), KeyError> {
        let q = LedgerQuery {
            key: Some(req.name.clone()),
            version: Some(req.version),
            ..Default::default()
        };
        let mut after = String::new();
        loop {
            let (page, next) = self.ledger.list_page(&q, &after, 1000).await?;
            for e in page.iter().filter(|e| e.kind == "signature") {
                if e.time < since {
                    report.signed_before += 1;
                } else {
                    report.signed_after += 1;
                    if report.after_compromise.len() < LISTED {
                        report
                            .after_compromise
                            .push(format!("{}/{}@{}", e.registry, e.repository, e.digest));
                    }
                }
            }
            if next.is_empty() {
                return Ok(());
            }
            after = next;
        }
    }

    /// Counts the signatures derived from those `spec` condemns, into the report.
    async fn count_derived(
        &self,
        spec: &RevokeDerivedSpec,
        report: &mut IncidentReport,
    ) -> Result<(), KeyError> {
        let Some(r) = &self.resigner else {
            return Ok(());
        };
        let (n, shown) = r.count_derived(spec, LISTED).await.map_err(|e| {
            KeyError::FailedPrecondition(format!("cannot list derived signatures: {e}"))
        })?;
        report.derived_condemned = n;
        report.derived = shown;
        Ok(())
    }

    /// Starts `kind` unless a job of that kind exists (an earlier run of the same
    /// incident started it; for derived signatures, one for the same compromise, with
    /// or without removal): its id either way.
    async fn start_once(
        &self,
        kind: JobKind,
        by: &str,
        reason: String,
    ) -> Result<String, KeyError> {
        let same = |k: &JobKind| match (k, &kind) {
            (JobKind::RevokeDerived(a), JobKind::RevokeDerived(b)) => {
                (&a.key, a.version, a.since, &a.signature)
                    == (&b.key, b.version, b.since, &b.signature)
                    && (a.remove || !b.remove)
            }
            (a, b) => a == b,
        };
        let existing = self
            .jobs
            .list(None)
            .await
            .map_err(|e| KeyError::FailedPrecondition(format!("cannot list jobs: {e}")))?
            .into_iter()
            .find(|j| same(&j.kind) && j.state != crate::jobs::JobState::Cancelled);
        match existing {
            Some(j) => Ok(j.id),
            None => self.start(kind, by, reason).await,
        }
    }

    /// Runs the incident in order; see the module's documentation. The compromise is
    /// the one recorded on the version once step 1 is done (a request may move it
    /// earlier, never later: `KeyRecord::revoke_effect` refuses that, naming the
    /// recorded time); every bound below is that recorded time.
    pub async fn revoke(&self, req: &IncidentRequest) -> Result<IncidentReport, KeyError> {
        let now = crate::clock::now();
        if req.compromised_since > now {
            return Err(KeyError::InvalidArgument(
                "--compromised-since is in the future".into(),
            ));
        }
        let revoke = RevokeRequest {
            name: req.name.clone(),
            version: req.version,
            reason: RevocationReason::KeyCompromise,
            compromised_since: Some(req.compromised_since),
            by: req.by.clone(),
        };
        let key = self.keys.get(&req.name)?;
        let effect = key.revoke_effect(&revoke)?;
        let v = key
            .version(req.version)
            .ok_or_else(|| KeyError::VersionNotFound {
                name: req.name.clone(),
                version: req.version,
            })?;
        let mut report = IncidentReport {
            needs_rotation: v.state == VersionState::Active || key.active().is_none(),
            already_revoked: effect == RevokeEffect::Nothing,
            compromised_since: Some(req.compromised_since),
            ..Default::default()
        };
        if req.dry_run {
            self.count(req, req.compromised_since, &mut report).await?;
            let spec = derived_spec(&req.name, req.version, Some(req.compromised_since), false);
            self.count_derived(&spec, &mut report).await?;
            return Ok(report);
        }
        // 1. Stop the version signing (a revocation recorded exactly so stands).
        if effect != RevokeEffect::Nothing {
            self.keys.revoke(&revoke).await?;
        }
        let since = self
            .keys
            .get(&req.name)?
            .version(req.version)
            .and_then(|v| v.revocation.as_ref())
            .and_then(|r| r.compromised_since)
            .unwrap_or(req.compromised_since);
        report.compromised_since = Some(since);
        // 2. What it signed, before and after the compromise.
        self.count(req, since, &mut report).await?;
        // 3. Rotate first when production would be left without a signing version.
        if self.keys.get(&req.name)?.active().is_none() {
            let rotated = self.keys.rotate(&req.name, &no_follow_up, now).await?;
            report.rotated_to = Some(rotated.version);
        }
        // Re-sign what was signed before the compromise, with the active version.
        if report.signed_before > 0 && key.purpose == Purpose::Image {
            let spec = ResignSpec {
                key: req.name.clone(),
                from_version: req.version,
                repository: None,
                since: None,
                until: Some(since),
                retire_when_done: false,
            };
            let reason = format!(
                "incident: key {} version {} compromised since {}",
                req.name,
                req.version,
                rfc3339(since)
            );
            report.resign_job = Some(
                self.start_once(JobKind::Resign(spec), &req.by, reason)
                    .await?,
            );
        }
        // 5. Optionally remove the version's layers from what it signed after the
        // compromise (the attacker's signatures), co-signed or not.
        if req.remove_signatures && report.signed_after > 0 {
            let spec = PruneSpec {
                key: req.name.clone(),
                version: req.version,
                since: Some(since),
                compromised: true,
            };
            let reason = format!(
                "incident: removing key {} version {}'s signatures made since {}",
                req.name,
                req.version,
                rfc3339(since)
            );
            report.remove_job = Some(
                self.start_once(JobKind::Prune(spec), &req.by, reason)
                    .await?,
            );
        }
        // What was re-made from the signatures made since the compromise shares their
        // fate: revoked (and removed with --remove-signatures) by a job.
        let spec = derived_spec(&req.name, req.version, Some(since), req.remove_signatures);
        self.count_derived(&spec, &mut report).await?;
        if report.derived_condemned > 0 {
            report.derived_job = Some(self.revoke_derived(spec, &req.by).await?);
        }
        // 4. Publish the revocation list everywhere (the outbox delivers it).
        let list = self.lists.ensure(now).await?;
        report.list_sequence = list.list.sequence;
        report.registries_behind = self
            .publisher
            .status()
            .await?
            .into_iter()
            .filter(|t| t.published < list.list.sequence)
            .map(|t| t.repository)
            .collect();
        report.audit_seq = self.record(req, &report).await;
        Ok(report)
    }
}

/// What a compromise of `key` version `version` since `since` condemns beyond its own
/// signatures.
fn derived_spec(
    key: &str,
    version: u32,
    since: Option<OffsetDateTime>,
    remove: bool,
) -> RevokeDerivedSpec {
    RevokeDerivedSpec {
        key: key.to_string(),
        version,
        since,
        signature: None,
        remove,
        reason: RevocationReason::KeyCompromise,
    }
}
