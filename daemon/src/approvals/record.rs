//! What an approval is: the request it holds ([`Subject`]), where it stands
//! ([`State`]) and the stored record ([`ApprovalRecord`]).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use time::OffsetDateTime;

/// What is waiting to be signed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Subject {
    /// A blob: its digest (or, for Ed25519, the message itself, base64).
    Blob {
        /// `sha256`, ...; none when `data` is the message itself. Stored as "" then.
        #[serde(
            default,
            deserialize_with = "empty_as_none",
            serialize_with = "none_as_empty"
        )]
        digest_algorithm: Option<String>,
        /// Hex digest, or base64 message.
        data: String,
        /// File name as the requester gave it.
        #[serde(default)]
        file_name: String,
        /// Size as the requester gave it.
        #[serde(default)]
        size: u64,
    },
    /// A change that weakens a key's policy: approved by a second key-admin or admin.
    Policy {
        /// The change, applied as stored.
        change: crate::keys::PolicyChange,
        /// What it weakens, in words.
        weakens: Vec<String>,
    },
    /// An in-toto attestation about an image: the exact statement that will be signed.
    Attestation {
        /// Reference as requested.
        reference: String,
        /// Manifest digest resolved when the request was made (the statement's subject).
        digest: String,
        /// Predicate type URI.
        predicate_type: String,
        /// The predicate, as sent.
        predicate: serde_json::Value,
        /// SHA-256 of the predicate bytes as sent, hex.
        predicate_digest: String,
    },
    /// A key version's revocation, on a key whose policy makes revocations wait for
    /// other revokers; with `incident`, the whole incident runs on approval.
    Revocation {
        /// The version to revoke.
        version: u32,
        /// Why.
        reason: crate::keys::RevocationReason,
        /// From when the key is taken to have been in other hands.
        #[serde(default, with = "time::serde::rfc3339::option")]
        compromised_since: Option<OffsetDateTime>,
        /// Run the incident (rotate, re-sign, publish, report), not only the revocation.
        #[serde(default)]
        incident: bool,
        /// With `incident`: also remove the version's layers signed since the compromise.
        #[serde(default)]
        remove_signatures: bool,
        /// Also destroy the version's HSM object.
        #[serde(default)]
        destroy: bool,
    },
    /// An image: the reference as requested and the digests that will be signed.
    Image {
        /// Reference as requested.
        reference: String,
        /// Manifest digests resolved when the request was made.
        digests: Vec<String>,
        /// Payload annotations.
        annotations: BTreeMap<String, String>,
    },
}

/// Where a request stands. Stored as its lower-case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Waiting for approvers.
    Pending,
    /// Approved; signing has not finished (resumed at start-up).
    Approved,
    /// Signed (or, for a policy change, applied).
    Signed,
    /// Denied by an approver.
    Denied,
    /// Not approved in time.
    Expired,
    /// Approved, but the checks made again at execution failed (see `error`).
    Refused,
}

impl State {
    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Approved => "approved",
            State::Signed => "signed",
            State::Denied => "denied",
            State::Expired => "expired",
            State::Refused => "refused",
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored approval.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApprovalRecord {
    /// Random id.
    pub id: String,
    /// Where it stands.
    pub status: State,
    /// Key to sign with.
    pub key: String,
    /// What to sign.
    pub subject: Subject,
    /// SHA-256 of the original request.
    pub request_hash: String,
    /// Who asked.
    pub requester: String,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Pending requests expire then.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// Approvals needed.
    pub needed: u32,
    /// Approvers so far.
    pub approved_by: Vec<String>,
    /// Who denied it, and why.
    pub denied_by: Option<(String, String)>,
    /// Blob signature (base64) once signed.
    pub signature: Option<String>,
    /// Key version that signed (none until then; stored as 0 by older daemons).
    #[serde(default, deserialize_with = "version_or_none")]
    pub version: Option<u32>,
    /// Where image signatures went.
    pub pushed_to: Vec<String>,
    /// Why signing failed, if it did (the request stays approved and is retried at
    /// start-up).
    pub error: Option<String>,
    /// What executing it did, in words (a revocation: the list issued, jobs started).
    #[serde(default)]
    pub outcome: Option<String>,
}

/// Reads "" (a blob that is a message) as none.
fn empty_as_none<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v: Option<String> = Option::deserialize(d)?;
    Ok(v.filter(|s| !s.is_empty()))
}

/// Writes none as "", as every keywardd reads it.
fn none_as_empty<S: serde::Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v.as_deref().unwrap_or_default())
}

/// Records written before versions were optional say 0 for "not signed yet".
fn version_or_none<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let v: Option<u32> = Option::deserialize(d)?;
    Ok(v.filter(|n| *n != 0))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_version_stored_as_0_by_an_older_daemon_reads_as_none() {
        #[derive(serde::Deserialize)]
        struct R {
            #[serde(default, deserialize_with = "super::version_or_none")]
            version: Option<u32>,
        }
        let read = |json: &str| serde_json::from_str::<R>(json).unwrap().version;
        assert_eq!(read(r#"{"version":0}"#), None);
        assert_eq!(read(r#"{"version":3}"#), Some(3));
        assert_eq!(read(r#"{"version":null}"#), None);
        assert_eq!(read(r#"{}"#), None);
    }

    #[test]
    fn a_blob_that_is_a_message_is_stored_with_an_empty_algorithm_and_read_as_none() {
        let message = super::Subject::Blob {
            digest_algorithm: None,
            data: "bXNn".into(),
            file_name: "f".into(),
            size: 3,
        };
        let stored = serde_json::to_value(&message).unwrap();
        assert_eq!(stored["digest_algorithm"], "");
        let back: super::Subject = serde_json::from_value(stored).unwrap();
        assert!(matches!(
            back,
            super::Subject::Blob {
                digest_algorithm: None,
                ..
            }
        ));
        let digest = r#"{"kind":"blob","digest_algorithm":"sha256","data":"ab"}"#;
        let back: super::Subject = serde_json::from_str(digest).unwrap();
        assert!(
            matches!(back, super::Subject::Blob { digest_algorithm: Some(ref d), .. } if d == "sha256")
        );
    }
}
