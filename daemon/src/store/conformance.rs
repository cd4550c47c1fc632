//! The conformance suite every [`Store`] must pass (sled today; a replicated store
//! later runs the same): reads and writes, ordering and paging, deferred writes,
//! revisions and transactions (atomic, no lost update under concurrency), and
//! durability across a reopen. Call [`run`] with a function that opens the store kept
//! in a directory; the suite closes (drops) it before opening it again.

use super::{Expect, Namespace, Store, Txn};
use std::path::Path;
use std::sync::Arc;

/// Opens the store kept in a directory.
pub type Open<'a> = &'a dyn Fn(&Path) -> Arc<dyn Store>;

/// Runs every check against stores made by `open`.
pub fn run(open: Open<'_>) {
    reads_and_writes(open);
    ordering_and_paging(open);
    deferred_writes_are_readable_once_durable(open);
    revisions_change_with_every_write(open);
    transactions_are_all_or_nothing(open);
    concurrent_compare_and_swap_loses_no_update(open);
    everything_survives_a_reopen(open);
}

fn fresh(open: Open<'_>) -> (tempfile::TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("store"));
    (dir, store)
}

fn reads_and_writes(open: Open<'_>) {
    let (_d, s) = fresh(open);
    assert_eq!(s.get(Namespace::Keys, "a").unwrap(), None);
    assert!(s.create(Namespace::Keys, "a", b"1").unwrap());
    assert!(
        !s.create(Namespace::Keys, "a", b"2").unwrap(),
        "create overwrote"
    );
    assert_eq!(
        s.get(Namespace::Keys, "a").unwrap().as_deref(),
        Some(&b"1"[..])
    );
    s.put(Namespace::Keys, "a", b"3").unwrap();
    assert_eq!(
        s.get(Namespace::Keys, "a").unwrap().as_deref(),
        Some(&b"3"[..])
    );
    // Namespaces are apart.
    assert_eq!(s.get(Namespace::Meta, "a").unwrap(), None);
}

fn ordering_and_paging(open: Open<'_>) {
    let (_d, s) = fresh(open);
    for k in ["c", "a", "e", "b", "d"] {
        s.put(Namespace::Ledger, k, k.as_bytes()).unwrap();
    }
    let keys = |v: Vec<(String, Vec<u8>)>| v.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
    assert_eq!(
        keys(s.list(Namespace::Ledger).unwrap()),
        ["a", "b", "c", "d", "e"]
    );
    assert_eq!(
        keys(s.list_from(Namespace::Ledger, "c").unwrap()),
        ["c", "d", "e"]
    );
    assert_eq!(keys(s.scan(Namespace::Ledger, "", 2).unwrap()), ["a", "b"]);
    assert_eq!(keys(s.scan(Namespace::Ledger, "b", 2).unwrap()), ["c", "d"]);
    assert_eq!(keys(s.scan(Namespace::Ledger, "d", 2).unwrap()), ["e"]);
    assert_eq!(
        s.last(Namespace::Ledger)
            .unwrap()
            .map(|(k, _)| k)
            .as_deref(),
        Some("e")
    );
    assert_eq!(s.last(Namespace::Mfa).unwrap(), None);
}

fn deferred_writes_are_readable_once_durable(open: Open<'_>) {
    let (_d, s) = fresh(open);
    let t1 = s.put_deferred(Namespace::Audit, "1", b"one").unwrap();
    let t2 = s.put_deferred(Namespace::Audit, "2", b"two").unwrap();
    assert!(t2 > t1, "tokens must grow");
    // Waiting for the later one makes the earlier one durable too.
    s.wait_durable(t2).unwrap();
    assert_eq!(
        s.get(Namespace::Audit, "1").unwrap().as_deref(),
        Some(&b"one"[..])
    );
    assert_eq!(
        s.get(Namespace::Audit, "2").unwrap().as_deref(),
        Some(&b"two"[..])
    );
}

fn revisions_change_with_every_write(open: Open<'_>) {
    let (_d, s) = fresh(open);
    assert_eq!(s.get_rev(Namespace::Keys, "k").unwrap(), None);
    s.put(Namespace::Keys, "k", b"v1").unwrap();
    let (v, r1) = s.get_rev(Namespace::Keys, "k").unwrap().unwrap();
    assert_eq!(v, b"v1");
    assert_eq!(
        s.get_rev(Namespace::Keys, "k").unwrap().unwrap().1,
        r1,
        "reads change nothing"
    );
    s.put(Namespace::Keys, "k", b"v2").unwrap();
    let (_, r2) = s.get_rev(Namespace::Keys, "k").unwrap().unwrap();
    assert_ne!(r1, r2);
}

fn transactions_are_all_or_nothing(open: Open<'_>) {
    let (_d, s) = fresh(open);
    let create = Txn::new()
        .expect(Namespace::Approvals, "a", Expect::Absent)
        .put(Namespace::Approvals, "a", b"1".to_vec())
        .put(Namespace::Keys, "side", b"x".to_vec());
    assert!(s.txn(&create).unwrap());
    assert!(
        !s.txn(&create).unwrap(),
        "Absent held for a record that exists"
    );
    let (_, rev) = s.get_rev(Namespace::Approvals, "a").unwrap().unwrap();

    // One failing check: nothing of the transaction is written.
    s.put(Namespace::Keys, "other", b"o1").unwrap();
    let (_, other) = s.get_rev(Namespace::Keys, "other").unwrap().unwrap();
    s.put(Namespace::Keys, "other", b"o2").unwrap();
    let stale = Txn::new()
        .expect(Namespace::Approvals, "a", Expect::At(rev))
        .expect(Namespace::Keys, "other", Expect::At(other))
        .put(Namespace::Approvals, "a", b"2".to_vec())
        .delete(Namespace::Keys, "side");
    assert!(!s.txn(&stale).unwrap(), "a stale revision was accepted");
    assert_eq!(
        s.get(Namespace::Approvals, "a").unwrap().as_deref(),
        Some(&b"1"[..])
    );
    assert!(
        s.get(Namespace::Keys, "side").unwrap().is_some(),
        "half a transaction applied"
    );

    // All checks hold: every write applies, deletes included.
    let (_, other) = s.get_rev(Namespace::Keys, "other").unwrap().unwrap();
    let fresh_txn = Txn::new()
        .expect(Namespace::Approvals, "a", Expect::At(rev))
        .expect(Namespace::Keys, "other", Expect::At(other))
        .put(Namespace::Approvals, "a", b"2".to_vec())
        .delete(Namespace::Keys, "side");
    assert!(s.txn(&fresh_txn).unwrap());
    assert_eq!(
        s.get(Namespace::Approvals, "a").unwrap().as_deref(),
        Some(&b"2"[..])
    );
    assert_eq!(s.get(Namespace::Keys, "side").unwrap(), None);
    // The revision it checked is gone: replaying the transaction fails.
    assert!(!s.txn(&fresh_txn).unwrap());
}

fn concurrent_compare_and_swap_loses_no_update(open: Open<'_>) {
    let (_d, s) = fresh(open);
    s.put(Namespace::Mfa, "counter", b"0").unwrap();
    let (threads, each) = (8, 25);
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let s = s.clone();
            std::thread::spawn(move || {
                for _ in 0..each {
                    loop {
                        let (v, rev) = s.get_rev(Namespace::Mfa, "counter").unwrap().unwrap();
                        let n: u64 = String::from_utf8(v).unwrap().parse().unwrap();
                        let next = Txn::new()
                            .expect(Namespace::Mfa, "counter", Expect::At(rev))
                            .put(Namespace::Mfa, "counter", (n + 1).to_string().into_bytes());
                        if s.txn(&next).unwrap() {
                            break;
                        }
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let v = s.get(Namespace::Mfa, "counter").unwrap().unwrap();
    assert_eq!(String::from_utf8(v).unwrap(), (threads * each).to_string());
}

fn everything_survives_a_reopen(open: Open<'_>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    {
        let s = open(&path);
        s.put(Namespace::Meta, "m", b"put").unwrap();
        assert!(s.create(Namespace::Keys, "k", b"created").unwrap());
        let t = s
            .put_deferred(Namespace::Audit, "00000000000000000001", b"deferred")
            .unwrap();
        s.wait_durable(t).unwrap();
        let txn = Txn::new()
            .expect(Namespace::Approvals, "a", Expect::Absent)
            .put(Namespace::Approvals, "a", b"txn".to_vec());
        assert!(s.txn(&txn).unwrap());
    }
    let s = open(&path);
    for (ns, key, want) in [
        (Namespace::Meta, "m", &b"put"[..]),
        (Namespace::Keys, "k", b"created"),
        (Namespace::Audit, "00000000000000000001", b"deferred"),
        (Namespace::Approvals, "a", b"txn"),
    ] {
        assert_eq!(
            s.get(ns, key).unwrap().as_deref(),
            Some(want),
            "{key} lost in a reopen"
        );
    }
}
