//! Reads and edits a stopped keywardd's store the way an attacker with write access
//! to its files would (tests only). DIR is the store directory: sled's, or the one
//! holding `keyward.redb`.
//!
//! store-tool DIR get TREE KEY        the record (its MAC prefix removed)
//! store-tool DIR put TREE KEY        stdin as the record, without a MAC
//! store-tool DIR forge TREE KEY      stdin as the record, behind the old MAC prefix
//! store-tool DIR strip TREE          every record of TREE without its MAC prefix
//! store-tool DIR del TREE KEY        deletes a record
//! store-tool DIR copy TREE FROM TO   copies a record byte for byte
//! store-tool DIR keys TREE PREFIX    the keys of the records under PREFIX, one a line

use std::io::Read;
use std::path::Path;

type Error = Box<dyn std::error::Error>;

const PREFIX: usize = 4 + 32;

/// One namespace of either engine.
enum Tree {
    Sled(sled::Db, sled::Tree),
    Redb(redb::Database, String),
}

fn table(name: &str) -> redb::TableDefinition<'_, &'static str, &'static [u8]> {
    redb::TableDefinition::new(name)
}

impl Tree {
    fn open(dir: &str, tree: &str) -> Result<Self, Error> {
        let file = Path::new(dir).join("keyward.redb");
        if file.exists() {
            return Ok(Self::Redb(redb::Database::open(file)?, tree.to_string()));
        }
        let db = sled::open(dir)?;
        let t = db.open_tree(tree)?;
        Ok(Self::Sled(db, t))
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        Ok(match self {
            Self::Sled(_, t) => t.get(key)?.map(|v| v.to_vec()),
            Self::Redb(db, name) => {
                let tx = db.begin_read()?;
                let t = tx.open_table(table(name))?;
                t.get(key)?.map(|v| v.value().to_vec())
            }
        })
    }

    fn insert(&self, key: &str, value: &[u8]) -> Result<(), Error> {
        match self {
            Self::Sled(db, t) => {
                t.insert(key, value)?;
                db.flush()?;
            }
            Self::Redb(db, name) => {
                let tx = db.begin_write()?;
                tx.open_table(table(name))?.insert(key, value)?;
                tx.commit()?;
            }
        }
        Ok(())
    }

    fn remove(&self, key: &str) -> Result<(), Error> {
        match self {
            Self::Sled(db, t) => {
                t.remove(key)?;
                db.flush()?;
            }
            Self::Redb(db, name) => {
                let tx = db.begin_write()?;
                tx.open_table(table(name))?.remove(key)?;
                tx.commit()?;
            }
        }
        Ok(())
    }

    /// Every record whose key starts with `prefix`.
    fn records(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, Error> {
        let mut out = Vec::new();
        match self {
            Self::Sled(_, t) => {
                for item in t.scan_prefix(prefix) {
                    let (k, v) = item?;
                    out.push((String::from_utf8_lossy(&k).into_owned(), v.to_vec()));
                }
            }
            Self::Redb(db, name) => {
                let tx = db.begin_read()?;
                let t = tx.open_table(table(name))?;
                for item in t.range(prefix..)? {
                    let (k, v) = item?;
                    if !k.value().starts_with(prefix) {
                        break;
                    }
                    out.push((k.value().to_string(), v.value().to_vec()));
                }
            }
        }
        Ok(out)
    }
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    let (dir, cmd, tree) = (&args[1], args[2].as_str(), &args[3]);
    let t = Tree::open(dir, tree)?;
    let body = |v: &[u8]| -> Vec<u8> {
        if v.starts_with(b"KWM1") {
            v[PREFIX..].to_vec()
        } else {
            v.to_vec()
        }
    };
    match cmd {
        "get" => {
            let v = t.get(&args[4])?.ok_or("no such record")?;
            print!("{}", String::from_utf8_lossy(&body(&v)));
        }
        "put" | "forge" => {
            let mut input = Vec::new();
            std::io::stdin().read_to_end(&mut input)?;
            let value = if cmd == "forge" {
                let old = t.get(&args[4])?.ok_or("no such record")?;
                let mut v = old[..PREFIX].to_vec();
                v.extend_from_slice(&input);
                v
            } else {
                input
            };
            t.insert(&args[4], &value)?;
        }
        "strip" => {
            for (k, v) in t.records("")? {
                t.insert(&k, &body(&v))?;
            }
        }
        "copy" => {
            let v = t.get(&args[4])?.ok_or("no such record")?;
            t.insert(&args[5], &v)?;
        }
        "keys" => {
            for (k, _) in t.records(&args[4])? {
                println!("{k}");
            }
        }
        "del" => t.remove(&args[4])?,
        other => return Err(format!("unknown command {other}").into()),
    }
    Ok(())
}
