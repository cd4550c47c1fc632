//! Checking an RFC 3161 time-stamp as cosign stores it in a layer
//! (`{"SignedRFC3161Timestamp": base64 TimeStampResp}`): granted, its TSTInfo's imprint
//! is the SHA-256 of what was stamped, its signed attributes name that TSTInfo and are
//! signed (ECDSA P-256) by the TSA certificate, which the chain's root signed and which
//! was valid at the stamp's time. Returns that time.

use super::x509::{Cert, asn1_time, children};
use crate::der::element;
use sha2::Digest;
use time::OffsetDateTime;

const MESSAGE_DIGEST: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x04];
const SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];

/// The time `response` (a DER TimeStampResp) says `data` existed at, once every check
/// passes; `tsa` is the TSA's certificate, `root` the CA that certified it.
pub fn verify(
    response: &[u8],
    data: &[u8],
    tsa: &Cert,
    root: &Cert,
) -> Result<OffsetDateTime, String> {
    let bad = |what: &str| format!("the time-stamp is not usable: {what}");
    let resp = element(response).ok_or_else(|| bad("not DER"))?;
    let parts = children(resp.contents);
    let [status, token, ..] = parts.as_slice() else {
        return Err(bad("no token"));
    };
    let granted = children(status.contents)
        .first()
        .is_some_and(|s| s.contents == [0] || s.contents == [1]);
    if !granted {
        return Err(bad("not granted"));
    }
    // ContentInfo { signedData, [0] SignedData }
    let info = children(token.contents);
    let signed_data = info
        .get(1)
        .and_then(|e| element(e.contents))
        .ok_or_else(|| bad("no SignedData"))?;
    let fields = children(signed_data.contents);
    let encap = fields.get(2).ok_or_else(|| bad("no content"))?;
    let tst_der = children(encap.contents)
        .get(1)
        .and_then(|e| element(e.contents))
        .map(|e| e.contents.to_vec())
        .ok_or_else(|| bad("no TSTInfo"))?;
    let signer_infos = fields.last().ok_or_else(|| bad("no signer"))?;
    let signer = element(signer_infos.contents).ok_or_else(|| bad("no signer"))?;
    let signer = children(signer.contents);
    let attrs = signer
        .iter()
        .find(|e| e.tag == 0xa0)
        .ok_or_else(|| bad("no signed attributes"))?;
    let signature = signer
        .last()
        .filter(|e| e.tag == 0x04)
        .ok_or_else(|| bad("no signature"))?;

    // The signed attributes name this TSTInfo, and the TSA's key signed them (as a SET).
    let digest = children(attrs.contents).into_iter().find_map(|a| {
        let a = children(a.contents);
        (a.first()?.contents == MESSAGE_DIGEST)
            .then(|| element(a.get(1)?.contents).map(|d| d.contents.to_vec()))
            .flatten()
    });
    if digest.as_deref() != Some(sha2::Sha256::digest(&tst_der).as_slice()) {
        return Err(bad("its signed attributes do not name its TSTInfo"));
    }
    let mut signed = attrs.whole.to_vec();
    signed[0] = 0x31;
    if !crate::signature::verifies(&tsa.spki, &signed, signature.contents) {
        return Err(bad("not signed by the TSA of the given chain"));
    }
    if !tsa.signed_by(root) {
        return Err(bad("the TSA certificate is not from the chain's root"));
    }

    // TSTInfo { version, policy, messageImprint { alg, hash }, serial, genTime, ... }
    let tst = element(&tst_der)
        .map(|e| children(e.contents))
        .unwrap_or_default();
    let imprint = tst.get(2).map(|e| children(e.contents)).unwrap_or_default();
    let alg = imprint
        .first()
        .map(|a| children(a.contents))
        .unwrap_or_default();
    if alg.first().map(|o| o.contents) != Some(SHA256) {
        return Err(bad("its imprint is not SHA-256"));
    }
    if imprint.get(1).map(|h| h.contents) != Some(sha2::Sha256::digest(data).as_slice()) {
        return Err(bad("it stamps something else"));
    }
    let time = tst
        .get(4)
        .and_then(asn1_time)
        .ok_or_else(|| bad("no time"))?;
    if !tsa.valid_at(time) || !root.valid_at(time) {
        return Err(bad("the TSA certificate was not valid at the stamp's time"));
    }
    Ok(time)
}
