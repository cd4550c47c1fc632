//! Ledger rows carry MACs, like every record that grants power: a row is what a
//! re-signing campaign turns into a real signature, so a row planted or edited in the
//! store files must never be acted on. Rows are written on the signing hot path, too
//! often for an HSM command each, so they are MAC'd in memory (HMAC-SHA256) with a key
//! the HSM derives from the instance's record MAC key at start-up: only that HSM can
//! make the key again. The MAC covers the row's store key and its JSON, and is stored
//! as the JSON's last field (`"mac"`).

use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

/// The MAC of ledger rows.
pub struct LedgerMac {
    key: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for LedgerMac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LedgerMac(REDACTED)")
    }
}

const FIELD: &[u8] = b",\"mac\":\"";

impl LedgerMac {
    /// MACs with `key` (from `RecordMac::derive`).
    pub fn new(key: Zeroizing<Vec<u8>>) -> Self {
        Self { key }
    }

    fn tag(&self, row: &str, body: &[u8]) -> Vec<u8> {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        m.update(b"keyward-ledger-row\0");
        m.update(row.as_bytes());
        m.update(b"\0");
        m.update(body);
        m.finalize().into_bytes().to_vec()
    }

    /// The stored form of row `row` whose JSON (an object) is `body`.
    pub fn seal(&self, row: &str, body: &[u8]) -> Vec<u8> {
        let tag = hex::encode(self.tag(row, body));
        let mut out = Vec::with_capacity(body.len() + FIELD.len() + tag.len() + 2);
        out.extend_from_slice(&body[..body.len().saturating_sub(1)]);
        out.extend_from_slice(FIELD);
        out.extend_from_slice(tag.as_bytes());
        out.extend_from_slice(b"\"}");
        out
    }

    /// The JSON of a stored row whose MAC holds; `None` when it has none or it fails.
    pub fn open(&self, row: &str, stored: &[u8]) -> Option<Vec<u8>> {
        // `...,"mac":"<64 hex>"}`
        let tail = FIELD.len() + 64 + 2;
        if stored.len() < tail + 2 || !stored.ends_with(b"\"}") {
            return None;
        }
        let at = stored.len() - tail;
        if &stored[at..at + FIELD.len()] != FIELD {
            return None;
        }
        let tag = hex::decode(&stored[at + FIELD.len()..stored.len() - 2]).ok()?;
        let mut body = stored[..at].to_vec();
        body.push(b'}');
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).ok()?;
        m.update(b"keyward-ledger-row\0");
        m.update(row.as_bytes());
        m.update(b"\0");
        m.update(&body);
        m.verify_slice(&tag).ok().map(|_| body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_row_opens_under_its_own_key_only_and_nothing_edited_opens() {
        let mac = LedgerMac::new(Zeroizing::new(vec![7; 32]));
        let body = br#"{"digest":"sha256:aa","key":"k"}"#;
        let stored = mac.seal("row-1", body);
        assert_eq!(mac.open("row-1", &stored).as_deref(), Some(&body[..]));
        assert!(mac.open("row-2", &stored).is_none(), "moved to another row");
        let edited = String::from_utf8(stored.clone())
            .unwrap()
            .replace("aa", "bb");
        assert!(mac.open("row-1", edited.as_bytes()).is_none());
        assert!(mac.open("row-1", body).is_none(), "a row without a MAC");
        let other = LedgerMac::new(Zeroizing::new(vec![8; 32]));
        assert!(other.open("row-1", &stored).is_none());
        assert!(mac.open("row-1", b"").is_none());
    }
}
