//! The write-ahead log's entry format: length, CRC-32 of the payload, payload
//! (namespace tag, key length, key, value); and its file, written in place into space
//! zero-filled ahead of the entries, so that the fdatasync of a group commit does not
//! grow the file and need not commit the file system's metadata with the data.

use super::Namespace;
use std::fs::File;
use std::io;

/// Zero-filled space is added in steps of this many bytes.
const FILL: u64 = 1 << 20;

/// The log file: entries up to `end`, zeros after them up to `filled`.
#[derive(Debug)]
pub(super) struct WalFile {
    file: File,
    end: u64,
    filled: u64,
}

impl WalFile {
    /// An empty log in `file` (opened for writing, not appending: entries are written
    /// at their offset).
    pub(super) fn empty(file: File) -> io::Result<Self> {
        let mut wal = Self {
            file,
            end: 0,
            filled: 0,
        };
        wal.clear()?;
        Ok(wal)
    }

    /// Bytes of entries in the log.
    pub(super) fn len(&self) -> u64 {
        self.end
    }

    /// Writes `entries` after the last ones and makes them durable.
    pub(super) fn append_durably(&mut self, entries: &[u8]) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        let end = self.end + entries.len() as u64;
        if end > self.filled {
            // Zeros read as the end of the log; durable, with the new size, before any
            // entry is written into them.
            let grow = (end - self.filled).div_ceil(FILL) * FILL;
            self.file
                .write_all_at(&vec![0u8; grow as usize], self.filled)?;
            self.file.sync_all()?;
            self.filled += grow;
        }
        self.file.write_all_at(entries, self.end)?;
        self.file.sync_data()?;
        self.end = end;
        Ok(())
    }

    /// Empties the log (everything in it is in the store, flushed).
    pub(super) fn clear(&mut self) -> io::Result<()> {
        self.file.set_len(0)?;
        // Empty from here on, whether or not the sync below succeeds: the next entry
        // goes at the start, after zeros made durable with the new size.
        (self.end, self.filled) = (0, 0);
        self.file.sync_all()
    }
}

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

/// The complete entries of a log and whether it ends torn (a crash during an append:
/// bytes after the last complete entry that are not the zero-filled space).
pub(super) fn wal_entries(bytes: &[u8]) -> (Vec<(Namespace, String, Vec<u8>)>, bool) {
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
    (out, bytes[at..].iter().any(|b| *b != 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeros_end_a_log_cleanly_and_anything_else_after_the_entries_is_torn() {
        let mut log = wal_entry(Namespace::Audit, "1", b"one");
        log.extend(wal_entry(Namespace::Ledger, "2", b"two"));
        let complete = log.len();
        log.resize(complete + 4096, 0);
        let (entries, torn) = wal_entries(&log);
        assert_eq!((entries.len(), torn), (2, false));
        // A crash while writing the third entry into the zeros.
        let third = wal_entry(Namespace::Audit, "3", b"three");
        log[complete..complete + third.len() - 2].copy_from_slice(&third[..third.len() - 2]);
        let (entries, torn) = wal_entries(&log);
        assert_eq!((entries.len(), torn), (2, true));
    }
}
