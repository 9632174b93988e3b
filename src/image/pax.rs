//! Writing one tar entry in the layer format unionrs uses: POSIX pax (ustar headers, with
//! an `x` extended header in front of an entry only when the entry needs one).
//!
//! Why pax and not GNU: the OCI layer format carries xattrs as pax `SCHILY.xattr.*`
//! records, so pax is needed anyway, and one format throughout means one set of rules for
//! long names (pax `path`/`linkpath`, never GNU `L`/`K` entries). Header choices, all fixed
//! so that the same tree gives the same bytes:
//! - ustar header, `uname`/`gname` empty, no atime/ctime, mtime in whole seconds (as
//!   Docker does); no pax `mtime` unless the seconds do not fit the header field.
//! - names up to 100 bytes (or splittable into ustar prefix+name) stay in the header;
//!   longer ones go to a pax `path`/`linkpath` record, and `hdrcharset=BINARY` is added when
//!   such a value is not UTF-8, so readers take the bytes as they are.
//! - uid/gid above 2097151 and sizes of 8 GiB and more go to pax `uid`/`gid`/`size`.
//! - the extended header itself is named `././@PaxHeader`, mode 0644, owner 0:0, mtime 0.

use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use tar::{Builder, EntryType, Header};

/// Largest value of an 8-byte ustar numeric field (7 octal digits).
const MAX_OCTAL_7: u64 = 0o7777777;
/// Largest value of a 12-byte ustar numeric field (11 octal digits).
const MAX_OCTAL_11: u64 = 0o77777777777;

/// Name of every pax extended header; fixed (no pid, no entry name) for determinism.
pub const PAX_HEADER_NAME: &[u8] = b"././@PaxHeader";

/// Everything about one archive entry except its data.
#[derive(Debug, Clone)]
pub struct EntrySpec<'a> {
    /// Relative path; directories end in `/`.
    pub path: &'a Path,
    pub kind: EntryType,
    /// Permission bits including setuid/setgid/sticky (masked to 0o7777).
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Seconds since the epoch (may be negative).
    pub mtime: i64,
    /// Data length (0 for everything but regular files).
    pub size: u64,
    /// Symlink target or hardlink target (an earlier entry's path).
    pub link: Option<&'a Path>,
    /// (major, minor) for character and block devices.
    pub device: Option<(u32, u32)>,
    /// Extended attributes to carry as `SCHILY.xattr.NAME` records, in the order given.
    /// Names must not contain `=` (a pax key ends at the first `=`).
    pub xattrs: Vec<(&'a [u8], &'a [u8])>,
}

/// Appends one pax record (`"LEN KEY=VALUE\n"`, LEN counting the whole record) to `out`.
pub fn push_record(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    // " " + key + "=" + value + "\n", plus the digits of the total, which count themselves.
    let rest = 1 + key.len() + 1 + value.len() + 1;
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// `value` if it fits a header field holding at most `max`; else 0 for the header and a
/// pax record with the real value (so the header never needs GNU base-256 numbers).
fn field_or_record(pax: &mut Vec<u8>, key: &[u8], value: u64, max: u64) -> u64 {
    if value <= max {
        value
    } else {
        push_record(pax, key, value.to_string().as_bytes());
        0
    }
}

/// Builds the ustar header and the pax records (empty if none are needed) for `spec`.
pub fn build_header(spec: &EntrySpec<'_>) -> io::Result<(Header, Vec<u8>)> {
    let mut h = Header::new_ustar();
    let mut pax = Vec::new();
    h.set_entry_type(spec.kind);
    h.set_mode(spec.mode & 0o7777);

    let path = spec.path.as_os_str().as_bytes();
    let mut binary = false;
    if h.set_path(spec.path).is_err() {
        // Too long for ustar (or not splittable): a truncated name in the header for old
        // readers, the real one in a pax record.
        let u = h.as_ustar_mut().expect("ustar header");
        u.name = [0; 100];
        u.prefix = [0; 155];
        let n = path.len().min(u.name.len());
        u.name[..n].copy_from_slice(&path[..n]);
        binary |= std::str::from_utf8(path).is_err();
        push_record(&mut pax, b"path", path);
    }
    if let Some(link) = spec.link {
        let link = link.as_os_str().as_bytes();
        if link.len() <= 100 {
            // Literal: symlink targets are bytes, not paths to normalise.
            h.set_link_name_literal(link)?;
        } else {
            let u = h.as_ustar_mut().expect("ustar header");
            u.linkname.copy_from_slice(&link[..100]);
            binary |= std::str::from_utf8(link).is_err();
            push_record(&mut pax, b"linkpath", link);
        }
    }
    if binary {
        // hdrcharset covers the whole extended header; it goes first for readability.
        let mut with = Vec::new();
        push_record(&mut with, b"hdrcharset", b"BINARY");
        with.extend_from_slice(&pax);
        pax = with;
    }
    h.set_uid(field_or_record(&mut pax, b"uid", spec.uid, MAX_OCTAL_7));
    h.set_gid(field_or_record(&mut pax, b"gid", spec.gid, MAX_OCTAL_7));
    h.set_size(field_or_record(&mut pax, b"size", spec.size, MAX_OCTAL_11));
    match u64::try_from(spec.mtime) {
        Ok(t) if t <= MAX_OCTAL_11 => h.set_mtime(t),
        _ => {
            h.set_mtime(0);
            push_record(&mut pax, b"mtime", spec.mtime.to_string().as_bytes());
        }
    }
    if let Some((major, minor)) = spec.device {
        h.set_device_major(major)?;
        h.set_device_minor(minor)?;
    }
    for (name, value) in &spec.xattrs {
        if name.contains(&b'=') || name.contains(&0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "xattr name with '=' cannot be held in a pax record",
            ));
        }
        let mut key = b"SCHILY.xattr.".to_vec();
        key.extend_from_slice(name);
        push_record(&mut pax, &key, value);
    }
    h.set_cksum();
    Ok((h, pax))
}

/// The `x` header that carries `records` for the entry that follows it.
pub fn pax_header(records: &[u8]) -> Header {
    let mut h = Header::new_ustar();
    h.set_entry_type(EntryType::XHeader);
    h.as_ustar_mut().expect("ustar header").name[..PAX_HEADER_NAME.len()]
        .copy_from_slice(PAX_HEADER_NAME);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(records.len() as u64);
    h.set_cksum();
    h
}

/// Writes `spec` (with its pax header when needed) and `data` to `b`. `data` must yield
/// exactly `spec.size` bytes.
pub fn append_entry<W: Write>(
    b: &mut Builder<W>,
    spec: &EntrySpec<'_>,
    data: &mut dyn Read,
) -> io::Result<()> {
    let (h, pax) = build_header(spec)?;
    if !pax.is_empty() {
        b.append(&pax_header(&pax), pax.as_slice())?;
    }
    b.append(&h, data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    fn spec(path: &Path) -> EntrySpec<'_> {
        EntrySpec {
            path,
            kind: EntryType::Regular,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 1_700_000_000,
            size: 0,
            link: None,
            device: None,
            xattrs: vec![],
        }
    }

    #[test]
    fn record_lengths_count_themselves() {
        let cases: &[(&[u8], &[u8], &[u8])] = &[
            (b"path", b"a", b"9 path=a\n"),
            (b"k", b"", b"5 k=\n"),
            // 9 bytes without the length; one digit makes 10, which needs two -> 11
            (b"path", b"ab", b"11 path=ab\n"),
        ];
        for (k, v, want) in cases {
            let mut out = Vec::new();
            push_record(&mut out, k, v);
            assert_eq!(&out, want, "{}", String::from_utf8_lossy(want));
        }
        // Around the 99 -> 100 boundary the length field grows.
        for n in 80..110 {
            let mut out = Vec::new();
            push_record(&mut out, b"k", &vec![b'x'; n]);
            let sp = out.iter().position(|&c| c == b' ').unwrap();
            let len: usize = std::str::from_utf8(&out[..sp]).unwrap().parse().unwrap();
            assert_eq!(len, out.len());
        }
    }

    #[test]
    fn short_entry_needs_no_pax() {
        let (h, pax) = build_header(&spec(Path::new("etc/hosts"))).unwrap();
        assert!(pax.is_empty());
        assert_eq!(&*h.path_bytes(), b"etc/hosts");
        assert_eq!(h.username_bytes(), Some(&b""[..]));
        assert_eq!(h.mtime().unwrap(), 1_700_000_000);
    }

    #[test]
    fn long_and_binary_names_use_pax_path() {
        let mut long = b"d/".to_vec();
        long.extend(std::iter::repeat_n(0xffu8, 150));
        let p = Path::new(OsStr::from_bytes(&long));
        let (h, pax) = build_header(&spec(p)).unwrap();
        let mut want = Vec::new();
        push_record(&mut want, b"hdrcharset", b"BINARY");
        push_record(&mut want, b"path", &long);
        assert_eq!(pax, want);
        assert_eq!(&*h.path_bytes(), &long[..100]);
    }

    #[test]
    fn ustar_limits_then_pax() {
        // 100 bytes fit the name field; a 101-byte single component needs pax; a long
        // path that splits at a '/' into prefix (<= 155) + name (<= 100) does not.
        let cases: &[(String, bool)] = &[
            ("n".repeat(100), false),
            ("n".repeat(101), true),
            (format!("{}/", "d".repeat(99)), false),
            (format!("{}/", "d".repeat(100)), true),
            (format!("{}/{}", "p".repeat(150), "n".repeat(100)), false),
            (format!("{}/{}", "p".repeat(156), "n".repeat(10)), true),
        ];
        for (path, needs_pax) in cases {
            let (h, pax) = build_header(&spec(Path::new(path))).unwrap();
            assert_eq!(!pax.is_empty(), *needs_pax, "{} bytes", path.len());
            if !needs_pax {
                assert_eq!(&*h.path_bytes(), path.as_bytes());
            }
        }
    }

    #[test]
    fn big_numbers_and_xattrs() {
        let p = Path::new("f");
        let mut s = spec(p);
        s.uid = 4_000_000_000;
        s.gid = 5;
        s.size = 1 << 34;
        s.mtime = -1;
        s.xattrs = vec![(b"user.a", b"v")];
        let (h, pax) = build_header(&s).unwrap();
        let text = String::from_utf8(pax).unwrap();
        assert_eq!(
            text,
            "18 uid=4000000000\n20 size=17179869184\n12 mtime=-1\n25 SCHILY.xattr.user.a=v\n"
        );
        assert_eq!(h.uid().unwrap(), 0);
        assert_eq!(h.gid().unwrap(), 5);
        s.xattrs = vec![(b"user.a=b", b"v")];
        assert!(build_header(&s).is_err());
    }

    #[test]
    fn long_symlink_target_uses_linkpath_and_is_not_normalised() {
        let p = Path::new("l");
        let mut s = spec(p);
        s.kind = EntryType::Symlink;
        let short = Path::new("../a//./b/");
        s.link = Some(short);
        let (h, pax) = build_header(&s).unwrap();
        assert!(pax.is_empty());
        assert_eq!(&*h.link_name_bytes().unwrap(), b"../a//./b/");
        let long = "x/".repeat(80);
        s.link = Some(Path::new(&long));
        let (_, pax) = build_header(&s).unwrap();
        let mut want = Vec::new();
        push_record(&mut want, b"linkpath", long.as_bytes());
        assert_eq!(pax, want);
    }
}
