//! Reads and edits a stopped keywardd's store the way an attacker with write access
//! to its files would (tests only).
//!
//! store-tool DIR get TREE KEY        the record (its MAC prefix removed)
//! store-tool DIR put TREE KEY        stdin as the record, without a MAC
//! store-tool DIR forge TREE KEY      stdin as the record, behind the old MAC prefix
//! store-tool DIR strip TREE          every record of TREE without its MAC prefix
//! store-tool DIR del TREE KEY        deletes a record
//! store-tool DIR copy TREE FROM TO   copies a record byte for byte
//! store-tool DIR keys TREE PREFIX    the keys of the records under PREFIX, one a line

use std::io::Read;

const PREFIX: usize = 4 + 32;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (dir, cmd, tree) = (&args[1], args[2].as_str(), &args[3]);
    let db = sled::open(dir)?;
    let t = db.open_tree(tree)?;
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
            t.insert(&args[4], value)?;
        }
        "strip" => {
            for item in t.iter() {
                let (k, v) = item?;
                t.insert(k, body(&v))?;
            }
        }
        "copy" => {
            let v = t.get(&args[4])?.ok_or("no such record")?;
            t.insert(&args[5], v)?;
        }
        "keys" => {
            for item in t.scan_prefix(&args[4]) {
                println!("{}", String::from_utf8_lossy(&item?.0));
            }
        }
        "del" => {
            t.remove(&args[4])?;
        }
        other => return Err(format!("unknown command {other}").into()),
    }
    db.flush()?;
    Ok(())
}
