//! The audit log's line format, shared by keywardd (which writes it), `keyward audit
//! verify` (which checks it) and the tests: records, checkpoints and the anchor an
//! export from a point in time opens with, and the canonical hash of a record.
//!
//! A record's `hash` is SHA-256 of the record as compact JSON with sorted keys and
//! without the `hash` field; `prev_hash` is the previous record's hash ([`GENESIS`] for
//! the first). A checkpoint signs [`checkpoint_message`] with ECDSA P-256 (SHA-256).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Digest;
use std::borrow::Cow;

/// Hash of the first record's predecessor.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What was decided about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// A request that changes state or signs was admitted; its outcome follows.
    Intent,
    /// It was allowed (a read) or it succeeded.
    Allowed,
    /// It was refused: authentication, role, policy, code.
    Denied,
    /// It was admitted but failed.
    Failed,
}

impl Decision {
    /// The name records carry.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Intent => "intent",
            Decision::Allowed => "allowed",
            Decision::Denied => "denied",
            Decision::Failed => "failed",
        }
    }
}

impl From<Decision> for keyward_proto::v1::AuditDecision {
    fn from(d: Decision) -> Self {
        use keyward_proto::v1::AuditDecision as P;
        match d {
            Decision::Intent => P::Intent,
            Decision::Allowed => P::Allowed,
            Decision::Denied => P::Denied,
            Decision::Failed => P::Failed,
        }
    }
}

impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `type` of a record line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordType {
    /// Always `record`.
    Record,
}

/// One audit record. The fields are in sorted order, so that its compact JSON (the
/// `hash` is not serialised) is the canonical form its hash covers: one serialisation
/// makes both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record<'a> {
    /// The API method (or start-up event).
    #[serde(borrow)]
    pub action: Cow<'a, str>,
    /// What was decided.
    pub decision: Decision,
    /// What an event needs beyond `reason` (an incident's report); absent elsewhere,
    /// so records without it hash as they always did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<Value>,
    /// The previous record's hash.
    #[serde(borrow)]
    pub prev_hash: Cow<'a, str>,
    /// Who asked (empty when the caller could not be authenticated).
    #[serde(borrow)]
    pub principal: Cow<'a, str>,
    /// Why (for denials and failures).
    #[serde(borrow)]
    pub reason: Cow<'a, str>,
    /// SHA-256 of the request message, hex.
    #[serde(borrow)]
    pub request_hash: Cow<'a, str>,
    /// Position in the chain, from 1.
    pub seq: u64,
    /// What it was about (key, image reference, principal, approval id).
    #[serde(borrow)]
    pub target: Cow<'a, str>,
    /// RFC 3339.
    #[serde(borrow)]
    pub time: Cow<'a, str>,
    /// `record`.
    #[serde(rename = "type")]
    pub kind: RecordType,
    /// Its hash, as stored (not part of what it covers).
    #[serde(default, skip_serializing)]
    pub hash: String,
}

impl Record<'_> {
    /// The line as stored and exported (its canonical JSON with `hash` added) and
    /// its hash.
    pub fn to_line(&self) -> (Vec<u8>, String) {
        let mut bytes = serde_json::to_vec(self).unwrap_or_default();
        let hash = hex::encode(sha2::Sha256::digest(&bytes));
        bytes.pop();
        bytes.extend_from_slice(format!(",\"hash\":\"{hash}\"}}").as_bytes());
        (bytes, hash)
    }
}

/// A signature over the chain head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// `checkpoint`.
    #[serde(rename = "type")]
    pub kind: CheckpointType,
    /// The record it covers (and all before it).
    pub seq: u64,
    /// That record's hash.
    pub head_hash: String,
    /// RFC 3339.
    pub time: String,
    /// ECDSA P-256 over [`checkpoint_message`], DER, base64.
    pub signature: String,
}

/// The `type` of a checkpoint line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckpointType {
    /// Always `checkpoint`.
    Checkpoint,
}

/// The first line of an export from a point in time: the record it follows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    /// `anchor`.
    #[serde(rename = "type")]
    pub kind: AnchorType,
    /// The record the export follows.
    pub seq: u64,
    /// Its hash.
    pub hash: String,
}

/// The `type` of an anchor line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AnchorType {
    /// Always `anchor`.
    Anchor,
}

/// Any line of the log.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Line<'a> {
    /// A record.
    #[serde(borrow)]
    Record(Record<'a>),
    /// A checkpoint.
    Checkpoint(Checkpoint),
    /// An anchor.
    Anchor(Anchor),
}

/// SHA-256 of a record line as compact JSON with sorted keys, without its `hash` field.
/// Computed over every field present, so that a field added to a line changes it.
pub fn record_hash(record: &Value) -> String {
    let mut v = record.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("hash");
    }
    hex::encode(sha2::Sha256::digest(
        serde_json::to_vec(&v).unwrap_or_default(),
    ))
}

/// Where the audit chain stood at a moment: its last durable record, as the audit key
/// signs it (`keyward audit head`, `GET /v1/audit/head`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditHead {
    /// The record's sequence number.
    pub seq: u64,
    /// Its hash.
    pub hash: String,
    /// When the head was signed (RFC 3339).
    pub time: String,
}

/// An audit head and the audit key's signature over [`head_message`] (base64).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedHead {
    /// The head.
    pub head: AuditHead,
    /// Base64 of the audit key's signature.
    pub signature: String,
}

/// The bytes a head signature covers.
pub fn head_message(head: &AuditHead) -> Vec<u8> {
    format!(
        "keyward-audit-head\n{}\n{}\n{}",
        head.seq, head.hash, head.time
    )
    .into_bytes()
}

/// The bytes a checkpoint signature covers.
pub fn checkpoint_message(seq: u64, head_hash: &str) -> Vec<u8> {
    format!("keyward-audit-checkpoint\n{seq}\n{head_hash}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_hashes_as_its_sorted_json_without_the_hash_and_reads_back() {
        let r = Record {
            action: "SignDigest".into(),
            decision: Decision::Allowed,
            detail: None,
            prev_hash: GENESIS.into(),
            principal: "ci \"bot\"".into(),
            reason: "".into(),
            request_hash: "ab".into(),
            seq: 7,
            target: "k".into(),
            time: "2026-11-27T10:00:00Z".into(),
            kind: RecordType::Record,
            hash: String::new(),
        };
        let (bytes, hash) = r.to_line();
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["hash"], hash.as_str());
        assert_eq!(record_hash(&v), hash);
        assert_eq!(
            (v["seq"].as_u64(), v["type"].as_str()),
            (Some(7), Some("record"))
        );
        let back: Line = serde_json::from_slice(&bytes).unwrap();
        let Line::Record(back) = back else {
            panic!("not read as a record: {back:?}")
        };
        assert_eq!(back.hash, hash);
        assert_eq!(
            Record {
                hash: String::new(),
                ..back
            },
            r
        );
    }

    #[test]
    fn checkpoints_and_anchors_are_told_apart_from_records() {
        let c = r#"{"type":"checkpoint","seq":3,"head_hash":"h","time":"t","signature":"s"}"#;
        assert!(matches!(
            serde_json::from_str(c).unwrap(),
            Line::Checkpoint(_)
        ));
        let a = r#"{"type":"anchor","seq":3,"hash":"h"}"#;
        assert!(matches!(serde_json::from_str(a).unwrap(), Line::Anchor(_)));
        let bad = r#"{"type":"record","seq":3}"#;
        assert!(serde_json::from_str::<Line>(bad).is_err());
    }
}
