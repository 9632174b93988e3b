//! Remote image references, normalized as docker does:
//!
//! - `ubuntu` -> registry `docker.io`, repository `library/ubuntu`, tag `latest`;
//! - `org/app:1` -> `docker.io`, `org/app`, `1`;
//! - the first component is a registry host when it has a `.` or a `:` or is `localhost`
//!   (`127.0.0.1:5000/a/b:t`, `quay.io/x/y`); `index.docker.io` is `docker.io`;
//! - `NAME@sha256:HEX` pins a manifest digest (a tag beside it is kept for the local name
//!   but the digest is what is fetched).

use crate::image::digest::Digest;
use crate::image::reference::{Reference, split_domain};
use std::fmt;

pub const DOCKER_HUB: &str = "docker.io";
/// Where Docker Hub's registry API really lives.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteRef {
    /// The registry host (with port), `docker.io` for Docker Hub.
    pub registry: String,
    /// The repository path inside the registry (`library/ubuntu`).
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl RemoteRef {
    pub fn parse(s: &str) -> Result<RemoteRef, String> {
        let (name_tag, digest) = match s.split_once('@') {
            Some((n, d)) => (
                n,
                Some(Digest::parse(d).map_err(|e| format!("{s:?}: {e}"))?),
            ),
            None => (s, None),
        };
        let (registry, rest) = match split_domain(name_tag) {
            (Some(host), rest) => (host.to_string(), rest.to_string()),
            (None, _) => (DOCKER_HUB.to_string(), name_tag.to_string()),
        };
        let registry = if registry == "index.docker.io" {
            DOCKER_HUB.to_string()
        } else {
            registry
        };
        let slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (repo, tag) = match rest[slash..].rfind(':') {
            Some(i) => (
                rest[..slash + i].to_string(),
                Some(rest[slash + i + 1..].to_string()),
            ),
            None => (rest.clone(), None),
        };
        let repository = if registry == DOCKER_HUB && !repo.contains('/') {
            format!("library/{repo}")
        } else {
            repo
        };
        if repository.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(format!(
                "invalid reference {s:?}: repository names must be lower-case"
            ));
        }
        let r = RemoteRef {
            registry,
            repository,
            tag: if tag.is_none() && digest.is_none() {
                Some("latest".into())
            } else {
                tag
            },
            digest,
        };
        // The local grammar checks the name and the tag.
        Reference::parse(&format!(
            "{}/{}:{}",
            r.registry,
            r.repository,
            r.tag.as_deref().unwrap_or("latest")
        ))
        .map_err(|e| format!("invalid reference {s:?}: {e}"))?;
        Ok(r)
    }

    /// The host the API requests go to (Docker Hub's API is not at docker.io).
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// True for registries on this machine (127.0.0.0/8, localhost, ::1), which are spoken
    /// to over plain http by default.
    pub fn is_loopback(&self) -> bool {
        let host = match self.registry.rsplit_once(':') {
            Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => &self.registry,
        };
        // An address, not a name that merely starts with 127. (127.example.com is remote).
        host == "localhost"
            || host
                .parse::<std::net::Ipv4Addr>()
                .is_ok_and(|a| a.is_loopback())
            || host == "[::1]"
    }

    /// The manifest reference sent to the registry: the digest if pinned, else the tag.
    pub fn manifest_ref(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".into(),
        }
    }

    /// The store's name for the pulled image: `NAME:TAG` in docker's familiar form, or
    /// None for a digest-only reference (stored untagged).
    pub fn local(&self) -> Option<Reference> {
        let tag = self.tag.as_deref()?;
        Reference::parse(&format!("{}/{}:{tag}", self.registry, self.repository)).ok()
    }
}

impl fmt::Display for RemoteRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_normalization() {
        let r = RemoteRef::parse("ubuntu").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/ubuntu:latest");
        assert_eq!(r.api_host(), DOCKER_HUB_API);
        assert_eq!(r.local().unwrap().to_string(), "ubuntu:latest");
        let r = RemoteRef::parse("org/app:1.0").unwrap();
        assert_eq!(r.to_string(), "docker.io/org/app:1.0");
        assert_eq!(r.local().unwrap().to_string(), "org/app:1.0");
        let r = RemoteRef::parse("index.docker.io/library/debian:12").unwrap();
        assert_eq!(r.local().unwrap().to_string(), "debian:12");
        let r = RemoteRef::parse("127.0.0.1:5000/a/b:t").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("127.0.0.1:5000", "a/b", Some("t"))
        );
        assert!(r.is_loopback());
        assert_eq!(r.local().unwrap().to_string(), "127.0.0.1:5000/a/b:t");
        let r = RemoteRef::parse("localhost/x").unwrap();
        assert_eq!(r.registry, "localhost");
        assert!(r.is_loopback());
        assert!(!RemoteRef::parse("quay.io/x/y").unwrap().is_loopback());
        assert!(!RemoteRef::parse("127.example.com/x").unwrap().is_loopback());
        assert!(RemoteRef::parse("127.0.0.2:5000/x").unwrap().is_loopback());
        let hex = "a".repeat(64);
        let r = RemoteRef::parse(&format!("busybox@sha256:{hex}")).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.manifest_ref(), format!("sha256:{hex}"));
        assert!(r.local().is_none());
        let r = RemoteRef::parse(&format!("busybox:1@sha256:{hex}")).unwrap();
        assert_eq!(r.manifest_ref(), format!("sha256:{hex}"));
        assert_eq!(r.local().unwrap().to_string(), "busybox:1");
        let r = RemoteRef::parse("[::1]:5000/a:t").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("[::1]:5000", "a")
        );
        assert!(r.is_loopback());
        let r = RemoteRef::parse("Registry/app").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("Registry", "app")
        );
        for bad in ["Ubuntu", "a@sha256:00", "a:b:c", "a b", "host:5000/A"] {
            assert!(RemoteRef::parse(bad).is_err(), "{bad}");
        }
    }
}
