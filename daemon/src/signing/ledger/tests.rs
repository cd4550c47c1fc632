//! The ledger's unit tests.
use super::*;
use crate::store::SledStore;

fn entry(key: &str, version: u32, n: i64) -> LedgerEntry {
    LedgerEntry {
        kind: "blob".into(),
        registry: String::new(),
        repository: String::new(),
        digest: format!("sha256:{n}"),
        tag: String::new(),
        reference: String::new(),
        key: key.into(),
        version,
        fingerprint: String::new(),
        time: OffsetDateTime::from_unix_timestamp(1_700_000_000 + n).unwrap(),
        requester: "ci".into(),
        pushed_to: String::new(),
        size: 0,
        request_hash: String::new(),
        derived_from: String::new(),
    }
}

async fn digests(ledger: &SignatureLedger, q: &LedgerQuery, limit: usize) -> Vec<String> {
    let (mut all, mut cursor) = (Vec::new(), String::new());
    loop {
        let (page, next) = ledger.list_page(q, &cursor, limit).await.unwrap();
        all.extend(page.into_iter().map(|e| e.digest));
        if next.is_empty() {
            return all;
        }
        cursor = next;
    }
}

#[tokio::test]
async fn what_a_key_or_a_version_signed_is_read_from_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SledStore::open(&dir.path().join("s")).unwrap());
    let ledger = SignatureLedger::new(store.clone());
    for (i, (k, v)) in [("a", 1), ("b", 1), ("a", 2), ("a", 1), ("ab", 1)]
        .iter()
        .enumerate()
    {
        let t = ledger.record_pending(&entry(k, *v, i as i64)).unwrap();
        store.wait_durable(t).await.unwrap();
    }
    let q = |key: &str, version| LedgerQuery {
        key: Some(key.into()),
        version,
        ..Default::default()
    };
    assert_eq!(
        digests(&ledger, &q("a", None), 1).await,
        ["sha256:0", "sha256:3", "sha256:2"]
    );
    assert_eq!(digests(&ledger, &q("a", Some(2)), 10).await, ["sha256:2"]);
    assert_eq!(digests(&ledger, &q("ab", None), 10).await, ["sha256:4"]);
    assert_eq!(digests(&ledger, &LedgerQuery::default(), 2).await.len(), 5);
    // An index entry whose entry never made it (a crash between the two) is skipped.
    store
        .put(Namespace::LedgerByKey, "a/v0000000001/999", b"")
        .await
        .unwrap();
    assert_eq!(
        digests(&ledger, &q("a", Some(1)), 10).await,
        ["sha256:0", "sha256:3"]
    );
}

#[tokio::test]
async fn a_key_listing_pages_through_seconds_with_many_entries_and_other_keys() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SledStore::open(&dir.path().join("s")).unwrap());
    let ledger = SignatureLedger::new(store.clone());
    // Second 0: five of "a" among five of "b"; second 1: none of "a"; second 2: one.
    let mut want = Vec::new();
    for i in 0..10 {
        let mut e = entry(if i % 2 == 0 { "a" } else { "b" }, 1, 0);
        e.digest = format!("d{i}");
        if e.key == "a" {
            want.push(e.digest.clone());
        }
        let t = ledger.record_pending(&e).unwrap();
        store.wait_durable(t).await.unwrap();
    }
    for (k, n) in [("b", 1), ("a", 2)] {
        let mut e = entry(k, 1, n);
        e.digest = format!("{k}{n}");
        let t = ledger.record_pending(&e).unwrap();
        store.wait_durable(t).await.unwrap();
    }
    want.push("a2".into());
    // A second version signing in the same second is listed once, after version 1.
    let mut e = entry("a", 2, 2);
    e.digest = "a2v2".into();
    let t = ledger.record_pending(&e).unwrap();
    store.wait_durable(t).await.unwrap();
    want.push("a2v2".into());
    let q = LedgerQuery {
        key: Some("a".into()),
        ..Default::default()
    };
    for limit in [1, 2, 3, 100] {
        assert_eq!(digests(&ledger, &q, limit).await, want, "pages of {limit}");
    }
    // Index entries for "a": seconds 0 and 2 of v1, second 2 of v2; not per entry.
    let index = store
        .scan_prefix(Namespace::LedgerByKey, "a/", "", 100)
        .await
        .unwrap();
    assert_eq!(index.len(), 3, "{index:?}");
}

#[tokio::test]
async fn a_ledger_written_before_the_index_is_indexed_once() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SledStore::open(&dir.path().join("s")).unwrap());
    let ledger = SignatureLedger::new(store.clone());
    for i in 0..3 {
        let e = entry("old", 1, i);
        let (row, value) = ledger.row(&e).unwrap();
        store.put(Namespace::Ledger, &row, &value).await.unwrap();
    }
    let q = LedgerQuery {
        key: Some("old".into()),
        ..Default::default()
    };
    assert!(digests(&ledger, &q, 10).await.is_empty(), "no index yet");
    assert_eq!(ledger.ensure_index().await.unwrap(), 3);
    assert_eq!(digests(&ledger, &q, 10).await.len(), 3);
    assert_eq!(ledger.ensure_index().await.unwrap(), 0, "indexed again");
}

#[tokio::test]
async fn a_filter_that_matches_nothing_reads_a_bounded_number_of_entries_per_page() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SledStore::open(&dir.path().join("s")).unwrap());
    let ledger = SignatureLedger::new(store.clone());
    let n = list::SCAN_CAP + SCAN_CAP_EXTRA;
    let mut last = 0;
    for i in 0..n {
        last = ledger.record_pending(&entry("a", 1, i as i64)).unwrap();
    }
    store.wait_durable(last).await.unwrap();
    let nothing = LedgerQuery {
        repository: Some(glob::Pattern::new("nowhere/*").unwrap()),
        ..Default::default()
    };
    // The first page stops at the cap, empty, with a cursor; the second finishes.
    let (page, next) = ledger.list_page(&nothing, "", 100).await.unwrap();
    assert!(page.is_empty() && !next.is_empty());
    let (page, next) = ledger.list_page(&nothing, &next, 100).await.unwrap();
    assert!(page.is_empty() && next.is_empty(), "{next}");
    // The same through the key's index, and `since`/`until` bound a walk by time.
    let q = LedgerQuery {
        key: Some("a".into()),
        ..nothing.clone()
    };
    let (page, next) = ledger.list_page(&q, "", 100).await.unwrap();
    assert!(page.is_empty() && !next.is_empty());
    let window = LedgerQuery {
        since: Some(entry("a", 1, 10).time),
        until: Some(entry("a", 1, 13).time),
        ..Default::default()
    };
    assert_eq!(
        digests(&ledger, &window, 100).await,
        ["sha256:10", "sha256:11", "sha256:12"]
    );
}

const SCAN_CAP_EXTRA: usize = 50;

#[tokio::test]
async fn rows_from_before_macs_are_sealed_once_and_an_edited_row_is_never_listed() {
    use zeroize::Zeroizing;
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SledStore::open(&dir.path().join("s")).unwrap());
    let old = SignatureLedger::new(store.clone());
    for i in 0..3 {
        let t = old.record_pending(&entry("a", 1, i)).unwrap();
        store.wait_durable(t).await.unwrap();
    }
    let key = || mac::LedgerMac::new(Zeroizing::new(vec![9; 32]));
    let ledger = SignatureLedger::new(store.clone()).with_mac(key());
    assert_eq!(ledger.ensure_macs().await.unwrap(), 3);
    assert_eq!(ledger.ensure_macs().await.unwrap(), 0, "sealed twice");
    let all = LedgerQuery::default();
    assert_eq!(digests(&ledger, &all, 10).await.len(), 3);
    // A row edited afterwards, and one planted without a MAC, are left out.
    let rows = store.scan(Namespace::Ledger, "", 10).await.unwrap();
    let (k, v) = &rows[0];
    let edited = String::from_utf8(v.clone())
        .unwrap()
        .replace("sha256:0", "sha256:9");
    store
        .put(Namespace::Ledger, k, edited.as_bytes())
        .await
        .unwrap();
    let planted = format!("{}-ffffffffffff", &rows[2].0[..24]);
    let body = crate::store::to_json(&entry("a", 1, 7)).unwrap();
    store.put(Namespace::Ledger, &planted, &body).await.unwrap();
    assert_eq!(digests(&ledger, &all, 10).await, ["sha256:1", "sha256:2"]);
    assert!(matches!(
        ledger.get(k).await,
        Err(StoreError::Corrupt { .. })
    ));
    // Another instance's key opens none of them.
    let other = SignatureLedger::new(store.clone())
        .with_mac(mac::LedgerMac::new(Zeroizing::new(vec![1; 32])));
    assert!(digests(&other, &all, 10).await.is_empty());
}
