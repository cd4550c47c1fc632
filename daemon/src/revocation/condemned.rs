//! Whether a signature the ledger holds is condemned: revoked on its own, made by a
//! version that was compromised when it signed, or re-made (derived) from a signature
//! that is. The one answer that re-signing, the revocation of derived signatures and
//! incident reports share, read from the records as they are when it is asked.

use super::signatures::RevokedSignatures;
use crate::keys::{KeyError, KeyRegistry, RevocationReason, rfc3339};
use crate::signing::ledger::{LedgerEntry, SignatureLedger};
use std::sync::Arc;

/// Derivations followed upwards at most (a rotation a year for far longer than any
/// image lives); a longer chain is refused rather than walked.
const MAX_CHAIN: usize = 64;

/// Answers whether ledger entries are condemned.
#[derive(Clone)]
pub struct Condemnation {
    keys: Arc<KeyRegistry>,
    revoked: Arc<RevokedSignatures>,
    ledger: SignatureLedger,
}

impl std::fmt::Debug for Condemnation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Condemnation").finish_non_exhaustive()
    }
}

/// Why a signature is condemned, in words a `jobs show` reader can act on; `None`
/// when nothing condemns it.
pub type Verdict = Option<String>;

impl Condemnation {
    /// Over the key records, the revoked signatures and the ledger.
    pub fn new(
        keys: Arc<KeyRegistry>,
        revoked: Arc<RevokedSignatures>,
        ledger: SignatureLedger,
    ) -> Self {
        Self {
            keys,
            revoked,
            ledger,
        }
    }

    /// The key records.
    pub fn keys(&self) -> &Arc<KeyRegistry> {
        &self.keys
    }

    /// The ledger.
    pub fn ledger(&self) -> &SignatureLedger {
        &self.ledger
    }

    /// The revoked signatures.
    pub fn revoked(&self) -> &Arc<RevokedSignatures> {
        &self.revoked
    }

    /// Whether `entry` itself (not what it was derived from) is condemned.
    fn own(&self, e: &LedgerEntry) -> Result<Verdict, KeyError> {
        if let Some(r) = self.revoked.get(&e.key, e.version, &e.digest) {
            return Ok(Some(format!(
                "the signature of {} by key {:?} v{} was revoked at {} ({})",
                e.digest,
                e.key,
                e.version,
                rfc3339(r.revoked_at),
                r.reason.as_str()
            )));
        }
        let key = match self.keys.get(&e.key) {
            Ok(k) => k,
            Err(KeyError::NotFound(_)) => {
                return Ok(Some(format!("key {:?} no longer exists", e.key)));
            }
            Err(err) => return Err(err),
        };
        let Some(v) = key.version(e.version) else {
            return Ok(Some(format!(
                "key {:?} has no version {} any more",
                e.key, e.version
            )));
        };
        let Some(r) = v
            .revocation
            .as_ref()
            .filter(|r| r.reason == RevocationReason::KeyCompromise)
        else {
            return Ok(None);
        };
        Ok(match r.compromised_since {
            None => Some(format!(
                "key {:?} v{} was revoked as compromised with no known start, so none of its signatures can be told from an attacker's",
                e.key, e.version
            )),
            Some(since) if e.time >= since => Some(format!(
                "it was made at {}, after key {:?} v{} was compromised (since {})",
                rfc3339(e.time),
                e.key,
                e.version,
                rfc3339(since)
            )),
            Some(_) => None,
        })
    }

    /// Whether the signature `entry` is condemned, itself or
    /// through any signature it was derived from.
    pub async fn check(&self, entry: &LedgerEntry) -> Result<Verdict, KeyError> {
        let mut current = entry.clone();
        for depth in 0..MAX_CHAIN {
            if let Some(why) = self.own(&current)? {
                return Ok(Some(if depth == 0 {
                    why
                } else {
                    format!("it re-makes a condemned signature: {why}")
                }));
            }
            if current.derived_from.is_empty() {
                return Ok(None);
            }
            let row = current.derived_from.clone();
            current = match self.ledger.get(&row).await? {
                Some(e) => e,
                None => {
                    return Ok(Some(format!(
                        "the signature it re-makes (ledger row {row}) is not in the ledger"
                    )));
                }
            };
        }
        Ok(Some(format!(
            "it is derived through more than {MAX_CHAIN} re-signings; refused rather than followed"
        )))
    }
}
