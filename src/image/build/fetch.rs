//! `ADD <URL>`: the file downloaded (http or https, `--tls-verify` honoured) into
//! STORE/tmp before the step, so that its content can be part of the cache key, as docker
//! does. Docker's rules: the file is not unpacked, its mode is 0600, and its name is the
//! URL's last path segment when the destination is a directory.

use crate::image::store::Store;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

/// Largest file ADD downloads.
const MAX_BYTES: u64 = 8 << 30;

pub fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

/// The file name a URL gives (its last path segment, query and fragment left out).
pub fn file_name(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let path = rest.split(['?', '#']).next()?;
    let (_, p) = path.split_once('/')?;
    let name = p.rsplit('/').next()?;
    (!name.is_empty() && name != "." && name != "..").then(|| name.to_string())
}

/// Downloads `url` into a fresh STORE/tmp file (mode 0600); returns its path.
pub fn download(st: &Store, url: &str, tls_verify: bool) -> Result<PathBuf, String> {
    let agent = crate::image::registry::client::http_agent(tls_verify);
    let mut resp = agent
        .get(url)
        .call()
        .map_err(|e| format!("GET {url}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("GET {url}: {}", resp.status()));
    }
    let path = st.tmp_path("add-url");
    let res = (|| {
        let mut f = File::create_new(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut body = resp.body_mut().as_reader().take(MAX_BYTES + 1);
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0u64;
        loop {
            let n = body.read(&mut buf).map_err(|e| format!("GET {url}: {e}"))?;
            if n == 0 {
                break;
            }
            total += n as u64;
            if total > MAX_BYTES {
                return Err(format!("GET {url}: larger than {MAX_BYTES} bytes"));
            }
            f.write_all(&buf[..n])
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("{}: {e}", path.display()))
    })();
    if res.is_err() {
        let _ = fs::remove_file(&path);
    }
    res.map(|_| path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_urls() {
        assert_eq!(
            file_name("http://h:1/a/b.tar.gz?x=1").as_deref(),
            Some("b.tar.gz")
        );
        assert_eq!(file_name("https://h/f#frag").as_deref(), Some("f"));
        assert_eq!(file_name("http://h/"), None);
        assert_eq!(file_name("http://h"), None);
        assert!(is_url("http://x") && !is_url("ftp://x") && !is_url("file.txt"));
    }
}
