//! [`XattrSource`] that runs `getfattr -h -d -m - --absolute-names -e hex -- PATH` (attr
//! package): the crate forbids `unsafe` outside `src/sys`, and std has no xattr API.
//!
//! One process per entry makes it slow (a few ms each); it is a stand-in until `src/sys`
//! offers a safe `lxattrs(path)` over llistxattr/lgetxattr.

use super::xattr::{XattrSource, Xattrs};
use std::io;
use std::path::Path;
use std::process::{Command, Stdio};

/// Reads xattrs by running getfattr (found on `PATH`).
pub struct GetfattrXattrs;

impl XattrSource for GetfattrXattrs {
    fn read(&self, path: &Path) -> io::Result<Xattrs> {
        let out = Command::new("getfattr")
            .args(["-h", "-d", "-m", "-", "--absolute-names", "-e", "hex", "--"])
            .arg(path)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot run getfattr: {e}")))?;
        if !out.status.success() {
            let msg = String::from_utf8_lossy(&out.stderr);
            return Err(io::Error::other(format!(
                "getfattr failed ({}): {}",
                out.status,
                msg.trim()
            )));
        }
        parse_getfattr(&out.stdout)
    }
}

/// Parses `getfattr -d -e hex` output for one file: `# file:` line, then `NAME=0xHEX`
/// lines. getfattr writes `\ooo` octal escapes for bytes in names it cannot print as is
/// (`=`, newline, backslash, control bytes, ...).
pub fn parse_getfattr(out: &[u8]) -> io::Result<Xattrs> {
    let mut pairs = Vec::new();
    for line in out.split(|&b| b == b'\n') {
        if line.is_empty() || line.starts_with(b"#") {
            continue;
        }
        let (name, value) = match line.iter().position(|&b| b == b'=') {
            Some(i) => (&line[..i], &line[i + 1..]),
            None => (line, &b""[..]),
        };
        let name = unescape(name)?;
        let value = if value.is_empty() {
            Vec::new()
        } else {
            let hex = value.strip_prefix(b"0x").ok_or_else(|| {
                bad(format!(
                    "getfattr value of {} is not hex",
                    String::from_utf8_lossy(&name)
                ))
            })?;
            unhex(hex)?
        };
        pairs.push((name, value));
    }
    Ok(Xattrs::from_pairs(pairs))
}

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Undoes getfattr's quoting: `\ooo` (three octal digits) and `\\`.
fn unescape(s: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] != b'\\' {
            out.push(s[i]);
            i += 1;
            continue;
        }
        let rest = &s[i + 1..];
        if rest.first() == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else if rest.len() >= 3 && rest[..3].iter().all(|b| (b'0'..=b'7').contains(b)) {
            let v = rest[..3]
                .iter()
                .fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
            let byte = u8::try_from(v).map_err(|_| bad("bad octal escape".into()))?;
            out.push(byte);
            i += 4;
        } else {
            return Err(bad(format!(
                "bad escape in getfattr name {}",
                String::from_utf8_lossy(s)
            )));
        }
    }
    Ok(out)
}

fn unhex(s: &[u8]) -> io::Result<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return Err(bad("odd-length hex value from getfattr".into()));
    }
    fn nibble(b: u8) -> io::Result<u8> {
        match b {
            b'0'..=b'9' => Ok(b - b'0'),
            b'a'..=b'f' => Ok(b - b'a' + 10),
            b'A'..=b'F' => Ok(b - b'A' + 10),
            _ => Err(bad("bad hex digit from getfattr".into())),
        }
    }
    s.chunks(2)
        .map(|p| Ok(nibble(p[0])? << 4 | nibble(p[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_values_and_escapes() {
        let out = b"# file: a b=c\nuser.empty=0x\nuser.v=0x00ff\nuser.we\\075ird x=0x6869\nuser.bs\\\\=0x41\n\n";
        let x = parse_getfattr(out).unwrap();
        assert_eq!(x.get(b"user.empty"), Some(&b""[..]));
        assert_eq!(x.get(b"user.v"), Some(&[0u8, 0xff][..]));
        assert_eq!(x.get(b"user.we=ird x"), Some(&b"hi"[..]));
        assert_eq!(x.get(b"user.bs\\"), Some(&b"A"[..]));
    }

    #[test]
    fn empty_output_is_no_xattrs() {
        assert!(parse_getfattr(b"").unwrap().is_empty());
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_getfattr(b"user.a=zz\n").is_err());
        assert!(parse_getfattr(b"user.a=0x1\n").is_err());
        assert!(parse_getfattr(b"user.a=0xzz\n").is_err());
        assert!(parse_getfattr(b"user.\\9=0x00\n").is_err());
    }

    #[test]
    fn reads_a_real_file() {
        let dir = std::env::temp_dir().join(format!("unionrs-xattr-cmd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("f");
        std::fs::write(&f, b"").unwrap();
        let st = Command::new("setfattr")
            .args(["-n", "user.k", "-v", "0x0a00"])
            .arg(&f)
            .status()
            .unwrap();
        assert!(st.success());
        let x = GetfattrXattrs.read(&f).unwrap();
        assert_eq!(x.get(b"user.k"), Some(&[0x0a, 0][..]));
        assert!(GetfattrXattrs.read(&dir.join("missing")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
