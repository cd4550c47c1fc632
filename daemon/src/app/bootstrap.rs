//! The instance's own keys (the CA, the audit key, the MFA sealing key): each is an HSM
//! object made once and named by a record in the store's meta namespace. One function
//! makes all of them, with one rule: an HSM object whose record could not be stored is
//! destroyed, so a failure or a race leaves no orphan behind.

use super::StartError;
use crate::hsm::{HsmError, HsmPool, HsmSession};
use crate::pki::PkiError;
use crate::store::{self, Namespace, Store};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// What to do when the record exists already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Use it (the audit and sealing keys: made on first start, then reused).
    Use,
    /// Refuse (the CA: `init` on an initialised instance changes nothing).
    Refuse,
}

/// A new instance key: its record, and the HSM object to destroy if the record
/// cannot be stored.
pub struct Made<R> {
    /// The record to store.
    pub record: R,
    /// The HSM object it names.
    pub hsm_id: String,
}

/// Returns the instance key recorded under `name`, making it with `make` inside the
/// pool's HSM if there is none.
pub async fn bootstrap<R, F>(
    store: &dyn Store,
    pool: &HsmPool,
    name: &'static str,
    existing: Existing,
    make: F,
) -> Result<R, StartError>
where
    R: Serialize + DeserializeOwned + Send + 'static,
    F: FnOnce(&mut dyn HsmSession) -> Result<Made<R>, PkiError> + Send + 'static,
{
    let refuse = || match existing {
        Existing::Refuse => StartError::AlreadyInitialised,
        Existing::Use => StartError::Config(format!("the {name} record disappeared; restart")),
    };
    if let Some(r) = store::get_json::<R>(store, Namespace::Meta, name).await? {
        return match existing {
            Existing::Use => Ok(r),
            Existing::Refuse => Err(StartError::AlreadyInitialised),
        };
    }
    let made: Made<R> = pool.run("bootstrap", make).await?;
    let stored = match store::to_json(&made.record) {
        Ok(v) => store.create(Namespace::Meta, name, &v).await,
        Err(e) => Err(e),
    };
    if matches!(stored, Ok(true)) {
        tracing::info!(
            key = name,
            backend = pool.backend().name(),
            "instance key created in the HSM"
        );
        return Ok(made.record);
    }
    // Not stored: the object must not outlive this call.
    let id = made.hsm_id;
    let destroyed: Result<(), HsmError> = pool.run("destroy", move |s| s.destroy(&id)).await;
    if let Err(e) = destroyed {
        tracing::warn!(key = name, error = %e, "could not destroy an instance key whose record was not stored");
    }
    match stored {
        Err(e) => Err(e.into()),
        // Another start made it first: use that one (or refuse, for the CA).
        _ => match existing {
            Existing::Use => store::get_json::<R>(store, Namespace::Meta, name)
                .await?
                .ok_or_else(refuse),
            Existing::Refuse => Err(refuse()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hsm::Algorithm;
    use crate::hsm::yubihsm::YubiHsmBackend;
    use serde::Deserialize;
    use std::sync::Arc;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Rec {
        hsm_id: String,
    }

    fn make(
        label: &'static str,
    ) -> impl FnOnce(&mut dyn HsmSession) -> Result<Made<Rec>, PkiError> {
        move |s| {
            let k = s.generate(label, Algorithm::EcdsaP256)?;
            Ok(Made {
                record: Rec {
                    hsm_id: k.hsm_id.clone(),
                },
                hsm_id: k.hsm_id,
            })
        }
    }

    async fn objects(pool: &HsmPool) -> Vec<String> {
        let all: Vec<_> = pool.run("list", |s| s.list_objects()).await.unwrap();
        let mut ids: Vec<_> = all.into_iter().map(|o| o.hsm_id).collect();
        ids.sort();
        ids
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_key_is_made_once_and_a_lost_race_leaves_no_object_behind() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(crate::store::SledStore::open(&dir.path().join("store")).unwrap());
        let mock = YubiHsmBackend::open(
            "yubi",
            yubihsm::Connector::mockhsm(),
            yubihsm::Credentials::default(),
        )
        .unwrap();
        let pool = HsmPool::start(Arc::new(mock), 1).unwrap();
        let before = objects(&pool).await;

        let first: Rec = bootstrap(store.as_ref(), &pool, "k", Existing::Use, make("k"))
            .await
            .unwrap();
        let again: Rec = bootstrap(store.as_ref(), &pool, "k", Existing::Use, make("k"))
            .await
            .unwrap();
        assert_eq!(first, again, "a recorded key is reused");
        let made = objects(&pool).await;
        assert_eq!(made.len(), before.len() + 1, "{made:?}");
        let refused = bootstrap(store.as_ref(), &pool, "k", Existing::Refuse, make("k")).await;
        assert!(matches!(refused, Err(StartError::AlreadyInitialised)));

        // Another start records its key between this one's check and its write: this
        // one's object is destroyed and the other's record is used.
        let racer = store.clone();
        let runtime = tokio::runtime::Handle::current();
        let won: Rec = bootstrap(store.as_ref(), &pool, "r", Existing::Use, move |s| {
            let theirs = store::to_json(&Rec {
                hsm_id: "theirs".into(),
            })
            .unwrap();
            let created = runtime.block_on(racer.create(Namespace::Meta, "r", &theirs));
            assert!(created.unwrap());
            make("r")(s)
        })
        .await
        .unwrap();
        assert_eq!(won.hsm_id, "theirs");
        assert_eq!(
            objects(&pool).await,
            made,
            "the losing object was left in the HSM"
        );
    }
}
