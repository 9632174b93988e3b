//! Relative byte paths inside a layer ("" is the layer root; no leading or trailing `/`).

/// `parent/name`, or `name` at the root.
pub fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    if parent.is_empty() {
        return name.to_vec();
    }
    let mut p = Vec::with_capacity(parent.len() + 1 + name.len());
    p.extend_from_slice(parent);
    p.push(b'/');
    p.extend_from_slice(name);
    p
}

/// Splits `a/b/c` into (`a/b`, `c`); the root's children have parent "".
pub fn split(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&[], path),
    }
}

/// A name a directory entry may carry: non-empty, no `/`, not `.` or `..`.
pub fn is_valid_name(name: &[u8]) -> bool {
    !name.is_empty() && name != b"." && name != b".." && !name.contains(&b'/') && !name.contains(&0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_and_split() {
        assert_eq!(join(b"", b"a"), b"a");
        assert_eq!(join(b"a/b", b"c"), b"a/b/c");
        assert_eq!(split(b"a/b/c"), (&b"a/b"[..], &b"c"[..]));
        assert_eq!(split(b"c"), (&b""[..], &b"c"[..]));
        for (n, ok) in [
            (&b"a"[..], true),
            (b"", false),
            (b".", false),
            (b"..", false),
            (b"a/b", false),
        ] {
            assert_eq!(is_valid_name(n), ok);
        }
    }
}
