//! [`VersionRef`]: the key version a signing request resolved once, when its checks
//! passed. It is the version the HSM signs with and the one the ledger entry and the
//! signature's annotations name, so that a rotation landing mid-request cannot make
//! them disagree (or leave the fingerprint empty).

use super::{KeyRecord, KeyVersion, VersionState};
use std::sync::Arc;

/// A key and one of its versions, as they were when the request was checked.
#[derive(Debug, Clone)]
pub struct VersionRef {
    key: Arc<KeyRecord>,
    index: usize,
}

impl VersionRef {
    /// The key's active version; `None` when it has none.
    pub fn active(key: Arc<KeyRecord>) -> Option<Self> {
        let index = key
            .versions
            .iter()
            .position(|v| v.state == VersionState::Active)?;
        Some(Self { key, index })
    }

    /// The key record.
    pub fn key(&self) -> &Arc<KeyRecord> {
        &self.key
    }

    /// The version.
    pub fn version(&self) -> &KeyVersion {
        &self.key.versions[self.index]
    }

    /// Its number.
    pub fn number(&self) -> u32 {
        self.version().version
    }

    /// SHA-256 of its public key, hex.
    pub fn fingerprint(&self) -> &str {
        &self.version().fingerprint
    }

    /// `name/vN`, as signature annotations and HSM labels name it.
    pub fn label(&self) -> String {
        format!("{}/v{}", self.key.name, self.number())
    }
}
