//! sha256 content digests (`sha256:<64 hex>`): parsing, and a `Read` adapter that hashes
//! and counts what flows through it, so a blob is verified on the stream.

use sha2::{Digest as _, Sha256};
use std::fmt;
use std::io::{self, Read};

/// A validated `sha256:<64 lower-case hex>` digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

impl Digest {
    /// Parses `sha256:<hex>`; any other algorithm or a malformed hex part is an error.
    pub fn parse(s: &str) -> Result<Digest, String> {
        let hex = s
            .strip_prefix("sha256:")
            .ok_or_else(|| format!("digest {s:?}: only sha256 digests are supported"))?;
        Digest::from_hex(hex).map_err(|_| format!("digest {s:?} is not sha256:<64 hex digits>"))
    }

    /// From the 64 hex digits alone.
    pub fn from_hex(hex: &str) -> Result<Digest, String> {
        if hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            Ok(Digest(format!("sha256:{hex}")))
        } else {
            Err(format!("{hex:?} is not 64 lower-case hex digits"))
        }
    }

    /// The digest of `data`.
    pub fn of(data: &[u8]) -> Digest {
        Digest(format!("sha256:{:x}", Sha256::digest(data)))
    }

    /// What `hasher` has taken in, as a digest.
    pub fn from_hasher(hasher: Sha256) -> Digest {
        Digest(format!("sha256:{:x}", hasher.finalize()))
    }

    /// The 64 hex digits.
    pub fn hex(&self) -> &str {
        &self.0[7..]
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Hashes (sha256) and counts every byte read through it; fails once more than `limit`
/// bytes have come through, so a decompression bomb stops at the bound.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    read: u64,
    limit: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        Self::with_limit(inner, u64::MAX)
    }

    pub fn with_limit(inner: R, limit: u64) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            read: 0,
            limit,
        }
    }

    /// Bytes read so far.
    pub fn bytes(&self) -> u64 {
        self.read
    }

    /// Reads what is left (so trailing bytes after a tar's end count too) and returns the
    /// digest and the total byte count.
    pub fn finish(mut self) -> io::Result<(Digest, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((Digest::from_hasher(self.hasher), self.read))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        if self.read > self.limit {
            return Err(io::Error::other(format!(
                "stream exceeds the size bound of {} bytes",
                self.limit
            )));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_hash() {
        let d = Digest::of(b"");
        assert_eq!(
            d.as_str(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(Digest::parse(d.as_str()).unwrap(), d);
        assert!(Digest::parse("sha512:00").is_err());
        assert!(Digest::parse("sha256:ABC").is_err());
        assert!(Digest::from_hex(&"A".repeat(64)).is_err());
    }

    #[test]
    fn reader_hashes_and_bounds() {
        let mut r = HashingReader::new(&b"abcdefgh"[..]);
        let mut b = [0u8; 3];
        r.read_exact(&mut b).unwrap();
        let (d, n) = r.finish().unwrap();
        assert_eq!(n, 8);
        assert_eq!(d, Digest::of(b"abcdefgh"));
        let mut r = HashingReader::with_limit(&b"abcdefgh"[..], 4);
        assert!(io::copy(&mut r, &mut io::sink()).is_err());
    }
}
