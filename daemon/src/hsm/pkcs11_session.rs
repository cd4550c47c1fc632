//! What a session does besides the trait's operations: the CKA_ID -> handle maps for
//! private and secret keys (looked up once, not by a token-wide Find per use), the
//! signing call with its retries, public-key reading and deletion by id.

use super::*;

impl Pkcs11Session {
    /// The private key handle for a CKA_ID: from the map, or after a miss from one Find.
    pub(super) fn handle(&self, id: &[u8]) -> Result<ObjectHandle, HsmError> {
        if let Some(h) = read(&self.objects.handles).get(id) {
            return Ok(*h);
        }
        let _one_at_a_time = self.objects.miss.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = read(&self.objects.handles).get(id) {
            return Ok(*h);
        }
        let found = {
            let _find = read(&self.objects.generation);
            self.session
                .find_objects(&[
                    Attribute::Class(ObjectClass::PRIVATE_KEY),
                    Attribute::Id(id.to_vec()),
                ])
                .map_err(|e| device("find key", e))?
        };
        let h = *found
            .first()
            .ok_or_else(|| HsmError::KeyNotFound(hex::encode(id)))?;
        write(&self.objects.handles).insert(id.to_vec(), h);
        Ok(h)
    }

    /// A secret key by CKA_ID and type (a sealing key may have an HMAC half under the
    /// same id), `None` if the token has none; these are few, and each is looked up
    /// once (absence included: a key never gains a half later).
    pub(super) fn find_secret_key(
        &self,
        hsm_id: &str,
        key_type: KeyType,
    ) -> Result<Option<ObjectHandle>, HsmError> {
        let mut cached = parse_id(hsm_id)?;
        let id = cached.clone();
        cached.extend_from_slice(&(*key_type).to_be_bytes());
        if let Some(h) = read(&self.objects.secrets).get(&cached) {
            return Ok(*h);
        }
        let found = {
            let _find = read(&self.objects.generation);
            self.session
                .find_objects(&[
                    Attribute::Class(ObjectClass::SECRET_KEY),
                    Attribute::Id(id),
                    Attribute::KeyType(key_type),
                ])
                .map_err(|e| device("find secret key", e))?
        };
        let h = found.first().copied();
        write(&self.objects.secrets).insert(cached, h);
        Ok(h)
    }

    /// Runs an operation on a secret key of `key_type`; a stale cached handle is
    /// looked up again once.
    pub(super) fn with_secret<T>(
        &self,
        hsm_id: &str,
        key_type: KeyType,
        op: &'static str,
        f: impl Fn(ObjectHandle) -> Result<T, CkError>,
    ) -> Result<T, HsmError> {
        let key = |s: &Self| {
            s.find_secret_key(hsm_id, key_type)?
                .ok_or_else(|| HsmError::KeyNotFound(hsm_id.to_string()))
        };
        match f(key(self)?) {
            Err(e)
                if is_rv(&e, RvError::ObjectHandleInvalid)
                    || is_rv(&e, RvError::KeyHandleInvalid) =>
            {
                write(&self.objects.secrets).clear();
                f(key(self)?).map_err(|e| device(op, e))
            }
            other => other.map_err(|e| device(op, e)),
        }
    }

    pub(super) fn forget(&self, id: &[u8]) {
        write(&self.objects.handles).remove(id);
    }

    pub(super) fn sign_once(
        &self,
        handle: ObjectHandle,
        algorithm: Algorithm,
        input: &SignInput,
    ) -> Result<Vec<u8>, CkError> {
        match algorithm {
            Algorithm::EcdsaP256 | Algorithm::EcdsaP384 => {
                let (_, digest) = input.digest_or_hash(algorithm.default_digest());
                self.session.sign(&Mechanism::Ecdsa, handle, &digest)
            }
            Algorithm::Ed25519 => {
                let SignInput::Message(m) = input else {
                    return Err(CkError::InvalidValue);
                };
                let params = EddsaParams::new(EddsaSignatureScheme::Pure);
                self.session.sign(&Mechanism::Eddsa(params), handle, m)
            }
            Algorithm::RsaPss3072 => {
                let (dalg, digest) = input.digest_or_hash(algorithm.default_digest());
                let (hash_alg, mgf) = match dalg {
                    DigestAlgorithm::Sha256 => (MechanismType::SHA256, PkcsMgfType::MGF1_SHA256),
                    DigestAlgorithm::Sha384 => (MechanismType::SHA384, PkcsMgfType::MGF1_SHA384),
                    DigestAlgorithm::Sha512 => (MechanismType::SHA512, PkcsMgfType::MGF1_SHA512),
                };
                let params = PkcsPssParams {
                    hash_alg,
                    mgf,
                    s_len: (dalg.digest_len() as u64).into(),
                };
                self.session
                    .sign(&Mechanism::RsaPkcsPss(params), handle, &digest)
            }
            Algorithm::RsaPkcs3072 | Algorithm::RsaPkcs4096 => {
                // CKM_RSA_PKCS over a DigestInfo built here: modules without
                // CKM_SHA256_RSA_PKCS (opencryptoki 3.8) sign it all the same.
                let (dalg, digest) = input.digest_or_hash(algorithm.default_digest());
                let info = super::super::public_key::digest_info(dalg, &digest);
                self.session.sign(&Mechanism::RsaPkcs, handle, &info)
            }
        }
    }

    pub(super) fn public_key_der(
        &self,
        public: ObjectHandle,
        algorithm: Algorithm,
    ) -> Result<Vec<u8>, HsmError> {
        if algorithm.rsa_bits().is_some() {
            let attrs = self
                .session
                .get_attributes(
                    public,
                    &[AttributeType::Modulus, AttributeType::PublicExponent],
                )
                .map_err(|e| device("read public key", e))?;
            let (mut n, mut e) = (Vec::new(), Vec::new());
            for a in attrs {
                match a {
                    Attribute::Modulus(v) => n = v,
                    Attribute::PublicExponent(v) => e = v,
                    _ => {}
                }
            }
            return rsa_spki(&n, &e);
        }
        let attrs = self
            .session
            .get_attributes(public, &[AttributeType::EcPoint])
            .map_err(|e| device("read public key", e))?;
        let point = attrs
            .into_iter()
            .find_map(|a| match a {
                Attribute::EcPoint(p) => Some(p),
                _ => None,
            })
            .ok_or_else(|| HsmError::Device {
                op: "read public key",
                detail: "the module returned no CKA_EC_POINT".into(),
            })?;
        ec_spki(algorithm, &unwrap_ec_point(&point))
    }

    pub(super) fn destroy_by_id(&self, id: &[u8]) -> Result<usize, CkError> {
        let found = self.session.find_objects(&[Attribute::Id(id.to_vec())])?;
        let n = found.len();
        for h in found {
            self.session.destroy_object(h)?;
        }
        Ok(n)
    }
}
