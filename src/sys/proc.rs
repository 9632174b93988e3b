//! Process-level calls for the daemon: mount(2)/umount2, fork to the background, signals.

use super::{Errno, SysResult, check, cstr};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// mount(2) with a data string (the FUSE options `fd=..,rootmode=..`).
pub fn mount(source: &str, target: &[u8], fstype: &str, flags: u64, data: &str) -> SysResult<()> {
    let (s, t, f, d) = (
        cstr(source.as_bytes())?,
        cstr(target)?,
        cstr(fstype.as_bytes())?,
        cstr(data.as_bytes())?,
    );
    // SAFETY: valid C strings for the duration of the call.
    check(unsafe { libc::mount(s.as_ptr(), t.as_ptr(), f.as_ptr(), flags, d.as_ptr().cast()) })
        .map(drop)
}

/// umount2(2); `lazy` detaches (MNT_DETACH) so busy mounts go away too.
pub fn umount(target: &[u8], lazy: bool) -> SysResult<()> {
    let t = cstr(target)?;
    let flags = if lazy { libc::MNT_DETACH } else { 0 };
    // SAFETY: valid C string.
    check(unsafe { libc::umount2(t.as_ptr(), flags) }).map(drop)
}

/// Result of [`fork`] as seen by each side.
pub enum Fork {
    Parent(i32),
    Child,
}

/// fork(2). Only called while the process is still single-threaded (before the FUSE
/// session starts its threads), which is what makes it sound to continue in the child.
pub fn fork() -> SysResult<Fork> {
    // SAFETY: the caller guarantees no other threads exist yet.
    let pid = check(unsafe { libc::fork() })?;
    Ok(if pid == 0 {
        Fork::Child
    } else {
        Fork::Parent(pid)
    })
}

pub fn setsid() {
    // SAFETY: setsid(2) has no memory effects; failure (already a leader) is harmless.
    unsafe { libc::setsid() };
}

/// A pipe (read end, write end), close-on-exec.
pub fn pipe() -> SysResult<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: out-array of two ints.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: fresh fds from pipe2.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Points stdin/stdout/stderr at /dev/null once the daemon is in the background.
pub fn redirect_stdio_to_null() -> SysResult<()> {
    let null = super::fs::open_path(c"/dev/null", libc::O_RDWR)?;
    for target in 0..3 {
        // SAFETY: dup2 onto the standard descriptors.
        check(unsafe { libc::dup2(null.as_raw_fd(), target) })?;
    }
    Ok(())
}

/// Blocks SIGTERM, SIGINT and SIGHUP in this thread and every thread it later spawns, so one
/// dedicated thread can wait for them with [`wait_termination_signal`].
pub fn block_termination_signals() {
    // SAFETY: building and applying a signal mask on a zeroed sigset_t.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Waits for SIGTERM, SIGINT or SIGHUP (previously blocked) and returns its number.
pub fn wait_termination_signal() -> i32 {
    // SAFETY: sigwait on a locally built set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        let mut sig = 0;
        libc::sigwait(&set, &mut sig);
        sig
    }
}

/// Ignores SIGPIPE so a closed pipe shows up as EPIPE, not death.
pub fn ignore_sigpipe() {
    // SAFETY: setting a signal disposition to SIG_IGN.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}

pub fn geteuid() -> u32 {
    // SAFETY: cannot fail.
    unsafe { libc::geteuid() }
}

pub fn getegid() -> u32 {
    // SAFETY: cannot fail.
    unsafe { libc::getegid() }
}

/// Checks that the caller is allowed to create device nodes (CAP_MKNOD) by trying one in `dir`.
pub fn can_mknod_whiteout(dir: BorrowedFd<'_>, probe_name: &[u8]) -> bool {
    let ok = super::fs::mknod_at(dir, probe_name, libc::S_IFCHR, 0).is_ok();
    if ok {
        let _ = super::fs::unlink_at(dir, probe_name, false);
    }
    ok
}

/// Raises this process's soft RLIMIT_NOFILE to its hard limit and returns the limit now in
/// force. A mount daemon holds a handle per cached directory copy and per open file, and the
/// soft limit a service manager hands out (often 1024) would turn a large tree walk into EMFILE
/// errors for the caller.
pub fn raise_open_file_limit() -> u64 {
    let Some(l) = nofile_limit() else {
        return 1024;
    };
    if l.rlim_cur < l.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: l.rlim_max,
            rlim_max: l.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return raised.rlim_cur;
        }
    }
    l.rlim_cur
}

/// The open-file limit this process runs with (RLIMIT_NOFILE's soft limit).
pub fn open_file_limit() -> u64 {
    nofile_limit().map_or(1024, |l| l.rlim_cur)
}

fn nofile_limit() -> Option<libc::rlimit> {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) } == 0).then_some(l)
}

/// Grows this process's file descriptor table to `slots` entries now. The kernel grows the
/// table by doubling, and every growth in a multi-threaded process waits for an RCU grace
/// period (`expand_fdtable` calls `synchronize_rcu` when the table is shared): 10-15 ms each on
/// this VM, paid in the middle of a request. Done once while the process is single-threaded,
/// it costs nothing (tables never shrink, so the size stays when the probe fd is closed).
pub fn reserve_fd_table(slots: u64) {
    let Ok(highest) = libc::c_int::try_from(slots.saturating_sub(1)) else {
        return;
    };
    let Ok(null) = super::fs::open_path(c"/dev/null", libc::O_RDONLY) else {
        return;
    };
    // SAFETY: F_DUPFD_CLOEXEC duplicates our own fd into a new descriptor at or above
    // `highest`, which is closed at once.
    let probe = unsafe { libc::fcntl(null.as_raw_fd(), libc::F_DUPFD_CLOEXEC, highest) };
    if probe >= 0 {
        // SAFETY: `probe` is the descriptor just created, owned by nobody else.
        unsafe { libc::close(probe) };
    }
}

/// The current process's resident set size in bytes (from /proc/self/statm).
pub fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = s
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf cannot fail for _SC_PAGESIZE.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64
}

/// Lets an fd survive exec (for handing a socket to fusermount3).
pub fn clear_cloexec(fd: BorrowedFd<'_>) -> SysResult<()> {
    // SAFETY: fcntl on a valid fd.
    let flags = check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) })?;
    // SAFETY: fcntl on a valid fd.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, flags & !libc::FD_CLOEXEC) })
        .map(drop)
}

/// Receives one fd sent with SCM_RIGHTS over a unix socket (fusermount3 sends /dev/fuse so).
pub fn recv_fd(sock: BorrowedFd<'_>) -> SysResult<OwnedFd> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    // Room for one fd of control data, aligned as cmsghdr needs.
    let mut control = [0u64; 8];
    // SAFETY: msghdr is plain data; all-zero is valid and the fields are set below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control);
    // SAFETY: msg points at valid buffers for the duration of the call.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(Errno::last());
    }
    // SAFETY: walking the control buffer the kernel just filled, with the libc macros.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let fd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const libc::c_int);
                return Ok(OwnedFd::from_raw_fd(fd));
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Err(Errno::EIO)
}

/// sigset_t holding `sigs`.
fn sigset(sigs: &[i32]) -> libc::sigset_t {
    // SAFETY: building a signal set on a zeroed sigset_t with the libc helpers.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &s in sigs {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

/// Blocks `sigs` in this thread (and the threads it spawns later), so they stay pending
/// for [`wait_signal`] instead of running their default action. Children started with
/// std's `Command` begin with an empty mask again.
pub fn block_signals(sigs: &[i32]) {
    let set = sigset(sigs);
    // SAFETY: applying a valid signal mask to the calling thread.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
}

/// A signal taken by [`wait_signal`].
#[derive(Debug, Clone, Copy)]
pub struct Received {
    pub signo: i32,
    /// Sent by a process with kill(2) to this one, rather than raised by the kernel (a
    /// terminal's ^C goes to the whole foreground process group, a child's exit is SIGCHLD).
    pub sent_by_process: bool,
}

/// Waits up to `timeout` for one of `sigs` (which must be blocked); None on timeout.
pub fn wait_signal(sigs: &[i32], timeout: std::time::Duration) -> Option<Received> {
    let set = sigset(sigs);
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: siginfo_t is plain data; all-zero is valid and the kernel fills it.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid set, info and timeout for the duration of the call.
    let signo = unsafe { libc::sigtimedwait(&set, &mut info, &ts) };
    (signo > 0).then_some(Received {
        signo,
        sent_by_process: info.si_code == libc::SI_USER || info.si_code == libc::SI_QUEUE,
    })
}

/// kill(2): sends `sig` to process `pid`.
pub fn kill(pid: i32, sig: i32) -> SysResult<()> {
    // SAFETY: kill has no memory effects.
    check(unsafe { libc::kill(pid, sig) }).map(drop)
}

/// Makes this process the reaper of its orphaned descendants (PR_SET_CHILD_SUBREAPER), so
/// a container's init, left by the runtime that created it, becomes our child to wait for.
pub fn set_child_subreaper() -> SysResult<()> {
    // SAFETY: prctl with integer arguments only.
    check(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) }).map(drop)
}

/// How a reaped child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildExit {
    Exited(i32),
    Signaled(i32),
}

impl ChildExit {
    /// The shell's number for it: the exit code, or 128 + the signal.
    pub fn code(self) -> i32 {
        match self {
            ChildExit::Exited(c) => c,
            ChildExit::Signaled(s) => 128 + s,
        }
    }
}

/// waitpid(-1): reaps any child, blocking; None when there is no child left (ECHILD).
pub fn wait_any_child() -> Option<(i32, ChildExit)> {
    loop {
        let mut status = 0;
        // SAFETY: waitpid with a valid out-pointer.
        let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
        if pid < 0 {
            if Errno::last().0 == libc::EINTR {
                continue;
            }
            return None;
        }
        let how = if libc::WIFEXITED(status) {
            ChildExit::Exited(libc::WEXITSTATUS(status))
        } else if libc::WIFSIGNALED(status) {
            ChildExit::Signaled(libc::WTERMSIG(status))
        } else {
            continue;
        };
        return Some((pid, how));
    }
}

/// waitpid(pid, WNOHANG): how the child `pid` ended, None while it runs.
pub fn try_wait_pid(pid: i32) -> SysResult<Option<ChildExit>> {
    let mut status = 0;
    // SAFETY: waitpid with a valid out-pointer.
    let r = check(unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) })?;
    if r == 0 {
        return Ok(None);
    }
    Ok(if libc::WIFEXITED(status) {
        Some(ChildExit::Exited(libc::WEXITSTATUS(status)))
    } else if libc::WIFSIGNALED(status) {
        Some(ChildExit::Signaled(libc::WTERMSIG(status)))
    } else {
        None
    })
}

/// Blocks this thread has read from disk so far (getrusage RUSAGE_THREAD, `ru_inblock`:
/// the bytes of every read bio it submitted, in 512-byte units). Cache hits do not count,
/// so a change across a call says the call had to wait for the disk.
pub fn thread_disk_reads() -> u64 {
    // SAFETY: rusage is plain data, written by the call.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid rusage to fill; RUSAGE_THREAD cannot fail for the calling thread.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    if rc != 0 {
        return 0;
    }
    u64::try_from(ru.ru_inblock).unwrap_or(0)
}
