//! Short names of enum values ("active" for `VERSION_STATE_ACTIVE`), for JSON output
//! and text: one spelling everywhere.

use crate::v1 as pb;
use serde::Serializer;

macro_rules! names {
    ($($fn:ident: $enum:ident, $prefix:literal;)*) => {$(
        /// The value's short name (lower case, without the enum's prefix); "unknown"
        /// for a number this build does not know, `null` for 0 (unspecified: absent).
        pub fn $fn<S: Serializer>(v: &i32, s: S) -> Result<S::Ok, S::Error> {
            if *v == 0 {
                return s.serialize_none();
            }
            s.serialize_str(&short(pb::$enum::try_from(*v).map(|e| e.as_str_name()).ok(), $prefix))
        }
    )*};
}

fn short(name: Option<&str>, prefix: &str) -> String {
    match name {
        Some(n) => n.strip_prefix(prefix).unwrap_or(n).to_ascii_lowercase(),
        None => "unknown".into(),
    }
}

names! {
    version_state: VersionState, "VERSION_STATE_";
    error_reason: ErrorReason, "ERROR_REASON_";
    approval_state: ApprovalState, "APPROVAL_STATE_";
    approval_kind: ApprovalKind, "APPROVAL_KIND_";
    audit_decision: AuditDecision, "AUDIT_DECISION_";
    job_state: JobState, "JOB_STATE_";
}

macro_rules! text_names {
    ($($fn:ident: $enum:ident, $prefix:literal;)*) => {$(
        /// The value's short name, as text prints it.
        pub fn $fn(v: i32) -> String {
            short(pb::$enum::try_from(v).map(|e| e.as_str_name()).ok(), $prefix)
        }
    )*};
}

text_names! {
    version_state_name: VersionState, "VERSION_STATE_";
    approval_state_name: ApprovalState, "APPROVAL_STATE_";
    approval_kind_name: ApprovalKind, "APPROVAL_KIND_";
    job_state_name: JobState, "JOB_STATE_";
}

/// A revocation reason as users type it and lists carry it ("key-compromise").
pub fn revocation_reason_name(v: i32) -> String {
    short(
        pb::RevocationReason::try_from(v)
            .map(|e| e.as_str_name())
            .ok(),
        "REVOCATION_REASON_",
    )
    .replace('_', "-")
}

/// Serialises a revocation reason by [`revocation_reason_name`]; `null` for none (0:
/// a version never revoked).
pub fn revocation_reason<S: Serializer>(v: &i32, s: S) -> Result<S::Ok, S::Error> {
    if *v == 0 {
        return s.serialize_none();
    }
    s.serialize_str(&revocation_reason_name(*v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_print_their_short_names_and_unknown_numbers_say_so() {
        assert_eq!(
            approval_state_name(pb::ApprovalState::Pending as i32),
            "pending"
        );
        assert_eq!(
            approval_kind_name(pb::ApprovalKind::Attestation as i32),
            "attestation"
        );
        assert_eq!(
            version_state_name(pb::VersionState::Retired as i32),
            "retired"
        );
        assert_eq!(version_state_name(99), "unknown");
        let a = pb::Approval {
            status: pb::ApprovalState::Refused as i32,
            kind: pb::ApprovalKind::Blob as i32,
            ..Default::default()
        };
        let v = serde_json::to_value(&a).unwrap();
        assert_eq!(
            (v["status"].as_str(), v["kind"].as_str()),
            (Some("refused"), Some("blob"))
        );
        let none = serde_json::to_value(pb::KeyVersion::default()).unwrap();
        assert_eq!(
            (&none["state"], &none["revocation_reason"]),
            (&serde_json::Value::Null, &serde_json::Value::Null),
            "{none}"
        );
    }
}
