//! A hasher for tables keyed by inode or handle numbers. They are our own numbers (never
//! chosen by a user), so SipHash's flood resistance buys nothing, and a multiply spreads them
//! over both ends of the word (dashmap picks the shard from the top bits, hashbrown the
//! bucket from the low ones) at a fraction of its cost on every lookup.

use std::hash::{BuildHasherDefault, Hasher};

#[derive(Default)]
pub struct InoHasher(u64);

impl Hasher for InoHasher {
    fn write_u64(&mut self, n: u64) {
        // Fibonacci hashing: the odd constant nearest 2^64 / golden ratio.
        self.0 = (self.0 ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Build-hasher for `DashMap<u64, _>` tables of inode and handle numbers.
pub type InoHash = BuildHasherDefault<InoHasher>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn neighbouring_numbers_differ_in_top_and_low_bits() {
        let h = InoHash::default();
        let (a, b) = (h.hash_one(1000u64), h.hash_one(1001u64));
        assert_ne!(a >> 57, b >> 57);
        assert_ne!(a & 0xff, b & 0xff);
    }
}
