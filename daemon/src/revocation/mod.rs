//! The signed revocation list: issued by the Keyward CA whenever the set of revoked
//! versions changes, and again at half its validity when nothing changed, so that a
//! verifier holding a list past its `next_update` knows it is stale. The current list
//! is a MAC'd store record with its sequence number (compare-and-swap: two daemons
//! never issue the same sequence twice).

pub mod condemned;
pub mod incident;
pub mod list;
pub mod publish;
mod settings;
pub mod signatures;

pub use settings::RevocationSettings;

use crate::keys::{KeyError, KeyRegistry};
use crate::store::integrity::ProtectedStore;
use crate::store::{Expect, Namespace};
use base64::Engine;
use list::{RevocationList, crl_entries, entries, signature_entries};
use serde::{Deserialize, Serialize};
use signatures::RevokedSignatures;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use time::OffsetDateTime;

/// Store key of the current list (namespace `Meta`).
const RECORD: &str = "revocation-list";

/// Store key of the list with this sequence (namespace `Meta`).
fn by_sequence(sequence: u64) -> String {
    format!("revocation-lists/{sequence:020}")
}

/// A list as issued: its canonical JSON and the CA's signature over it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IssuedList {
    /// The list.
    pub list: RevocationList,
    /// Its canonical JSON (the bytes signed).
    pub document: String,
    /// Base64 of the DER ECDSA P-256 signature of SHA-256(document) by the Keyward CA
    /// key.
    pub signature: String,
    /// Base64 of the X.509 CRL (DER) with the same number and validity.
    #[serde(default)]
    pub crl: String,
}

/// Issues and holds the current revocation list.
pub struct Revocations {
    keys: Arc<KeyRegistry>,
    signatures: Arc<RevokedSignatures>,
    store: ProtectedStore,
    validity: time::Duration,
    current: RwLock<Option<Arc<IssuedList>>>,
    /// Woken when the current list is set (issued, or read from the store).
    issued: tokio::sync::Notify,
    /// Why no list can be issued now (a record failed its check, or the new list would
    /// drop an entry): the last signed list is still served, and `/healthz` says so.
    failing: RwLock<Option<String>>,
    /// Where a failure (and the recovery) is recorded, once per change.
    audit: Option<Arc<crate::audit::AuditLog>>,
}

impl std::fmt::Debug for Revocations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Revocations").finish_non_exhaustive()
    }
}

/// How a fail-closed refusal to issue starts (the rest says why).
const FAIL_CLOSED: &str =
    "no revocation list is issued (fail closed; the last one is still served): ";

/// How many times issuing is re-tried after another daemon issued at the same time.
const ATTEMPTS: usize = 8;

/// How far after `now` a stored list may have been issued and still count as current:
/// two callers that read the clock a moment apart (the refresher and a revocation)
/// must not re-issue each other's list. A list from further ahead (the clock went back)
/// is re-issued.
const ISSUED_AHEAD: time::Duration = time::Duration::minutes(1);

impl Revocations {
    /// Over the keys' revocations, issuing lists valid for `validity_seconds`.
    pub fn new(
        keys: Arc<KeyRegistry>,
        signatures: Arc<RevokedSignatures>,
        store: ProtectedStore,
        validity_seconds: u64,
    ) -> Self {
        Self {
            keys,
            signatures,
            store,
            validity: time::Duration::seconds(validity_seconds as i64),
            current: RwLock::new(None),
            issued: tokio::sync::Notify::new(),
            failing: RwLock::new(None),
            audit: None,
        }
    }

    /// Records failures to issue (and the recovery) in `audit`.
    pub fn with_audit(mut self, audit: Arc<crate::audit::AuditLog>) -> Self {
        self.audit = Some(audit);
        self
    }

    /// Why no list can be issued now, if so.
    pub fn failing(&self) -> Option<String> {
        self.failing
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Sets (or with `None` clears) why lists cannot be issued; a change is logged and
    /// audited.
    async fn set_failing(&self, why: Option<String>) {
        let changed = {
            let mut f = self.failing.write().unwrap_or_else(|p| p.into_inner());
            let changed = *f != why;
            *f = why.clone();
            changed
        };
        if !changed {
            return;
        }
        let (decision, reason) = match &why {
            Some(w) => {
                tracing::error!(reason = %w, "no revocation list is issued (fail closed); the last signed list is still served");
                (crate::audit::Decision::Failed, w.as_str())
            }
            None => {
                tracing::info!("revocation lists are issued again");
                (crate::audit::Decision::Allowed, "issued again")
            }
        };
        if let Some(a) = &self.audit {
            let entry = crate::audit::Entry {
                principal: crate::supervise::DAEMON,
                action: "IssueRevocationList",
                target: "revocation-list",
                decision,
                reason,
                request_hash: "",
            };
            if let Err(e) = a.append(entry).await {
                tracing::error!(error = %e, "cannot audit the revocation list's state");
            }
        }
    }

    /// Why a list built now could leave something out: a key record or a revoked
    /// signature record that failed its check (the list is built from those that load).
    fn unreadable(&self) -> Option<String> {
        let mut refused: Vec<String> = self
            .keys
            .refused()
            .map(|(k, why)| format!("key record {k:?}: {why}"))
            .collect();
        refused.extend(self.signatures.refused().iter().cloned());
        (!refused.is_empty()).then(|| {
            format!(
                "records the list is built from failed their integrity check, so a list now could leave a revocation out: {}",
                refused.join("; ")
            )
        })
    }

    /// Resolves when the current list is next set.
    pub fn issued(&self) -> tokio::sync::futures::Notified<'_> {
        self.issued.notified()
    }

    /// The list with `sequence`, as it was issued.
    pub async fn by_sequence(&self, sequence: u64) -> Result<Option<IssuedList>, KeyError> {
        Ok(self
            .store
            .get::<IssuedList>(Namespace::Meta, &by_sequence(sequence))
            .await?)
    }

    /// The revoked signatures the list names.
    pub fn signatures(&self) -> &Arc<RevokedSignatures> {
        &self.signatures
    }

    /// The list last issued (by this daemon or read from the store).
    pub fn current(&self) -> Option<Arc<IssuedList>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Makes sure the current list names every revoked version and is younger than
    /// half its validity; issues a new one (next sequence) otherwise.
    /// Fails closed: while a record it is built from cannot be read, or when the new
    /// list would drop an entry of the last one, nothing is issued (the last list is
    /// still served, and [`Revocations::failing`] says why).
    pub async fn ensure(&self, now: OffsetDateTime) -> Result<Arc<IssuedList>, KeyError> {
        let result = self.ensure_inner(now).await;
        match &result {
            Err(KeyError::Refused { .. }) => {}
            Err(KeyError::FailedPrecondition(why)) if why.starts_with(FAIL_CLOSED) => {
                self.set_failing(Some(why.clone())).await;
                // Verifiers still get the last signed list (until its next_update).
                if self.current().is_none()
                    && let Ok(Some(last)) =
                        self.store.get::<IssuedList>(Namespace::Meta, RECORD).await
                {
                    self.keep(last);
                }
            }
            Ok(_) => self.set_failing(None).await,
            Err(_) => {}
        }
        result
    }

    async fn ensure_inner(&self, now: OffsetDateTime) -> Result<Arc<IssuedList>, KeyError> {
        if let Some(why) = self.unreadable() {
            return Err(KeyError::FailedPrecondition(format!("{FAIL_CLOSED}{why}")));
        }
        let keys = self.keys.list();
        let wanted = entries(&keys);
        let wanted_signatures = signature_entries(&self.signatures.all());
        for _ in 0..ATTEMPTS {
            let stored = self
                .store
                .get_rev::<IssuedList>(Namespace::Meta, RECORD)
                .await?;
            if let Some((s, _)) = &stored {
                let fresh = s
                    .list
                    .issued()
                    .is_some_and(|t| now < t + self.validity / 2 && t <= now + ISSUED_AHEAD);
                if fresh
                    && s.list.entries == wanted
                    && s.list.signatures == wanted_signatures
                    && !s.crl.is_empty()
                {
                    return Ok(self.keep(s.clone()));
                }
            }
            let (sequence, expect) = match &stored {
                Some((s, rev)) => (s.list.sequence + 1, Expect::At(*rev)),
                None => (1, Expect::Absent),
            };
            let probe = RevocationList::new(
                ("", ""),
                sequence,
                now,
                self.validity,
                wanted.clone(),
                wanted_signatures.clone(),
            );
            if let Some((s, _)) = &stored
                && let Some(lost) = probe.drops_from(&s.list)
            {
                return Err(KeyError::FailedPrecondition(format!(
                    "{FAIL_CLOSED}the list would drop what list {} holds: {lost}",
                    s.list.sequence
                )));
            }
            let ca = self.keys.ca();
            let issuer_fp = hex::decode(&ca.public_key)
                .map(|spki| crate::hsm::public_key::fingerprint(&spki))
                .unwrap_or_default();
            let mut list = RevocationList::new(
                (&ca.common_name, &issuer_fp),
                sequence,
                now,
                self.validity,
                wanted.clone(),
                wanted_signatures.clone(),
            );
            if let Some((s, _)) = &stored {
                list.previous = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
                    s.document.as_bytes(),
                ));
            }
            if let Some(audit) = &self.audit {
                let pool = self.keys.backends().get(&ca.backend)?;
                match audit.durable_head(pool).await {
                    Ok((seq, hash)) => list.audit_head = Some(list::ListedAuditHead { seq, hash }),
                    Err(e) => {
                        return Err(KeyError::FailedPrecondition(format!(
                            "the revocation list names the audit head, which could not be made durable: {e}"
                        )));
                    }
                }
            }
            let document = list.canonical().map_err(|e| {
                KeyError::InvalidArgument(format!("cannot encode the revocation list: {e}"))
            })?;
            let signature = self.keys.ca_sign("sign-revocations", &document).await?;
            let signature = base64::engine::general_purpose::STANDARD.encode(signature);
            let crl = self.crl(sequence, now, &keys).await?;
            let issued = IssuedList {
                list,
                document,
                signature,
                crl: base64::engine::general_purpose::STANDARD.encode(crl),
            };
            // The current list and the same list by sequence in one transaction: the
            // publisher pushes every sequence a registry has not had yet.
            let json = crate::store::to_json(&issued)?;
            let committed = self
                .store
                .commit(
                    vec![(Namespace::Meta, RECORD.to_string(), expect)],
                    vec![
                        (Namespace::Meta, RECORD.to_string(), json.clone()),
                        (Namespace::Meta, by_sequence(sequence), json),
                    ],
                    Vec::new(),
                )
                .await?;
            if committed {
                tracing::info!(
                    sequence,
                    entries = issued.list.entries.len(),
                    "revocation list issued"
                );
                return Ok(self.keep(issued));
            }
        }
        Err(KeyError::Conflict(
            "the revocation list is being issued by other daemons at the same time; try again"
                .into(),
        ))
    }

    /// The CRL numbered `sequence` for the revoked versions of `keys`.
    async fn crl(
        &self,
        sequence: u64,
        now: OffsetDateTime,
        keys: &[Arc<crate::keys::KeyRecord>],
    ) -> Result<Vec<u8>, KeyError> {
        let ca = self.keys.ca().clone();
        let pool = self.keys.backends().get(&ca.backend)?;
        let entries = crl_entries(keys);
        let next = now + self.validity;
        let der: Result<Vec<u8>, crate::pki::PkiError> = pool
            .run("sign-crl", move |s| {
                crate::pki::issue_crl(s, &ca, sequence, now, next, &entries)
            })
            .await;
        Ok(der?)
    }

    /// Issues the list after a revocation. The revocation stands whether or not this
    /// succeeds: the refresher issues the list on its next round.
    pub async fn issue_after_change(&self) {
        if let Err(e) = self.ensure(crate::clock::now()).await {
            tracing::error!(error = %e, "the revocation list could not be issued after a revocation; it is issued on the next refresh");
        }
    }

    /// Holds `issued` as the current list, unless a later one is held already: two
    /// callers of `ensure` (a request, the refresher) may finish in either order, and
    /// what is served never goes back to an earlier sequence.
    fn keep(&self, issued: IssuedList) -> Arc<IssuedList> {
        let issued = Arc::new(issued);
        {
            let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
            if let Some(held) = current.as_ref()
                && held.list.sequence > issued.list.sequence
            {
                return held.clone();
            }
            *current = Some(issued.clone());
        }
        self.issued.notify_waiters();
        issued
    }

    /// Re-issues the list when due, every `every`, until `stop`.
    pub async fn refresh(
        self: Arc<Self>,
        every: Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            if let Err(e) = self.ensure(crate::clock::now()).await {
                tracing::warn!(error = %e, "the revocation list could not be issued; trying again");
            }
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    }
}
