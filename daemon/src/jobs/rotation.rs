//! Rotation with its re-signing campaign: the new version becomes active and the
//! campaign's job record is created in the same transaction, so a crash can leave
//! neither a `retiring` version without a campaign nor a campaign without a rotation.

use super::{JobKind, JobRecord, Jobs, ResignSpec, new_id};
use crate::keys::{KeyError, KeyRecord, KeyRegistry, Purpose, Rotated};
use crate::store::{Namespace, to_json};
use time::OffsetDateTime;

/// Rotates `name` at time `at` with the authority of `by` (a principal, or
/// `scheduler`); when the key's policy says so, starts the campaign that re-signs what
/// the old version signed. Returns the rotation and the campaign's job.
pub async fn rotate(
    keys: &KeyRegistry,
    jobs: &Jobs,
    name: &str,
    by: &str,
    at: OffsetDateTime,
) -> Result<(Rotated, Option<JobRecord>), KeyError> {
    let made = std::sync::Mutex::new(None);
    let follow_up = |rec: &KeyRecord, previous: u32| {
        if !rec.rotation.resign || rec.purpose != Purpose::Image {
            return Ok(Vec::new());
        }
        let job = JobRecord::new(
            new_id()?,
            JobKind::Resign(ResignSpec {
                key: rec.name.clone(),
                from_version: previous,
                repository: None,
                since: None,
                until: None,
                retire_when_done: true,
            }),
            by,
            format!("rotation of key {} from version {previous}", rec.name),
        );
        let json = to_json(&job).map_err(|e| e.to_string())?;
        let key = job.id.clone();
        *made.lock().unwrap_or_else(|p| p.into_inner()) = Some(job);
        Ok(vec![(Namespace::Jobs, key, json)])
    };
    let rotated = keys.rotate(name, &follow_up, at).await?;
    let job = made.into_inner().unwrap_or_else(|p| p.into_inner());
    // The follow-up may have run for an attempt that lost a race; only a job whose
    // version was retired by this rotation exists.
    let job = job.filter(|j| rotated.previous == Some(j.kind.key_version().1));
    if let Some(j) = &job {
        tracing::info!(key = name, job = %j.id, "rotation started a re-signing campaign");
        jobs.bell().notify_one();
    }
    Ok((rotated, job))
}
