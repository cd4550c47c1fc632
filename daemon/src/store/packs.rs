//! Packs: the records one group commit adds to the audit log or the ledger, stored as
//! one sled value instead of one value per record.
//!
//! Every record a signing request leaves (its audit record, its ledger entry) is
//! already durable in the write-ahead log when the group commit hands it to sled, and
//! inserting each one into sled costs about 10 µs of CPU, most of it per value rather
//! than per byte. So a commit's records of a packed namespace are sorted and stored as
//! packs of up to [`PACK_BYTES`], each under the key of its last record in a tree of
//! its own (`audit.packs`, `ledger.packs`).
//!
//! Packs never overlap: a commit packs only keys above every key packed before (the
//! namespace's `max`); a record whose key is not above it (a checkpoint queued after
//! later records, a ledger entry timed before one already committed) goes into the
//! namespace's own tree, one value as before. So the only pack that may hold a key is
//! the first whose tree key is not below it.
//!
//! Reads see one namespace: the namespace's tree first (a later `put` of a packed key
//! lands there and wins), then the packs. A packed record that is deleted is first
//! moved out of its pack ([`Packs::unpack`]), so no copy of it stays behind.

use super::{Namespace, StoreError};
use std::ops::Bound;

/// A pack holds at most this many bytes of records (one commit may make several).
const PACK_BYTES: usize = 128 * 1024;

/// What a pack's value starts with.
const MAGIC: &[u8; 4] = b"KWP1";

/// A record read back: key and value.
pub(super) type Raw = (Vec<u8>, Vec<u8>);

/// Whether a namespace's deferred records are packed.
pub(super) fn is_packed(ns: Namespace) -> bool {
    matches!(ns, Namespace::Audit | Namespace::Ledger)
}

fn engine(e: sled::Error) -> StoreError {
    StoreError::Engine(e.to_string())
}

/// `MAGIC`, then per record: key length (u16, big-endian), key, value length (u32),
/// value; records in key order.
fn encode(records: &[Raw]) -> Vec<u8> {
    let size = records
        .iter()
        .map(|(k, v)| 6 + k.len() + v.len())
        .sum::<usize>();
    let mut out = Vec::with_capacity(4 + size);
    out.extend_from_slice(MAGIC);
    for (k, v) in records {
        out.extend_from_slice(&(k.len() as u16).to_be_bytes());
        out.extend_from_slice(k);
        out.extend_from_slice(&(v.len() as u32).to_be_bytes());
        out.extend_from_slice(v);
    }
    out
}

/// The records of the pack stored under `at`, in key order.
fn records<'a>(
    pack: &'a [u8],
    at: &'a [u8],
) -> impl Iterator<Item = Result<(&'a [u8], &'a [u8]), StoreError>> + 'a {
    let corrupt = move |detail: &str| StoreError::Corrupt {
        key: format!("pack {}", String::from_utf8_lossy(at)),
        detail: detail.to_string(),
    };
    let mut rest = match pack.strip_prefix(MAGIC) {
        Some(r) => Ok(r),
        None => Err(corrupt("it does not start with a pack header")),
    };
    std::iter::from_fn(move || {
        let r = match &mut rest {
            Err(e) => {
                let e = std::mem::replace(e, corrupt("read past an error"));
                rest = Ok(&[]);
                return Some(Err(e));
            }
            Ok([]) => return None,
            Ok(r) => r,
        };
        let mut take = |n: usize| -> Option<&'a [u8]> {
            let (head, tail) = (r.get(..n)?, r.get(n..)?);
            *r = tail;
            Some(head)
        };
        let record = (|| {
            let klen = u16::from_be_bytes(take(2)?.try_into().ok()?) as usize;
            let key = take(klen)?;
            let vlen = u32::from_be_bytes(take(4)?.try_into().ok()?) as usize;
            Some((key, take(vlen)?))
        })();
        match record {
            Some(kv) => Some(Ok(kv)),
            None => {
                rest = Ok(&[]);
                Some(Err(corrupt("it ends inside a record")))
            }
        }
    })
}

/// A packed namespace's packs and the greatest key packed so far.
#[derive(Debug)]
struct Packed {
    tree: sled::Tree,
    /// Held while packing or unpacking, so that packs stay apart.
    max: std::sync::Mutex<Vec<u8>>,
}

/// The packs of every packed namespace.
#[derive(Debug)]
pub(super) struct Packs {
    /// By [`Namespace::tag`]; `None` for a namespace that is not packed.
    by_ns: Vec<Option<Packed>>,
}

impl Packs {
    pub(super) fn open(db: &sled::Db) -> Result<Self, StoreError> {
        let by_ns = Namespace::ALL
            .iter()
            .map(|ns| {
                if !is_packed(*ns) {
                    return Ok(None);
                }
                let tree = db
                    .open_tree(format!("{}.packs", ns.tree()))
                    .map_err(engine)?;
                let max = tree.last().map_err(engine)?.map(|(k, _)| k.to_vec());
                Ok(Some(Packed {
                    tree,
                    max: std::sync::Mutex::new(max.unwrap_or_default()),
                }))
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(Self { by_ns })
    }

    fn packed(&self, ns: Namespace) -> Option<&Packed> {
        self.by_ns.get(ns.tag() as usize).and_then(|p| p.as_ref())
    }

    /// Stores one commit's records of `ns` (already durable in the write-ahead log):
    /// in packs if the namespace is packed and their keys are above every key packed,
    /// else one by one into `main`, the namespace's tree. Of equal keys the last wins.
    pub(super) fn commit(
        &self,
        ns: Namespace,
        main: &sled::Tree,
        mut batch: Vec<Raw>,
    ) -> Result<(), StoreError> {
        let Some(p) = self.packed(ns) else {
            for (k, v) in batch {
                main.insert(k, v).map_err(engine)?;
            }
            return Ok(());
        };
        batch.sort_by(|a, b| a.0.cmp(&b.0)); // stable: equal keys keep their order
        let mut max = p.max.lock().unwrap_or_else(|e| e.into_inner());
        let mut pack: Vec<Raw> = Vec::new();
        let mut bytes = 0;
        let mut records = batch.into_iter().peekable();
        while let Some((k, v)) = records.next() {
            if records.peek().is_some_and(|(next, _)| *next == k) {
                continue; // a later write of the same key follows
            }
            if k <= *max || k.len() > u16::MAX as usize {
                main.insert(k, v).map_err(engine)?;
                continue;
            }
            bytes += 6 + k.len() + v.len();
            pack.push((k, v));
            if bytes >= PACK_BYTES {
                store_pack(p, &mut max, std::mem::take(&mut pack))?;
                bytes = 0;
            }
        }
        store_pack(p, &mut max, pack)
    }

    /// The packed record under `key`, if `ns` is packed and a pack holds it.
    pub(super) fn get(&self, ns: Namespace, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(p) = self.packed(ns) else {
            return Ok(None);
        };
        let Some(found) = p.tree.range(key..).next() else {
            return Ok(None);
        };
        let (at, pack) = found.map_err(engine)?;
        for r in records(&pack, &at) {
            let (k, v) = r?;
            if k == key {
                return Ok(Some(v.to_vec()));
            }
            if k > key {
                break;
            }
        }
        Ok(None)
    }

    /// The packed record with the greatest key.
    pub(super) fn last(&self, ns: Namespace) -> Result<Option<Raw>, StoreError> {
        let Some(p) = self.packed(ns) else {
            return Ok(None);
        };
        let Some((at, pack)) = p.tree.last().map_err(engine)? else {
            return Ok(None);
        };
        let mut last = None;
        for r in records(&pack, &at) {
            last = Some(r?);
        }
        Ok(last.map(|(k, v)| (k.to_vec(), v.to_vec())))
    }

    /// The packed records of `ns` from `start` on, in key order.
    pub(super) fn iter(
        &self,
        ns: Namespace,
        start: Bound<Vec<u8>>,
    ) -> Box<dyn Iterator<Item = Result<Raw, StoreError>> + Send> {
        let Some(p) = self.packed(ns) else {
            return Box::new(std::iter::empty());
        };
        // The first pack whose last key is in range may begin before `start`.
        let packs = p
            .tree
            .range::<Vec<u8>, _>((start.clone(), Bound::Unbounded));
        let in_range = move |k: &[u8]| match &start {
            Bound::Included(s) => k >= s.as_slice(),
            Bound::Excluded(s) => k > s.as_slice(),
            Bound::Unbounded => true,
        };
        Box::new(packs.flat_map(move |found| {
            let expanded: Vec<Result<Raw, StoreError>> = match found {
                Err(e) => vec![Err(engine(e))],
                Ok((at, pack)) => records(&pack, &at)
                    .filter(|r| r.as_ref().map_or(true, |(k, _)| in_range(k)))
                    .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())))
                    .collect(),
            };
            expanded
        }))
    }

    /// Moves the record under `key` out of its pack into `main` (before it is deleted
    /// there); nothing if no pack holds it.
    pub(super) fn unpack(
        &self,
        ns: Namespace,
        main: &sled::Tree,
        key: &[u8],
    ) -> Result<(), StoreError> {
        let Some(p) = self.packed(ns) else {
            return Ok(());
        };
        let _held = p.max.lock().unwrap_or_else(|e| e.into_inner());
        let Some(found) = p.tree.range(key..).next() else {
            return Ok(());
        };
        let (at, pack) = found.map_err(engine)?;
        let mut rest = Vec::new();
        let mut value = None;
        for r in records(&pack, &at) {
            let (k, v) = r?;
            if k == key {
                value = Some(v.to_vec());
            } else {
                rest.push((k.to_vec(), v.to_vec()));
            }
        }
        let Some(value) = value else {
            return Ok(());
        };
        // Into the tree first (a record there wins over a packed one, so a write
        // made there since stays), then out of the pack.
        let _ = main
            .compare_and_swap(key, None as Option<&[u8]>, Some(value))
            .map_err(engine)?;
        let new_at = rest.last().map(|(k, _)| k.clone());
        let new_pack = (!rest.is_empty()).then(|| encode(&rest));
        p.tree
            .transaction(|t| {
                t.remove(&*at)?;
                if let (Some(k), Some(v)) = (&new_at, &new_pack) {
                    t.insert(k.as_slice(), v.as_slice())?;
                }
                Ok::<_, sled::transaction::ConflictableTransactionError<()>>(())
            })
            .map_err(|e| StoreError::Engine(format!("cannot rewrite a pack: {e:?}")))?;
        Ok(())
    }
}

fn store_pack(p: &Packed, max: &mut Vec<u8>, pack: Vec<Raw>) -> Result<(), StoreError> {
    let Some((last, _)) = pack.last() else {
        return Ok(());
    };
    let last = last.clone();
    p.tree.insert(&last, encode(&pack)).map_err(engine)?;
    *max = last;
    Ok(())
}

/// Two key-ordered streams as one; of equal keys the first stream's record.
pub(super) fn merge(
    first: impl Iterator<Item = Result<Raw, StoreError>> + Send + 'static,
    second: impl Iterator<Item = Result<Raw, StoreError>> + Send + 'static,
) -> impl Iterator<Item = Result<Raw, StoreError>> + Send {
    let (mut a, mut b) = (first.peekable(), second.peekable());
    std::iter::from_fn(move || {
        let order = match (a.peek(), b.peek()) {
            (None, None) => return None,
            (Some(Err(_)), _) | (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) | (_, Some(Err(_))) => std::cmp::Ordering::Greater,
            (Some(Ok((x, _))), Some(Ok((y, _)))) => x.cmp(y),
        };
        match order {
            std::cmp::Ordering::Less => a.next(),
            std::cmp::Ordering::Greater => b.next(),
            std::cmp::Ordering::Equal => {
                b.next();
                a.next()
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(k: &str, v: &str) -> Raw {
        (k.as_bytes().to_vec(), v.as_bytes().to_vec())
    }

    #[test]
    fn a_pack_reads_back_and_a_cut_one_is_corrupt() {
        let recs = vec![raw("a", "1"), raw("b", ""), raw("c", "three")];
        let pack = encode(&recs);
        let back: Vec<Raw> = records(&pack, b"c")
            .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())))
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(back, recs);
        for cut in [pack.len() - 1, 5, 3] {
            let got: Vec<_> = records(&pack[..cut], b"c").collect();
            assert!(got.last().unwrap().is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn packs_stay_apart_and_reads_see_one_namespace() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let main = db.open_tree("ledger").unwrap();
        let packs = Packs::open(&db).unwrap();
        let ns = Namespace::Ledger;
        packs
            .commit(ns, &main, vec![raw("05", "five"), raw("03", "three")])
            .unwrap();
        // "04" is not above the packed "05": into the tree; "07" twice: the last wins.
        packs
            .commit(
                ns,
                &main,
                vec![raw("07", "x"), raw("04", "four"), raw("07", "seven")],
            )
            .unwrap();
        assert_eq!(main.get("04").unwrap().as_deref(), Some(&b"four"[..]));
        assert_eq!(
            packs.get(ns, b"03").unwrap().as_deref(),
            Some(&b"three"[..])
        );
        assert_eq!(
            packs.get(ns, b"07").unwrap().as_deref(),
            Some(&b"seven"[..])
        );
        assert_eq!(packs.get(ns, b"06").unwrap(), None);
        assert_eq!(packs.last(ns).unwrap(), Some(raw("07", "seven")));
        let main_iter = main
            .iter()
            .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(engine));
        let all: Vec<Raw> = merge(main_iter, packs.iter(ns, Bound::Excluded(b"03".to_vec())))
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            all,
            vec![raw("04", "four"), raw("05", "five"), raw("07", "seven")]
        );
        // Unpacking the last record of a pack moves it and renames the pack.
        packs.unpack(ns, &main, b"05").unwrap();
        assert_eq!(main.get("05").unwrap().as_deref(), Some(&b"five"[..]));
        assert_eq!(packs.get(ns, b"05").unwrap(), None);
        assert_eq!(
            packs.get(ns, b"03").unwrap().as_deref(),
            Some(&b"three"[..])
        );
        // Reopened: the greatest key packed is read back, so "06" is not packed.
        drop(packs);
        let packs = Packs::open(&db).unwrap();
        packs.commit(ns, &main, vec![raw("06", "six")]).unwrap();
        assert_eq!(main.get("06").unwrap().as_deref(), Some(&b"six"[..]));
        // A key too long for a pack goes into the tree; the pack before it is stored.
        let long = format!("11{}", "x".repeat(70_000));
        packs
            .commit(ns, &main, vec![raw("10", "ten"), raw(&long, "long")])
            .unwrap();
        assert_eq!(packs.get(ns, b"10").unwrap().as_deref(), Some(&b"ten"[..]));
        assert_eq!(main.get(&long).unwrap().as_deref(), Some(&b"long"[..]));
    }
}
