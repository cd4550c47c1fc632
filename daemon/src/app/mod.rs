//! The application: what a running keywardd is made of, and how it starts.
//!
//! - `instance.rs`: [`Instance`] opens the configured HSMs and the store, and makes
//!   the instance's own keys (CA, audit key, MFA sealing key) through `bootstrap.rs`.
//! - `build.rs`: [`App::build`] assembles every service from an opened instance; it
//!   owns no sockets.
//! - `server.rs`: [`run`] serves an [`App`] on listeners the caller bound (port 0 in
//!   tests), until a shutdown future completes; pending work resumes once it listens.
//! - `backends.rs` opens an HSM backend from its configuration; `client_files.rs`
//!   writes a principal's identity and `client.toml`.

mod backends;
mod bootstrap;
mod build;
mod client_files;
mod instance;
mod server;

pub use build::App;
pub use client_files::{ClientIdentity, write_atomic, write_client_config};
pub use instance::Instance;
pub use server::{Running, run};

use crate::hsm::HsmError;
use crate::keys::KeyError;
use crate::pki::PkiError;
use crate::store::StoreError;

/// Why an instance could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is unusable.
    #[error("{0}")]
    Config(String),
    /// An HSM could not be opened.
    #[error("backend {backend}: {source}")]
    Hsm {
        /// Which backend.
        backend: String,
        /// Why.
        source: HsmError,
    },
    /// The store could not be opened or read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The record MAC key could not be opened, or the store does not match the HSM.
    #[error(transparent)]
    Integrity(#[from] crate::store::integrity::OpenError),
    /// Keys could not be loaded.
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// A certificate could not be issued.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// The instance has no CA yet.
    #[error("this instance is not initialised: run `keywardd init --config {0}` first")]
    NotInitialised(String),
    /// `init` on an initialised instance.
    #[error("this instance is already initialised (its CA exists); nothing was changed")]
    AlreadyInitialised,
    /// A file could not be written or its directory is not safe.
    #[error(transparent)]
    File(#[from] crate::files::FileError),
    /// A file or socket failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
}

pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> StartError {
    let what = what.into();
    move |source| StartError::Io { what, source }
}
