//! The hard-link index on disk, in kernel overlayfs's format (`index=on`), with unionrs's own
//! older format kept readable. The one owner of these rules (whiteout.rs owns the rest of the
//! overlay format).
//!
//! A lower file with several names that is copied up through one of them gets one upper
//! inode that every name shares: the copy is linked under WORK/index, named by the hex of
//! the lower file's *origin file handle*, and each name copied up is one more link of it.
//!
//! - Origin file handle (the kernel's `struct ovl_fb`, also the value of
//!   `trusted.overlay.origin` on the copy): version 0, magic 0xfb, total length, flags (0 on
//!   a little-endian machine), the lower filesystem's handle type, the lower filesystem's UUID
//!   (16 bytes; all zeros where it has none), then the handle bytes name_to_handle_at gives.
//! - Link count shown (`trusted.overlay.nlink` on the copy): `U+N` / `U-N`, the count to
//!   show relative to the copy's own link count (the index link included), so a link or
//!   unlink of an upper name moves both at once; the kernel also reads `L+N`, relative to the
//!   lower file's count.
//! - Kept readable (unionrs before 2026-12): WORK/unionrs.index/DEV-INO (hex) with an absolute
//!   little-endian u64 count in `trusted.unionrs.nlink`. That format is still written where
//!   the kernel's cannot be made: rootless mounts (`user.*` xattrs; the kernel refuses
//!   `index=on` with `userxattr`) and lower filesystems that have no file handles.

/// The kernel's index directory in the workdir.
pub const INDEX_DIR: &[u8] = b"index";
/// unionrs's own index directory in the workdir.
pub const OWN_INDEX_DIR: &[u8] = b"unionrs.index";
/// The copy's origin file handle (kernel format only: rootless mounts have no index of the
/// kernel's kind).
pub const ORIGIN_XATTR: &[u8] = b"trusted.overlay.origin";
/// The shown link count, relative (`U+N`).
pub const NLINK_XATTR: &[u8] = b"trusted.overlay.nlink";

/// `struct ovl_fb` header: version, magic, len, flags, type, then the 16-byte UUID.
const FB_HEADER: usize = 5 + 16;
const FB_MAGIC: u8 = 0xfb;
/// OVL_FH_FLAG_BIG_ENDIAN: the handle was made on a big-endian machine.
const FH_FLAG_BIG_ENDIAN: u8 = 1 << 0;

/// The origin file handle of a lower object: its filesystem's UUID, and the handle type and
/// bytes name_to_handle_at gave. None if it does not fit the format (the kernel limits the
/// total to 255 bytes).
pub fn origin_fh(uuid: &[u8; 16], handle_type: i32, handle: &[u8]) -> Option<Vec<u8>> {
    let len = u8::try_from(FB_HEADER + handle.len()).ok()?;
    let kind = u8::try_from(handle_type).ok()?;
    let flags = if cfg!(target_endian = "big") {
        FH_FLAG_BIG_ENDIAN
    } else {
        0
    };
    let mut fb = vec![0, FB_MAGIC, len, flags, kind];
    fb.extend_from_slice(uuid);
    fb.extend_from_slice(handle);
    Some(fb)
}

/// Whether `v` is a well-formed origin file handle (its length field agrees with its size).
pub fn is_origin_fh(v: &[u8]) -> bool {
    v.len() > FB_HEADER && v[0] == 0 && v[1] == FB_MAGIC && v[2] as usize == v.len()
}

/// The parts of an origin file handle: its filesystem UUID, handle type and handle bytes.
pub fn split_origin_fh(v: &[u8]) -> Option<([u8; 16], i32, &[u8])> {
    if !is_origin_fh(v) {
        return None;
    }
    let uuid: [u8; 16] = v[5..FB_HEADER].try_into().ok()?;
    Some((uuid, v[4] as i32, &v[FB_HEADER..]))
}

/// The index entry of an origin file handle: INDEX_DIR/<hex of the handle>.
pub fn index_path(fh: &[u8]) -> Vec<u8> {
    [INDEX_DIR, b"/", &index_name(fh)].concat()
}

/// An index entry's name in INDEX_DIR: the hex of the origin file handle.
pub fn index_name(fh: &[u8]) -> Vec<u8> {
    fh.iter()
        .flat_map(|b| format!("{b:02x}").into_bytes())
        .collect()
}

/// The index entry in unionrs's own format: OWN_INDEX_DIR/<dev>-<ino> (hex).
pub fn own_index_path(dev: u64, ino: u64) -> Vec<u8> {
    [OWN_INDEX_DIR, b"/", &own_index_name(dev, ino)].concat()
}

/// An index entry's name in OWN_INDEX_DIR.
pub fn own_index_name(dev: u64, ino: u64) -> Vec<u8> {
    format!("{dev:x}-{ino:x}").into_bytes()
}

/// The `trusted.overlay.nlink` value that shows `shown` links on a copy whose own link
/// count is `own_links`.
pub fn nlink_value(shown: u64, own_links: u64) -> Vec<u8> {
    format!("U{:+}", shown as i64 - own_links as i64).into_bytes()
}

/// What a `trusted.overlay.nlink` value counts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NlinkBase {
    /// The copy's own link count.
    Upper,
    /// The lower file's link count.
    Lower,
}

/// Parses a `trusted.overlay.nlink` value (`U+1`, `L-2`), as the kernel does.
pub fn parse_nlink(v: &[u8]) -> Option<(NlinkBase, i64)> {
    let base = match v.first()? {
        b'U' => NlinkBase::Upper,
        b'L' => NlinkBase::Lower,
        _ => return None,
    };
    let rest = std::str::from_utf8(v.get(1..)?).ok()?;
    if !rest.starts_with(['+', '-']) {
        return None;
    }
    Some((base, rest.parse().ok()?))
}

/// The shown count from a parsed value and the base it counts from; None when negative (a
/// broken value: the inode's own count is shown then, as the kernel falls back). 0 is a
/// copy whose every name is gone, held only by open files: they show nlink 0.
pub fn shown_nlink(add: i64, base_links: u64) -> Option<u64> {
    let n = base_links as i64 + add;
    (n >= 0).then_some(n as u64)
}

/// unionrs's own count value: an absolute little-endian u64.
pub fn own_nlink_value(shown: u64) -> [u8; 8] {
    shown.to_le_bytes()
}

pub fn parse_own_nlink(v: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(v.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What kernel 6.18 wrote on this machine's ext4 (null UUID) for a lower file with three
    /// names copied up through one (`getfattr -e hex` of the copy and WORK/index).
    #[test]
    fn the_kernels_handle_and_index_name() {
        let handle = [0x61, 0x20, 0xa6, 0x00, 0xf2, 0xdc, 0x0e, 0x00];
        let fb = origin_fh(&[0; 16], 1, &handle).unwrap();
        let hex = "00fb1d0001000000000000000000000000000000006120a600f2dc0e00";
        assert_eq!(
            fb.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            hex
        );
        assert!(is_origin_fh(&fb));
        assert_eq!(split_origin_fh(&fb), Some(([0; 16], 1, &handle[..])));
        assert!(!is_origin_fh(&fb[..fb.len() - 1]));
        assert_eq!(index_path(&fb), format!("index/{hex}").into_bytes());
    }

    #[test]
    fn nlink_values() {
        // Three names, one copied up: the copy has 2 links (index + name): "U+1".
        assert_eq!(nlink_value(3, 2), b"U+1");
        assert_eq!(nlink_value(3, 3), b"U+0");
        assert_eq!(nlink_value(3, 4), b"U-1");
        assert_eq!(parse_nlink(b"U+1"), Some((NlinkBase::Upper, 1)));
        assert_eq!(parse_nlink(b"L-2"), Some((NlinkBase::Lower, -2)));
        for bad in [&b""[..], b"U", b"U1", b"X+1", b"U+x", b"U+1\0"] {
            assert_eq!(parse_nlink(bad), None, "{bad:?}");
        }
        assert_eq!(shown_nlink(-1, 4), Some(3));
        assert_eq!(shown_nlink(-1, 1), Some(0));
        assert_eq!(shown_nlink(-3, 2), None);
        assert_eq!(parse_own_nlink(&own_nlink_value(7)), Some(7));
        assert_eq!(own_index_path(0x803, 0x1f), b"unionrs.index/803-1f");
    }
}
