//! Inode numbers: the real st_ino of an object, with layer bits when layers live on different
//! filesystems (xino-style), so numbers are stable across remounts and never shared.

use dashmap::DashMap;
use std::sync::atomic::{AtomicU64, Ordering};

pub struct InoMap {
    /// Distinct st_dev values of the layers, in layer order (index = high-bit tag).
    devs: Vec<u64>,
    /// Bits left for the real inode number.
    shift: u32,
    /// Numbers that do not fit (or come from an unknown device): allocated once per mount,
    /// in the tag space reserved for them.
    overflow: DashMap<(u64, u64), u64>,
    next_overflow: AtomicU64,
}

impl InoMap {
    pub fn new(layer_devs: impl IntoIterator<Item = u64>) -> InoMap {
        let mut devs: Vec<u64> = Vec::new();
        for d in layer_devs {
            if !devs.contains(&d) {
                devs.push(d);
            }
        }
        // One more tag than devices: the last one is reserved for overflow numbers.
        let tags = devs.len() as u64 + 1;
        let bits = 64 - (tags - 1).leading_zeros();
        let shift = 64 - bits.max(1);
        InoMap {
            devs,
            shift,
            overflow: DashMap::new(),
            next_overflow: AtomicU64::new(2),
        }
    }

    /// The number reported for object `ino` on device `dev`.
    pub fn map(&self, dev: u64, ino: u64) -> u64 {
        if let Some(tag) = self.devs.iter().position(|&d| d == dev) {
            let mapped = (tag as u64) << self.shift | ino;
            // Inode 1 is the FUSE root's id; an object may not take it.
            if ino >> self.shift == 0 && mapped != 1 {
                return mapped;
            }
        }
        *self
            .overflow
            .entry((dev, ino))
            .or_insert_with(|| self.fresh())
    }

    /// A number no object maps to (in the overflow space), for a node that needs its own.
    pub fn fresh(&self) -> u64 {
        let tag = self.devs.len() as u64;
        tag << self.shift | self.next_overflow.fetch_add(1, Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_device_keeps_real_numbers() {
        let m = InoMap::new([7, 7, 7]);
        assert_eq!(m.map(7, 12), 12);
        assert_eq!(m.map(7, 99), 99);
        // Does not fit: goes to the overflow space, stably.
        let a = m.map(7, 1 << 63 | 5);
        assert_eq!(a, m.map(7, 1 << 63 | 5));
        assert_ne!(a, 5);
        assert_ne!(m.map(7, 1), 1);
    }

    #[test]
    fn two_devices_never_collide() {
        let m = InoMap::new([1, 2]);
        let a = m.map(1, 100);
        let b = m.map(2, 100);
        assert_ne!(a, b);
        let c = m.map(3, 100);
        assert!(c != a && c != b);
    }
}
