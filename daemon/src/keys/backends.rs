//! The configured HSM backends by name, each with its worker pool.

use super::KeyError;
use crate::hsm::HsmPool;
use std::collections::BTreeMap;

/// The configured HSM backends, each with its worker pool.
#[derive(Debug)]
pub struct Backends {
    pools: BTreeMap<String, HsmPool>,
    default: String,
}

impl Backends {
    /// Wraps started pools; `default` must name one of them.
    pub fn new(pools: BTreeMap<String, HsmPool>, default: String) -> Result<Self, String> {
        if !pools.contains_key(&default) {
            return Err(format!("default backend {default:?} is not configured"));
        }
        Ok(Self { pools, default })
    }

    /// The pool of a backend by name, or the default one for an empty name.
    pub fn get(&self, name: &str) -> Result<&HsmPool, KeyError> {
        let name = if name.is_empty() { &self.default } else { name };
        self.pools.get(name).ok_or_else(|| {
            KeyError::InvalidArgument(format!(
                "unknown backend {name:?}; configured backends: {}",
                self.pools.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })
    }

    /// Name of the default backend.
    pub fn default_name(&self) -> &str {
        &self.default
    }

    /// All pools by name.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &HsmPool)> {
        self.pools.iter()
    }
}
