//! What Keyward asks registries itself instead of trusting a library to: the
//! authentication challenge and bearer tokens (a realm must be https, loopback
//! excepted, and on the registry's own host or one configured for it), and reads with
//! size limits (manifests, signature payloads, token answers). Registry bodies are
//! never echoed: errors carry the HTTP status and the OCI error code only.

use super::RegistryError;
use super::credentials::RegistrySettings;
use serde::Deserialize;
use zeroize::Zeroizing;

/// Size and time limits for registry traffic (`[oci]` in keywardd.toml).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OciLimits {
    /// Largest manifest or index accepted, in bytes.
    #[serde(default = "default_manifest")]
    pub max_manifest_bytes: usize,
    /// Largest signature payload or attestation envelope read back, in bytes.
    #[serde(default = "default_payload")]
    pub max_payload_bytes: usize,
    /// Every registry operation (authorisation included) finishes within this.
    #[serde(default = "default_timeout")]
    pub operation_timeout_seconds: u64,
}

fn default_manifest() -> usize {
    4 * 1024 * 1024
}
fn default_payload() -> usize {
    64 * 1024
}
fn default_timeout() -> u64 {
    60
}

impl Default for OciLimits {
    fn default() -> Self {
        Self {
            max_manifest_bytes: default_manifest(),
            max_payload_bytes: default_payload(),
            operation_timeout_seconds: default_timeout(),
        }
    }
}

/// Largest token answer read.
const MAX_TOKEN_ANSWER: usize = 64 * 1024;

/// How a registry wants to be authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// No challenge: anonymous access.
    None,
    /// HTTP basic authentication.
    Basic,
    /// A bearer token from `realm`.
    Bearer {
        /// Token endpoint.
        realm: String,
        /// `service` parameter.
        service: Option<String>,
    },
}

/// Parses a `WWW-Authenticate` value.
pub fn parse_challenge(value: &str) -> Challenge {
    let parsed = http_auth::parser::ChallengeParser::new(value).filter_map(Result::ok);
    let mut basic = false;
    for c in parsed {
        if c.scheme.eq_ignore_ascii_case("bearer") {
            let get = |k: &str| {
                c.params
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(k))
                    .map(|(_, v)| v.to_unescaped())
            };
            if let Some(realm) = get("realm") {
                return Challenge::Bearer {
                    realm,
                    service: get("service"),
                };
            }
        } else if c.scheme.eq_ignore_ascii_case("basic") {
            basic = true;
        }
    }
    if basic {
        Challenge::Basic
    } else {
        Challenge::None
    }
}

/// `host[:port]` of a URL, lowercased.
fn authority(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host,
    }
}

/// Whether Keyward may ask `realm` for a token for `registry`; the error says why not.
pub fn check_realm(
    settings: &RegistrySettings,
    registry: &str,
    realm: &str,
) -> Result<reqwest::Url, String> {
    let url =
        reqwest::Url::parse(realm).map_err(|e| format!("the bearer realm is not a URL: {e}"))?;
    let host = authority(&url);
    let loopback = super::is_loopback(&host);
    match url.scheme() {
        "https" => {}
        "http" if loopback && super::is_loopback(registry) => {}
        "http" if settings.insecure(registry) && host == registry.to_ascii_lowercase() => {}
        other => {
            return Err(format!(
                "the bearer realm {host} uses {other}; tokens are fetched over https only (loopback excepted)"
            ));
        }
    }
    if host == registry.to_ascii_lowercase() || settings.token_hosts(registry).any(|h| h == host) {
        Ok(url)
    } else {
        Err(format!(
            "the bearer realm is on {host}, not on {registry}; add `token_hosts = [\"{host}\"]` to its [[registry]] entry if that token service is genuine"
        ))
    }
}

/// An HTTP status and the first OCI error code of a registry's answer, never its
/// free text.
pub fn summarise(status: reqwest::StatusCode, body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Envelope {
        errors: Vec<Item>,
    }
    #[derive(Deserialize)]
    struct Item {
        code: String,
    }
    let code = serde_json::from_slice::<Envelope>(body)
        .ok()
        .and_then(|e| e.errors.into_iter().next())
        .map(|i| i.code)
        .filter(|c| c.len() <= 40 && c.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'));
    match code {
        Some(c) => format!("HTTP {} ({c})", status.as_u16()),
        None => format!("HTTP {}", status.as_u16()),
    }
}

/// Reads a body of at most `limit` bytes; a larger one is refused as soon as it is
/// known to be larger (announced length or bytes received).
pub async fn read_limited(
    mut resp: reqwest::Response,
    limit: usize,
    registry: &str,
    what: &str,
) -> Result<Vec<u8>, RegistryError> {
    let too_large = || RegistryError::TooLarge {
        registry: registry.to_string(),
        what: what.to_string(),
        limit,
    };
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| unreachable_err(registry, e))?
    {
        if out.len() + chunk.len() > limit {
            return Err(too_large());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// A transport failure, with its causes.
pub fn unreachable_err(registry: &str, e: reqwest::Error) -> RegistryError {
    let e = e.without_url();
    let mut detail = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        detail = format!("{detail}: {s}");
        src = s.source();
    }
    RegistryError::Unavailable {
        registry: registry.to_string(),
        detail,
    }
}

/// Asks the registry how to authenticate (`GET /v2/`).
pub async fn challenge(
    http: &reqwest::Client,
    base: &str,
    registry: &str,
) -> Result<Challenge, RegistryError> {
    let resp = http
        .get(format!("{base}/v2/"))
        .send()
        .await
        .map_err(|e| unreachable_err(registry, e))?;
    Ok(resp
        .headers()
        .get(reqwest::header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .map(parse_challenge)
        .unwrap_or(Challenge::None))
}

/// Fetches a bearer token for `scope` from a realm that passed [`check_realm`].
pub async fn token(
    http: &reqwest::Client,
    realm: reqwest::Url,
    service: Option<&str>,
    scope: &str,
    basic: Option<(&str, &str)>,
    registry: &str,
) -> Result<Zeroizing<String>, RegistryError> {
    #[derive(Deserialize)]
    struct Answer {
        token: Option<String>,
        access_token: Option<String>,
    }
    let mut req = http.get(realm).query(&[("scope", scope)]);
    if let Some(s) = service {
        req = req.query(&[("service", s)]);
    }
    if let Some((user, password)) = basic {
        req = req.basic_auth(user, Some(password));
    }
    let resp = req.send().await.map_err(|e| unreachable_err(registry, e))?;
    let status = resp.status();
    let body =
        Zeroizing::new(read_limited(resp, MAX_TOKEN_ANSWER, registry, "token answer").await?);
    if !status.is_success() {
        return Err(RegistryError::Auth {
            registry: registry.to_string(),
            detail: format!("the token service answered {}", summarise(status, &body)),
        });
    }
    let answer: Answer = serde_json::from_slice(&body).map_err(|_| RegistryError::Protocol {
        registry: registry.to_string(),
        detail: "the token service's answer is not a token".into(),
    })?;
    answer
        .token
        .or(answer.access_token)
        .map(Zeroizing::new)
        .ok_or_else(|| RegistryError::Protocol {
            registry: registry.to_string(),
            detail: "the token service's answer has no token".into(),
        })
}

/// How Keyward authenticates to one registry for one repository.
#[derive(Clone)]
pub enum Auth {
    /// No credentials.
    Anonymous,
    /// HTTP basic.
    Basic(String, zeroize::Zeroizing<String>),
    /// A bearer token.
    Bearer(zeroize::Zeroizing<String>),
}

impl Auth {
    /// Adds the credentials to a request.
    pub fn apply(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            Auth::Anonymous => req,
            Auth::Basic(u, p) => req.basic_auth(u, Some(p.as_str())),
            Auth::Bearer(t) => req.bearer_auth(t.as_str()),
        }
    }
}

/// The absolute URL of an upload session; one on another host is refused, so that
/// credentials never follow a registry's redirect elsewhere.
pub fn upload_url(base: &str, location: &str, registry: &str) -> Result<String, RegistryError> {
    if location.starts_with('/') {
        return Ok(format!("{base}{location}"));
    }
    let url = reqwest::Url::parse(location).map_err(|_| RegistryError::Protocol {
        registry: registry.to_string(),
        detail: "the upload Location is not a URL".into(),
    })?;
    let host = match url.port() {
        Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_string(),
    };
    if !host.eq_ignore_ascii_case(registry) || !base.starts_with(&format!("{}://", url.scheme())) {
        return Err(RegistryError::Protocol {
            registry: registry.to_string(),
            detail: format!("the upload Location points to {host}; uploads stay on {registry}"),
        });
    }
    Ok(location.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_and_realms() {
        assert_eq!(
            parse_challenge(r#"Bearer realm="https://auth.example.com/token",service="reg""#),
            Challenge::Bearer {
                realm: "https://auth.example.com/token".into(),
                service: Some("reg".into())
            }
        );
        assert_eq!(parse_challenge(r#"Basic realm="x""#), Challenge::Basic);
        let s = RegistrySettings::default();
        assert!(check_realm(&s, "reg.example.com", "https://reg.example.com/token").is_ok());
        let e = check_realm(&s, "reg.example.com", "http://reg.example.com/token").unwrap_err();
        assert!(e.contains("https only"), "{e}");
        let e = check_realm(&s, "reg.example.com", "https://10.0.0.5/token").unwrap_err();
        assert!(e.contains("token_hosts"), "{e}");
        assert!(check_realm(&s, "127.0.0.1:5000", "http://127.0.0.1:5000/t").is_ok());
        assert!(check_realm(&s, "127.0.0.1:5000", "http://127.0.0.1:6000/t").is_err());
    }

    #[test]
    fn uploads_stay_on_the_registrys_host() {
        let base = "https://reg.example.com";
        assert_eq!(
            upload_url(base, "/v2/a/blobs/uploads/1?x=y", "reg.example.com").unwrap(),
            "https://reg.example.com/v2/a/blobs/uploads/1?x=y"
        );
        assert!(upload_url(base, "https://reg.example.com/v2/a/u/1", "reg.example.com").is_ok());
        let e = upload_url(base, "https://evil.example.net/v2/a/u/1", "reg.example.com")
            .unwrap_err()
            .to_string();
        assert!(e.contains("uploads stay on reg.example.com"), "{e}");
        // Same host, but plain http where the registry speaks https.
        assert!(upload_url(base, "http://reg.example.com/v2/a/u/1", "reg.example.com").is_err());
    }

    #[test]
    fn summaries_keep_the_code_and_drop_the_text() {
        let body = br#"{"errors":[{"code":"DENIED","message":"internal host db-7.corp leaked"}]}"#;
        let s = summarise(reqwest::StatusCode::FORBIDDEN, body);
        assert_eq!(s, "HTTP 403 (DENIED)");
        assert_eq!(
            summarise(reqwest::StatusCode::BAD_GATEWAY, b"<html>secret</html>"),
            "HTTP 502"
        );
    }
}
