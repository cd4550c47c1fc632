//! The start-up comparison of the store with every HSM: reports key versions whose
//! object is missing and Keyward objects the store does not know, and makes every
//! private key Keyward uses sign-only (a version revoked as compromised: unable to
//! sign) where the module allows it, naming those it does not. It deletes nothing.

use super::{KeyError, KeyRegistry, Reconciliation, VersionState};
use std::collections::HashMap;

impl KeyRegistry {
    /// Compares the store with every backend's objects. Reports, never deletes.
    /// `others` are further objects the instance owns: (backend, HSM id, what).
    pub async fn reconcile(
        &self,
        others: &[(String, String, String)],
    ) -> Result<Reconciliation, KeyError> {
        let mut report = Reconciliation::default();
        for (backend, pool) in self.backends.iter() {
            let objects = pool
                .run("list", |s| s.list_objects())
                .await
                .map_err(KeyError::Hsm)?;
            let mut expected: HashMap<String, String> = HashMap::new();
            let mut no_signing = std::collections::HashSet::new();
            for rec in self.list().iter().filter(|r| &r.backend == backend) {
                for v in rec
                    .versions
                    .iter()
                    .filter(|v| v.state != VersionState::Destroyed)
                {
                    expected.insert(v.hsm_id.clone(), format!("{}/v{}", rec.name, v.version));
                    if v.compromised() {
                        no_signing.insert(v.hsm_id.clone());
                    }
                }
            }
            if &self.ca.backend == backend {
                expected.insert(self.ca.hsm_id.clone(), "the Keyward CA".into());
            }
            for (b, id, what) in others {
                if b == backend {
                    expected.insert(id.clone(), what.clone());
                }
            }
            let mut seen = std::collections::HashSet::new();
            for o in objects {
                if o.hsm_id.is_empty() {
                    report.without_id.push(format!("{backend}: {:?}", o.label));
                } else if expected.contains_key(&o.hsm_id) {
                    seen.insert(o.hsm_id);
                } else if o.label.starts_with(crate::hsm::pkcs11::LABEL_PREFIX) {
                    report
                        .unknown_on_hsm
                        .push(format!("{backend}: {} ({})", o.hsm_id, o.label));
                }
            }
            for (id, what) in expected {
                if !seen.contains(&id) {
                    report
                        .missing_on_hsm
                        .push(format!("{what} on {backend} ({id})"));
                    continue;
                }
                let sign = !no_signing.contains(&id);
                let key = id.clone();
                let check = match pool
                    .run("usage", move |s| s.restrict_usage(&key, sign))
                    .await
                {
                    Ok(c) => c,
                    Err(e) => {
                        report.usage_refused.push(format!(
                            "{what} on {backend}: its usage could not be read: {e}"
                        ));
                        continue;
                    }
                };
                for c in check.corrected {
                    report
                        .usage_corrected
                        .push(format!("{what} on {backend}: {c}"));
                }
                for r in check.refused {
                    // A refusal about signing itself (PKCS#11's CKA_SIGN, or a device
                    // that cannot take capabilities away at all).
                    let signing = r.starts_with("CKA_SIGN") || !r.starts_with("CKA_");
                    if !sign && signing {
                        report
                            .revoked_can_sign
                            .push(format!("{what} on {backend} ({id}): {r}"));
                    } else {
                        report
                            .usage_refused
                            .push(format!("{what} on {backend}: {r}"));
                    }
                }
            }
        }
        report.missing_on_hsm.sort();
        report.unknown_on_hsm.sort();
        Ok(report)
    }
}
