//! The write-ahead log's entry format: length, CRC-32 of the payload, payload
//! (namespace tag, key length, key, value).

use super::Namespace;

/// One log entry.
pub(super) fn wal_entry(ns: Namespace, key: &str, value: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(3 + key.len() + value.len());
    payload.push(ns.tag());
    payload.extend_from_slice(&(key.len() as u16).to_le_bytes());
    payload.extend_from_slice(key.as_bytes());
    payload.extend_from_slice(value);
    let mut out = Vec::with_capacity(8 + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

/// The complete entries of a log; a torn tail (a crash during an append) ends it.
pub(super) fn wal_entries(bytes: &[u8]) -> (Vec<(Namespace, String, Vec<u8>)>, usize) {
    let mut out = Vec::new();
    let mut at = 0;
    while bytes.len() >= at + 8 {
        let len =
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as usize;
        let crc = u32::from_le_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]]);
        let Some(payload) = bytes.get(at + 8..at + 8 + len) else {
            break;
        };
        if crc32fast::hash(payload) != crc || payload.len() < 3 {
            break;
        }
        let key_len = u16::from_le_bytes([payload[1], payload[2]]) as usize;
        let (Some(ns), Some(key)) = (Namespace::from_tag(payload[0]), payload.get(3..3 + key_len))
        else {
            break;
        };
        out.push((
            ns,
            String::from_utf8_lossy(key).into_owned(),
            payload[3 + key_len..].to_vec(),
        ));
        at += 8 + len;
    }
    (out, at)
}
