//! Offline verification of an exported audit log: the hash chain and the checkpoint
//! signatures made by the audit key inside the HSM.

use super::record::{GENESIS, Line, checkpoint_message, record_hash};
use serde::Deserialize;
use serde_json::Value;

/// What a successful verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Records checked.
    pub records: u64,
    /// Checkpoint signatures checked.
    pub checkpoints: u64,
    /// Highest sequence number covered by a valid checkpoint (0: none).
    pub covered_up_to: u64,
    /// Highest sequence number seen.
    pub last_seq: u64,
    /// The first record checked.
    pub first_seq: u64,
}

/// How strict verification is.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The export starts at this record and opens with the anchor line that
    /// `keyward audit export --since` writes; without it, it must start at record 1.
    pub from: Option<u64>,
    /// Accept records no checkpoint covers (they are still counted).
    pub allow_unsigned_tail: bool,
    /// A head the audit key signed: the export must reach it and hold its hash at its
    /// sequence (an export cut back to an earlier checkpoint is refused).
    pub head: Option<super::SignedHead>,
}

/// Verifies exported lines against the audit public key (PEM). The error names the
/// first bad line.
pub fn verify(text: &str, public_key_pem: &str, opts: &Options) -> Result<Verified, String> {
    use base64::Engine;
    let body: String = public_key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .map_err(|_| "the audit key file is not PEM".to_string())?;
    if crate::signature::key_kind(&der).is_none() {
        return Err("the audit key file holds no ECDSA or RSA public key".into());
    }
    let key = der;
    let mut out = Verified {
        records: 0,
        checkpoints: 0,
        covered_up_to: 0,
        last_seq: 0,
        first_seq: 0,
    };
    let mut hashes: std::collections::HashMap<u64, String> = std::collections::HashMap::new();
    let mut prev: Option<(u64, String)> = None;
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let n = i + 1;
        let v: Value =
            serde_json::from_str(line).map_err(|e| format!("line {n}: not JSON: {e}"))?;
        let line = Line::deserialize(&v)
            .map_err(|e| format!("line {n}: not an audit record, checkpoint or anchor: {e}"))?;
        match line {
            Line::Anchor(a) => {
                if out.records > 0 || prev.is_some() {
                    return Err(format!("line {n}: an anchor may only open the export"));
                }
                if opts.from != Some(a.seq + 1) {
                    return Err(format!(
                        "line {n}: the export starts after record {}; verify it with --from {} if that is where you meant to start, or export the whole log",
                        a.seq,
                        a.seq + 1
                    ));
                }
                hashes.insert(a.seq, a.hash.clone());
                prev = Some((a.seq, a.hash));
            }
            Line::Record(r) => {
                let seq = r.seq;
                let what = format!("record {seq} (line {n})");
                // Over every field present: a field added to the line changes it.
                if record_hash(&v) != r.hash {
                    return Err(format!(
                        "{what}: its hash does not match its content (edited)"
                    ));
                }
                if let Some((pseq, phash)) = &prev {
                    if seq != pseq + 1 {
                        return Err(format!(
                            "{what}: expected record {} next (records dropped or reordered)",
                            pseq + 1
                        ));
                    }
                    if r.prev_hash != phash.as_str() {
                        return Err(format!("{what}: prev_hash does not match record {pseq}"));
                    }
                } else if let Some(from) = opts.from.filter(|f| *f > 1) {
                    return Err(format!(
                        "{what}: --from {from} needs the anchor line that `keyward audit export --since` writes first"
                    ));
                } else if seq != 1 {
                    return Err(format!(
                        "{what}: the export does not start at record 1 (records 1..{seq} are missing); export the whole log, or verify an `export --since` file with --from"
                    ));
                } else if r.prev_hash != GENESIS {
                    return Err(format!(
                        "{what}: the first record must follow the genesis hash"
                    ));
                }
                if out.first_seq == 0 {
                    out.first_seq = seq;
                }
                hashes.insert(seq, r.hash.clone());
                prev = Some((seq, r.hash));
                out.records += 1;
                out.last_seq = seq;
            }
            Line::Checkpoint(c) => {
                let seq = c.seq;
                let what = format!("checkpoint at record {seq} (line {n})");
                match hashes.get(&seq) {
                    Some(h) if *h == c.head_hash => {}
                    Some(_) => {
                        return Err(format!("{what}: signs a different record {seq} (edited)"));
                    }
                    None => return Err(format!("{what}: record {seq} is missing before it")),
                }
                let sig = base64::engine::general_purpose::STANDARD
                    .decode(&c.signature)
                    .map_err(|_| format!("{what}: signature is not base64"))?;
                let msg = checkpoint_message(seq, &c.head_hash);
                if !crate::signature::verifies(&key, &msg, &sig) {
                    return Err(format!(
                        "{what}: the signature does not verify with the audit key"
                    ));
                }
                out.checkpoints += 1;
                out.covered_up_to = out.covered_up_to.max(seq);
            }
        }
    }
    if out.records == 0 {
        return Err("no audit records in the input".into());
    }
    if let Some(signed) = &opts.head {
        let head = &signed.head;
        let sig = base64::engine::general_purpose::STANDARD
            .decode(&signed.signature)
            .map_err(|_| "the signed head's signature is not base64".to_string())?;
        if !crate::signature::verifies(&key, &super::head_message(head), &sig) {
            return Err("the signed head's signature does not verify with the audit key".into());
        }
        if out.last_seq < head.seq {
            return Err(format!(
                "the export ends at record {}; the signed head (at {}) is record {}: records were cut off the end",
                out.last_seq, head.time, head.seq
            ));
        }
        match hashes.get(&head.seq) {
            Some(h) if *h == head.hash => {}
            Some(_) => {
                return Err(format!(
                    "record {} of the export is not the record the signed head names (another history)",
                    head.seq
                ));
            }
            None => {
                return Err(format!(
                    "the export does not hold record {}, which the signed head names",
                    head.seq
                ));
            }
        }
    }
    let signed_to = out.covered_up_to.max(out.first_seq.saturating_sub(1));
    if out.checkpoints == 0 || out.covered_up_to < out.last_seq {
        let uncovered = out.last_seq - signed_to;
        if !opts.allow_unsigned_tail {
            return Err(format!(
                "{uncovered} records ({}..={}) are covered by no checkpoint signature, so they could have been changed or cut without a trace; export again (an export signs the chain head first), or accept them with --allow-unsigned-tail",
                signed_to + 1,
                out.last_seq
            ));
        }
    }
    Ok(out)
}
