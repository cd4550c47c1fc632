//! What the CLI prints under `--output json`, checked against the JSON Schema of its
//! command (`client/schemas/cli.json`, one definition per command) by an independent
//! validator (Python's `jsonschema`, Draft 2020-12).

use std::io::Write;
use std::process::{Command, Stdio};

/// The schema document.
pub const SCHEMAS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../client/schemas/cli.json");

const CHECK: &str = r##"
import json, sys
from jsonschema import Draft202012Validator
doc = json.load(open(sys.argv[1]))
name = sys.argv[2]
if name not in doc["$defs"]:
    print("client/schemas/cli.json has no definition for " + repr(name))
    sys.exit(1)
Draft202012Validator.check_schema(doc)
schema = dict(doc)
schema["$ref"] = "#/$defs/" + name
errors = sorted(Draft202012Validator(schema).iter_errors(json.load(sys.stdin)), key=str)
for e in errors:
    print("/".join(str(p) for p in e.absolute_path) or "(top)", ":", e.message)
sys.exit(1 if errors else 0)
"##;

/// Checks `value` against the definition `command` ("key show"); the validator's
/// complaints otherwise.
pub fn check(command: &str, value: &serde_json::Value) -> Result<(), String> {
    let mut child = Command::new("python3")
        .args(["-c", CHECK, SCHEMAS, command])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run python3 (scripts/install-deps.sh installs it): {e}"))?;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(value.to_string().as_bytes())
        .map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{command}: {}{}\n{value}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// Asserts that `value` is what `command`'s schema says.
pub fn conforms(command: &str, value: &serde_json::Value) {
    if let Err(e) = check(command, value) {
        panic!("{e}");
    }
}
