//! The conformance suite every [`Store`] must pass (redb and sled; a replicated store
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
    deferred_records_read_like_any_other(open).await;
    revisions_change_with_every_write(open).await;
    transactions_are_all_or_nothing(open).await;
    concurrent_compare_and_swap_loses_no_update(open).await;
    everything_survives_a_reopen(open).await;
}

fn keys(records: Vec<(String, Vec<u8>)>) -> Vec<String> {
    records.into_iter().map(|(k, _)| k).collect()
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

/// Deferred writes in any key order, over several commits, mixed with direct writes:
/// every read sees one namespace (the audit log and the ledger are written this way).
async fn deferred_records_read_like_any_other(open: Open<'_>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let s = open(&path);
    let ns = Namespace::Ledger;
    let commit = |keys: &[&str]| {
        let mut t = 0;
        for k in keys {
            t = s.put_deferred(ns, k, format!("v{k}").as_bytes()).unwrap();
        }
        s.wait_durable(t)
    };
    commit(&["05", "03", "09"]).await.unwrap();
    s.put(ns, "06", b"direct").await.unwrap();
    // "04" and "08" come after "09" was committed; "12" twice: the last write wins.
    commit(&["08", "04", "12", "11"]).await.unwrap();
    let t = s.put_deferred(ns, "12", b"twelve").unwrap();
    s.wait_durable(t).await.unwrap();
    let all = ["03", "04", "05", "06", "08", "09", "11", "12"];
    let check = |s: Arc<dyn Store>| async move {
        assert_eq!(keys(s.list(ns).await.unwrap()), all);
        assert_eq!(keys(s.list_from(ns, "05").await.unwrap()), all[2..]);
        assert_eq!(keys(s.scan(ns, "04", 3).await.unwrap()), ["05", "06", "08"]);
        assert_eq!(keys(s.scan(ns, "", 2).await.unwrap()), ["03", "04"]);
        assert_eq!(
            keys(s.scan_prefix(ns, "1", "", 10).await.unwrap()),
            ["11", "12"]
        );
        assert_eq!(
            s.last(ns).await.unwrap(),
            Some(("12".to_string(), b"twelve".to_vec()))
        );
        assert_eq!(s.get(ns, "09").await.unwrap().as_deref(), Some(&b"v09"[..]));
        assert_eq!(s.get(ns, "07").await.unwrap(), None);
        assert_eq!(
            s.list(ns).await.unwrap()[3].1,
            b"direct",
            "a direct write reads back"
        );
    };
    check(s.clone()).await;
    // A record written deferred is a record like any other: it exists for create and
    // for checks, can be overwritten, and can be deleted.
    assert!(!s.create(ns, "05", b"again").await.unwrap());
    let absent = Txn::new()
        .check(ns, "09", Expect::Absent)
        .put(ns, "09", b"x".to_vec());
    assert!(
        !s.txn(&absent).await.unwrap(),
        "a deferred record counts as present"
    );
    let (_, rev) = s.get_rev(ns, "03").await.unwrap().unwrap();
    let cas = Txn::new()
        .check(ns, "03", Expect::At(rev))
        .put(ns, "03", b"three".to_vec());
    assert!(s.txn(&cas).await.unwrap());
    assert_eq!(
        s.get(ns, "03").await.unwrap().as_deref(),
        Some(&b"three"[..])
    );
    assert!(
        s.txn(&Txn::new().delete(ns, "05").delete(ns, "12"))
            .await
            .unwrap()
    );
    assert_eq!(s.get(ns, "05").await.unwrap(), None);
    assert_eq!(
        keys(s.list(ns).await.unwrap()),
        ["03", "04", "06", "08", "09", "11"]
    );
    assert_eq!(s.last(ns).await.unwrap().unwrap().0, "11");
    // And all of it after a reopen.
    drop(s);
    let s = open(&path);
    assert_eq!(
        keys(s.list(ns).await.unwrap()),
        ["03", "04", "06", "08", "09", "11"]
    );
    assert_eq!(
        s.get(ns, "03").await.unwrap().as_deref(),
        Some(&b"three"[..])
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
