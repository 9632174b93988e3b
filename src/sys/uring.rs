//! A minimal io_uring for FUSE over io_uring (Documentation/filesystems/fuse-io-uring.rst):
//! a ring with 128-byte SQEs (IORING_SETUP_SQE128) on which IORING_OP_URING_CMD entries are
//! built by hand, because registering a FUSE ring entry needs the SQE's `addr`/`len` (the
//! header and payload iovecs) and the 80-byte command area together, which no builder of
//! the `io-uring` crate fills. Also: buffers the kernel writes requests into, and CPU
//! pinning for the per-CPU queue threads.
//!
//! Layouts follow include/uapi/linux/io_uring.h and fuse.h (little endian, x86-64/aarch64).

use super::{Errno, SysResult, check};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};

const IORING_SETUP_SQE128: u32 = 1 << 10;
const IORING_SETUP_SINGLE_ISSUER: u32 = 1 << 12;
const IORING_SETUP_DEFER_TASKRUN: u32 = 1 << 13;
const IORING_ENTER_GETEVENTS: u32 = 1;
const IORING_OFF_SQ_RING: i64 = 0;
const IORING_OFF_CQ_RING: i64 = 0x800_0000;
const IORING_OFF_SQES: i64 = 0x1000_0000;
const IORING_FEAT_SINGLE_MMAP: u32 = 1;
const IORING_OP_URING_CMD: u8 = 46;
const SQE_LEN: usize = 128;
const CQE_LEN: usize = 16;

/// struct io_sqring_offsets / io_cqring_offsets (10 x u32, one u64 at the end).
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct RingOffsets {
    head: u32,
    tail: u32,
    ring_mask: u32,
    ring_entries: u32,
    flags_or_overflow: u32,
    dropped_or_cqes: u32,
    array_or_flags: u32,
    resv1: u32,
    user_addr: u64,
}

/// struct io_uring_params
#[repr(C)]
#[derive(Default)]
struct Params {
    sq_entries: u32,
    cq_entries: u32,
    flags: u32,
    sq_thread_cpu: u32,
    sq_thread_idle: u32,
    features: u32,
    wq_fd: u32,
    resv: [u32; 3],
    sq_off: RingOffsets,
    cq_off: RingOffsets,
}

/// One mmap'ed region, unmapped on drop.
struct Map {
    ptr: *mut u8,
    len: usize,
}

impl Map {
    fn new(fd: BorrowedFd<'_>, len: usize, offset: i64) -> SysResult<Map> {
        // SAFETY: a fresh shared mapping of the ring fd at a kernel-defined offset; the
        // kernel checked `len` against the ring's size.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                offset,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(Errno::last());
        }
        Ok(Map {
            ptr: ptr.cast(),
            len,
        })
    }

    /// The u32 the kernel shares at `off`.
    fn atomic(&self, off: u32) -> &AtomicU32 {
        assert!(off as usize + 4 <= self.len && off.is_multiple_of(4));
        // SAFETY: in bounds (checked), 4-aligned, and the mapping lives as long as `self`;
        // the kernel only accesses these ring words atomically.
        unsafe { AtomicU32::from_ptr(self.ptr.add(off as usize).cast()) }
    }
}

impl Drop for Map {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what mmap gave us; nothing borrows it any more.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// An io_uring with 128-byte SQEs, used by one thread.
pub struct Ring {
    sq: Map,
    cq: Option<Map>,
    sqes: Map,
    sq_off: RingOffsets,
    cq_off: RingOffsets,
    sq_entries: u32,
    to_submit: u32,
    // Declared last: dropped after the maps.
    fd: OwnedFd,
}

// SAFETY: the raw pointers point into mappings owned by the Ring; a Ring is used by one
// thread at a time (methods take &mut self).
unsafe impl Send for Ring {}

impl Ring {
    /// A ring of `entries` SQEs. `single_issuer`: only the creating thread submits, and
    /// completions are run when it waits (DEFER_TASKRUN), saving interrupts.
    pub fn new(entries: u32, single_issuer: bool) -> SysResult<Ring> {
        let mut p = Params {
            flags: IORING_SETUP_SQE128
                | if single_issuer {
                    IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN
                } else {
                    0
                },
            ..Default::default()
        };
        // SAFETY: io_uring_setup(2) fills the params struct we pass.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_io_uring_setup,
                entries as libc::c_long,
                &mut p as *mut Params,
            )
        };
        if fd < 0 {
            return Err(Errno::last());
        }
        // SAFETY: a fresh fd from io_uring_setup, owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        let sq_len = p.sq_off.array_or_flags as usize + p.sq_entries as usize * 4;
        let cq_len = p.cq_off.dropped_or_cqes as usize + p.cq_entries as usize * CQE_LEN;
        let single = p.features & IORING_FEAT_SINGLE_MMAP != 0;
        let sq = Map::new(
            fd.as_fd(),
            if single { sq_len.max(cq_len) } else { sq_len },
            IORING_OFF_SQ_RING,
        )?;
        let cq = if single {
            None
        } else {
            Some(Map::new(fd.as_fd(), cq_len, IORING_OFF_CQ_RING)?)
        };
        let sqes = Map::new(fd.as_fd(), p.sq_entries as usize * SQE_LEN, IORING_OFF_SQES)?;
        let ring = Ring {
            sq,
            cq,
            sqes,
            sq_off: p.sq_off,
            cq_off: p.cq_off,
            sq_entries: p.sq_entries,
            to_submit: 0,
            fd,
        };
        // The SQ index array maps slot i to SQE i once and for all.
        for i in 0..p.sq_entries {
            ring.sq
                .atomic(p.sq_off.array_or_flags + i * 4)
                .store(i, Ordering::Relaxed);
        }
        Ok(ring)
    }

    fn cq_map(&self) -> &Map {
        self.cq.as_ref().unwrap_or(&self.sq)
    }

    /// Queues an IORING_OP_URING_CMD on `fd`: `cmd_op`, the SQE's `addr` and `len`, and the
    /// 80-byte command area. False when the SQ is full (submit first).
    pub fn push_uring_cmd(
        &mut self,
        fd: BorrowedFd<'_>,
        cmd_op: u32,
        addr: u64,
        len: u32,
        cmd: &[u8; 80],
        user_data: u64,
    ) -> bool {
        let head = self.sq.atomic(self.sq_off.head).load(Ordering::Acquire);
        let tail_a = self.sq.atomic(self.sq_off.tail);
        let tail = tail_a.load(Ordering::Relaxed);
        if tail.wrapping_sub(head) >= self.sq_entries {
            return false;
        }
        let mask = self
            .sq
            .atomic(self.sq_off.ring_mask)
            .load(Ordering::Relaxed);
        let idx = (tail & mask) as usize;
        let mut sqe = [0u8; SQE_LEN];
        sqe[0] = IORING_OP_URING_CMD;
        sqe[4..8].copy_from_slice(&fd.as_raw_fd().to_le_bytes());
        sqe[8..12].copy_from_slice(&cmd_op.to_le_bytes());
        sqe[16..24].copy_from_slice(&addr.to_le_bytes());
        sqe[24..28].copy_from_slice(&len.to_le_bytes());
        sqe[32..40].copy_from_slice(&user_data.to_le_bytes());
        sqe[48..128].copy_from_slice(cmd);
        assert!((idx + 1) * SQE_LEN <= self.sqes.len);
        // SAFETY: slot `idx` is in bounds (checked) and not owned by the kernel: it is
        // between the kernel's head and our tail, which we publish only below.
        unsafe {
            std::ptr::copy_nonoverlapping(sqe.as_ptr(), self.sqes.ptr.add(idx * SQE_LEN), SQE_LEN)
        };
        tail_a.store(tail.wrapping_add(1), Ordering::Release);
        self.to_submit += 1;
        true
    }

    /// Submits what was queued and waits until at least `wait` completions are there.
    pub fn submit_and_wait(&mut self, wait: u32) -> SysResult<()> {
        let flags = if wait > 0 { IORING_ENTER_GETEVENTS } else { 0 };
        // SAFETY: io_uring_enter(2) with no signal mask argument.
        let r = unsafe {
            libc::syscall(
                libc::SYS_io_uring_enter,
                self.fd.as_raw_fd(),
                self.to_submit,
                wait,
                flags,
                std::ptr::null::<libc::sigset_t>(),
                0usize,
            )
        };
        if r < 0 {
            return Err(Errno::last());
        }
        self.to_submit = self.to_submit.saturating_sub(r as u32);
        Ok(())
    }

    /// The next completion: (user_data, res).
    pub fn pop(&mut self) -> Option<(u64, i32)> {
        let cq = self.cq_map();
        let head_a = cq.atomic(self.cq_off.head);
        let head = head_a.load(Ordering::Relaxed);
        let tail = cq.atomic(self.cq_off.tail).load(Ordering::Acquire);
        if head == tail {
            return None;
        }
        let mask = cq.atomic(self.cq_off.ring_mask).load(Ordering::Relaxed);
        let off = self.cq_off.dropped_or_cqes as usize + (head & mask) as usize * CQE_LEN;
        assert!(off + CQE_LEN <= cq.len);
        let mut cqe = [0u8; CQE_LEN];
        // SAFETY: in bounds (checked); the kernel published this CQE before moving the tail
        // (Acquire above) and does not touch it until we move the head.
        unsafe { std::ptr::copy_nonoverlapping(cq.ptr.add(off), cqe.as_mut_ptr(), CQE_LEN) };
        head_a.store(head.wrapping_add(1), Ordering::Release);
        let mut ud = [0u8; 8];
        ud.copy_from_slice(&cqe[..8]);
        Some((
            u64::from_le_bytes(ud),
            i32::from_le_bytes([cqe[8], cqe[9], cqe[10], cqe[11]]),
        ))
    }
}

/// Memory the kernel reads and writes through a pointer we gave it (a FUSE ring entry's
/// header or payload buffer). The kernel only touches it while the entry's command is in
/// flight; the owner reads and writes it only between a completion and the next submit,
/// which `&mut self` on the queue thread enforces.
pub struct KernelBuf {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: plain memory owned by this value; see the type's comment for the sharing rule.
unsafe impl Send for KernelBuf {}

impl KernelBuf {
    /// `len` zeroed bytes, page aligned (anonymous mapping, so untouched pages cost nothing).
    pub fn new(len: usize) -> SysResult<KernelBuf> {
        // SAFETY: a fresh private anonymous mapping.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(Errno::last());
        }
        Ok(KernelBuf {
            ptr: ptr.cast(),
            len,
        })
    }

    /// The iovec the kernel is given for this buffer.
    pub fn iovec(&self) -> libc::iovec {
        libc::iovec {
            iov_base: self.ptr.cast(),
            iov_len: self.len,
        }
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: our own mapping of `len` bytes, not written by the kernel while the
        // owner holds a borrow (see the type's comment).
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, exclusively borrowed.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for KernelBuf {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping; the ring that used it is gone (the owner drops
        // its ring first).
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// The address of an iovec array, as the SQE's `addr` wants it.
pub fn iovecs_addr(iov: &[libc::iovec]) -> u64 {
    iov.as_ptr() as u64
}

/// Pins the calling thread to `cpu`.
pub fn pin_to_cpu(cpu: usize) -> SysResult<()> {
    // SAFETY: cpu_set_t is plain data; CPU_SET stays in bounds for cpu < CPU_SETSIZE.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if cpu >= libc::CPU_SETSIZE as usize {
            return Err(Errno::EINVAL);
        }
        libc::CPU_SET(cpu, &mut set);
        check(libc::sched_setaffinity(
            0,
            std::mem::size_of::<libc::cpu_set_t>(),
            &set,
        ))?;
    }
    Ok(())
}

/// Sets the calling thread's scheduling policy: SCHED_IDLE (`idle`) or SCHED_OTHER.
pub fn set_idle_policy(idle: bool) -> SysResult<()> {
    let policy = if idle {
        libc::SCHED_IDLE
    } else {
        libc::SCHED_OTHER
    };
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 is the calling thread; param is a valid sched_param.
    check(unsafe { libc::sched_setscheduler(0, policy, &param) })?;
    Ok(())
}

/// The kernel's possible CPUs (one FUSE queue each), from /sys/devices/system/cpu/possible.
pub fn possible_cpus() -> usize {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/possible").unwrap_or_default();
    let last = text
        .trim()
        .split(',')
        .filter_map(|r| r.rsplit('-').next()?.parse::<usize>().ok())
        .max();
    match last {
        Some(n) => n + 1,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_the_kernel() {
        assert_eq!(std::mem::size_of::<RingOffsets>(), 40);
        assert_eq!(std::mem::size_of::<Params>(), 120);
    }

    #[test]
    fn a_ring_with_128_byte_sqes_can_be_set_up() {
        let mut r = Ring::new(4, true).expect("io_uring_setup");
        assert!(r.pop().is_none());
        r.submit_and_wait(0).unwrap();
    }
}
