//! `unionrs [-f] [-d] -o lowerdir=..,upperdir=..,workdir=.. MNT`: validate, go to the
//! background (the parent exits 0 only once the mount is live), mount, serve.

use super::options::{MountArgs, parse_mount_argv};
use super::validate::validate;
use crate::fuse::conn::Transport;
use crate::fuse::session::{self, MountSpec};
use crate::fuse::state::UnionFs;
use crate::sys::{fs, proc};
use crate::union::{Union, UnionConfig};
use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::process::ExitCode;

pub fn run(argv: &[OsString]) -> ExitCode {
    let args = match parse_mount_argv(argv).and_then(validate) {
        Ok(v) => v.args,
        Err(e) => {
            eprintln!("unionrs: {e}");
            return ExitCode::from(1);
        }
    };
    init_logging(args.debug);
    for ignored in &args.opts.ignored {
        log::debug!("option {ignored:?} accepted and not acted on");
    }
    if args.foreground {
        return match mount_and_serve(&args, None) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("unionrs: {e}");
                ExitCode::from(1)
            }
        };
    }
    let (rx, tx) = match proc::pipe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("unionrs: cannot create pipe: {e}");
            return ExitCode::from(1);
        }
    };
    match proc::fork() {
        Err(e) => {
            eprintln!("unionrs: cannot fork: {e}");
            ExitCode::from(1)
        }
        Ok(proc::Fork::Parent(_)) => {
            drop(tx);
            wait_for_child(rx)
        }
        Ok(proc::Fork::Child) => {
            drop(rx);
            proc::setsid();
            // Errors before the mount is live go to the parent, which prints them.
            match mount_and_serve(&args, Some(tx)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(_) => ExitCode::from(1),
            }
        }
    }
}

/// The parent waits for the daemon's word: "OK" once the mount is live, else the error.
fn wait_for_child(rx: OwnedFd) -> ExitCode {
    let mut msg = String::new();
    let _ = std::fs::File::from(rx).read_to_string(&mut msg);
    if msg == "OK" {
        return ExitCode::SUCCESS;
    }
    if msg.is_empty() {
        msg = "the daemon exited before the mount was live".into();
    }
    eprintln!("unionrs: {msg}");
    ExitCode::from(1)
}

/// Descriptor slots reserved at start: 128 KiB of table, enough for the cached directory handles
/// of a walk over tens of thousands of entries (1,132 fds after `find` over 6,643 entries).
const FD_TABLE_RESERVED: u64 = 16384;

/// How many directory handles the daemon's caches may keep: a share of the open-file limit,
/// or UNIONRS_DIR_HANDLES (lets the tests run the uncached paths: 0 keeps none).
fn dir_handle_budget(open_files: u64) -> usize {
    std::env::var("UNIONRS_DIR_HANDLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| crate::union::HandleBudget::share_of(open_files))
}

fn mount_and_serve(args: &MountArgs, ready: Option<OwnedFd>) -> Result<(), String> {
    // Before any thread exists, so every thread inherits the mask and one waits for signals.
    proc::block_termination_signals();
    // Also before any thread exists: growing the fd table later waits for an RCU grace period
    // per doubling (see reserve_fd_table); a directory walk opens a handle per cached copy.
    let open_files = proc::raise_open_file_limit();
    proc::reserve_fd_table(open_files.min(FD_TABLE_RESERVED));
    fs::clear_umask();
    let o = &args.opts;
    let cfg = UnionConfig {
        lowers: o.lowerdirs.clone(),
        upper: o.upperdir.clone(),
        work: o.workdir.clone(),
        fsync: o.fsync && !o.volatile,
        metacopy: o.metacopy,
        user_markers: false,
        ids: id_map(o),
        xattr_permissions: o.xattr_permissions.unwrap_or(0),
        acl: !o.noacl,
        selinux_context: o.context.as_ref().map(|c| c.as_bytes().to_vec()),
        atime: atime_rule(o),
        volatile: o.volatile,
        dir_handles: Some(dir_handle_budget(open_files)),
    };
    let result = Union::new(&cfg).and_then(|union| {
        log::info!("upper markers: {:?}", union.markers);
        let root = proc::geteuid() == 0;
        let allow_other = o.allow_other.unwrap_or(root);
        let spec = MountSpec {
            source: o
                .fsname
                .clone()
                .or_else(|| args.source.clone())
                .unwrap_or_else(|| "unionrs".into()),
            mountpoint: args.mountpoint.clone(),
            read_only: o.read_only,
            allow_other,
            default_permissions: o.default_permissions.unwrap_or(allow_other),
            nosuid: o.suid == Some(false),
            nodev: o.dev == Some(false),
            noexec: o.exec == Some(false),
            noatime: o.noatime,
            strictatime: o.strictatime,
            nodiratime: o.nodiratime,
            lazytime: o.lazytime,
            threads: if args.single_thread { 1 } else { 4 },
        };
        // The kernel opens passthrough backing files with the caller's open flags, not with
        // our fd's O_NOATIME, so its reads update atimes by the rule of the mount the daemon
        // opened the file on. Where the layers are not on the daemon's private mounts (which
        // carry the atime rule), noatime is kept by the daemon serving reads itself through
        // O_NOATIME fds.
        let atimes_kept = !o.noatime || o.strictatime || union.atime_rule_in_mounts();
        let passthrough = std::env::var_os("UNIONRS_NO_PASSTHROUGH").is_none() && atimes_kept;
        if !atimes_kept {
            log::info!("noatime: FUSE passthrough off (backing files would update atimes)");
        }
        let threads = spec.threads;
        // -o io_uring=, else UNIONRS_IO_URING=on|off (lets CI run every test that starts a
        // daemon once per transport), else on: io_uring whenever the kernel offers it.
        let io_uring = o
            .io_uring
            .or_else(|| match std::env::var("UNIONRS_IO_URING").ok()?.as_str() {
                "on" => Some(true),
                "off" => Some(false),
                _ => None,
            })
            .unwrap_or(true);
        let fs = UnionFs::new(union, !o.noacl, passthrough);
        let report = fs.reporter();
        let hook = fs.union.listing_hook();
        let whiteout_cleanup = fs.union.whiteout_cleanup();
        let transport = Transport {
            uring: io_uring,
            idle_queues: o.queue_sched_idle,
        };
        session::mount(fs, &spec, transport).map(|c| {
            session::drop_listings_on_change(&c, &hook);
            ((c, threads, whiteout_cleanup), spec, report)
        })
    });
    let (session, spec, report) = match result {
        Ok(v) => v,
        Err(e) => {
            tell_parent(ready, e.as_bytes());
            return Err(e);
        }
    };
    let (conn, threads, whiteout_cleanup) = session;
    // The readers and io_uring queues start before the parent hears the mount is live, so
    // the transport `unionrs stats` reports from then on is the one requests use (it said
    // "dev" for a moment under load: tests read it right after mounting).
    let started = match session::start(conn, threads) {
        Ok(s) => s,
        Err(e) => {
            let mnt = spec.mountpoint.as_os_str().as_encoded_bytes();
            let _ = proc::umount(mnt, true);
            tell_parent(ready, e.as_bytes());
            return Err(e);
        }
    };
    // `unionrs stats` answers as soon as the mount command returns.
    let control = crate::fuse::control::start(&spec.mountpoint, report);
    if ready.is_some() {
        let _ = std::env::set_current_dir("/");
        let _ = proc::redirect_stdio_to_null();
    }
    tell_parent(ready, b"OK");
    let served = session::serve(started, spec.mountpoint);
    whiteout_cleanup();
    if let Some(socket) = control {
        socket.remove();
    }
    served
}

/// Gives the waiting parent (if any) the daemon's word: "OK" or the error.
fn tell_parent(ready: Option<OwnedFd>, word: &[u8]) {
    if let Some(tx) = ready {
        let _ = std::fs::File::from(tx).write_all(word);
    }
}

/// When reads update upper atimes: a read-only mount never does; strictatime beats noatime
/// (mount(2) clears MNT_NOATIME under MS_STRICTATIME).
fn atime_rule(o: &super::options::MountOptions) -> crate::union::upper_mount::AtimeRule {
    use crate::union::upper_mount::{AtimeMode, AtimeRule};
    let mode = if o.read_only {
        AtimeMode::Never
    } else if o.strictatime {
        AtimeMode::Strict
    } else if o.noatime {
        AtimeMode::Never
    } else {
        AtimeMode::Relatime
    };
    AtimeRule {
        mode,
        nodiratime: o.nodiratime,
    }
}

/// The owner translation the mount options ask for.
fn id_map(o: &super::options::MountOptions) -> crate::union::idmap::IdMap {
    use crate::union::idmap::{IdMap, IdRange};
    let ranges = |v: &[super::options::IdMapping]| -> Vec<IdRange> {
        v.iter()
            .map(|m| IdRange {
                inside: m.inside,
                outside: m.outside,
                count: m.count,
            })
            .collect()
    };
    let root = o.squash_to_root.then_some(0);
    IdMap {
        uids: ranges(&o.uid_mappings),
        gids: ranges(&o.gid_mappings),
        squash_uid: o.squash_to_uid.or(root),
        squash_gid: o.squash_to_gid.or(root),
    }
}

fn init_logging(debug: bool) {
    let default = if debug { "debug" } else { "warn" };
    let env = env_logger::Env::default().filter_or("RUST_LOG", default);
    let _ = env_logger::Builder::from_env(env)
        .format_timestamp_millis()
        .try_init();
}
