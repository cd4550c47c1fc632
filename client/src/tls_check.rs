//! Why a TLS connection to keywardd failed, said in words a person can act on. A
//! refused handshake reaches the client as a bare "transport error": the server
//! rejects a client certificate after the client has finished its side. So before
//! connecting, and again when a call fails that way, the client checks what it can
//! see itself: the endpoint's scheme, its certificate's dates and issuer, and whether
//! its key belongs to its certificate.

use crate::ClientConfig;
use crate::offline::x509::Cert;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// What is wrong with this configuration's TLS material, if anything is visible
/// from here; `None` when it all looks right.
pub fn problem(cfg: &ClientConfig, now: OffsetDateTime) -> Option<String> {
    if let Some(rest) = cfg.endpoint.strip_prefix("http://") {
        return Some(format!(
            "the endpoint {} is plain HTTP; keywardd speaks only mutual TLS: use https://{rest}",
            cfg.endpoint
        ));
    }
    if !cfg.endpoint.starts_with("https://") {
        return Some(format!(
            "the endpoint {:?} is not https://host:port (set it in {} or with --endpoint / KEYWARD_ENDPOINT)",
            cfg.endpoint, "client.toml"
        ));
    }
    let cert_pem = std::fs::read_to_string(&cfg.cert).ok()?;
    let cert = match Cert::from_pem(&cert_pem) {
        Ok(c) => c,
        Err(e) => {
            return Some(format!(
                "the client certificate {} cannot be read: {e}",
                cfg.cert.display()
            ));
        }
    };
    if now > cert.not_after {
        return Some(format!(
            "your client certificate {} expired at {}: ask an admin for a new one (keyward principal remove NAME, then keyward principal add NAME --role ... --out client.toml)",
            cfg.cert.display(),
            rfc3339(cert.not_after)
        ));
    }
    if now < cert.not_before {
        return Some(format!(
            "your client certificate {} is not valid before {} (is this machine's clock right?)",
            cfg.cert.display(),
            rfc3339(cert.not_before)
        ));
    }
    if let Ok(ca_pem) = std::fs::read_to_string(&cfg.ca_cert)
        && let Ok(ca) = Cert::from_pem(&ca_pem)
        && !cert.signed_by(&ca)
    {
        return Some(format!(
            "your client certificate {} was not issued by the Keyward CA in {}: it belongs to another instance, or the CA file does",
            cfg.cert.display(),
            cfg.ca_cert.display()
        ));
    }
    let key_pem = zeroize::Zeroizing::new(std::fs::read_to_string(&cfg.key).ok()?);
    match rcgen::KeyPair::from_pem(&key_pem) {
        Ok(key) if rcgen::PublicKeyData::subject_public_key_info(&key) != cert.spki => {
            Some(format!(
                "the key {} does not belong to the certificate {}: client.toml names files of two identities",
                cfg.key.display(),
                cfg.cert.display()
            ))
        }
        Ok(_) => None,
        Err(e) => Some(format!(
            "the client key {} cannot be read: {e}",
            cfg.key.display()
        )),
    }
}

/// A connection error's chain in words: rustls' reasons named as a person reads them.
pub fn explain(detail: &str) -> String {
    let hints = [
        (
            "UnknownIssuer",
            "the daemon's certificate is not from the CA in client.toml's ca_cert (another instance?)",
        ),
        (
            "NotValidForName",
            "the daemon's certificate does not name this host: set server_name in client.toml to the name it has",
        ),
        ("Expired", "the daemon's certificate has expired"),
        (
            "Connection refused",
            "nothing listens there: is keywardd running, and is the endpoint right?",
        ),
        (
            "CertificateRequired",
            "the daemon asked for a client certificate and got none it accepts",
        ),
        (
            "BadCertificate",
            "the daemon refused this client certificate",
        ),
        (
            "UnknownCA",
            "the daemon does not know the CA of this client certificate",
        ),
    ];
    match hints.iter().find(|(k, _)| detail.contains(k)) {
        Some((_, hint)) => format!("{hint} ({detail})"),
        None => detail.to_string(),
    }
}

/// A warning when this configuration's client certificate ends within 30 days.
pub fn expiry_warning(cfg: &ClientConfig, now: OffsetDateTime) -> Option<String> {
    let cert = Cert::from_pem(&std::fs::read_to_string(&cfg.cert).ok()?).ok()?;
    let left = cert.not_after - now;
    if left > time::Duration::days(30) || left.is_negative() {
        return None;
    }
    Some(format!(
        "your client certificate {} expires at {} (in {}): ask an admin for a new one before then (keyward principal remove NAME, then keyward principal add NAME)",
        cfg.cert.display(),
        rfc3339(cert.not_after),
        match left.whole_days() {
            0 => "less than a day".to_string(),
            1 => "1 day".to_string(),
            n => format!("{n} days"),
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_ending_within_30_days_is_warned_of() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["me".to_string()]).unwrap();
        let end =
            OffsetDateTime::now_utc().replace_nanosecond(0).unwrap() + time::Duration::days(365);
        params.not_after = end;
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.path().join("me.crt"), cert.pem()).unwrap();
        let cfg = ClientConfig {
            endpoint: "https://127.0.0.1:1".into(),
            server_name: None,
            ca_cert: dir.path().join("ca.pem"),
            cert: dir.path().join("me.crt"),
            key: dir.path().join("me.key"),
        };
        let days = |n: i64| end - time::Duration::days(n);
        assert_eq!(expiry_warning(&cfg, days(40)), None);
        let w = expiry_warning(&cfg, days(10)).unwrap();
        assert!(w.contains("in 10 days") && w.contains(&rfc3339(end)), "{w}");
        assert!(expiry_warning(&cfg, days(0) + time::Duration::hours(2)).is_none());
        assert!(
            expiry_warning(&cfg, days(0) - time::Duration::hours(2))
                .unwrap()
                .contains("less than a day")
        );
    }
}
