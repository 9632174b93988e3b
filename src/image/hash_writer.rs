//! A `Write` adapter that hashes (sha256) and counts every byte on its way through, so a
//! layer's diff ID is known the moment its tar is written, without reading it back.

use super::digest::Digest;
use sha2::{Digest as _, Sha256};
use std::io::{self, Write};

/// Passes writes to `inner` and feeds exactly the bytes `inner` accepted to sha256.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Returns the inner writer, the digest and the byte count.
    pub fn finish(self) -> (W, Digest, u64) {
        (self.inner, Digest::from_hasher(self.hasher), self.written)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that accepts at most 3 bytes per call, to check partial writes are hashed
    /// exactly as accepted.
    struct Dribble(Vec<u8>);
    impl Write for Dribble {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(3);
            self.0.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn empty_input_is_the_sha256_of_nothing() {
        let (_, d, n) = HashingWriter::new(Vec::new()).finish();
        assert_eq!(
            d.as_str(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(n, 0);
    }

    #[test]
    fn partial_writes_hash_what_was_accepted() {
        let mut w = HashingWriter::new(Dribble(Vec::new()));
        w.write_all(b"abc").unwrap();
        w.write_all(b"defgh").unwrap();
        assert_eq!(w.written(), 8);
        let (inner, d, n) = w.finish();
        assert_eq!(inner.0, b"abcdefgh");
        assert_eq!(n, 8);
        let (_, d2, _) = {
            let mut w2 = HashingWriter::new(Vec::new());
            w2.write_all(b"abcdefgh").unwrap();
            w2.finish()
        };
        assert_eq!(d, d2);
        assert_eq!(
            d.as_str(),
            "sha256:9c56cc51b374c3ba189210d5b6d4bf57790d351c96c47c02190ecf1e430635ab"
        );
    }
}
