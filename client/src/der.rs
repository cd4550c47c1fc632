//! A minimal DER reader (tag, length, contents) for the few structures Keyward reads
//! itself: certificates' fields, RFC 3161 time-stamp queries.

/// One DER element read from the start of a buffer.
pub struct Element<'a> {
    /// The tag octet.
    pub tag: u8,
    /// Tag, length and contents.
    pub whole: &'a [u8],
    /// The contents octets.
    pub contents: &'a [u8],
    /// What follows it.
    pub rest: &'a [u8],
}

/// The DER element at the start of `der`.
pub fn element(der: &[u8]) -> Option<Element<'_>> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, head, rest) = if first < 0x80 {
        (first as usize, 2, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |a, b| (a << 8) | *b as usize);
        (len, 2 + n, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some(Element {
        tag,
        whole: &der[..head + len],
        contents: &rest[..len],
        rest: &rest[len..],
    })
}

/// The elements of a constructed element's contents.
pub fn children(contents: &[u8]) -> Vec<Element<'_>> {
    let (mut out, mut at) = (Vec::new(), contents);
    while let Some(e) = element(at) {
        at = e.rest;
        out.push(e);
    }
    out
}

/// The issuer Name (the whole DER element) of a PEM certificate.
pub fn certificate_issuer(pem: &str) -> Result<Vec<u8>, String> {
    Ok(crate::revocation::tbs_fields(pem)?.swap_remove(2).0)
}

/// The DER of a PEM certificate.
pub fn pem_der(pem: &str) -> Result<Vec<u8>, String> {
    use base64::Engine;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .map_err(|_| "the certificate is not PEM".to_string())
}
