//! The command groups of the CLI. Each command is a clap type with `async fn run(self,
//! ctx)`; what it prints is a typed value ([`Show`]): text for people, or with
//! `--output json` the same value as JSON. Nothing is printed any other way.

pub mod approvals;
pub mod audit;
pub mod docs;
pub mod exit;
pub mod history;
pub mod incident;
pub mod jobs;
pub mod key;
pub mod mfa;
pub mod outcome;
pub mod policy;
pub mod principal;
pub mod revocations;
pub mod revoke;
pub mod rotation;
pub mod sign;
pub mod sign_blob;
pub mod signatures;
pub mod trust;
pub mod verify_offline;

use keyward_client::{Client, ClientConfig};
use serde::Serialize;

/// Output format.
#[derive(Clone, Copy, clap::ValueEnum, PartialEq, Eq)]
pub enum Output {
    /// For people.
    Text,
    /// One JSON value per command (a list prints one array).
    Json,
}

/// What a command runs with.
pub struct Ctx {
    /// The connection.
    pub client: Client,
    /// The configuration it was made from.
    pub config: ClientConfig,
    /// How to print.
    pub out: Output,
}

/// A value a command prints.
pub trait Show: Serialize {
    /// Prints it for people.
    fn text(&self);
}

impl Ctx {
    /// Prints `v` as text or JSON.
    pub fn show<T: Show + ?Sized>(&self, v: &T) {
        show(self.out, v)
    }

    /// Prints a signed document (a revocation list, a signed head) as text, or as
    /// JSON exactly as signed: nothing in it is rewritten, or its signature would
    /// not verify.
    pub fn show_signed<T: Show + ?Sized>(&self, v: &T) {
        match self.out {
            Output::Json => println!("{}", serde_json::to_string(v).unwrap_or_default()),
            Output::Text => v.text(),
        }
    }
}

/// Prints `v` as text or JSON: one line, absent values (empty strings) as `null`.
pub fn show<T: Show + ?Sized>(out: Output, v: &T) {
    match out {
        Output::Json => println!("{}", json(v)),
        Output::Text => v.text(),
    }
}

/// `v` as JSON text, with empty strings (what the protocol sends for "none") as `null`.
pub fn json<T: Serialize + ?Sized>(v: &T) -> String {
    let mut value = serde_json::to_value(v).unwrap_or_default();
    absent_as_null(&mut value);
    value.to_string()
}

fn absent_as_null(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::String(s) if s.is_empty() => *v = Value::Null,
        Value::Array(a) => a.iter_mut().for_each(absent_as_null),
        Value::Object(o) => o.values_mut().for_each(absent_as_null),
        _ => {}
    }
}

/// Prints rows as a table: a header line, columns aligned. Nothing on stdout for no
/// rows (`empty` goes to stderr), so that `| wc -l` counts what there is.
pub fn table(headers: &[&str], rows: &[Vec<String>], empty: &str) {
    if rows.is_empty() {
        eprintln!("{empty}");
        return;
    }
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let text: Vec<String> = cells
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (c, w))| {
                if i == last {
                    c.to_string()
                } else {
                    format!("{c:<w$}")
                }
            })
            .collect();
        println!("{}", text.join("  ").trim_end());
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// "1 image", "2 images": a count with its noun, for human lines.
pub fn count(n: impl Into<u64>, noun: &str) -> String {
    match n.into() {
        1 => format!("1 {noun}"),
        n => format!("{n} {noun}s"),
    }
}

/// "a, b" or, for an empty list, what empty means.
pub fn or_any(v: &[String], any: &str) -> String {
    if v.is_empty() {
        any.to_string()
    } else {
        v.join(", ")
    }
}
