//! Registry credentials and `WWW-Authenticate` challenges.
//!
//! Credentials come from `--creds USER:PASS`, else from `$DOCKER_CONFIG/config.json`
//! (default ~/.docker/config.json) or `$REGISTRY_AUTH_FILE` (podman's auth.json, same shape),
//! as docker reads them: a credential helper named for the registry in `credHelpers`, else
//! the default helper `credsStore`, else `{"auths": {"HOST": {"auth": base64(USER:PASS)}}}`,
//! Docker Hub's key being `https://index.docker.io/v1/`. A helper NAME is the program
//! `docker-credential-NAME` on PATH, asked with `get` and the server on stdin; it answers
//! `{"ServerURL": .., "Username": .., "Secret": ..}` (or fails saying "credentials not found").
//!
//! A challenge is `Bearer realm="..",service="..",scope=".."` (fetch a token from the realm,
//! with the credentials as Basic auth if there are any, then retry) or `Basic realm=".."`
//! (retry with the credentials).

use serde_json::Value;
use std::path::PathBuf;

#[derive(Clone, PartialEq, Eq)]
pub struct Creds {
    pub user: String,
    pub pass: String,
}

impl std::fmt::Debug for Creds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Creds({}, <hidden>)", self.user)
    }
}

impl Creds {
    /// `USER:PASS` (the password may hold colons).
    pub fn parse(s: &str) -> Result<Creds, String> {
        match s.split_once(':') {
            Some((u, p)) if !u.is_empty() => Ok(Creds {
                user: u.to_string(),
                pass: p.to_string(),
            }),
            _ => Err("--creds takes USER:PASSWORD".into()),
        }
    }

    /// The `Authorization` header value for Basic auth.
    pub fn basic(&self) -> String {
        format!(
            "Basic {}",
            base64_encode(format!("{}:{}", self.user, self.pass).as_bytes())
        )
    }
}

/// The auth files looked at, in order.
fn auth_files() -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(d) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        v.push(PathBuf::from(d).join("config.json"));
    } else if let Some(h) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        v.push(PathBuf::from(h).join(".docker/config.json"));
    }
    if let Some(f) = std::env::var_os("REGISTRY_AUTH_FILE").filter(|f| !f.is_empty()) {
        v.push(PathBuf::from(f));
    }
    v
}

/// Credentials for `registry` (`docker.io` or `host[:port]`) from the first auth file that
/// has a helper or an entry for it. A configured helper is authoritative, as in docker: what
/// it answers (nothing included) is the answer; one that cannot run is an error.
pub fn lookup(registry: &str) -> Result<Option<Creds>, String> {
    for p in auth_files() {
        let Ok(json) = std::fs::read(&p) else {
            continue;
        };
        let Ok(v) = serde_json::from_slice::<Value>(&json) else {
            continue;
        };
        if let Some(helper) = helper_for(&v, registry) {
            return run_helper(&helper, registry)
                .map_err(|e| format!("{e} (configured in {})", p.display()));
        }
        if let Some(c) = lookup_value(&v, registry) {
            return Ok(Some(c));
        }
    }
    Ok(None)
}

/// A registry key of an auth file as unionrs names registries (`https://index.docker.io/v1/`
/// is `docker.io`).
fn norm_key(k: &str) -> String {
    let k = k
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let k = k.split('/').next().unwrap_or(k);
    match k {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_string(),
        k => k.to_string(),
    }
}

/// The credential helper for `registry`: its `credHelpers` entry, else `credsStore`.
fn helper_for(v: &Value, registry: &str) -> Option<String> {
    let named = v
        .get("credHelpers")
        .and_then(Value::as_object)
        .and_then(|h| h.iter().find(|(k, _)| norm_key(k) == registry))
        .and_then(|(_, n)| n.as_str());
    named
        .or_else(|| v.get("credsStore").and_then(Value::as_str))
        .filter(|n| !n.is_empty())
        .map(str::to_string)
}

/// Runs `docker-credential-NAME get` for `registry`. The secret never reaches a message.
fn run_helper(name: &str, registry: &str) -> Result<Option<Creds>, String> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let prog = format!("docker-credential-{name}");
    if name.contains('/') {
        return Err(format!("credential helper {prog:?}: a name, not a path"));
    }
    // The server as docker hands it to helpers: Docker Hub by its old index URL.
    let server = match registry {
        "docker.io" => "https://index.docker.io/v1/",
        r => r,
    };
    let mut child = Command::new(&prog)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("credential helper {prog} cannot run: {e}"))?;
    // A helper that exits without reading its stdin answers anyway.
    let _ = child
        .stdin
        .take()
        .map(|mut s| s.write_all(format!("{server}\n").as_bytes()));
    let out = child
        .wait_with_output()
        .map_err(|e| format!("credential helper {prog}: {e}"))?;
    let first_line = |b: &[u8]| -> String {
        let s = String::from_utf8_lossy(b);
        s.lines().next().unwrap_or("").chars().take(200).collect()
    };
    if !out.status.success() {
        let said = first_line(&out.stdout);
        if said.contains("credentials not found") {
            log::debug!("{prog}: no credentials for {server}");
            return Ok(None);
        }
        let err = first_line(&out.stderr);
        return Err(format!(
            "credential helper {prog} get {server} failed ({}): {}",
            out.status,
            if err.is_empty() { said } else { err }
        ));
    }
    let v: Value = serde_json::from_slice(&out.stdout)
        .map_err(|_| format!("credential helper {prog} get {server}: its answer is not JSON"))?;
    let field = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("");
    match (field("Username"), field("Secret")) {
        (_, "") => Err(format!(
            "credential helper {prog} get {server}: no Secret in its answer"
        )),
        ("<token>", _) => Err(format!(
            "credential helper {prog} get {server}: an identity token (Username <token>), \
             which unionrs does not support; log in with a user and password"
        )),
        ("", _) => Err(format!(
            "credential helper {prog} get {server}: no Username in its answer"
        )),
        (user, secret) => Ok(Some(Creds {
            user: user.to_string(),
            pass: secret.to_string(),
        })),
    }
}

/// Credentials for `registry` from the `auths` of one auth file's JSON.
pub fn lookup_in(json: &[u8], registry: &str) -> Option<Creds> {
    lookup_value(&serde_json::from_slice(json).ok()?, registry)
}

fn lookup_value(v: &Value, registry: &str) -> Option<Creds> {
    let auths = v.get("auths")?.as_object()?;
    let entry = auths
        .iter()
        .find(|(k, _)| norm_key(k) == registry)
        .map(|(_, e)| e)?;
    if let Some(a) = entry.get("auth").and_then(Value::as_str) {
        let raw = base64_decode(a)?;
        return Creds::parse(&String::from_utf8(raw).ok()?).ok();
    }
    let user = entry.get("username")?.as_str()?;
    let pass = entry.get("password")?.as_str()?;
    Some(Creds {
        user: user.into(),
        pass: pass.into(),
    })
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
    Basic,
}

/// Parses `SCHEME k="v",k2=v2`; None for a scheme unionrs does not speak.
pub fn parse_challenge(h: &str) -> Option<Challenge> {
    let h = h.trim();
    let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
    let params = parse_params(rest);
    let get = |k: &str| {
        params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.clone())
    };
    if scheme.eq_ignore_ascii_case("bearer") {
        Some(Challenge::Bearer {
            realm: get("realm")?,
            service: get("service"),
            scope: get("scope"),
        })
    } else if scheme.eq_ignore_ascii_case("basic") {
        Some(Challenge::Basic)
    } else {
        None
    }
}

/// `k="v, with comma",k2=v2` -> pairs.
fn parse_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && (b[i] == b',' || b[i] == b' ') {
            i += 1;
        }
        let ks = i;
        while i < b.len() && b[i] != b'=' {
            i += 1;
        }
        let key = s[ks..i].trim().to_string();
        i += 1; // '='
        let mut val = String::new();
        if i < b.len() && b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' && i + 1 < b.len() {
                    i += 1;
                }
                val.push(b[i] as char);
                i += 1;
            }
            i += 1;
        } else {
            let vs = i.min(b.len());
            while i < b.len() && b[i] != b',' {
                i += 1;
            }
            val = s[vs..i.min(b.len())].trim().to_string();
        }
        if !key.is_empty() {
            out.push((key, val));
        }
    }
    out
}

/// The token of a token endpoint's JSON answer (`token`, or OAuth's `access_token`).
pub fn token_from_json(body: &[u8]) -> Result<String, String> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| format!("token endpoint answered malformed JSON: {e}"))?;
    v.get("token")
        .or_else(|| v.get("access_token"))
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .ok_or_else(|| "token endpoint answered without a token".to_string())
}

/// Base64 as registries and auth files write it: standard alphabet, padded.
pub fn base64_encode(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// Base64 as auth files may hold it: standard or URL-safe alphabet, padded or not, stray
/// low bits tolerated (as Go's decoder, which wrote most of them).
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    use base64::alphabet;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const LENIENT: GeneralPurposeConfig = GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true);
    const STD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);
    const URL: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);
    let s = s.trim();
    STD.decode(s).or_else(|_| URL.decode(s)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip() {
        for s in ["", "a", "ab", "abc", "user:pa:ss", "\u{e9}t\u{e9}"] {
            assert_eq!(
                base64_decode(&base64_encode(s.as_bytes())).unwrap(),
                s.as_bytes()
            );
        }
        assert_eq!(base64_encode(b"user:pass"), "dXNlcjpwYXNz");
        assert_eq!(base64_decode("dXNlcjpwYXNz\n").unwrap(), b"user:pass");
        assert_eq!(base64_decode("dXNlcjpwYXM").unwrap(), b"user:pas");
        assert_eq!(base64_decode("-_8").unwrap(), [0xfb, 0xff]);
        assert_eq!(base64_decode("a$b"), None);
    }

    #[test]
    fn challenges() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/ubuntu:pull,push""#,
        )
        .unwrap();
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/ubuntu:pull,push".into()),
            }
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Negotiate"), None);
        assert_eq!(
            token_from_json(br#"{"access_token":"t1"}"#).unwrap(),
            "t1".to_string()
        );
        assert!(token_from_json(b"{}").is_err());
    }

    #[test]
    fn config_lookup() {
        let j = br#"{"auths":{"https://index.docker.io/v1/":{"auth":"dXNlcjpwYXNz"},
                    "127.0.0.1:5000":{"username":"a","password":"b:c"}}}"#;
        assert_eq!(
            lookup_in(j, "docker.io"),
            Some(Creds {
                user: "user".into(),
                pass: "pass".into()
            })
        );
        assert_eq!(lookup_in(j, "127.0.0.1:5000").unwrap().pass, "b:c");
        assert_eq!(lookup_in(j, "quay.io"), None);
    }

    #[test]
    fn helpers_as_docker_chooses_them() {
        let v: Value = serde_json::from_str(
            r#"{"credsStore":"desktop","credHelpers":{"127.0.0.1:5000":"pass",
                "https://index.docker.io/v1/":"hub"},"auths":{"quay.io":{}}}"#,
        )
        .unwrap();
        assert_eq!(helper_for(&v, "127.0.0.1:5000").as_deref(), Some("pass"));
        assert_eq!(helper_for(&v, "docker.io").as_deref(), Some("hub"));
        assert_eq!(helper_for(&v, "quay.io").as_deref(), Some("desktop"));
        let v: Value = serde_json::from_str(r#"{"credsStore":"","auths":{}}"#).unwrap();
        assert_eq!(helper_for(&v, "quay.io"), None);
        assert!(run_helper("../x", "quay.io").is_err());
    }
}
