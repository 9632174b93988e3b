//! A blocking registry client bound to one registry and repository.
//!
//! It speaks plain http to loopback registries (127.0.0.0/8, localhost) and https to the
//! rest; with `tls_verify: false` https certificates are not checked and a registry that
//! does not speak TLS at all is spoken to over http. A 401 answer is met once per
//! challenge: a Bearer challenge fetches a token from its realm (sending the credentials,
//! if any, as Basic auth), a Basic challenge sends the credentials, and the request is
//! made again. Request bodies are byte slices or file ranges, so a retried request sends
//! its body again.

use super::auth::{self, Challenge, Creds};
use super::reference::RemoteRef;
use serde_json::Value;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;
use ureq::http::{self, Method, Response};

pub use ureq::Body as RespBody;

#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Check https certificates (`--tls-verify=false` turns this off, and allows http).
    pub tls_verify: bool,
    /// `--creds`; else the auth files are looked up.
    pub creds: Option<Creds>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            tls_verify: true,
            creds: None,
        }
    }
}

/// A request body that can be sent again after an auth challenge.
pub enum Body<'a> {
    Empty,
    Bytes(&'a [u8]),
    /// `len` bytes of the file at `path` from `offset`.
    File {
        path: &'a Path,
        offset: u64,
        len: u64,
    },
}

pub struct Client {
    agent: ureq::Agent,
    /// `http://host:port` or `https://host`.
    base: String,
    pub repo: String,
    registry: String,
    creds: Option<Creds>,
    /// `pull` or `pull,push`.
    actions: &'static str,
    /// Further token scopes (`repository:OTHER:pull` for cross-repo mounts).
    extra_scopes: Mutex<Vec<String>>,
    /// The `Authorization` header value in use.
    authz: Mutex<Option<String>>,
}

/// The HTTP agent every request of unionrs goes through (registries, `ADD URL`): status codes
/// come back as responses, not errors; connect and read time out; TLS verified unless
/// `--tls-verify=false`.
pub fn http_agent(tls_verify: bool) -> ureq::Agent {
    let tls = ureq::tls::TlsConfig::builder()
        .disable_verification(!tls_verify)
        .build();
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .tls_config(tls)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_per_read(Some(Duration::from_secs(120)))
        .user_agent(concat!("unionrs/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

impl Client {
    pub fn new(r: &RemoteRef, opts: &ClientOptions, push: bool) -> Result<Client, String> {
        let agent = http_agent(opts.tls_verify);
        let host = r.api_host();
        let base = if r.is_loopback() {
            format!("http://{host}")
        } else if !opts.tls_verify {
            // Try TLS first; a registry that does not speak it is spoken to over http.
            let https = format!("https://{host}");
            match agent.get(format!("{https}/v2/")).call() {
                Ok(_) => https,
                Err(_) => format!("http://{host}"),
            }
        } else {
            format!("https://{host}")
        };
        let creds = match &opts.creds {
            Some(c) => Some(c.clone()),
            None => auth::lookup(&r.registry)?,
        };
        Ok(Client {
            agent,
            base,
            repo: r.repository.clone(),
            registry: r.registry.clone(),
            creds,
            actions: if push { "pull,push" } else { "pull" },
            extra_scopes: Mutex::new(Vec::new()),
            authz: Mutex::new(None),
        })
    }

    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// `BASE/v2/REPO/<rest>`.
    pub fn url(&self, rest: &str) -> String {
        format!("{}/v2/{}/{rest}", self.base, self.repo)
    }

    /// An upload `Location` made absolute.
    pub fn absolute(&self, loc: &str) -> String {
        if loc.starts_with("http://") || loc.starts_with("https://") {
            loc.to_string()
        } else if loc.starts_with('/') {
            format!("{}{loc}", self.base)
        } else {
            format!("{}/{loc}", self.base)
        }
    }

    /// Asks for a token that may also read `repo` (for a cross-repo mount).
    pub fn add_pull_scope(&self, repo: &str) {
        let s = format!("repository:{repo}:pull");
        let mut v = self.extra_scopes.lock().unwrap_or_else(|e| e.into_inner());
        if !v.contains(&s) {
            v.push(s);
            // The next challenge fetches a token with the new scope.
        }
    }

    /// Sends a request, answering auth challenges; any status comes back as a response.
    pub fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: &Body,
    ) -> Result<Response<RespBody>, String> {
        let mut tried: Vec<String> = Vec::new();
        loop {
            let mut b = http::Request::builder().method(method.clone()).uri(url);
            for (k, v) in headers {
                b = b.header(*k, *v);
            }
            if let Some(a) = self.authz.lock().unwrap_or_else(|e| e.into_inner()).clone() {
                b = b.header("Authorization", a);
            }
            let resp = match body {
                Body::Empty => {
                    let b = if method == Method::PUT
                        || method == Method::POST
                        || method == Method::PATCH
                    {
                        b.header("Content-Length", "0")
                    } else {
                        b
                    };
                    self.agent.run(b.body(()).map_err(|e| e.to_string())?)
                }
                Body::Bytes(d) => self.agent.run(b.body(*d).map_err(|e| e.to_string())?),
                Body::File { path, offset, len } => {
                    let mut f = File::open(path)
                        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
                    f.seek(SeekFrom::Start(*offset))
                        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                    let mut r = f.take(*len);
                    let b = b.header("Content-Length", len.to_string());
                    self.agent.run(
                        b.body(ureq::SendBody::from_reader(&mut r))
                            .map_err(|e| e.to_string())?,
                    )
                }
            }
            .map_err(|e| format!("{method} {}: {e}", redact(url)))?;
            if resp.status() != 401 {
                return Ok(resp);
            }
            let challenge = resp
                .headers()
                .get_all("www-authenticate")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(auth::parse_challenge);
            let Some(ch) = challenge else {
                return Ok(resp);
            };
            let key = format!("{ch:?}");
            if tried.contains(&key) {
                return Err(format!(
                    "{} refused the credentials for {} ({method} answered 401 Unauthorized \
                     after authenticating)",
                    self.registry, self.repo
                ));
            }
            tried.push(key);
            let value = match ch {
                Challenge::Basic => match &self.creds {
                    Some(c) => c.basic(),
                    None => {
                        return Err(format!(
                            "{} asks for a user name and password: pass --creds USER:PASS \
                             or add it to ~/.docker/config.json",
                            self.registry
                        ));
                    }
                },
                Challenge::Bearer {
                    realm,
                    service,
                    scope,
                } => format!("Bearer {}", self.token(&realm, service, scope)?),
            };
            *self.authz.lock().unwrap_or_else(|e| e.into_inner()) = Some(value);
        }
    }

    /// Fetches a bearer token from `realm`.
    fn token(
        &self,
        realm: &str,
        service: Option<String>,
        scope: Option<String>,
    ) -> Result<String, String> {
        let mut scopes =
            vec![scope.unwrap_or_else(|| format!("repository:{}:{}", self.repo, self.actions))];
        let own = format!("repository:{}:{}", self.repo, self.actions);
        if !scopes.contains(&own) {
            scopes.push(own);
        }
        scopes.extend(
            self.extra_scopes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .cloned(),
        );
        let mut q: Vec<String> = Vec::new();
        if let Some(s) = service {
            q.push(format!("service={}", query_escape(&s)));
        }
        for s in scopes {
            q.push(format!("scope={}", query_escape(&s)));
        }
        let sep = if realm.contains('?') { '&' } else { '?' };
        let url = format!("{realm}{sep}{}", q.join("&"));
        let mut b = http::Request::builder().method(Method::GET).uri(&url);
        if let Some(c) = &self.creds {
            b = b.header("Authorization", c.basic());
        }
        let mut resp = self
            .agent
            .run(b.body(()).map_err(|e| e.to_string())?)
            .map_err(|e| format!("token request to {realm}: {e}"))?;
        if resp.status() != 200 {
            return Err(format!(
                "token request to {realm} answered {}",
                status_line(resp.status())
            ));
        }
        let body = read_limited(&mut resp, 1 << 20)
            .map_err(|e| format!("token request to {realm}: {e}"))?;
        auth::token_from_json(&body)
    }
}

/// Reads a whole body of at most `max` bytes.
pub fn read_limited(resp: &mut Response<RespBody>, max: u64) -> Result<Vec<u8>, String> {
    if let Some(n) = resp.body().content_length()
        && n > max
    {
        return Err(format!(
            "answer of {n} bytes exceeds the bound of {max} bytes"
        ));
    }
    let mut v = Vec::new();
    resp.body_mut()
        .as_reader()
        .take(max + 1)
        .read_to_end(&mut v)
        .map_err(|e| format!("cannot read the answer: {e}"))?;
    if v.len() as u64 > max {
        return Err(format!("answer exceeds the bound of {max} bytes"));
    }
    Ok(v)
}

pub fn status_line(s: http::StatusCode) -> String {
    format!("{} {}", s.as_u16(), s.canonical_reason().unwrap_or(""))
        .trim_end()
        .to_string()
}

/// A one-line error for an unexpected status: the status and the registry's
/// `{"errors":[{"code","message"}]}` if it sent one.
pub fn status_error(resp: &mut Response<RespBody>, what: &str) -> String {
    let status = status_line(resp.status());
    let detail = read_limited(resp, 64 << 10)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| {
            let errs = v.get("errors")?.as_array()?;
            let parts: Vec<String> = errs
                .iter()
                .map(|e| {
                    let code = e.get("code").and_then(Value::as_str).unwrap_or("");
                    let msg = e.get("message").and_then(Value::as_str).unwrap_or("");
                    format!("{code}: {msg}")
                })
                .collect();
            (!parts.is_empty()).then(|| parts.join("; "))
        });
    match detail {
        Some(d) => format!("{what}: registry answered {status} ({d})"),
        None => format!("{what}: registry answered {status}"),
    }
}

pub fn header<'a>(resp: &'a Response<RespBody>, name: &str) -> Option<&'a str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

/// A query value as registries expect it: everything but `A-Za-z0-9-_.~/:` percent-encoded.
pub fn query_escape(s: &str) -> String {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
    const QUERY: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~')
        .remove(b'/')
        .remove(b':');
    utf8_percent_encode(s, QUERY).to_string()
}

/// A URL without its query (upload URLs carry state tokens).
fn redact(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_keep_what_registries_read_plainly() {
        assert_eq!(
            query_escape("repository:lib/ubuntu:pull,push"),
            "repository:lib/ubuntu:pull%2Cpush"
        );
        assert_eq!(query_escape("a b&c=é~"), "a%20b%26c%3D%C3%A9~");
    }
}
