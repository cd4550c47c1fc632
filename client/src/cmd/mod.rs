//! The command groups of the CLI. Each command is a clap type with `async fn run(self,
//! ctx)`; what it prints is a typed value ([`Show`]): text for people, or with
//! `--output json` the same value as JSON. Nothing is printed any other way.

pub mod approvals;
pub mod audit;
pub mod history;
pub mod incident;
pub mod jobs;
pub mod key;
pub mod mfa;
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
        match self.out {
            Output::Json => println!("{}", serde_json::to_string(v).unwrap_or_default()),
            Output::Text => v.text(),
        }
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
