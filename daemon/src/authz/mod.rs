//! Who may do what: principals (named by their client certificates), their roles, and
//! the check every request passes. Denials say why, never echo a secret.

mod key_use;

pub use key_use::{SignPermit, campaign_permit, check_key_use};

use crate::store::integrity::{IntegrityError, ProtectedStore};
use crate::store::{Expect, Namespace, Revision, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use time::OffsetDateTime;

/// A role from the configuration of principals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Requests signatures.
    Signer,
    /// Approves other people's signing requests.
    Approver,
    /// Creates, rotates and sets policy on keys.
    KeyAdmin,
    /// Revokes key versions.
    Revoker,
    /// Reads the ledger and the audit log.
    Auditor,
    /// Everything, including principal management.
    Admin,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 6] = [
        Role::Signer,
        Role::Approver,
        Role::KeyAdmin,
        Role::Revoker,
        Role::Auditor,
        Role::Admin,
    ];

    /// The role's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Signer => "signer",
            Role::Approver => "approver",
            Role::KeyAdmin => "key-admin",
            Role::Revoker => "revoker",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }

    /// Parses a role name; the error lists the valid ones.
    pub fn parse(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown role {s:?}; roles: {}",
                    Self::ALL.map(Role::as_str).join(", ")
                )
            })
    }
}

/// What a request does, for the role check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Read keys, public keys, backends; verify images.
    Read,
    /// Sign blobs and images, attest.
    Sign,
    /// Create and rotate keys, set key policy.
    ManageKeys,
    /// Read the signature ledger.
    ReadLedger,
    /// Add, list and remove principals.
    ManagePrincipals,
    /// Read the audit log.
    ReadAudit,
    /// Approve other principals' signing requests.
    Approve,
    /// Verify image signatures (the daemon fetches from registries for it).
    Verify,
    /// Revoke key versions.
    Revoke,
    /// Approve a request of another principal: signatures need the approver role,
    /// policy changes the key-admin role, revocations the revoker role (approvals
    /// check which, per request).
    Decide,
}

impl Action {
    /// The roles that allow it (admin allows everything).
    fn roles(self) -> &'static [Role] {
        match self {
            Action::Read => &Role::ALL,
            Action::Sign => &[Role::Signer, Role::Admin],
            Action::ManageKeys => &[Role::KeyAdmin, Role::Admin],
            Action::ReadLedger => &[Role::Auditor, Role::KeyAdmin, Role::Admin],
            Action::ManagePrincipals => &[Role::Admin],
            Action::ReadAudit => &[Role::Auditor, Role::Admin],
            Action::Approve => &[Role::Approver, Role::Admin],
            Action::Decide => &[Role::Approver, Role::KeyAdmin, Role::Revoker, Role::Admin],
            Action::Revoke => &[Role::Revoker, Role::Admin],
            Action::Verify => &[
                Role::Signer,
                Role::Approver,
                Role::KeyAdmin,
                Role::Auditor,
                Role::Admin,
            ],
        }
    }
}

/// A stored principal.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PrincipalRecord {
    /// Name (the certificate's common name).
    pub name: String,
    /// Roles.
    pub roles: Vec<Role>,
    /// SHA-256 of its client certificate (DER), hex: only this certificate names it.
    pub certificate_fingerprint: String,
    /// When it was added.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Who added it (`keywardd init` for the first admin).
    pub created_by: String,
    /// When it was removed; a removed principal's certificate is refused.
    #[serde(with = "time::serde::rfc3339::option")]
    pub removed_at: Option<OffsetDateTime>,
}

impl PrincipalRecord {
    /// Whether it may do `action`; the error says which roles would.
    pub fn allow(&self, action: Action, what: &str) -> Result<(), String> {
        if self.roles.iter().any(|r| action.roles().contains(r)) {
            return Ok(());
        }
        Err(format!(
            "principal {:?} may not {what}: that needs the role {} (it has: {})",
            self.name,
            action
                .roles()
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(" or "),
            if self.roles.is_empty() {
                "none".to_string()
            } else {
                self.roles
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        ))
    }
}

/// Errors of principal management.
#[derive(Debug, thiserror::Error)]
pub enum PrincipalError {
    /// No such principal.
    #[error("principal {0:?} not found")]
    NotFound(String),
    /// The name is taken (also by a removed principal: names are never reused).
    #[error("principal {0:?} already exists")]
    AlreadyExists(String),
    /// Malformed request.
    #[error("{0}")]
    InvalidArgument(String),
    /// Refused by a rule.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The MAC key failed, or a stored record failed its integrity check.
    #[error(transparent)]
    Integrity(#[from] IntegrityError),
}

/// All principals, cached over the store.
pub struct Principals {
    store: ProtectedStore,
    by_name: RwLock<HashMap<String, Arc<PrincipalRecord>>>,
    /// Principals whose stored record failed its integrity check, and why.
    refused: HashMap<String, String>,
}

impl std::fmt::Debug for Principals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Principals").finish_non_exhaustive()
    }
}

impl Principals {
    /// Loads every principal; one whose stored record fails its integrity check is
    /// not loaded, and its certificate is refused with the reason.
    pub async fn load(store: ProtectedStore) -> Result<Self, StoreError> {
        let mut by_name = HashMap::new();
        let mut refused = HashMap::new();
        for (k, rec) in store.list::<PrincipalRecord>(Namespace::Principals).await? {
            match rec {
                Ok(rec) if rec.name == k => {
                    by_name.insert(k, Arc::new(rec));
                }
                Ok(_) => {
                    tracing::error!(principal = %k, "a stored principal record names another principal; it is not used");
                    refused.insert(k, "its stored record names another principal".into());
                }
                Err(e) => {
                    tracing::error!(principal = %k, error = %e, "principal record refused");
                    refused.insert(k, e.to_string());
                }
            }
        }
        Ok(Self {
            store,
            by_name: RwLock::new(by_name),
            refused,
        })
    }

    /// Principals whose stored record was refused at start-up, and why.
    pub fn refused(&self) -> impl Iterator<Item = (&String, &String)> {
        self.refused.iter()
    }

    /// A principal by name.
    pub fn get(&self, name: &str) -> Result<Arc<PrincipalRecord>, PrincipalError> {
        self.by_name
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
            .ok_or_else(|| PrincipalError::NotFound(name.to_string()))
    }

    /// All principals by name.
    pub fn list(&self) -> Vec<Arc<PrincipalRecord>> {
        let mut v: Vec<_> = self
            .by_name
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// The active principal a verified client certificate names, or why there is none.
    pub fn authenticate(
        &self,
        name: &str,
        cert_fingerprint: &str,
    ) -> Result<Arc<PrincipalRecord>, String> {
        if let Some(why) = self.refused.get(name) {
            return Err(format!("principal {name:?} is not accepted: {why}"));
        }
        let rec = self
            .get(name)
            .map_err(|_| format!("principal {name:?} is not registered"))?;
        if rec.removed_at.is_some() {
            return Err(format!(
                "principal {name:?} was removed; its certificate is no longer accepted"
            ));
        }
        if rec.certificate_fingerprint != cert_fingerprint {
            return Err(format!(
                "this certificate is not the one registered for principal {name:?}"
            ));
        }
        Ok(rec)
    }

    fn remember(&self, rec: PrincipalRecord) -> Arc<PrincipalRecord> {
        let rec = Arc::new(rec);
        self.by_name
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(rec.name.clone(), rec.clone());
        rec
    }

    /// Registers a principal whose certificate has been issued. The store, not this
    /// process, decides a race for the name.
    pub async fn add(
        &self,
        name: &str,
        roles: Vec<Role>,
        certificate_fingerprint: String,
        created_by: &str,
    ) -> Result<Arc<PrincipalRecord>, PrincipalError> {
        let rec = PrincipalRecord {
            name: name.to_string(),
            roles,
            certificate_fingerprint,
            created_at: crate::clock::now(),
            created_by: created_by.to_string(),
            removed_at: None,
        };
        if self
            .store
            .put_if(Namespace::Principals, name, &rec, Expect::Absent)
            .await?
        {
            return Ok(self.remember(rec));
        }
        // A removed principal's name may be given again: a new identity (its new
        // certificate's fingerprint), with no second factor (the old enrolment and any
        // lockout go in the same transaction), so "remove and re-add" replaces a lost
        // factor. The old certificate stays refused: it has the old fingerprint.
        let (old, rev) = self.read_rev(name).await?;
        if old.removed_at.is_none() {
            return Err(PrincipalError::AlreadyExists(rec.name));
        }
        let forget_factor = vec![(Namespace::Mfa, name.to_string(), None)];
        if !self
            .store
            .put_indexed(
                (Namespace::Principals, name),
                &rec,
                Some(Expect::At(rev)),
                forget_factor,
            )
            .await?
        {
            return Err(PrincipalError::FailedPrecondition(format!(
                "principal {name:?} was changed by another request; try again"
            )));
        }
        Ok(self.remember(rec))
    }

    /// Checks a new principal's name and roles before its certificate is issued.
    pub fn check_new(&self, name: &str, roles: &[String]) -> Result<Vec<Role>, PrincipalError> {
        crate::keys::validate_name(name).map_err(|e| {
            PrincipalError::InvalidArgument(e.replace("key name", "principal name"))
        })?;
        if self.get(name).is_ok_and(|p| p.removed_at.is_none()) {
            return Err(PrincipalError::AlreadyExists(name.to_string()));
        }
        if roles.is_empty() {
            return Err(PrincipalError::InvalidArgument(format!(
                "give the principal at least one role: {}",
                Role::ALL.map(Role::as_str).join(", ")
            )));
        }
        let mut parsed = Vec::new();
        for r in roles {
            let r = Role::parse(r).map_err(PrincipalError::InvalidArgument)?;
            if !parsed.contains(&r) {
                parsed.push(r);
            }
        }
        Ok(parsed)
    }

    /// Removes a principal: its certificate is refused from the next request on. The
    /// last active admin cannot be removed, also not by two admins removing each other
    /// at once (here or through another daemon): the write checks that every other
    /// admin it counted is still as it read them.
    pub async fn remove(&self, name: &str) -> Result<Arc<PrincipalRecord>, PrincipalError> {
        for _ in 0..16 {
            let (mut rec, rev) = self.read_rev(name).await?;
            if rec.removed_at.is_some() {
                return Ok(self.remember(rec));
            }
            let mut others = Vec::new();
            if rec.roles.contains(&Role::Admin) {
                for (other, _) in self
                    .store
                    .list::<PrincipalRecord>(Namespace::Principals)
                    .await?
                {
                    if other == name {
                        continue;
                    }
                    if let Ok((p, prev)) = self.read_rev(&other).await
                        && p.removed_at.is_none()
                        && p.roles.contains(&Role::Admin)
                    {
                        others.push((Namespace::Principals, other, Expect::At(prev)));
                    }
                }
                if others.is_empty() {
                    return Err(PrincipalError::FailedPrecondition(format!(
                        "{name:?} is the last admin; add another admin before removing it"
                    )));
                }
            }
            rec.removed_at = Some(crate::clock::now());
            if self
                .store
                .put_if_all(Namespace::Principals, name, &rec, Expect::At(rev), others)
                .await?
            {
                return Ok(self.remember(rec));
            }
        }
        Err(PrincipalError::FailedPrecondition(format!(
            "principals are being changed by other requests; try removing {name:?} again"
        )))
    }

    /// The stored record (not the cache) with its revision.
    async fn read_rev(&self, name: &str) -> Result<(PrincipalRecord, Revision), PrincipalError> {
        if let Some(why) = self.refused.get(name) {
            return Err(PrincipalError::FailedPrecondition(format!(
                "principal {name:?} is not accepted: {why}"
            )));
        }
        match self
            .store
            .get_rev::<PrincipalRecord>(Namespace::Principals, name)
            .await?
        {
            Some((rec, rev)) if rec.name == name => Ok((rec, rev)),
            _ => Err(PrincipalError::NotFound(name.to_string())),
        }
    }
}

/// SHA-256 of the DER inside a PEM certificate, hex.
pub fn pem_fingerprint(pem: &str) -> Option<String> {
    use base64::Engine;
    use sha2::Digest;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .ok()?;
    Some(hex::encode(sha2::Sha256::digest(der)))
}
