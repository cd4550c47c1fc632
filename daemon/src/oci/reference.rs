//! Image references by the grammar of the distribution project (`distribution/reference`,
//! which Docker, cosign and `oci_client` follow): `[domain[:port]/]path[:tag][@digest]`.
//!
//! Parsed by hand rather than with `oci_client`'s `Reference::from_str`: that compiles
//! one regular expression with Unicode classes the first time it runs, which takes
//! ~20 MiB of memory (7 of them kept for the life of the process) for what these few
//! loops check. The result is the same `Reference` for every ASCII input (a test
//! compares the two); a tag must be ASCII, as the distribution spec says.

use oci_client::Reference;

/// The longest repository name (`library/app`, without the registry).
const NAME_MAX: usize = 255;
/// The longest tag.
const TAG_MAX: usize = 128;

/// Parses `s`, or says which part of it is wrong.
pub(super) fn parse(s: &str) -> Result<Reference, String> {
    if s.is_empty() {
        return Err("repository name must have at least one component".into());
    }
    let (rest, digest) = match s.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (s, None),
    };
    // A tag follows the last ':' after the last '/'; a ':' before it is a port.
    let (name, tag) = match rest.rfind(':') {
        Some(i) if !rest[i..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
        _ => (rest, None),
    };
    check_name(name)?;
    if let Some(t) = tag {
        check_tag(t)?;
    }
    if let Some(d) = digest {
        check_digest(d)?;
    }
    let (registry, repository) = split_domain(name);
    if repository.len() > NAME_MAX {
        return Err(format!(
            "repository name must not be more than {NAME_MAX} characters"
        ));
    }
    Ok(match (tag, digest) {
        (Some(t), Some(d)) => {
            Reference::with_tag_and_digest(registry, repository, t.into(), d.into())
        }
        (None, Some(d)) => Reference::with_digest(registry, repository, d.into()),
        (t, None) => Reference::with_tag(registry, repository, t.unwrap_or("latest").into()),
    })
}

/// `[domain/]path`: a path alone, or a registry host before the first '/'.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("repository name must have at least one component".into());
    }
    if path(name) {
        return Ok(());
    }
    if let Some((host, rest)) = name.split_once('/')
        && domain(host)
        && path(rest)
    {
        return Ok(());
    }
    let remote = name.split_once('/').map_or(name, |(_, r)| r);
    if remote.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err("repository name must be lowercase".into());
    }
    Err(format!(
        "{name:?} is not [registry/]repository: path components are lowercase letters and digits, separated by '.', '_', '__' or dashes; a registry is a host name with an optional :port"
    ))
}

/// `component(/component)*`, each `[a-z0-9]+` runs joined by '.', '_', '__' or dashes.
fn path(p: &str) -> bool {
    p.split('/').all(|c| {
        let runs = c.split(|ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit());
        let n = runs.clone().count();
        // Splitting on every alphanumeric leaves the separators between them; the first
        // and last pieces are what stands before the first and after the last one.
        !c.is_empty()
            && runs.enumerate().all(|(i, sep)| {
                if i == 0 || i == n - 1 {
                    sep.is_empty()
                } else {
                    matches!(sep, "" | "." | "_" | "__") || sep.bytes().all(|b| b == b'-')
                }
            })
    })
}

/// `label(.label)*[:port]`, labels of letters, digits and inner dashes.
fn domain(d: &str) -> bool {
    let (host, port) = match d.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (d, None),
    };
    let label = |l: &str| {
        !l.is_empty()
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    host.split('.').all(label)
        && port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

fn check_tag(t: &str) -> Result<(), String> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let ok = t.len() <= TAG_MAX
        && t.bytes().next().is_some_and(word)
        && t.bytes().all(|b| word(b) || b == b'.' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "tag {t:?} is not 1-{TAG_MAX} of [A-Za-z0-9_.-], starting with a letter, digit or '_'"
        ))
    }
}

fn check_digest(d: &str) -> Result<(), String> {
    let Some((algorithm, hex)) = d.split_once(':') else {
        return Err(format!("digest {d:?} is not algorithm:hex"));
    };
    // `[A-Za-z][A-Za-z0-9]*` parts joined by one of "-_+.".
    let alg_ok = algorithm.split(['-', '_', '+', '.']).all(|p| {
        p.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
            && p.bytes().all(|b| b.is_ascii_alphanumeric())
    });
    if !alg_ok || hex.len() < 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("digest {d:?} is not algorithm:hex"));
    }
    let want = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => {
            return Err(format!(
                "digest algorithm {algorithm:?} is not supported (sha256, sha384, sha512)"
            ));
        }
    };
    if hex.len() != want {
        return Err(format!(
            "a {algorithm} digest has {want} hex digits, {d:?} has {}",
            hex.len()
        ));
    }
    Ok(())
}

/// Registry and repository as Docker reads a name: the part before the first '/' is a
/// registry if it has a '.' or ':' or is `localhost`; otherwise the registry is Docker
/// Hub, whose one-component names live under `library/`.
fn split_domain(name: &str) -> (String, String) {
    let (mut domain, mut rest) = match name.split_once('/') {
        Some((left, right)) if left.contains(['.', ':']) || left == "localhost" => {
            (left.to_string(), right.to_string())
        }
        _ => ("docker.io".to_string(), name.to_string()),
    };
    if domain == "index.docker.io" {
        domain = "docker.io".into();
    }
    if domain == "docker.io" && !rest.contains('/') {
        rest = format!("library/{rest}");
    }
    (domain, rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (xorshift), so that a failure reproduces.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
            from[(self.next() % from.len() as u64) as usize]
        }
    }

    /// A reference built from parts that are mostly valid, then perhaps mutated.
    fn candidate(rng: &mut Rng) -> String {
        let hosts = [
            "",
            "",
            "127.0.0.1:5000/",
            "localhost/",
            "localhost:80/",
            "docker.io/",
            "index.docker.io/",
            "Reg.Example.com/",
            "a-b.c/",
            "-a.c/",
            "a..c/",
            "host:/",
            "host:5x/",
            "ns/",
        ];
        let comps = [
            "app", "a.b", "a_b", "a__b", "a---b", "a___b", "a._b", "0", "App", "a-", "_a", "x9",
        ];
        let tags = [
            "", "", ":v1", ":latest", ":_x", ":.x", ":", ":a-b.c_d", ":v1/x",
        ];
        let digests = [
            "".to_string(),
            "".to_string(),
            format!("@sha256:{}", "a".repeat(64)),
            format!("@sha256:{}", "A".repeat(64)),
            format!("@sha256:{}", "a".repeat(63)),
            format!("@sha384:{}", "0".repeat(96)),
            format!("@sha512:{}", "f".repeat(128)),
            format!("@md5:{}", "a".repeat(32)),
            format!("@sha256+b64:{}", "a".repeat(64)),
            "@sha256:".to_string(),
            "@:aaa".to_string(),
        ];
        let mut s = rng.pick(&hosts).to_string();
        for i in 0..1 + rng.next() % 3 {
            if i > 0 {
                s.push('/');
            }
            s.push_str(rng.pick(&comps));
        }
        s.push_str(rng.pick(&tags));
        s.push_str(&digests[(rng.next() % digests.len() as u64) as usize]);
        if rng.next().is_multiple_of(3) && !s.is_empty() {
            let chars = b"a0-_.:/@Z";
            let i = (rng.next() % s.len() as u64) as usize;
            let c = chars[(rng.next() % chars.len() as u64) as usize] as char;
            match rng.next() % 3 {
                0 => s.insert(i, c),
                1 => {
                    s.remove(i);
                }
                _ => s.replace_range(i..=i, &c.to_string()),
            }
        }
        s
    }

    #[test]
    fn parses_as_the_distribution_grammar_does() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let (mut valid, mut invalid) = (0, 0);
        for _ in 0..50_000 {
            let s = candidate(&mut rng);
            let ours = parse(&s).ok();
            let theirs = s.parse::<Reference>().ok();
            assert_eq!(ours, theirs, "{s:?}");
            if ours.is_some() {
                valid += 1
            } else {
                invalid += 1
            }
        }
        // Both kinds of input were tried in numbers.
        assert!(
            valid > 2_000 && invalid > 2_000,
            "{valid} valid, {invalid} invalid"
        );
    }

    #[test]
    fn errors_name_the_part() {
        let long = format!("r.io/{}", "a".repeat(256));
        for (s, says) in [
            ("", "at least one component"),
            ("r.io/App:v1", "lowercase"),
            ("r.io/a..b", "not [registry/]repository"),
            ("r.io/app:-x", "tag \"-x\""),
            ("r.io/app@sha256:abc", "algorithm:hex"),
            (&format!("r.io/app@md5:{}", "a".repeat(32)), "not supported"),
            (
                &format!("r.io/app@sha256:{}", "a".repeat(40)),
                "64 hex digits",
            ),
            (&long, "255 characters"),
        ] {
            let e = parse(s).unwrap_err();
            assert!(e.contains(says), "{s:?}: {e}");
        }
        let r = parse("localhost:5000/team/app:v1").unwrap();
        assert_eq!(
            (r.registry(), r.repository(), r.tag()),
            ("localhost:5000", "team/app", Some("v1"))
        );
        assert_eq!(
            parse("app").unwrap().to_string(),
            "docker.io/library/app:latest"
        );
    }
}
