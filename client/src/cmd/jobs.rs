//! `keyward jobs ...` and `keyward resign`.

use super::exit::Failure;
use super::{Ctx, Output, Show};
use clap::{Args, Subcommand};
use keyward_client::proto;
use keyward_proto::names::job_state_name;
use std::time::Duration;

#[derive(Subcommand, Clone)]
pub enum JobsCommand {
    /// List jobs, newest first.
    List {
        /// Only jobs in this state.
        #[arg(long, value_parser = ["queued", "running", "paused", "done", "failed", "cancelled"])]
        state: Option<String>,
    },
    /// A job's counts, its failures with their reasons, and its ETA.
    Show {
        /// Job id.
        id: String,
    },
    /// Follow a job to its end: a progress bar on a terminal, JSON lines otherwise.
    Watch {
        /// Job id.
        id: String,
    },
    /// Stop a job after the items in flight (resume goes on).
    Pause {
        /// Job id.
        id: String,
    },
    /// Go on with a paused job.
    Resume {
        /// Job id.
        id: String,
    },
    /// Stop a job for good.
    Cancel {
        /// Job id.
        id: String,
    },
    /// Re-queue the failed items of a finished job (after fixing what failed them).
    Retry {
        /// Job id.
        id: String,
    },
}

/// `keyward resign`: re-sign, with a key's active version, what an older version signed.
#[derive(Args, Clone)]
#[command(after_help = "Examples:\n  keyward resign --key release --from-version 1 --wait")]
pub struct Resign {
    /// Key name.
    #[arg(long)]
    key: String,
    /// The version whose signatures are re-made (default: the newest before the active one).
    #[arg(long)]
    from_version: Option<u32>,
    /// Only repositories (registry/repository) matching this glob.
    #[arg(long, default_value = "")]
    repository: String,
    /// Only signatures made at or after this time (RFC 3339).
    #[arg(long, default_value = "")]
    since: String,
    /// Follow the job to its end.
    #[arg(long)]
    wait: bool,
}

fn counts(j: &proto::Job) -> String {
    let of = if j.listed {
        j.total.to_string()
    } else {
        format!("{}+", j.total)
    };
    format!(
        "{} of {of} done, {} skipped, {} failed",
        j.done, j.skipped, j.failed
    )
}

impl Show for proto::Job {
    fn text(&self) {
        println!(
            "{}  {}  {}  {}",
            self.id,
            self.kind,
            job_state_name(self.state),
            counts(self)
        );
        println!("  {} (started by {})", self.reason, self.started_by);
        println!("  created {}", self.created_at);
        if !self.finished_at.is_empty() {
            println!("  finished {}", self.finished_at);
        }
        if !self.error.is_empty() {
            println!("  error: {}", self.error);
        }
        if let Some(eta) = self.eta_seconds {
            println!("  about {eta} s to go");
        }
        for f in &self.failures {
            println!("  {} {}: {}", f.state, f.image, f.reason);
        }
    }
}

impl Show for Vec<proto::Job> {
    fn text(&self) {
        let rows: Vec<Vec<String>> = self
            .iter()
            .map(|j| {
                vec![
                    j.id.clone(),
                    j.kind.clone(),
                    job_state_name(j.state),
                    counts(j),
                    j.reason.clone(),
                ]
            })
            .collect();
        super::table(
            &["ID", "KIND", "STATE", "PROGRESS", "REASON"],
            &rows,
            "no jobs",
        );
    }
}

fn finished(j: &proto::Job) -> bool {
    matches!(
        proto::JobState::try_from(j.state),
        Ok(proto::JobState::Done | proto::JobState::Failed | proto::JobState::Cancelled)
    )
}

/// Follows a job until it finishes or is paused; prints the final job. Fails when
/// the job ends failed or cancelled. `lines`: off a terminal, the job as a JSON line
/// at every poll, whatever `--output` says (what `jobs watch` promises a pipe).
pub async fn watch(ctx: &Ctx, id: &str, lines: bool) -> anyhow::Result<()> {
    let get = || {
        ctx.client
            .get_job(proto::GetJobRequest { id: id.to_string() })
    };
    let terminal = ctx.out == Output::Text && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let json_lines = ctx.out == Output::Json || (lines && !terminal);
    let bar = terminal.then(|| {
        let b = indicatif::ProgressBar::new(0);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{spinner} {msg} [{bar:40}] {pos}/{len} ({eta} left)",
        ) {
            b.set_style(style.progress_chars("=> "));
        }
        b
    });
    let job = loop {
        let j = get().await?;
        match &bar {
            Some(b) => {
                b.set_length(j.total);
                b.set_position(j.done + j.skipped + j.failed);
                b.set_message(format!("{} {}", j.id, job_state_name(j.state)));
            }
            None if json_lines => {
                println!("{}", super::json(&j));
            }
            None => eprintln!("{}  {}  {}", j.id, job_state_name(j.state), counts(&j)),
        }
        let paused = j.state == proto::JobState::Paused as i32;
        if finished(&j) || paused {
            break j;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if !json_lines {
        job.text();
    }
    match proto::JobState::try_from(job.state) {
        Ok(proto::JobState::Failed) => Err(Failure::Incomplete(format!(
            "job {id} finished with {} failed items; fix what they name, then: keyward jobs retry {id}",
            job.failed
        ))
        .into()),
        Ok(proto::JobState::Cancelled) => {
            Err(Failure::Incomplete(format!("job {id} was cancelled")).into())
        }
        _ => Ok(()),
    }
}

impl JobsCommand {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let c = &ctx.client;
        match self {
            JobsCommand::List { state } => {
                let state = match state {
                    None => proto::JobState::Unspecified,
                    Some(s) => proto::JobState::from_str_name(&format!(
                        "JOB_STATE_{}",
                        s.to_ascii_uppercase()
                    ))
                    .unwrap_or_default(),
                };
                let req = proto::ListJobsRequest {
                    state: state as i32,
                    ..Default::default()
                };
                ctx.show(&c.list_jobs_all(req).await?);
            }
            JobsCommand::Show { id } => ctx.show(&c.get_job(proto::GetJobRequest { id }).await?),
            JobsCommand::Watch { id } => watch(ctx, &id, true).await?,
            JobsCommand::Pause { id } => {
                ctx.show(&c.pause_job(proto::PauseJobRequest { id }).await?)
            }
            JobsCommand::Resume { id } => {
                ctx.show(&c.resume_job(proto::ResumeJobRequest { id }).await?)
            }
            JobsCommand::Cancel { id } => {
                ctx.show(&c.cancel_job(proto::CancelJobRequest { id }).await?)
            }
            JobsCommand::Retry { id } => {
                ctx.show(&c.retry_job(proto::RetryJobRequest { id }).await?)
            }
        }
        Ok(())
    }
}

impl Resign {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let req = proto::ResignRequest {
            key: self.key,
            from_version: self.from_version,
            repository: self.repository,
            since: self.since,
        };
        let job = ctx.client.resign(req).await?;
        if self.wait {
            return watch(ctx, &job.id, false).await;
        }
        match ctx.out {
            Output::Json => ctx.show(&job),
            Output::Text => println!("{}", job.id),
        }
        Ok(())
    }
}
