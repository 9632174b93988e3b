//! Owner translation between what the layers store and what the mount shows, as
//! fuse-overlayfs's `uidmapping=`/`gidmapping=` and `squash_to_*` options define it.
//!
//! A mapping `INSIDE:OUTSIDE:COUNT` says that ids OUTSIDE..OUTSIDE+COUNT on disk appear as
//! INSIDE..INSIDE+COUNT through the mount (containers/storage passes the container's id
//! map this way). Ids on disk outside every range show as the overflow id 65534; ids a
//! caller uses outside every range are stored unchanged. Squashing only changes what is
//! shown: every object appears owned by the squash id.

use super::Stat;

/// One contiguous id range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdRange {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

/// The overflow id shown for on-disk ids no mapping covers (the kernel's default).
pub const OVERFLOW_ID: u32 = 65534;

#[derive(Clone, Debug, Default)]
pub struct IdMap {
    pub uids: Vec<IdRange>,
    pub gids: Vec<IdRange>,
    pub squash_uid: Option<u32>,
    pub squash_gid: Option<u32>,
}

fn to_inside(ranges: &[IdRange], id: u32) -> u32 {
    if ranges.is_empty() {
        return id;
    }
    ranges
        .iter()
        .find(|r| id >= r.outside && id - r.outside < r.count)
        .map(|r| r.inside + (id - r.outside))
        .unwrap_or(OVERFLOW_ID)
}

fn to_outside(ranges: &[IdRange], id: u32) -> u32 {
    ranges
        .iter()
        .find(|r| id >= r.inside && id - r.inside < r.count)
        .map(|r| r.outside + (id - r.inside))
        .unwrap_or(id)
}

impl IdMap {
    pub fn is_identity(&self) -> bool {
        self.uids.is_empty()
            && self.gids.is_empty()
            && self.squash_uid.is_none()
            && self.squash_gid.is_none()
    }

    /// Owner ids as the mount shows them.
    pub fn show(&self, st: &mut Stat) {
        st.st_uid = self
            .squash_uid
            .unwrap_or_else(|| to_inside(&self.uids, st.st_uid));
        st.st_gid = self
            .squash_gid
            .unwrap_or_else(|| to_inside(&self.gids, st.st_gid));
    }

    /// A uid from a caller (create, chown) as stored on disk; u32::MAX ("unchanged") passes.
    pub fn store_uid(&self, id: u32) -> u32 {
        if id == u32::MAX {
            id
        } else {
            to_outside(&self.uids, id)
        }
    }

    pub fn store_gid(&self, id: u32) -> u32 {
        if id == u32::MAX {
            id
        } else {
            to_outside(&self.gids, id)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(uid: u32, gid: u32) -> Stat {
        let mut st = crate::sys::fs::empty_stat();
        st.st_uid = uid;
        st.st_gid = gid;
        st
    }

    #[test]
    fn mapping_both_ways() {
        let r = |inside, outside, count| IdRange {
            inside,
            outside,
            count,
        };
        let m = IdMap {
            uids: vec![r(0, 1000, 1), r(1, 100000, 65536)],
            gids: vec![r(0, 1000, 1)],
            ..Default::default()
        };
        for (disk, shown) in [
            (1000, 0),
            (100000, 1),
            (100009, 10),
            (165535, 65536),
            (5, OVERFLOW_ID),
        ] {
            let mut st = stat(disk, 1000);
            m.show(&mut st);
            assert_eq!((st.st_uid, st.st_gid), (shown, 0), "disk uid {disk}");
        }
        for (caller, disk) in [(0, 1000), (1, 100000), (10, 100009), (70000, 70000)] {
            assert_eq!(m.store_uid(caller), disk);
        }
        assert_eq!(m.store_uid(u32::MAX), u32::MAX);
        assert_eq!(m.store_gid(0), 1000);
    }

    #[test]
    fn squash_and_identity() {
        let m = IdMap {
            squash_uid: Some(0),
            squash_gid: Some(0),
            ..Default::default()
        };
        let mut st = stat(1234, 5678);
        m.show(&mut st);
        assert_eq!((st.st_uid, st.st_gid), (0, 0));
        let id = IdMap::default();
        assert!(id.is_identity());
        let mut st = stat(1234, 5678);
        id.show(&mut st);
        assert_eq!((st.st_uid, st.st_gid), (1234, 5678));
        assert_eq!(id.store_uid(42), 42);
    }
}
