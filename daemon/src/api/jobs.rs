//! `keyward.v1.JobService`.

use super::ToStatus;
use super::gate::admitted;
use super::page;
use crate::jobs::resign::query;
use crate::jobs::{JobError, JobKind, JobRecord, JobState, Jobs, ResignSpec};
use crate::keys::{KeyRegistry, Purpose};
use crate::store::integrity::IntegrityError;
use keyward_proto::v1 as pb;
use std::sync::Arc;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tonic::{Request, Response, Status};

/// Failures shown by `GetJob`.
const FAILURES_SHOWN: usize = 100;

/// Serves jobs.
#[derive(Debug)]
pub struct JobApi {
    jobs: Arc<Jobs>,
    keys: Arc<KeyRegistry>,
}

impl JobApi {
    /// A service over the jobs; `keys` checks what a campaign names.
    pub fn new(jobs: Arc<Jobs>, keys: Arc<KeyRegistry>) -> Self {
        Self { jobs, keys }
    }
}

impl ToStatus for JobError {
    fn to_status(&self) -> Status {
        match self {
            JobError::NotFound(_) => Status::not_found(self.to_string()),
            JobError::FailedPrecondition(_) => Status::failed_precondition(self.to_string()),
            JobError::InvalidArgument(_) => Status::invalid_argument(self.to_string()),
            JobError::Store(_) => Status::internal("internal error: the store failed"),
            JobError::Integrity(IntegrityError::Tampered { .. }) => {
                Status::data_loss(self.to_string())
            }
            JobError::Integrity(_) => {
                Status::unavailable("the job record could not be checked; see the daemon log")
            }
        }
    }
}

fn ts(t: Option<OffsetDateTime>) -> String {
    t.and_then(|t| t.format(&Rfc3339).ok()).unwrap_or_default()
}

fn state(s: JobState) -> pb::JobState {
    match s {
        JobState::Queued => pb::JobState::Queued,
        JobState::Running => pb::JobState::Running,
        JobState::Paused => pb::JobState::Paused,
        JobState::Done => pb::JobState::Done,
        JobState::Failed => pb::JobState::Failed,
        JobState::Cancelled => pb::JobState::Cancelled,
    }
}

/// Seconds to the end at the rate so far; `None` before anything is done or once
/// the job is over.
fn eta(j: &JobRecord) -> Option<u64> {
    let finished = j.done + j.skipped + j.failed;
    if j.state != JobState::Running || finished == 0 || !j.listed {
        return None;
    }
    let elapsed = (crate::clock::now() - j.created_at).as_seconds_f64();
    let left = j.total.saturating_sub(finished) as f64;
    Some((left * elapsed / finished as f64).ceil() as u64)
}

/// The API view of a job.
pub fn view(j: &JobRecord) -> pb::Job {
    let (key, from_version) = j.kind.key_version();
    pb::Job {
        id: j.id.clone(),
        kind: j.kind.name().to_string(),
        state: state(j.state) as i32,
        started_by: j.started_by.clone(),
        reason: j.reason.clone(),
        created_at: ts(Some(j.created_at)),
        updated_at: ts(Some(j.updated_at)),
        finished_at: ts(j.finished_at),
        total: j.total,
        done: j.done,
        skipped: j.skipped,
        failed: j.failed,
        listed: j.listed,
        failures: Vec::new(),
        eta_seconds: eta(j),
        key: key.to_string(),
        from_version,
        error: j.error.clone().unwrap_or_default(),
    }
}

impl JobApi {
    /// Checks a manual campaign and turns it into a spec.
    fn resign_spec(&self, r: &pb::ResignRequest) -> Result<ResignSpec, JobError> {
        let bad = JobError::InvalidArgument;
        let key = self.keys.get(&r.key).map_err(|e| bad(e.to_string()))?;
        if key.purpose != Purpose::Image {
            return Err(bad(format!(
                "key {:?} is a blob key; only image signatures are re-signed",
                key.name
            )));
        }
        let active = key
            .active()
            .ok_or_else(|| {
                bad(format!(
                    "key {:?} has no active version to re-sign with; rotate it first",
                    key.name
                ))
            })?
            .version;
        let from_version = match r.from_version {
            Some(v) => v,
            None => key
                .versions
                .iter()
                .map(|v| v.version)
                .filter(|v| *v < active)
                .max()
                .ok_or_else(|| {
                    bad(format!(
                        "key {:?} has only one version; there is nothing to re-sign",
                        key.name
                    ))
                })?,
        };
        if key.version(from_version).is_none() {
            return Err(bad(format!(
                "key {:?} has no version {from_version}",
                key.name
            )));
        }
        if from_version == active {
            return Err(bad(format!(
                "version {from_version} is the active version of key {:?}: its signatures need no re-signing; name an older version",
                key.name
            )));
        }
        let since = match r.since.as_str() {
            "" => None,
            s => Some(OffsetDateTime::parse(s, &Rfc3339).map_err(|e| {
                bad(format!(
                    "invalid --since {s:?}: {e}; use RFC 3339, e.g. 2026-01-31T00:00:00Z"
                ))
            })?),
        };
        let spec = ResignSpec {
            key: key.name.clone(),
            from_version,
            repository: (!r.repository.is_empty()).then(|| r.repository.clone()),
            since,
            until: None,
            retire_when_done: false,
        };
        query(&spec).map_err(bad)?;
        Ok(spec)
    }
}

#[tonic::async_trait]
impl pb::job_service_server::JobService for JobApi {
    async fn list_jobs(
        &self,
        req: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        let call = admitted(&req)?;
        let r = req.into_inner();
        let result = async {
            let filter = match pb::JobState::try_from(r.state) {
                Ok(pb::JobState::Unspecified) => None,
                Ok(s) => Some(
                    JobState::parse(&keyward_proto::names::job_state_name(s as i32))
                        .map_err(JobError::InvalidArgument)?,
                ),
                Err(_) => return Err(JobError::InvalidArgument("unknown job state".into())),
            };
            // One page of records read per request, newest first (ids sort so).
            let (jobs, next_page_token) = self
                .jobs
                .page(filter, &r.page_token, page::size(r.page_size))
                .await?;
            Ok(pb::ListJobsResponse {
                jobs: jobs.iter().map(view).collect(),
                next_page_token,
            })
        }
        .await;
        call.finish(result).await.map(Response::new)
    }

    async fn get_job(&self, req: Request<pb::GetJobRequest>) -> Result<Response<pb::Job>, Status> {
        let call = admitted(&req)?;
        let id = &req.get_ref().id;
        let result = async {
            let job = self.jobs.get(id).await?;
            let (failures, _) = self.jobs.failures(id, "", FAILURES_SHOWN).await?;
            let mut v = view(&job);
            v.failures = failures
                .into_iter()
                .map(|i| pb::JobFailure {
                    image: format!("{}@{}", repository_of(&i.reference), i.digest),
                    reference: i.reference,
                    reason: i.reason.unwrap_or_default(),
                    state: i.state.as_str().to_string(),
                })
                .collect();
            Ok::<_, JobError>(v)
        }
        .await;
        call.finish(result).await.map(Response::new)
    }

    async fn pause_job(
        &self,
        req: Request<pb::PauseJobRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let call = admitted(&req)?;
        let result = self.jobs.pause(&req.get_ref().id).await;
        call.finish(result.map(|j| view(&j)))
            .await
            .map(Response::new)
    }

    async fn resume_job(
        &self,
        req: Request<pb::ResumeJobRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let call = admitted(&req)?;
        let result = self.jobs.resume(&req.get_ref().id).await;
        call.finish(result.map(|j| view(&j)))
            .await
            .map(Response::new)
    }

    async fn cancel_job(
        &self,
        req: Request<pb::CancelJobRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let call = admitted(&req)?;
        let result = self.jobs.cancel(&req.get_ref().id).await;
        call.finish(result.map(|j| view(&j)))
            .await
            .map(Response::new)
    }

    async fn retry_job(
        &self,
        req: Request<pb::RetryJobRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let call = admitted(&req)?;
        let result = self.jobs.retry(&req.get_ref().id).await;
        call.finish(result.map(|j| view(&j)))
            .await
            .map(Response::new)
    }

    async fn resign(&self, req: Request<pb::ResignRequest>) -> Result<Response<pb::Job>, Status> {
        let call = admitted(&req)?;
        let r = req.into_inner();
        let result = async {
            let spec = self.resign_spec(&r)?;
            let reason = format!(
                "re-signing what key {} version {} signed",
                spec.key, spec.from_version
            );
            self.jobs
                .start(JobKind::Resign(spec), call.principal(), reason)
                .await
        }
        .await;
        call.finish(result.map(|j| view(&j)))
            .await
            .map(Response::new)
    }
}

/// `registry/repository` of a reference (without tag or digest).
fn repository_of(reference: &str) -> String {
    crate::oci::ImageRef::parse(reference)
        .map(|i| i.repository())
        .unwrap_or_else(|_| reference.to_string())
}
