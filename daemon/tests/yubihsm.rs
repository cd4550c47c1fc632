//! The YubiHSM backend against the `yubihsm` crate's MockHsm (a YubiHSM2 cannot run
//! here): keys, CA and signatures go through the same registry code as PKCS#11.

use keyward_daemon::authz::{PrincipalRecord, Role, SignPermit, check_key_use};
use keyward_daemon::hsm::public_key::spki_pem;
use keyward_daemon::hsm::yubihsm::YubiHsmBackend;
use keyward_daemon::hsm::{Algorithm, Backend, HsmError, HsmPool, SignInput};
use keyward_daemon::keys::{Backends, KeyError, KeyRecord, KeyRegistry, Purpose, VersionState};
use keyward_daemon::pki::{self, CaRecord};
use keyward_daemon::store::Namespace;
use keyward_daemon::store::integrity::{ProtectedStore, open_protected};
use keyward_daemon::store::{SledStore, Store};
use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;

fn mock() -> Arc<dyn Backend> {
    Arc::new(
        YubiHsmBackend::open(
            "yubi",
            yubihsm::Connector::mockhsm(),
            yubihsm::Credentials::default(),
        )
        .expect("MockHsm"),
    )
}

async fn registry(dir: &std::path::Path) -> (Arc<KeyRegistry>, CaRecord) {
    let (reg, ca, _) = registry_and_store(dir).await;
    (reg, ca)
}

async fn registry_and_store(dir: &std::path::Path) -> (Arc<KeyRegistry>, CaRecord, ProtectedStore) {
    let pool = HsmPool::start(mock(), 2).unwrap();
    let ca: CaRecord = pool
        .run("init-ca", |s| {
            let k = s.generate("ca", Algorithm::EcdsaP256)?;
            pki::self_sign_ca(s, "yubi", &k.hsm_id, &k.public_key_der, "Keyward CA")
        })
        .await
        .map_err(|e: pki::PkiError| e.to_string())
        .unwrap();
    let mut pools = BTreeMap::new();
    pools.insert("yubi".to_string(), pool);
    let backends = Arc::new(Backends::new(pools, "yubi".into()).unwrap());
    let store: Arc<dyn Store> = Arc::new(SledStore::open(&dir.join("store")).unwrap());
    let (protected, _) = open_protected(store, backends.clone(), "yubi")
        .await
        .unwrap();
    let reg = KeyRegistry::load(protected.clone(), backends, Arc::new(ca.clone()))
        .await
        .unwrap();
    (Arc::new(reg), ca, protected)
}

/// The signing checks a signer passes, as the gate would make them.
fn permit(key: &Arc<KeyRecord>) -> SignPermit {
    let signer = PrincipalRecord {
        name: "ci".into(),
        roles: vec![Role::Signer],
        certificate_fingerprint: String::new(),
        created_at: time::OffsetDateTime::now_utc(),
        created_by: "test".into(),
        removed_at: None,
    };
    check_key_use(&signer, key.clone(), Purpose::Blob).unwrap()
}

fn openssl_ok(args: &[&str]) -> bool {
    Command::new("openssl")
        .args(args)
        .output()
        .unwrap()
        .status
        .success()
}

#[tokio::test]
async fn keys_on_yubihsm_sign_verifiably_and_are_not_exportable() {
    let tmp = tempfile::tempdir().unwrap();
    let (reg, ca) = registry(tmp.path()).await;
    std::fs::write(tmp.path().join("ca.pem"), &ca.certificate_pem).unwrap();
    let msg = b"image manifest bytes".to_vec();
    std::fs::write(tmp.path().join("msg"), &msg).unwrap();

    for (name, alg) in [("p256", "ecdsa-p256"), ("ed", "ed25519")] {
        let rec = reg
            .create(name, alg, "", Vec::new(), Purpose::Blob)
            .await
            .unwrap();
        let v1 = rec.active().unwrap().clone();
        let p = permit(&rec);
        let sig = reg.sign(&p, SignInput::Message(msg.clone())).await.unwrap();
        assert_eq!(p.version().number(), 1);
        let dir = tmp.path();
        let (pubf, sigf, crtf) = (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.sig")),
            dir.join(format!("{name}.crt")),
        );
        std::fs::write(&pubf, spki_pem(&v1.public_key)).unwrap();
        std::fs::write(&sigf, &sig).unwrap();
        std::fs::write(&crtf, &v1.certificate_pem).unwrap();
        let (p, s, m) = (
            pubf.to_str().unwrap(),
            sigf.to_str().unwrap(),
            dir.join("msg"),
        );
        let m = m.to_str().unwrap();
        let verified = if alg == "ed25519" {
            openssl_ok(&[
                "pkeyutl", "-verify", "-pubin", "-rawin", "-inkey", p, "-in", m, "-sigfile", s,
            ])
        } else {
            openssl_ok(&["dgst", "-sha256", "-verify", p, "-signature", s, m])
        };
        assert!(verified, "{alg}: openssl rejected a YubiHSM signature");
        assert!(openssl_ok(&[
            "verify",
            "-CAfile",
            dir.join("ca.pem").to_str().unwrap(),
            crtf.to_str().unwrap()
        ]));

        // Generated on the device without exportable-under-wrap.
        let pool = reg.backends().get("yubi").unwrap();
        let id = v1.hsm_id.clone();
        let prot = pool
            .run("protection", move |s| s.protection(&id))
            .await
            .map_err(|e: HsmError| e)
            .unwrap();
        assert!(
            prot.sensitive && !prot.extractable && prot.never_extractable,
            "{prot:?}"
        );
    }

    // Rotation on YubiHSM: v1 retired, v2 signs.
    let rec = reg
        .rotate(
            "p256",
            &keyward_daemon::keys::no_follow_up,
            time::OffsetDateTime::now_utc(),
        )
        .await
        .unwrap()
        .key;
    assert_eq!(rec.version(1).unwrap().state, VersionState::Retired);
    assert_eq!(rec.active().unwrap().version, 2);
    let p = permit(&rec);
    reg.sign(&p, SignInput::Message(msg)).await.unwrap();
    assert_eq!(p.version().number(), 2);
}

#[tokio::test]
async fn unsupported_algorithm_names_what_yubihsm_supports_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (reg, _) = registry(tmp.path()).await;
    let err = reg
        .create("big", "rsa-pss-3072", "yubi", Vec::new(), Purpose::Blob)
        .await
        .unwrap_err();
    assert!(
        matches!(err, KeyError::Hsm(HsmError::Unsupported { .. })),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains("ecdsa-p256, ecdsa-p384, ed25519"), "{text}");
    assert!(reg.get("big").is_err());
    let pool = reg.backends().get("yubi").unwrap();
    let objects = pool
        .run("list", |s| s.list_objects())
        .await
        .map_err(|e: HsmError| e)
        .unwrap();
    assert_eq!(
        objects.len(),
        1,
        "only the CA key should be on the device: {objects:?}"
    );
}

#[tokio::test]
async fn a_panicking_hsm_job_fails_its_request_but_not_the_worker() {
    // MockHsm panics on commands it does not implement (WrapData).
    let pool = HsmPool::start(mock(), 1).unwrap();
    let r: Result<Vec<u8>, HsmError> = pool
        .run("seal", |s| {
            let key = s.generate_sealing_key("mfa")?;
            s.seal(&key, b"x", b"owner")
        })
        .await;
    let e = r.unwrap_err().to_string();
    assert!(e.contains("panicked"), "{e}");
    // The worker thread is still there to take the next job. (MockHsm's client is
    // poisoned by its own panic, so the next job does not touch it.)
    let answer: u32 = pool
        .run("noop", |_| Ok::<_, HsmError>(42))
        .await
        .expect("the worker survived");
    assert_eq!(answer, 42);
}

#[tokio::test]
async fn a_key_version_that_names_another_hsm_object_never_signs() {
    // Even a validly stored record (the MAC stops forged ones) may not make a key
    // version sign with the CA's object.
    let tmp = tempfile::tempdir().unwrap();
    let (reg, ca, protected) = registry_and_store(tmp.path()).await;
    let rec = reg
        .create("k", "ecdsa-p256", "", Vec::new(), Purpose::Blob)
        .await
        .unwrap();
    let mut evil: KeyRecord = (*rec).clone();
    evil.name = "evil".into();
    evil.versions[0].hsm_id = ca.hsm_id.clone();
    protected.put(Namespace::Keys, "evil", &evil).await.unwrap();
    let reloaded = KeyRegistry::load(protected, reg.backends().clone(), Arc::new(ca))
        .await
        .unwrap();
    let evil = reloaded.get("evil").unwrap();
    let err = reloaded
        .sign(&permit(&evil), SignInput::Message(b"x".to_vec()))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("not its own"), "{err}");
    let k = reloaded.get("k").unwrap();
    reloaded
        .sign(&permit(&k), SignInput::Message(b"x".to_vec()))
        .await
        .expect("the key's own object signs");
}

#[tokio::test]
async fn a_rotation_landing_mid_request_signs_and_names_the_version_the_request_pinned() {
    use p256::ecdsa::signature::Verifier;
    use p256::pkcs8::DecodePublicKey;
    let tmp = tempfile::tempdir().unwrap();
    let (reg, _) = registry(tmp.path()).await;
    let rec = reg
        .create("k", "ecdsa-p256", "", Vec::new(), Purpose::Blob)
        .await
        .unwrap();
    let v1 = rec.active().unwrap().clone();
    // The request passed its checks while v1 was active...
    let pinned = permit(&rec);
    // ...and a rotation lands before the HSM signs.
    let rotated = reg
        .rotate(
            "k",
            &keyward_daemon::keys::no_follow_up,
            time::OffsetDateTime::now_utc(),
        )
        .await
        .unwrap()
        .key;
    assert_eq!(rotated.active().unwrap().version, 2);
    let msg = b"pinned".to_vec();
    let sig = reg
        .sign(&pinned, SignInput::Message(msg.clone()))
        .await
        .unwrap();
    // What the ledger and annotations would name is the version that signed.
    assert_eq!(pinned.version().number(), 1);
    assert_eq!(pinned.version().fingerprint(), v1.fingerprint);
    let key = p256::ecdsa::VerifyingKey::from_public_key_der(&v1.public_key).unwrap();
    let sig = p256::ecdsa::Signature::from_der(&sig).unwrap();
    key.verify(&msg, &sig)
        .expect("the signature is not v1's, the version the request pinned");
}
