//! Short names of enum values ("active" for `VERSION_STATE_ACTIVE`), for JSON output
//! and text: one spelling everywhere.

use crate::v1 as pb;
use serde::Serializer;

macro_rules! names {
    ($($fn:ident: $enum:ident, $prefix:literal;)*) => {$(
        /// The value's short name (lower case, without the enum's prefix); "unknown"
        /// for a number this build does not know.
        pub fn $fn<S: Serializer>(v: &i32, s: S) -> Result<S::Ok, S::Error> {
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
}

/// A version state's short name.
pub fn version_state_name(v: i32) -> String {
    short(
        pb::VersionState::try_from(v).map(|e| e.as_str_name()).ok(),
        "VERSION_STATE_",
    )
}
