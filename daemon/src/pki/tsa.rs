//! RFC 3161 time-stamps: the query read, the reply built (a CMS SignedData over a
//! TSTInfo, with the ESS signing-certificate-v2 attribute `openssl ts -verify` looks
//! for), signed by the TSA key in the HSM. Only the encoding is here; `Tsa` in
//! `pki/timestamps.rs` holds the key and signs.

use keyward_client::der::{Element, element};
use sha2::Digest;
use time::OffsetDateTime;

const SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
const SHA384: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02];
const SHA512: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03];
/// 1.2.840.113549.1.7.2
const SIGNED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02];
/// 1.2.840.113549.1.9.16.1.4
const TST_INFO: &[u8] = &[
    0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x10, 0x01, 0x04,
];
/// 1.2.840.113549.1.9.3
const CONTENT_TYPE: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x03];
/// 1.2.840.113549.1.9.4
const MESSAGE_DIGEST: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x04];
/// 1.2.840.113549.1.9.16.2.47
const SIGNING_CERTIFICATE_V2: &[u8] = &[
    0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x10, 0x02, 0x2f,
];
/// 1.2.840.10045.4.3.2
const ECDSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
/// 1.2.840.113549.1.1.11
const SHA256_WITH_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b];
/// The TSA's policy, 1.3.6.1.4.1.57264.2 (as Sigstore's timestamp authority).
const POLICY: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0x83, 0xbf, 0x30, 0x02];

/// A DER element: `tag`, its length, `contents`.
pub(super) fn tlv(tag: u8, contents: &[u8]) -> Vec<u8> {
    let n = contents.len();
    let mut out = vec![tag];
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let be = (n as u32).to_be_bytes();
        let skip = be.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (4 - skip) as u8);
        out.extend_from_slice(&be[skip..]);
    }
    out.extend_from_slice(contents);
    out
}

fn seq(parts: &[&[u8]]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

fn oid(o: &[u8]) -> Vec<u8> {
    tlv(0x06, o)
}

fn int(content: &[u8]) -> Vec<u8> {
    tlv(0x02, content)
}

/// An algorithm identifier with NULL parameters (as digests are written).
fn digest_algorithm(o: &[u8]) -> Vec<u8> {
    seq(&[&oid(o), &[0x05, 0x00]])
}

/// A DER SET OF: its elements sorted by their encodings.
fn set_of(mut items: Vec<Vec<u8>>) -> Vec<u8> {
    items.sort();
    tlv(0x31, &items.concat())
}

/// A time-stamp query, as far as the reply needs it.
#[derive(Debug, Clone)]
pub struct Query {
    /// The MessageImprint element, copied into the TSTInfo as sent.
    imprint: Vec<u8>,
    /// The nonce's INTEGER element, if any.
    nonce: Option<Vec<u8>>,
    /// Whether the reply must carry the TSA's certificate.
    pub cert_req: bool,
}

impl Query {
    /// A query for the SHA-256 of `data` that asks for the certificates, as cosign
    /// makes one; `nonce` is a positive INTEGER's content octets.
    pub fn for_data(data: &[u8], nonce: &[u8]) -> Self {
        Self {
            imprint: seq(&[
                &digest_algorithm(SHA256),
                &tlv(0x04, &sha2::Sha256::digest(data)),
            ]),
            nonce: Some(int(nonce)),
            cert_req: true,
        }
    }
}

fn child<'a>(e: &Option<Element<'a>>) -> Option<Element<'a>> {
    e.as_ref().and_then(|e| element(e.contents))
}

/// Reads a DER `TimeStampReq`; the error says what is wrong with it.
pub fn parse_query(der: &[u8]) -> Result<Query, String> {
    let bad = |what: &str| format!("not an RFC 3161 time-stamp query: {what}");
    let req = element(der).filter(|e| e.tag == 0x30 && e.rest.is_empty());
    let version = child(&req).ok_or_else(|| bad("no version"))?;
    if version.tag != 0x02 || version.contents != [1] {
        return Err(bad("version is not 1"));
    }
    let imprint = element(version.rest)
        .filter(|e| e.tag == 0x30)
        .ok_or_else(|| bad("no message imprint"))?;
    let alg = element(imprint.contents)
        .filter(|e| e.tag == 0x30)
        .ok_or_else(|| bad("no hash algorithm"))?;
    let alg_oid = element(alg.contents)
        .filter(|e| e.tag == 0x06)
        .ok_or_else(|| bad("no hash algorithm"))?;
    let hashed = element(alg.rest)
        .filter(|e| e.tag == 0x04)
        .ok_or_else(|| bad("no hashed message"))?;
    let (name, want) = match alg_oid.contents {
        SHA256 => ("sha256", 32),
        SHA384 => ("sha384", 48),
        SHA512 => ("sha512", 64),
        _ => {
            return Err(
                "the message imprint's hash algorithm is not sha256, sha384 or sha512".into(),
            );
        }
    };
    if hashed.contents.len() != want {
        return Err(format!(
            "the message imprint is {} bytes, but a {name} digest is {want} bytes",
            hashed.contents.len()
        ));
    }
    let (mut nonce, mut cert_req) = (None, false);
    let mut at = imprint.rest;
    while let Some(e) = element(at) {
        match e.tag {
            0x06 if e.contents != POLICY => {
                return Err("this TSA stamps under policy 1.3.6.1.4.1.57264.2 only".into());
            }
            0x02 => nonce = Some(e.whole.to_vec()),
            0x01 => cert_req = e.contents.first().is_some_and(|b| *b != 0),
            _ => {}
        }
        at = e.rest;
    }
    Ok(Query {
        imprint: imprint.whole.to_vec(),
        nonce,
        cert_req,
    })
}

/// GeneralizedTime with milliseconds, as RFC 3161 allows; DER drops the fraction's
/// trailing zeros (and a fraction of zero whole).
fn generalized_time(t: OffsetDateTime) -> Vec<u8> {
    let whole = format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    let millis = format!("{:03}", t.millisecond());
    let frac = millis.trim_end_matches('0');
    let text = if frac.is_empty() {
        format!("{whole}Z")
    } else {
        format!("{whole}.{frac}Z")
    };
    tlv(0x18, text.as_bytes())
}

/// What the reply is made of, besides the query.
pub struct Stamp<'a> {
    /// Serial number, the INTEGER's content octets (positive).
    pub serial: &'a [u8],
    /// The time stamped.
    pub time: OffsetDateTime,
    /// The TSA certificate, DER.
    pub certificate: &'a [u8],
    /// The issuer Name (whole DER element) of the TSA certificate.
    pub issuer: &'a [u8],
    /// The TSA certificate's serial number content octets.
    pub certificate_serial: &'a [u8],
    /// Certificates above it to include (DER), when the query asks for certificates.
    pub chain: &'a [Vec<u8>],
    /// Whether the TSA key is RSA (PKCS#1 v1.5) rather than ECDSA.
    pub rsa: bool,
}

/// The signed attributes (as a SET, the form that is signed) of a TSTInfo.
pub fn signed_attributes(tst_info: &[u8], certificate: &[u8]) -> Vec<u8> {
    let content_type = seq(&[&oid(CONTENT_TYPE), &set_of(vec![oid(TST_INFO)])]);
    let digest = seq(&[
        &oid(MESSAGE_DIGEST),
        &set_of(vec![tlv(0x04, &sha2::Sha256::digest(tst_info))]),
    ]);
    // SigningCertificateV2 { certs: [ESSCertIDv2 { certHash }] } (hash: SHA-256, the default).
    let ess = seq(&[&seq(&[&seq(&[&tlv(
        0x04,
        &sha2::Sha256::digest(certificate),
    )])])]);
    let signing_cert = seq(&[&oid(SIGNING_CERTIFICATE_V2), &set_of(vec![ess])]);
    set_of(vec![content_type, digest, signing_cert])
}

/// The TSTInfo for `q`.
pub fn tst_info(q: &Query, s: &Stamp<'_>) -> Vec<u8> {
    let mut parts = vec![
        int(&[1]),
        oid(POLICY),
        q.imprint.clone(),
        int(s.serial),
        generalized_time(s.time),
    ];
    if let Some(n) = &q.nonce {
        parts.push(n.clone());
    }
    let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    seq(&refs)
}

/// The DER `TimeStampResp` (status granted) around the TSTInfo, with the signature
/// (DER ECDSA or RSASSA-PKCS1-v1_5, over SHA-256 of `attributes`) made over
/// [`signed_attributes`].
pub fn response(q: &Query, s: &Stamp<'_>, tst: &[u8], attributes: &[u8], sig: &[u8]) -> Vec<u8> {
    let encap = seq(&[&oid(TST_INFO), &tlv(0xa0, &tlv(0x04, tst))]);
    let mut signed_attrs = attributes.to_vec();
    signed_attrs[0] = 0xa0;
    let signer = seq(&[
        &int(&[1]),
        &seq(&[s.issuer, &int(s.certificate_serial)]),
        &digest_algorithm(SHA256),
        &signed_attrs,
        &if s.rsa {
            seq(&[&oid(SHA256_WITH_RSA), &[0x05, 0x00]])
        } else {
            seq(&[&oid(ECDSA_SHA256)])
        },
        &tlv(0x04, sig),
    ]);
    let mut fields = vec![int(&[3]), set_of(vec![digest_algorithm(SHA256)]), encap];
    if q.cert_req {
        let mut certs = vec![s.certificate.to_vec()];
        certs.extend(s.chain.iter().cloned());
        fields.push(tlv(0xa0, &certs.concat()));
    }
    fields.push(set_of(vec![signer]));
    let refs: Vec<&[u8]> = fields.iter().map(Vec::as_slice).collect();
    let signed_data = seq(&refs);
    let token = seq(&[&oid(SIGNED_DATA), &tlv(0xa0, &signed_data)]);
    seq(&[&seq(&[&int(&[0])]), &token])
}

/// A refusal `TimeStampResp` (status rejection, failure info badDataFormat).
pub fn rejection(text: &str) -> Vec<u8> {
    let free_text = seq(&[&tlv(0x0c, text.as_bytes())]);
    // PKIFailureInfo badDataFormat (bit 5): a BIT STRING of one octet, 2 unused bits.
    let fail_info = tlv(0x03, &[0x02, 0x04]);
    seq(&[&seq(&[&int(&[2]), &free_text, &fail_info])])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_and_times_are_encoded_as_der_wants() {
        assert_eq!(tlv(0x04, &[7; 3]), [0x04, 3, 7, 7, 7]);
        assert_eq!(&tlv(0x04, &[0; 200])[..3], [0x04, 0x81, 200]);
        assert_eq!(&tlv(0x04, &[0; 300])[..4], [0x04, 0x82, 1, 44]);
        let t = OffsetDateTime::from_unix_timestamp_nanos(1_795_774_830_500_000_000).unwrap();
        assert_eq!(generalized_time(t), tlv(0x18, b"20261127102030.5Z"));
        let t = OffsetDateTime::from_unix_timestamp(1_795_774_830).unwrap();
        assert_eq!(generalized_time(t), tlv(0x18, b"20261127102030Z"));
    }

    #[test]
    fn a_query_is_read_and_a_wrong_length_imprint_is_named() {
        let imprint = |len: usize| seq(&[&digest_algorithm(SHA256), &tlv(0x04, &vec![1; len])]);
        let q = seq(&[&int(&[1]), &imprint(32), &int(&[9]), &tlv(0x01, &[0xff])]);
        let parsed = parse_query(&q).unwrap();
        assert!(parsed.cert_req);
        assert_eq!(parsed.nonce, Some(int(&[9])));
        let err = parse_query(&seq(&[&int(&[1]), &imprint(20)])).unwrap_err();
        assert!(err.contains("20 bytes"), "{err}");
        assert!(parse_query(b"nonsense").is_err());
    }
}
