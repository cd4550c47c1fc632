//! The exit statuses every command keeps (`keyward help exit-codes`), and the one
//! place a failure becomes a status and an error message (text, or JSON on stderr
//! under `--output json`).

use keyward_client::Error as Daemon;
use keyward_client::offline;
use serde::Serialize;
use tonic::Code;

/// What a command's exit status says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Verification ran and found no valid signature (or the evidence is refused).
    NotVerified = 1,
    /// The command line or what it names is wrong (flags, files, names, references).
    Usage = 2,
    /// The request waits for approvals (`--wait` waits instead).
    Pending = 3,
    /// The daemon refused: permission, one-time code, policy, state.
    Refused = 4,
    /// It could not be completed: daemon or registry unreachable, timeout, failure.
    Incomplete = 5,
}

/// The table `keyward help exit-codes` prints (and the README repeats).
pub const TABLE: &str = "\
Exit status of every keyward command:

  0  done
  1  verification found no valid signature (verify, verify-blob, audit verify,
     revocations verify), or the evidence it was given is refused
  2  usage: a flag, an argument, a file or a name it gives is wrong
     (also: not found, already exists)
  3  the request waits for approval (sign, attest, sign-blob, key revoke,
     incident revoke, key policy set without --wait); the request id is printed
  4  refused: permission, role, one-time code, the key's policy, or a state that
     does not allow it (a request denied or expired while waiting)
  5  could not complete: the daemon or a registry is unreachable or failing,
     a timeout, a job that failed or was cancelled
141  (128 + SIGPIPE) the reader of the output went away, as `keyward ... | head`

Under --output json an error is one JSON object on stderr:
  {\"error\": {\"code\": \"permission_denied\", \"message\": \"...\", \"details\": {\"exit_code\": 4}}}
";

/// A failure a command names itself (daemon refusals arrive as
/// [`keyward_client::Error`]).
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Verification found no valid signature; what was found is printed already.
    #[error("{0}")]
    NotVerified(String),
    /// The command line or its inputs are wrong.
    #[error("{0}")]
    Usage(String),
    /// The request waits for approvals; the note is printed already.
    #[error("request {0} waits for approval")]
    Pending(String),
    /// Refused (a request denied or expired while waited for).
    #[error("{0}")]
    Refused(String),
    /// Could not be completed (a job that failed or was cancelled).
    #[error("{0}")]
    Incomplete(String),
}

/// A failure's exit status and short code name.
pub fn classify(e: &anyhow::Error) -> (Status, &'static str) {
    for cause in e.chain() {
        if let Some(f) = cause.downcast_ref::<Failure>() {
            return match f {
                Failure::NotVerified(_) => (Status::NotVerified, "not_verified"),
                Failure::Usage(_) => (Status::Usage, "usage"),
                Failure::Pending(_) => (Status::Pending, "pending_approval"),
                Failure::Refused(_) => (Status::Refused, "refused"),
                Failure::Incomplete(_) => (Status::Incomplete, "incomplete"),
            };
        }
        if let Some(d) = cause.downcast_ref::<Daemon>() {
            return daemon(d);
        }
        if let Some(f) = cause.downcast_ref::<offline::Failure>() {
            return match f {
                offline::Failure::Unreachable(_) => (Status::Incomplete, "unavailable"),
                offline::Failure::Refused(_) => (Status::NotVerified, "not_verified"),
            };
        }
        if cause.downcast_ref::<std::io::Error>().is_some() {
            return (Status::Usage, "usage");
        }
    }
    (Status::Incomplete, "failed")
}

fn daemon(d: &Daemon) -> (Status, &'static str) {
    match d {
        Daemon::Config(_) => (Status::Usage, "config"),
        Daemon::Connect { .. } => (Status::Incomplete, "unavailable"),
        Daemon::MfaRequired(_) => (Status::Refused, "mfa_required"),
        Daemon::Unauthenticated(_) => (Status::Refused, "unauthenticated"),
        Daemon::PermissionDenied(_) => (Status::Refused, "permission_denied"),
        Daemon::FailedPrecondition(_) => (Status::Refused, "failed_precondition"),
        Daemon::NotFound(_) => (Status::Usage, "not_found"),
        Daemon::InvalidArgument(_) => (Status::Usage, "invalid_argument"),
        Daemon::AlreadyExists(_) => (Status::Usage, "already_exists"),
        Daemon::ResourceExhausted(_) => (Status::Incomplete, "resource_exhausted"),
        Daemon::Unavailable(_) => (Status::Incomplete, "unavailable"),
        Daemon::DataLoss(_) => (Status::Incomplete, "data_loss"),
        Daemon::Other { code, .. } => match code {
            Code::OutOfRange => (Status::Usage, "out_of_range"),
            Code::DeadlineExceeded => (Status::Incomplete, "deadline_exceeded"),
            Code::Aborted => (Status::Incomplete, "aborted"),
            Code::Unimplemented => (Status::Incomplete, "unimplemented"),
            _ => (Status::Incomplete, "internal"),
        },
    }
}

#[derive(Serialize)]
struct JsonError<'a> {
    error: Body<'a>,
}

#[derive(Serialize)]
struct Body<'a> {
    code: &'a str,
    message: String,
    details: Details,
}

#[derive(Serialize)]
struct Details {
    exit_code: u8,
}

/// Reports `e` on stderr (text, or JSON when `json`) and returns the exit status.
/// A pending request printed its note on stdout already: nothing more is said.
pub fn report(e: &anyhow::Error, json: bool) -> u8 {
    let (status, code) = classify(e);
    if status == Status::Pending {
        return status as u8;
    }
    if json {
        let body = JsonError {
            error: Body {
                code,
                message: format!("{e:#}"),
                details: Details {
                    exit_code: status as u8,
                },
            },
        };
        eprintln!("{}", serde_json::to_string(&body).unwrap_or_default());
    } else {
        eprintln!("error: {e:#}");
    }
    status as u8
}
