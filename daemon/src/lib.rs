//! keywardd: keeps container-image signing keys inside HSMs and signs with them on
//! behalf of authenticated principals.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod api;
pub mod app;
pub mod approvals;
pub mod audit;
pub mod authz;
pub mod clock;
pub mod config;
pub mod dev;
pub mod files;
pub mod heap;
pub mod hsm;
pub mod http;
pub mod identity;
pub mod jobs;
pub mod keys;
pub mod metrics;
pub mod mfa;
pub mod oci;
pub mod pki;
pub mod revocation;
pub mod signing;
pub mod store;
pub mod supervise;
