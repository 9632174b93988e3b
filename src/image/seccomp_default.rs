//! The default seccomp profile of a container: docker's documented default, written here
//! as data (docs.docker.com/engine/security/seccomp, and the profile docker ships in
//! moby/profiles `seccomp/default.json`, whose rules this follows one by one).
//!
//! Where each rule comes from (docker's documented behaviour):
//! - An allow-list: a syscall not named here fails with EPERM (`defaultAction`
//!   SCMP_ACT_ERRNO, `defaultErrnoRet` 1), on x86_64 with its x86 and x32 ABIs, on aarch64
//!   with its 32-bit arm ABI (docker's `archMap`).
//! - [`ALLOWED`]: what ordinary programs use, allowed whatever the capabilities. Setting the
//!   clock (adjtimex, clock_adjtime) is in it because the kernel checks CAP_SYS_TIME itself.
//!   io_uring is not (docker 25 took it out). Neither are keyctl/add_key/request_key (the
//!   keyring is not namespaced), userfaultfd, kexec, swapon/off, pivot_root, vm86, nor
//!   the obsolete ones (uselib, ustat, sysfs, _sysctl, nfsservctl, create_module, ...).
//! - ptrace and process_vm_readv/writev: allowed on kernels from 4.8 (before it, ptrace
//!   could bypass seccomp).
//! - socket(): every address family but AF_ALG and AF_VSOCK.
//! - personality(): only PER_LINUX, UNAME26, ADDR_NO_RANDOMIZE, both, and the query
//!   0xffffffff, so a process cannot ask for the old ABIs' quirks (READ_IMPLIES_EXEC...).
//! - clone(): only without namespace flags, unless CAP_SYS_ADMIN; clone3() answers ENOSYS
//!   without CAP_SYS_ADMIN (its flags sit in memory a filter cannot read), so libc falls
//!   back to clone().
//! - The rest is allowed only with the capability the kernel would check anyway, so that a
//!   container given `--cap-add X` gets the syscalls X is for: [`BY_CAPABILITY`].

use super::seccomp::{ArchMap, Arg, Filter, Profile, Rule};

/// EPERM, the answer to a syscall the profile does not allow.
const EPERM: u32 = 1;
/// ENOSYS: "not implemented", which makes libc fall back from clone3 to clone.
const ENOSYS: u32 = 38;

/// The namespace flags of clone(2): CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS |
/// CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET.
const CLONE_NAMESPACE_FLAGS: u64 =
    0x0002_0000 | 0x0200_0000 | 0x0400_0000 | 0x0800_0000 | 0x1000_0000 | 0x2000_0000 | 0x4000_0000;

/// personality(2) values a container may set.
const PERSONALITIES: &[(u64, &str)] = &[
    (0x0000_0000, "PER_LINUX"),
    (0x0000_0008, "UNAME26"),
    (0x0002_0000, "ADDR_NO_RANDOMIZE"),
    (0x0002_0008, "UNAME26 | ADDR_NO_RANDOMIZE"),
    (0xffff_ffff, "query the current personality"),
];

/// socket(2) opens every address family but AF_ALG (38: the kernel's crypto API, a wide
/// attack surface no container needs) and AF_VSOCK (40: host/guest sockets, not
/// namespaced): as ranges, since the conditions of one rule must all hold.
const SOCKET_FAMILIES: &[(&str, u64)] = &[
    ("SCMP_CMP_LT", 38),
    ("SCMP_CMP_EQ", 39),
    ("SCMP_CMP_GT", 40),
];

/// Allowed whatever the container's capabilities, grouped by what they are for.
#[rustfmt::skip]
pub const ALLOWED: &[&[&str]] = &[
    // Files, directories, descriptors.
    &[
        "access", "chdir", "chmod", "chown", "chown32", "close", "close_range",
        "copy_file_range", "creat", "dup", "dup2", "dup3", "faccessat", "faccessat2",
        "fadvise64", "fadvise64_64", "fallocate", "fchdir", "fchmod", "fchmodat", "fchmodat2",
        "fchown", "fchown32", "fchownat", "fcntl", "fcntl64", "fdatasync", "flock", "fstat",
        "fstat64", "fstatat64", "fstatfs", "fstatfs64", "fsync", "ftruncate", "ftruncate64",
        "futimesat", "getcwd", "getdents", "getdents64", "lchown", "lchown32", "link",
        "linkat", "_llseek", "lseek", "lstat", "lstat64", "mkdir", "mkdirat", "mknod",
        "mknodat", "name_to_handle_at", "newfstatat", "open", "openat", "openat2", "pread64",
        "preadv", "preadv2", "pwrite64", "pwritev", "pwritev2", "read", "readahead",
        "readlink", "readlinkat", "readv", "rename", "renameat", "renameat2", "rmdir",
        "sendfile", "sendfile64", "splice", "stat", "stat64", "statfs", "statfs64", "statx",
        "symlink", "symlinkat", "sync", "sync_file_range", "syncfs", "tee", "truncate",
        "truncate64", "umask", "unlink", "unlinkat", "utime", "utimensat", "utimensat_time64",
        "utimes", "vmsplice", "write", "writev", "cachestat", "statmount", "listmount",
    ],
    // Extended attributes.
    &[
        "fgetxattr", "flistxattr", "fremovexattr", "fsetxattr", "getxattr", "getxattrat",
        "lgetxattr", "listxattr", "listxattrat", "llistxattr", "lremovexattr", "lsetxattr",
        "removexattr", "removexattrat", "setxattr", "setxattrat",
    ],
    // Waiting for events; ioctl (the device decides, and /dev holds only safe devices).
    &[
        "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait",
        "epoll_pwait2", "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2",
        "inotify_add_watch", "inotify_init", "inotify_init1", "inotify_rm_watch",
        "fanotify_mark", "poll", "ppoll", "ppoll_time64", "pselect6", "pselect6_time64",
        "select", "_newselect", "signalfd", "signalfd4", "timerfd_create", "timerfd_gettime",
        "timerfd_gettime64", "timerfd_settime", "timerfd_settime64", "ioctl",
    ],
    // Asynchronous I/O (not io_uring) and I/O priorities.
    &[
        "io_cancel", "io_destroy", "io_getevents", "io_pgetevents", "io_pgetevents_time64",
        "io_setup", "io_submit", "ioprio_get", "ioprio_set",
    ],
    // Processes, identities, limits, self-restriction.
    &[
        "capget", "capset", "execve", "execveat", "exit", "exit_group", "fork", "vfork",
        "wait4", "waitid", "waitpid", "getpid", "getppid", "gettid", "getpgid", "getpgrp",
        "getsid", "setpgid", "setsid", "getpriority", "setpriority", "getegid", "getegid32",
        "geteuid", "geteuid32", "getgid", "getgid32", "getgroups", "getgroups32", "getresgid",
        "getresgid32", "getresuid", "getresuid32", "getuid", "getuid32", "setfsgid",
        "setfsgid32", "setfsuid", "setfsuid32", "setgid", "setgid32", "setgroups",
        "setgroups32", "setregid", "setregid32", "setresgid", "setresgid32", "setresuid",
        "setresuid32", "setreuid", "setreuid32", "setuid", "setuid32", "getrlimit",
        "setrlimit", "prlimit64", "ugetrlimit", "getrusage", "prctl", "seccomp",
        "landlock_add_rule", "landlock_create_ruleset", "landlock_restrict_self", "pidfd_open",
        "pidfd_send_signal", "process_mrelease", "set_tid_address", "get_thread_area",
        "set_thread_area", "get_robust_list", "set_robust_list", "rseq", "uname", "sysinfo",
        "getcpu", "getrandom", "restart_syscall", "uretprobe", "riscv_hwprobe", "membarrier",
    ],
    // Scheduling.
    &[
        "sched_getaffinity", "sched_getattr", "sched_getparam", "sched_get_priority_max",
        "sched_get_priority_min", "sched_getscheduler", "sched_rr_get_interval",
        "sched_rr_get_interval_time64", "sched_setaffinity", "sched_setattr",
        "sched_setparam", "sched_setscheduler", "sched_yield",
    ],
    // Memory.
    &[
        "brk", "madvise", "map_shadow_stack", "memfd_create", "memfd_secret", "mincore",
        "mlock", "mlock2", "mlockall", "mmap", "mmap2", "mprotect", "mremap", "mseal", "msync",
        "munlock", "munlockall", "munmap", "pkey_alloc", "pkey_free", "pkey_mprotect",
        "remap_file_pages",
    ],
    // Futexes.
    &[
        "futex", "futex_requeue", "futex_time64", "futex_wait", "futex_waitv", "futex_wake",
    ],
    // Signals.
    &[
        "kill", "tgkill", "tkill", "pause", "rt_sigaction", "rt_sigpending", "rt_sigprocmask",
        "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait",
        "rt_sigtimedwait_time64", "rt_tgsigqueueinfo", "sigaltstack", "sigprocmask",
        "sigreturn", "alarm",
    ],
    // Clocks and timers (setting the clock: the kernel checks CAP_SYS_TIME).
    &[
        "adjtimex", "clock_adjtime", "clock_adjtime64", "clock_getres", "clock_getres_time64",
        "clock_gettime", "clock_gettime64", "clock_nanosleep", "clock_nanosleep_time64",
        "gettimeofday", "nanosleep", "time", "times", "getitimer", "setitimer", "timer_create",
        "timer_delete", "timer_getoverrun", "timer_gettime", "timer_gettime64",
        "timer_settime", "timer_settime64",
    ],
    // System V and POSIX IPC, pipes.
    &[
        "ipc", "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive",
        "mq_timedreceive_time64", "mq_timedsend", "mq_timedsend_time64", "mq_unlink",
        "msgctl", "msgget", "msgrcv", "msgsnd", "semctl", "semget", "semop", "semtimedop",
        "semtimedop_time64", "shmat", "shmctl", "shmdt", "shmget", "pipe", "pipe2",
    ],
    // Sockets (socket() itself: by address family, below).
    &[
        "accept", "accept4", "bind", "connect", "getpeername", "getsockname", "getsockopt",
        "listen", "recv", "recvfrom", "recvmmsg", "recvmmsg_time64", "recvmsg", "send",
        "sendmmsg", "sendmsg", "sendto", "setsockopt", "shutdown", "socketcall", "socketpair",
    ],
];

/// Syscalls allowed only with a capability (the one the kernel checks for them).
#[rustfmt::skip]
pub const BY_CAPABILITY: &[(&str, &[&str])] = &[
    ("CAP_DAC_READ_SEARCH", &["open_by_handle_at"]),
    (
        "CAP_SYS_ADMIN",
        &[
            "bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen", "fspick",
            "lookup_dcookie", "lsm_get_self_attr", "lsm_list_modules", "lsm_set_self_attr",
            "mount", "mount_setattr", "move_mount", "open_tree", "perf_event_open", "quotactl",
            "quotactl_fd", "setdomainname", "sethostname", "setns", "syslog", "umount",
            "umount2", "unshare",
        ],
    ),
    ("CAP_SYS_BOOT", &["reboot"]),
    ("CAP_SYS_CHROOT", &["chroot"]),
    (
        "CAP_SYS_MODULE",
        &["delete_module", "init_module", "finit_module"],
    ),
    ("CAP_SYS_PACCT", &["acct"]),
    (
        "CAP_SYS_PTRACE",
        &[
            "kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv", "process_vm_writev",
            "ptrace",
        ],
    ),
    ("CAP_SYS_RAWIO", &["iopl", "ioperm"]),
    (
        "CAP_SYS_TIME",
        &["settimeofday", "stime", "clock_settime", "clock_settime64"],
    ),
    ("CAP_SYS_TTY_CONFIG", &["vhangup"]),
    (
        "CAP_SYS_NICE",
        &["get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"],
    ),
    ("CAP_SYSLOG", &["syslog"]),
    ("CAP_BPF", &["bpf"]),
    ("CAP_PERFMON", &["perf_event_open"]),
];

/// Architecture-specific syscalls, by Go's architecture names (docker's `arches`).
#[rustfmt::skip]
const BY_ARCH: &[(&[&str], &[&str])] = &[
    (&["ppc64le"], &["sync_file_range2", "swapcontext"]),
    (
        &["arm", "arm64"],
        &[
            "arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint",
            "cacheflush", "set_tls",
        ],
    ),
    (&["amd64", "x32"], &["arch_prctl"]),
    (&["amd64", "x32", "x86"], &["modify_ldt"]),
    (
        &["s390", "s390x"],
        &["s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr"],
    ),
    (&["riscv64"], &["riscv_flush_icache"]),
];

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn allow(names: &[&str]) -> Rule {
    Rule {
        names: strings(names),
        action: "SCMP_ACT_ALLOW".into(),
        ..Rule::default()
    }
}

fn arg(index: u32, op: &str, value: u64, value_two: u64) -> Arg {
    Arg {
        index,
        value,
        value_two,
        op: op.into(),
    }
}

fn caps(c: &[&str]) -> Filter {
    Filter {
        caps: strings(c),
        ..Filter::default()
    }
}

fn arches(a: &[&str]) -> Filter {
    Filter {
        arches: strings(a),
        ..Filter::default()
    }
}

/// The default profile, before it is resolved for a container's capabilities.
pub fn profile() -> Profile {
    let mut rules = vec![allow(&ALLOWED.concat())];
    rules.push(Rule {
        includes: Filter {
            min_kernel: Some("4.8".into()),
            ..Filter::default()
        },
        ..allow(&["process_vm_readv", "process_vm_writev", "ptrace"])
    });
    // socket(): one rule per allowed family (rules are alternatives; the args of one rule
    // must all hold).
    for (op, family) in SOCKET_FAMILIES {
        rules.push(Rule {
            args: vec![arg(0, op, *family, 0)],
            ..allow(&["socket"])
        });
    }
    for (value, _) in PERSONALITIES {
        rules.push(Rule {
            args: vec![arg(0, "SCMP_CMP_EQ", *value, 0)],
            ..allow(&["personality"])
        });
    }
    for (on, names) in BY_ARCH {
        rules.push(Rule {
            includes: arches(on),
            ..allow(names)
        });
    }
    for (cap, names) in BY_CAPABILITY {
        rules.push(Rule {
            includes: caps(&[cap]),
            ..allow(names)
        });
    }
    // Without CAP_SYS_ADMIN: clone() without namespace flags (s390 passes the flags as the
    // second argument), clone3() "not implemented".
    rules.push(Rule {
        args: vec![arg(0, "SCMP_CMP_MASKED_EQ", CLONE_NAMESPACE_FLAGS, 0)],
        excludes: Filter {
            caps: strings(&["CAP_SYS_ADMIN"]),
            arches: strings(&["s390", "s390x"]),
            min_kernel: None,
        },
        ..allow(&["clone"])
    });
    rules.push(Rule {
        args: vec![arg(1, "SCMP_CMP_MASKED_EQ", CLONE_NAMESPACE_FLAGS, 0)],
        includes: arches(&["s390", "s390x"]),
        excludes: caps(&["CAP_SYS_ADMIN"]),
        ..allow(&["clone"])
    });
    rules.push(Rule {
        names: strings(&["clone3"]),
        action: "SCMP_ACT_ERRNO".into(),
        errno_ret: Some(ENOSYS),
        excludes: caps(&["CAP_SYS_ADMIN"]),
        ..Rule::default()
    });
    let map = |arch: &str, subs: &[&str]| ArchMap {
        architecture: arch.into(),
        sub_architectures: strings(subs),
    };
    Profile {
        default_action: "SCMP_ACT_ERRNO".into(),
        default_errno_ret: Some(EPERM),
        arch_map: vec![
            map("SCMP_ARCH_X86_64", &["SCMP_ARCH_X86", "SCMP_ARCH_X32"]),
            map("SCMP_ARCH_AARCH64", &["SCMP_ARCH_ARM"]),
            map("SCMP_ARCH_S390X", &["SCMP_ARCH_S390"]),
            map("SCMP_ARCH_RISCV64", &[]),
            map("SCMP_ARCH_LOONGARCH64", &[]),
        ],
        syscalls: rules,
        ..Profile::default()
    }
}

#[cfg(test)]
mod tests {
    use super::super::seccomp::{SpecSeccomp, Target};
    use super::*;

    fn resolve(caps: &[&str]) -> SpecSeccomp {
        let p = profile();
        p.validate().unwrap();
        p.resolve(&Target {
            caps: strings(caps),
            go_arch: "amd64",
            native_arch: "SCMP_ARCH_X86_64",
            kernel: (6, 18),
        })
    }

    /// The unconditional allow rules naming `name`, and the conditional ones.
    fn rules_for<'a>(
        s: &'a SpecSeccomp,
        name: &str,
    ) -> Vec<&'a super::super::seccomp::SpecSyscall> {
        s.syscalls
            .iter()
            .filter(|r| r.names.iter().any(|n| n == name))
            .collect()
    }

    #[test]
    fn no_name_twice_in_the_allow_list_and_none_also_gated() {
        let all = ALLOWED.concat();
        let mut seen = std::collections::BTreeSet::new();
        for n in &all {
            assert!(seen.insert(*n), "{n} listed twice");
        }
        for (cap, names) in BY_CAPABILITY {
            for n in *names {
                assert!(!seen.contains(n), "{n} is allowed and gated by {cap}");
            }
        }
        for blocked in [
            "io_uring_setup",
            "keyctl",
            "add_key",
            "userfaultfd",
            "kexec_load",
            "pivot_root",
            "swapon",
            "unshare",
            "mount",
            "setns",
            "bpf",
            "clone",
            "clone3",
        ] {
            assert!(!seen.contains(blocked), "{blocked}");
        }
        assert_eq!(CLONE_NAMESPACE_FLAGS, 2_114_060_288);
    }

    #[test]
    fn resolved_for_default_caps_and_for_sys_admin() {
        let d = resolve(super::super::caps::DEFAULT);
        assert_eq!(d.default_action, "SCMP_ACT_ERRNO");
        assert_eq!(d.default_errno_ret, Some(EPERM));
        assert_eq!(
            d.architectures,
            ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
        );
        assert!(rules_for(&d, "mount").is_empty());
        assert!(rules_for(&d, "unshare").is_empty());
        let clone = rules_for(&d, "clone");
        assert_eq!(clone.len(), 1);
        assert_eq!(clone[0].args[0].value, CLONE_NAMESPACE_FLAGS);
        let clone3 = rules_for(&d, "clone3");
        assert_eq!(
            (clone3.len(), clone3[0].action.as_str(), clone3[0].errno_ret),
            (1, "SCMP_ACT_ERRNO", Some(ENOSYS))
        );
        // CAP_SYS_CHROOT is a default capability; chroot comes with it.
        assert_eq!(rules_for(&d, "chroot").len(), 1);
        assert!(rules_for(&d, "reboot").is_empty());
        assert_eq!(rules_for(&d, "arch_prctl").len(), 1);
        assert!(rules_for(&d, "cacheflush").is_empty());
        assert_eq!(rules_for(&d, "socket").len(), SOCKET_FAMILIES.len());
        assert_eq!(rules_for(&d, "personality").len(), PERSONALITIES.len());

        let admin = resolve(&["CAP_SYS_ADMIN"]);
        let clone = rules_for(&admin, "clone");
        assert_eq!(clone.len(), 1);
        assert!(clone[0].args.is_empty());
        assert_eq!(rules_for(&admin, "clone3")[0].action, "SCMP_ACT_ALLOW");
        assert_eq!(rules_for(&admin, "mount").len(), 1);
        assert!(rules_for(&admin, "chroot").is_empty());
    }
}
