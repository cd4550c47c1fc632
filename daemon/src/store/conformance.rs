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
pub async fn run(open: Open<'_>) {
    reads_and_writes(open).await;
    ordering_and_paging(open).await;
    deferred_writes_are_readable_once_durable(open).await;
    revisions_change_with_every_write(open).await;
    transactions_are_all_or_nothing(open).await;
    concurrent_compare_and_swap_loses_no_update(open).await;
    everything_survives_a_reopen(open).await;
}

fn fresh(open: Open<'_>) -> (tempfile::TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("store"));
    (dir, store)
}

async fn reads_and_writes(open: Open<'_>) {
    let (_d, s) = fresh(open);
    assert_eq!(s.get(Namespace::Keys, "a").await.unwrap(), None);
    assert!(s.create(Namespace::Keys, "a", b"1").await.unwrap());
    assert!(
        !s.create(Namespace::Keys, "a", b"2").await.unwrap(),
        "create overwrote"
    );
    assert_eq!(
        s.get(Namespace::Keys, "a").await.unwrap().as_deref(),
        Some(&b"1"[..])
    );
    s.put(Namespace::Keys, "a", b"3").await.unwrap();
    assert_eq!(
        s.get(Namespace::Keys, "a").await.unwrap().as_deref(),
        Some(&b"3"[..])
    );
    // Namespaces are apart.
    assert_eq!(s.get(Namespace::Meta, "a").await.unwrap(), None);
}

async fn ordering_and_paging(open: Open<'_>) {
    let (_d, s) = fresh(open);
    for k in ["c", "a", "e", "b", "d"] {
        s.put(Namespace::Ledger, k, k.as_bytes()).await.unwrap();
    }
    let keys = |v: Vec<(String, Vec<u8>)>| v.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
    assert_eq!(
        keys(s.list(Namespace::Ledger).await.unwrap()),
        ["a", "b", "c", "d", "e"]
    );
    assert_eq!(
        keys(s.list_from(Namespace::Ledger, "c").await.unwrap()),
        ["c", "d", "e"]
    );
    assert_eq!(
        keys(s.scan(Namespace::Ledger, "", 2).await.unwrap()),
        ["a", "b"]
    );
    assert_eq!(
        keys(s.scan(Namespace::Ledger, "b", 2).await.unwrap()),
        ["c", "d"]
    );
    assert_eq!(
        keys(s.scan(Namespace::Ledger, "d", 2).await.unwrap()),
        ["e"]
    );
    assert_eq!(
        s.last(Namespace::Ledger)
            .await
            .unwrap()
            .map(|(k, _)| k)
            .as_deref(),
        Some("e")
    );
    assert_eq!(s.last(Namespace::Mfa).await.unwrap(), None);
    for k in ["k/1", "k/2", "k/3", "ka/1", "j/1", "k"] {
        s.put(Namespace::LedgerByKey, k, b"").await.unwrap();
    }
    let p = |after, limit| s.scan_prefix(Namespace::LedgerByKey, "k/", after, limit);
    assert_eq!(keys(p("", 10).await.unwrap()), ["k/1", "k/2", "k/3"]);
    assert_eq!(keys(p("", 2).await.unwrap()), ["k/1", "k/2"]);
    assert_eq!(keys(p("k/2", 2).await.unwrap()), ["k/3"]);
    assert!(p("k/3", 2).await.unwrap().is_empty());
    let exact = s
        .scan_prefix(Namespace::LedgerByKey, "k", "", 10)
        .await
        .unwrap();
    assert_eq!(keys(exact), ["k", "k/1", "k/2", "k/3", "ka/1"]);
}

async fn deferred_writes_are_readable_once_durable(open: Open<'_>) {
    let (_d, s) = fresh(open);
    let t1 = s.put_deferred(Namespace::Audit, "1", b"one").unwrap();
    let t2 = s.put_deferred(Namespace::Audit, "2", b"two").unwrap();
    assert!(t2 > t1, "tokens must grow");
    // Waiting for the later one makes the earlier one durable too.
    s.wait_durable(t2).await.unwrap();
    assert_eq!(
        s.get(Namespace::Audit, "1").await.unwrap().as_deref(),
        Some(&b"one"[..])
    );
    assert_eq!(
        s.get(Namespace::Audit, "2").await.unwrap().as_deref(),
        Some(&b"two"[..])
    );
}

async fn revisions_change_with_every_write(open: Open<'_>) {
    let (_d, s) = fresh(open);
    assert_eq!(s.get_rev(Namespace::Keys, "k").await.unwrap(), None);
    s.put(Namespace::Keys, "k", b"v1").await.unwrap();
    let (v, r1) = s.get_rev(Namespace::Keys, "k").await.unwrap().unwrap();
    assert_eq!(v, b"v1");
    assert_eq!(
        s.get_rev(Namespace::Keys, "k").await.unwrap().unwrap().1,
        r1,
        "reads change nothing"
    );
    s.put(Namespace::Keys, "k", b"v2").await.unwrap();
    let (_, r2) = s.get_rev(Namespace::Keys, "k").await.unwrap().unwrap();
    assert_ne!(r1, r2);
}

async fn transactions_are_all_or_nothing(open: Open<'_>) {
    let (_d, s) = fresh(open);
    let create = Txn::new()
        .check(Namespace::Approvals, "a", Expect::Absent)
        .put(Namespace::Approvals, "a", b"1".to_vec())
        .put(Namespace::Keys, "side", b"x".to_vec());
    assert!(s.txn(&create).await.unwrap());
    assert!(
        !s.txn(&create).await.unwrap(),
        "Absent held for a record that exists"
    );
    let (_, rev) = s.get_rev(Namespace::Approvals, "a").await.unwrap().unwrap();

    // One failing check: nothing of the transaction is written.
    s.put(Namespace::Keys, "other", b"o1").await.unwrap();
    let (_, other) = s.get_rev(Namespace::Keys, "other").await.unwrap().unwrap();
    s.put(Namespace::Keys, "other", b"o2").await.unwrap();
    let stale = Txn::new()
        .check(Namespace::Approvals, "a", Expect::At(rev))
        .check(Namespace::Keys, "other", Expect::At(other))
        .put(Namespace::Approvals, "a", b"2".to_vec())
        .delete(Namespace::Keys, "side");
    assert!(
        !s.txn(&stale).await.unwrap(),
        "a stale revision was accepted"
    );
    assert_eq!(
        s.get(Namespace::Approvals, "a").await.unwrap().as_deref(),
        Some(&b"1"[..])
    );
    assert!(
        s.get(Namespace::Keys, "side").await.unwrap().is_some(),
        "half a transaction applied"
    );

    // All checks hold: every write applies, deletes included.
    let (_, other) = s.get_rev(Namespace::Keys, "other").await.unwrap().unwrap();
    let fresh_txn = Txn::new()
        .check(Namespace::Approvals, "a", Expect::At(rev))
        .check(Namespace::Keys, "other", Expect::At(other))
        .put(Namespace::Approvals, "a", b"2".to_vec())
        .delete(Namespace::Keys, "side");
    assert!(s.txn(&fresh_txn).await.unwrap());
    assert_eq!(
        s.get(Namespace::Approvals, "a").await.unwrap().as_deref(),
        Some(&b"2"[..])
    );
    assert_eq!(s.get(Namespace::Keys, "side").await.unwrap(), None);
    // The revision it checked is gone: replaying the transaction fails.
    assert!(!s.txn(&fresh_txn).await.unwrap());
}

async fn concurrent_compare_and_swap_loses_no_update(open: Open<'_>) {
    let (_d, s) = fresh(open);
    s.put(Namespace::Mfa, "counter", b"0").await.unwrap();
    let (threads, each) = (8, 25);
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move {
                for _ in 0..each {
                    loop {
                        let (v, rev) = s.get_rev(Namespace::Mfa, "counter").await.unwrap().unwrap();
                        let n: u64 = String::from_utf8(v).unwrap().parse().unwrap();
                        let next = Txn::new()
                            .check(Namespace::Mfa, "counter", Expect::At(rev))
                            .put(Namespace::Mfa, "counter", (n + 1).to_string().into_bytes());
                        if s.txn(&next).await.unwrap() {
                            break;
                        }
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.await.unwrap();
    }
    let v = s.get(Namespace::Mfa, "counter").await.unwrap().unwrap();
    assert_eq!(String::from_utf8(v).unwrap(), (threads * each).to_string());
}

async fn everything_survives_a_reopen(open: Open<'_>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    {
        let s = open(&path);
        s.put(Namespace::Meta, "m", b"put").await.unwrap();
        assert!(s.create(Namespace::Keys, "k", b"created").await.unwrap());
        let t = s
            .put_deferred(Namespace::Audit, "00000000000000000001", b"deferred")
            .unwrap();
        s.wait_durable(t).await.unwrap();
        let txn = Txn::new()
            .check(Namespace::Approvals, "a", Expect::Absent)
            .put(Namespace::Approvals, "a", b"txn".to_vec());
        assert!(s.txn(&txn).await.unwrap());
    }
    let s = open(&path);
    for (ns, key, want) in [
        (Namespace::Meta, "m", &b"put"[..]),
        (Namespace::Keys, "k", b"created"),
        (Namespace::Audit, "00000000000000000001", b"deferred"),
        (Namespace::Approvals, "a", b"txn"),
    ] {
        assert_eq!(
            s.get(ns, key).await.unwrap().as_deref(),
            Some(want),
            "{key} lost in a reopen"
        );
    }
}
