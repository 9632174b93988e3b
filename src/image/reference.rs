//! Image references as the local store names them: `NAME[:TAG]`, the tag defaulting to
//! `latest`. NAME follows the distribution grammar (lower-case path components separated by
//! `/`, each `[a-z0-9]+` joined by `.`, `_`, `__` or `-`; the first component may be a
//! registry host with a port). Names are kept as written (`ubuntu` stays `ubuntu`, as
//! `docker images` shows it), and Docker Hub names are made familiar
//! (`docker.io/library/ubuntu` -> `ubuntu`, `docker.io/org/x` -> `org/x`); registry defaults
//! are applied by pull/push, not here.

use std::fmt;

/// A parsed `NAME:TAG`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Reference {
    pub name: String,
    pub tag: String,
}

impl Reference {
    /// Parses `NAME[:TAG]`; `@digest` references are not tags and are refused here.
    pub fn parse(s: &str) -> Result<Reference, String> {
        // Docker Hub names are kept in their familiar form, as `docker images` shows them.
        let s = [
            "docker.io/library/",
            "index.docker.io/library/",
            "docker.io/",
            "index.docker.io/",
        ]
        .iter()
        .find_map(|p| {
            s.strip_prefix(p)
                .filter(|r| r.contains('/') || p.ends_with("library/"))
                // `docker.io/quay.io/x` must not become `quay.io/x`, another registry's name.
                .filter(|r| !names_registry(r))
        })
        .unwrap_or(s);
        if s.contains('@') {
            return Err(format!("{s:?}: digest references are not supported here"));
        }
        let slash = s.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match s[slash..].rfind(':') {
            Some(i) => (&s[..slash + i], &s[slash + i + 1..]),
            None => (s, "latest"),
        };
        check_name(name).map_err(|e| format!("invalid image name {s:?}: {e}"))?;
        check_tag(tag).map_err(|e| format!("invalid image tag {s:?}: {e}"))?;
        Ok(Reference {
            name: name.to_string(),
            tag: tag.to_string(),
        })
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, self.tag)
    }
}

/// Splits a name into its registry host (with port) and its repository path, the one rule
/// both local names and remote references follow (docker's grammar): the first of several
/// components is a host when it has a `.` or a `:`, is `localhost`, or has an upper-case
/// letter (a path component never has one).
pub fn split_domain(name: &str) -> (Option<&str>, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (Some(first), rest)
        }
        _ => (None, name),
    }
}

fn names_registry(name: &str) -> bool {
    split_domain(name).0.is_some()
}

/// A registry host: DNS labels (`[A-Za-z0-9]`, inner `-`) joined by `.`, or an IPv6 address
/// in brackets, then an optional `:PORT`.
fn check_host(host: &str) -> Result<(), String> {
    let bad = || Err(format!("bad registry host {host:?}"));
    let (h, port) = if let Some(rest) = host.strip_prefix('[') {
        let Some((ip, after)) = rest.split_once(']') else {
            return bad();
        };
        if ip.parse::<std::net::Ipv6Addr>().is_err() {
            return bad();
        }
        match after {
            "" => ("", None),
            p => match p.strip_prefix(':') {
                Some(p) => ("", Some(p)),
                None => return bad(),
            },
        }
    } else {
        match host.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host, None),
        }
    };
    let label_ok = |l: &str| {
        let b = l.as_bytes();
        !b.is_empty()
            && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
            && b[0] != b'-'
            && b[b.len() - 1] != b'-'
    };
    let bracketed = host.starts_with('[');
    let h_ok = bracketed || h.split('.').all(label_ok);
    let p_ok = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()));
    if h_ok && p_ok { Ok(()) } else { bad() }
}

fn check_tag(tag: &str) -> Result<(), String> {
    let b = tag.as_bytes();
    let ok_first = b
        .first()
        .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_');
    let ok_rest = b
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
    if ok_first && ok_rest && b.len() <= 128 {
        Ok(())
    } else {
        Err("a tag is [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}".into())
    }
}

fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 255 {
        return Err("a name is 1 to 255 characters".into());
    }
    let (host, path) = split_domain(name);
    if let Some(h) = host {
        check_host(h)?;
    }
    for comp in path.split('/') {
        if !component_ok(comp.as_bytes()) {
            return Err(format!(
                "path component {comp:?} must be lower-case [a-z0-9] joined by '.', '_', '__' or '-'"
            ));
        }
    }
    Ok(())
}

fn component_ok(c: &[u8]) -> bool {
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if c.is_empty() || !alnum(&c[0]) || !alnum(&c[c.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < c.len() {
        if alnum(&c[i]) {
            i += 1;
            continue;
        }
        // A separator: '.', '_', '__', or one or more '-'.
        let start = i;
        match c[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < c.len() && c[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < c.len() && c[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == start || i >= c.len() || !alnum(&c[i]) {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        let r = Reference::parse("ubuntu").unwrap();
        assert_eq!(r.to_string(), "ubuntu:latest");
        let r = Reference::parse("localhost:5000/a/b-c:v1.2").unwrap();
        assert_eq!(
            (r.name.as_str(), r.tag.as_str()),
            ("localhost:5000/a/b-c", "v1.2")
        );
        assert_eq!(Reference::parse("my__x:t").unwrap().name, "my__x");
        assert_eq!(
            Reference::parse("docker.io/library/ubuntu:22.04")
                .unwrap()
                .to_string(),
            "ubuntu:22.04"
        );
        assert_eq!(
            Reference::parse("docker.io/org/x").unwrap().to_string(),
            "org/x:latest"
        );
        // Docker's grammar: (input, name, tag).
        for (input, name, tag) in [
            ("test_com", "test_com", "latest"),
            ("test.com:tag", "test.com", "tag"),
            ("test.com:5000", "test.com", "5000"),
            ("test.com/repo:tag", "test.com/repo", "tag"),
            ("test:5000/repo", "test:5000/repo", "latest"),
            ("lowercase:Uppercase", "lowercase", "Uppercase"),
            (
                "sub-dom1.foo.com/bar/baz/quux:some-long-tag",
                "sub-dom1.foo.com/bar/baz/quux",
                "some-long-tag",
            ),
            (
                "b.gcr.io/test.example.com/my-app:test.example.com",
                "b.gcr.io/test.example.com/my-app",
                "test.example.com",
            ),
            (
                "xn--n3h.com/myimage:xn--n3h.com",
                "xn--n3h.com/myimage",
                "xn--n3h.com",
            ),
            ("foo_bar.com:8080", "foo_bar.com", "8080"),
            ("foo/foo_bar.com:8080", "foo/foo_bar.com", "8080"),
            ("[2001:db8::1]/repo", "[2001:db8::1]/repo", "latest"),
            ("[2001:db8::1]:5000/repo:t", "[2001:db8::1]:5000/repo", "t"),
            ("[::1]:5000/a/b", "[::1]:5000/a/b", "latest"),
            ("Upper/lower:tag", "Upper/lower", "tag"),
            ("192.168.1.1:5000/repo", "192.168.1.1:5000/repo", "latest"),
            ("a---b/c.d__e", "a---b/c.d__e", "latest"),
        ] {
            let r = Reference::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!((r.name.as_str(), r.tag.as_str()), (name, tag), "{input}");
            assert_eq!(Reference::parse(&r.to_string()).unwrap(), r, "{input}");
        }
        assert_eq!(split_domain("a/b"), (None, "a/b"));
        assert_eq!(split_domain("localhost/b"), (Some("localhost"), "b"));
        assert_eq!(split_domain("localhost"), (None, "localhost"));
        // Found by fuzzing: the familiar form must not turn into another registry's name.
        for full in ["docker.io/quay.io/x:1", "docker.io/localhost/y:2"] {
            let r = Reference::parse(full).unwrap();
            assert_eq!(r.to_string(), full);
            assert_eq!(Reference::parse(&r.to_string()).unwrap(), r);
        }
        for bad in [
            "Ubuntu",
            "Upper:tag",
            "test:5000/Upper/lower:tag",
            "aa/asdf$$^/aa",
            "[fe80::1%eth0]:5000/repo",
            "[2001:db8::1]:x/repo",
            "-host.com/repo",
            "host-.com/repo",
            ":justtag",
            "a:",
            "a::b",
            "-a",
            "a/",
            "a b",
            "a@sha256:00",
            "a___b",
            "a:-x",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
    }
}
