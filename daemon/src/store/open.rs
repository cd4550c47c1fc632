//! Which engine a data directory's store is in, opening it, and moving a sled store
//! to redb (`keywardd migrate-store`).
//!
//! A new data directory gets redb: its memory stays within a bounded page cache,
//! where sled 0.34 keeps every record it writes. A directory keeps the engine it was
//! created with; `[store] engine` may name it, and naming the other one is refused
//! (opening it anew would start from an empty store, no CA, no keys, no audit log,
//! beside the real one).

use super::engine::Blocking;
use super::{Namespace, RedbStore, SledStore, Store, StoreError, Txn};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The embedded engines a daemon can keep its state in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// sled 0.34 (`store/` is sled's directory, beside it `store.wal`).
    Sled,
    /// redb (`store/keyward.redb`, beside it `store/keyward.wal`): new directories.
    Redb,
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Engine::Sled => "sled",
            Engine::Redb => "redb",
        })
    }
}

/// The file of a redb store in the store directory.
pub(super) const REDB_FILE: &str = "keyward.redb";

fn sled_there(dir: &Path) -> bool {
    dir.join("db").exists() || dir.join("conf").exists()
}

/// The engine of the store in `dir`, if it holds one. A redb file there is the store
/// even beside sled's files: a migration renames it into place, complete, before it
/// moves sled's files away.
pub fn found(dir: &Path) -> Option<Engine> {
    if dir.join(REDB_FILE).exists() {
        Some(Engine::Redb)
    } else if sled_there(dir) {
        Some(Engine::Sled)
    } else {
        None
    }
}

/// Opens the store in `dir`: the engine it holds (redb when new) or, when `engine`
/// is set, that one, refusing a directory that holds the other.
pub fn open(dir: &Path, engine: Option<Engine>) -> Result<Arc<dyn Store>, StoreError> {
    let engine = match (engine, found(dir)) {
        (Some(want), Some(have)) if want != have => {
            let how = match want {
                Engine::Redb => {
                    ", or stop the daemon and run `keywardd migrate-store` to move it to redb"
                }
                Engine::Sled => "",
            };
            return Err(StoreError::Engine(format!(
                "{} holds a {have} store but [store] engine = \"{want}\": set engine = \"{have}\" or remove the setting (a data directory keeps the engine it was created with){how}",
                dir.display()
            )));
        }
        (_, Some(have)) => have,
        (want, None) => want.unwrap_or(Engine::Redb),
    };
    Ok(match engine {
        Engine::Sled => Arc::new(SledStore::open(dir)?),
        Engine::Redb => Arc::new(RedbStore::open(&dir.join(REDB_FILE))?),
    })
}

/// What a migration moved.
#[derive(Debug)]
pub struct Migrated {
    /// Records copied (every namespace).
    pub records: u64,
    /// Where sled's files are now (kept until the operator removes them).
    pub backup: PathBuf,
}

fn io(what: &str, path: &Path) -> impl Fn(std::io::Error) -> StoreError {
    let text = format!("cannot {what} {}", path.display());
    move |e| StoreError::Engine(format!("{text}: {e}"))
}

/// Moves the sled store in `dir` to redb, record for record (integrity MACs travel
/// with the bytes), while no daemon runs (sled's lock says so). The copy is written
/// beside the store, compared with sled's records, and renamed into place; then
/// sled's files move to `<dir>-sled-backup-<unix time>`. Interrupted at any point,
/// running it again finishes the job: before the rename sled is still the store,
/// after it redb is.
pub fn migrate_to_redb(dir: &Path) -> Result<Migrated, StoreError> {
    let records = match found(dir) {
        None => {
            return Err(StoreError::Engine(format!(
                "{} holds no store: nothing to migrate (a new data directory gets redb)",
                dir.display()
            )));
        }
        Some(Engine::Redb) if !sled_there(dir) => {
            return Err(StoreError::Engine(format!(
                "{} already holds a redb store",
                dir.display()
            )));
        }
        Some(Engine::Redb) => 0,
        Some(Engine::Sled) => copy(dir)?,
    };
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let name = dir.file_name().unwrap_or_default().to_string_lossy();
    let backup = dir.with_file_name(format!("{name}-sled-backup-{stamp}"));
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&backup)
            .map_err(io("create", &backup))?;
    }
    let keep = [REDB_FILE, "keyward.wal"];
    for entry in std::fs::read_dir(dir).map_err(io("read", dir))? {
        let entry = entry.map_err(io("read", dir))?;
        if keep.iter().any(|k| entry.file_name() == *k) {
            continue;
        }
        let to = backup.join(entry.file_name());
        std::fs::rename(entry.path(), &to).map_err(io("move", &entry.path()))?;
    }
    let sled_log = super::wal::path_of(dir);
    if sled_log.exists() {
        let to = backup.join("store.wal");
        std::fs::rename(&sled_log, &to).map_err(io("move", &sled_log))?;
    }
    sync_dir(dir)?;
    sync_dir(dir.parent().unwrap_or(dir))?;
    // Whatever the umask: the daemon's user only, as the daemon leaves its store.
    for tree in [dir, backup.as_path()] {
        crate::files::restrict_tree(tree).map_err(|e| StoreError::Engine(e.to_string()))?;
    }
    Ok(Migrated { records, backup })
}

/// Copies every record of the sled store in `dir` into a redb file beside it,
/// compares the two, and renames the copy into place; returns how many records.
fn copy(dir: &Path) -> Result<u64, StoreError> {
    let sled = SledStore::open(dir)?;
    let partial = dir.join(format!("{REDB_FILE}.partial"));
    for stale in [partial.clone(), super::wal::path_of(&partial)] {
        match std::fs::remove_file(&stale) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(io("remove", &stale)(e));
            }
            _ => {}
        }
    }
    let redb = RedbStore::open(&partial)?;
    const CHUNK: usize = 1000;
    let mut records = 0;
    for ns in Namespace::ALL {
        let mut after = String::new();
        loop {
            let chunk = sled.scan_now(ns, &after, CHUNK)?;
            let Some((last, _)) = chunk.last() else { break };
            after = last.clone();
            records += chunk.len() as u64;
            let txn = chunk
                .into_iter()
                .fold(Txn::default(), |t, (k, v)| t.put(ns, &k, v));
            redb.txn_now(&txn)?;
        }
        // Read back: the same keys with the same bytes, in the same order.
        let mut after = String::new();
        loop {
            let theirs = sled.scan_now(ns, &after, CHUNK)?;
            let ours = redb.scan_now(ns, &after, CHUNK)?;
            if theirs != ours {
                return Err(StoreError::Engine(format!(
                    "the copy of namespace {} differs from the sled store after {after:?}; nothing was changed (the sled store is still the store)",
                    ns.tree()
                )));
            }
            let Some((last, _)) = theirs.last() else {
                break;
            };
            after = last.clone();
        }
    }
    drop(redb);
    drop(sled);
    let log = super::wal::path_of(&partial);
    std::fs::remove_file(&log).map_err(io("remove", &log))?;
    std::fs::File::open(&partial)
        .and_then(|f| f.sync_all())
        .map_err(io("sync", &partial))?;
    let file = dir.join(REDB_FILE);
    std::fs::rename(&partial, &file).map_err(io("rename", &partial))?;
    sync_dir(dir)?;
    Ok(records)
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io("sync", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_keeps_its_engine_and_one_daemon() {
        let dir = tempfile::tempdir().unwrap();
        let new = dir.path().join("a");
        let first = open(&new, None).unwrap();
        assert_eq!(found(&new), Some(Engine::Redb), "a new directory gets redb");
        let e = open(&new, None).err().unwrap().to_string();
        assert!(e.contains("in use by another keywardd"), "{e}");
        drop(first);
        let e = open(&new, Some(Engine::Sled)).err().unwrap().to_string();
        assert!(
            e.contains("holds a redb store") && e.contains("engine = \"redb\""),
            "{e}"
        );
        let old = dir.path().join("b");
        drop(open(&old, Some(Engine::Sled)).unwrap());
        drop(open(&old, None).unwrap());
        assert_eq!(found(&old), Some(Engine::Sled), "unset keeps sled");
        let e = open(&old, Some(Engine::Redb)).err().unwrap().to_string();
        assert!(
            e.contains("holds a sled store") && e.contains("keywardd migrate-store"),
            "{e}"
        );
        assert!(!old.join(REDB_FILE).exists());
    }

    async fn contents(store: &dyn Store) -> Vec<(Namespace, super::super::Records)> {
        let mut all = Vec::new();
        for ns in Namespace::ALL {
            all.push((ns, store.list(ns).await.unwrap()));
        }
        all
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_sled_store_moves_to_redb_record_for_record() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        let sled = open(&dir, Some(Engine::Sled)).unwrap();
        sled.put(Namespace::Keys, "release", b"key record")
            .await
            .unwrap();
        let mut token = 0;
        for i in 0..2500u32 {
            let v = format!("{{\"seq\":{i}}}").repeat(20);
            token = sled
                .put_deferred(Namespace::Audit, &format!("{i:020}"), v.as_bytes())
                .unwrap();
            sled.put_deferred(Namespace::Ledger, &format!("e-{i:06}"), b"entry")
                .unwrap();
        }
        sled.wait_durable(token).await.unwrap();
        sled.put(Namespace::Meta, "checkpoint", b"2499")
            .await
            .unwrap();
        let before = contents(&*sled).await;
        let total: usize = before.iter().map(|(_, r)| r.len()).sum();
        assert_eq!(total, 5002);
        // A running daemon holds the store: nothing moves.
        let e = migrate_to_redb(&dir).err().unwrap().to_string();
        assert!(e.contains("in use by another keywardd"), "{e}");
        drop(sled);
        // A copy left behind by an interrupted migration is not trusted.
        std::fs::write(dir.join("keyward.redb.partial"), b"half a file").unwrap();
        let done = migrate_to_redb(&dir).unwrap();
        assert_eq!(done.records, total as u64);
        assert_eq!(found(&dir), Some(Engine::Redb));
        assert!(!dir.join("conf").exists() && done.backup.join("conf").exists());
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.join(REDB_FILE)), 0o600);
        assert_eq!(mode(&done.backup), 0o700);
        let redb = open(&dir, None).unwrap();
        assert_eq!(contents(&*redb).await, before);
        drop(redb);
        let e = migrate_to_redb(&dir).err().unwrap().to_string();
        assert!(e.contains("already holds a redb store"), "{e}");
        // Interrupted after the copy was renamed into place: sled's files are still
        // there, redb is the store, and running it again moves them away.
        for f in ["conf", "db"] {
            std::fs::rename(done.backup.join(f), dir.join(f)).unwrap();
        }
        assert_eq!(found(&dir), Some(Engine::Redb));
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let again = migrate_to_redb(&dir).unwrap();
        assert_eq!(again.records, 0);
        assert!(!dir.join("conf").exists() && again.backup.join("db").exists());
        let redb = open(&dir, None).unwrap();
        assert_eq!(contents(&*redb).await, before);
    }
}
