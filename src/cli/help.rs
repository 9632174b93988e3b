//! What `unionrs --help`, the man page, the shell completions and docs/mounting.md say.
//!
//! `options::parse_mount_argv` stays the source of truth for what is accepted; the table here
//! documents it, and unit tests tie the two together: every option in [`MOUNT_OPTIONS`] must
//! parse, every option of the accepted-and-ignored vocabulary must be in the table, and the
//! option table in docs/mounting.md must be the one [`markdown_table`] renders.

use clap::{Arg, ArgAction, Command, ValueHint};
use std::io::{self, Write};
use std::path::Path;

/// What unionrs does with an option it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// It changes what the mount does.
    Acted,
    /// Parsed and checked (a bad value is an error), not yet acted on by the daemon.
    Parsed,
    /// Accepted and logged at debug level: other tools pass it, so it must not fail a mount.
    Ignored,
}

/// Whether fuse-overlayfs knows an option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// One of fuse-overlayfs' own options.
    Own,
    /// A FUSE or VFS mount option that fuse-overlayfs hands to libfuse.
    Libfuse,
    /// A mount(8) userspace option: mount(8) consumes it for every filesystem.
    Mount8,
    /// Not in fuse-overlayfs' vocabulary.
    No,
}

/// One `-o` option.
pub struct MountOption {
    /// The key; `x-*` stands for every key that starts with `x-`.
    pub key: &'static str,
    /// The value's placeholder for `key=VALUE` options, `None` for flags.
    pub value: Option<&'static str>,
    pub action: Action,
    pub fuse_overlayfs: Peer,
    /// Accepted by `mount -t overlay` (mount(8) and kernel overlayfs; measured on Linux 6.18).
    pub kernel: bool,
    pub help: &'static str,
}

const fn opt(
    key: &'static str,
    value: Option<&'static str>,
    action: Action,
    fuse_overlayfs: Peer,
    kernel: bool,
    help: &'static str,
) -> MountOption {
    MountOption {
        key,
        value,
        action,
        fuse_overlayfs,
        kernel,
        help,
    }
}

use Action::{Acted, Ignored, Parsed};
use Peer::{Libfuse, Mount8, Own};

const IGN_MOUNT8: &str = "mount(8) userspace option; nothing for the daemon to do";
const IGN_VFS: &str = "VFS flag the daemon does not set (a kernel-only remount can)";
const IGN_FUSE: &str = "FUSE/libfuse tuning; unionrs decides this itself";
const IGN_OVL: &str = "kernel overlayfs feature switch; unionrs' union core decides this itself";
const IGN_FOVL: &str = "fuse-overlayfs tuning; no unionrs equivalent";

/// Every option unionrs accepts after `-o`, in the order the help shows them.
#[rustfmt::skip]
pub const MOUNT_OPTIONS: &[MountOption] = &[
    // Layers.
    opt("lowerdir", Some("DIR[:DIR...]"), Acted, Own, true, "Lower layers, top first; `\\:` for a colon in a path. The last lowerdir= wins. Required."),
    opt("lowerdir+", Some("DIR"), Acted, Peer::No, true, "Appends lower layers below the ones given so far (kernel 6.8 syntax)."),
    opt("upperdir", Some("DIR"), Acted, Own, true, "Writable layer; needs workdir=. Without it the mount is read-only."),
    opt("workdir", Some("DIR"), Acted, Own, true, "Empty directory on the upper's filesystem for copy-ups."),
    // Generic mount flags.
    opt("ro", None, Acted, Libfuse, true, "Read-only mount (the later of ro/rw wins)."),
    opt("rw", None, Acted, Libfuse, true, "Read-write mount (the default when upperdir= is given)."),
    opt("suid", None, Acted, Libfuse, true, "Honour set-user/group-ID bits (the default)."),
    opt("nosuid", None, Acted, Libfuse, true, "Ignore set-user/group-ID bits."),
    opt("dev", None, Acted, Libfuse, true, "Allow device nodes (the default)."),
    opt("nodev", None, Acted, Libfuse, true, "Do not allow access to device nodes."),
    opt("exec", None, Acted, Libfuse, true, "Allow execution (the default)."),
    opt("noexec", None, Acted, Libfuse, true, "Do not allow execution."),
    opt("noatime", None, Acted, Libfuse, true, "Reads leave upper files' atimes alone (lower files' always, as on the kernel). The upper layer and workdir are opened beneath a private noatime bind mount, so FUSE passthrough stays on; where the daemon may not make one (no CAP_SYS_ADMIN), upper files are opened O_NOATIME and passthrough is off (the kernel's backing files would update atimes)."),
    opt("atime", None, Acted, Libfuse, true, "Turns an earlier noatime off: reads update upper atimes by relatime (the default) or strictatime."),
    opt("strictatime", None, Acted, Libfuse, true, "Every read through the mount updates the upper file's atime (beats noatime, as in the kernel); relatime is the default. Carried by the upper's private bind mount (root only; without one the upper filesystem's own rule applies)."),
    opt("nostrictatime", None, Acted, Libfuse, true, "Turns an earlier strictatime off."),
    opt("nodiratime", None, Acted, Libfuse, true, "Listing a directory leaves its upper copy's atime alone (the upper's private bind mount, root only)."),
    opt("diratime", None, Acted, Libfuse, true, "Turns an earlier nodiratime off (the default)."),
    opt("lazytime", None, Acted, Libfuse, true, "Sets the mount's VFS lazytime flag (shown in /proc/mounts; the kernel keeps time updates in memory longer). Root mounts only: fusermount3 refuses it, so rootless mounts leave it out."),
    opt("nolazytime", None, Acted, Libfuse, true, "Turns an earlier lazytime off (the default)."),
    // FUSE.
    opt("allow_other", None, Acted, Libfuse, false, "Let every user see the mount (the default when run as root)."),
    opt("allow_root", None, Acted, Libfuse, false, "Same as allow_other here."),
    opt("noallow_other", None, Acted, Peer::No, false, "Only the mounting user sees the mount."),
    opt("default_permissions", None, Acted, Libfuse, true, "The kernel checks permissions (the default when allow_other is on)."),
    opt("nodefault_permissions", None, Acted, Peer::No, false, "Turns default_permissions off."),
    opt("fsname", Some("NAME"), Acted, Libfuse, false, "The mount's source as shown in /proc/mounts (default: SOURCE, else \"unionrs\")."),
    opt("subtype", Some("NAME"), Parsed, Libfuse, false, "Accepted; the FUSE subtype is always \"unionrs\" (fstype fuse.unionrs)."),
    opt("debug", None, Acted, Libfuse, false, "Debug log to stderr; implies -f."),
    // fuse-overlayfs.
    opt("volatile", None, Acted, Own, true, "No fsync reaches the layers (as fsync=0), and the workdir gets the kernel's work/incompat/volatile marker: later mounts of it (unionrs and kernel overlayfs alike) are refused until it is removed."),
    opt("fsync", Some("0|1"), Acted, Own, false, "fsync=0: fsync/fdatasync/fsyncdir succeed without syncing and copy-ups are not synced (`unionrs stats` disk_fsyncs stays 0); fsync=1 is the default."),
    opt("noacl", None, Acted, Own, false, "No POSIX ACLs: the kernel does not enforce ACLs found in layers, setfacl/getxattr of system.posix_acl_* fail with EOPNOTSUPP and listxattr omits them."),
    opt("uidmapping", Some("IN:OUT:N[:IN:OUT:N...]"), Acted, Own, false, "UID mapping: on-disk OUT..OUT+N show as IN..IN+N, callers' ids are stored mapped back, unmapped disk ids show as 65534; repeats add ranges."),
    opt("gidmapping", Some("IN:OUT:N[:IN:OUT:N...]"), Acted, Own, false, "GID mapping, as uidmapping."),
    opt("squash_to_root", None, Acted, Own, false, "Show every file as owned by 0:0 (what is stored is unchanged)."),
    opt("squash_to_uid", Some("UID"), Acted, Own, false, "Show every file as owned by UID."),
    opt("squash_to_gid", Some("GID"), Acted, Own, false, "Show every file as owned by GID."),
    opt("xattr_permissions", Some("0|1|2"), Acted, Own, false, "chown/chmod of upper dirs and files (and new ones' owners, and copy-ups' original owners) are kept as UID:GID:MODE in security.fuseoverlayfs.override_stat (1, privileged) or user.fuseoverlayfs.override_stat (2, rootless) instead of on the inode, and shown by stat; 0 is off. Lower layers whose root carries such an xattr (or containers/storage's user.containers.override_stat) are always shown that way."),
    opt("context", Some("CONTEXT"), Acted, Own, true, "SELinux label of every object: getxattr security.selinux answers CONTEXT, listxattr lists it, setting or removing it fails with EOPNOTSUPP (as on a context= mount). Not passed to the kernel, nothing is written to the layers."),
    // mount(8) userspace options.
    opt("auto", None, Ignored, Mount8, true, IGN_MOUNT8),
    opt("noauto", None, Ignored, Mount8, true, IGN_MOUNT8),
    opt("user", None, Ignored, Mount8, true, IGN_MOUNT8),
    opt("nouser", None, Ignored, Mount8, true, IGN_MOUNT8),
    opt("users", None, Ignored, Mount8, true, IGN_MOUNT8),
    opt("owner", None, Ignored, Mount8, true, IGN_MOUNT8),
    opt("group", None, Ignored, Mount8, true, IGN_MOUNT8),
    opt("_netdev", None, Ignored, Mount8, true, IGN_MOUNT8),
    opt("nofail", None, Ignored, Mount8, true, IGN_MOUNT8),
    opt("defaults", None, Ignored, Mount8, true, IGN_MOUNT8),
    opt("comment", Some("TEXT"), Ignored, Mount8, true, IGN_MOUNT8),
    opt("x-*", Some("[VALUE]"), Ignored, Mount8, true, "mount(8)/systemd/desktop options such as x-systemd.automount, x-gvfs-show"),
    // VFS flags the daemon does not set.
    opt("async", None, Ignored, Libfuse, true, IGN_VFS),
    opt("sync", None, Ignored, Libfuse, true, IGN_VFS),
    opt("dirsync", None, Ignored, Libfuse, true, IGN_VFS),
    opt("mand", None, Ignored, Peer::No, true, IGN_VFS),
    opt("nomand", None, Ignored, Peer::No, true, IGN_VFS),
    opt("relatime", None, Ignored, Libfuse, true, IGN_VFS),
    opt("norelatime", None, Ignored, Libfuse, true, IGN_VFS),
    opt("silent", None, Ignored, Peer::No, true, IGN_VFS),
    opt("loud", None, Ignored, Peer::No, true, IGN_VFS),
    opt("iversion", None, Ignored, Peer::No, true, IGN_VFS),
    opt("noiversion", None, Ignored, Peer::No, true, IGN_VFS),
    // SELinux contexts besides context=.
    opt("fscontext", Some("CONTEXT"), Ignored, Libfuse, true, "SELinux mount context; not applied"),
    opt("defcontext", Some("CONTEXT"), Ignored, Libfuse, true, "SELinux mount context; not applied"),
    opt("rootcontext", Some("CONTEXT"), Ignored, Libfuse, true, "SELinux mount context; not applied"),
    // FUSE / libfuse.
    opt("kernel_cache", None, Ignored, Libfuse, false, IGN_FUSE),
    opt("auto_cache", None, Ignored, Libfuse, false, IGN_FUSE),
    opt("noauto_cache", None, Ignored, Libfuse, false, IGN_FUSE),
    opt("direct_io", None, Ignored, Libfuse, false, IGN_FUSE),
    opt("use_ino", None, Ignored, Libfuse, false, IGN_FUSE),
    opt("readdir_ino", None, Ignored, Libfuse, false, IGN_FUSE),
    opt("hard_remove", None, Ignored, Libfuse, false, IGN_FUSE),
    opt("nonempty", None, Ignored, Libfuse, false, "libfuse 2 option; unionrs mounts on non-empty directories anyway"),
    opt("auto_unmount", None, Ignored, Libfuse, false, IGN_FUSE),
    opt("large_read", None, Ignored, Libfuse, false, IGN_FUSE),
    opt("splice_read", None, Ignored, Libfuse, false, IGN_FUSE),
    opt("splice_write", None, Ignored, Libfuse, false, IGN_FUSE),
    opt("splice_move", None, Ignored, Libfuse, false, IGN_FUSE),
    opt("no_splice_read", None, Ignored, Libfuse, false, IGN_FUSE),
    opt("no_splice_write", None, Ignored, Libfuse, false, IGN_FUSE),
    opt("no_splice_move", None, Ignored, Libfuse, false, IGN_FUSE),
    opt("clone_fd", None, Ignored, Libfuse, false, IGN_FUSE),
    opt("async_read", None, Ignored, Libfuse, false, IGN_FUSE),
    opt("sync_read", None, Ignored, Libfuse, false, IGN_FUSE),
    opt("atomic_o_trunc", None, Ignored, Libfuse, false, IGN_FUSE),
    opt("big_writes", None, Ignored, Libfuse, false, IGN_FUSE),
    opt("writeback_cache", None, Ignored, Libfuse, false, IGN_FUSE),
    opt("no_writeback_cache", None, Ignored, Libfuse, false, IGN_FUSE),
    opt("intr", None, Ignored, Libfuse, false, IGN_FUSE),
    opt("nopath", None, Ignored, Libfuse, false, IGN_FUSE),
    opt("max_read", Some("N"), Ignored, Libfuse, false, IGN_FUSE),
    opt("max_write", Some("N"), Ignored, Libfuse, false, IGN_FUSE),
    opt("max_background", Some("N"), Ignored, Libfuse, false, IGN_FUSE),
    opt("congestion_threshold", Some("N"), Ignored, Libfuse, false, IGN_FUSE),
    opt("blksize", Some("N"), Ignored, Libfuse, false, IGN_FUSE),
    opt("entry_timeout", Some("SECS"), Ignored, Libfuse, false, IGN_FUSE),
    opt("attr_timeout", Some("SECS"), Ignored, Libfuse, false, IGN_FUSE),
    opt("negative_timeout", Some("SECS"), Ignored, Libfuse, false, IGN_FUSE),
    opt("ac_attr_timeout", Some("SECS"), Ignored, Libfuse, false, IGN_FUSE),
    opt("umask", Some("MODE"), Ignored, Libfuse, false, IGN_FUSE),
    opt("uid", Some("UID"), Ignored, Libfuse, false, IGN_FUSE),
    opt("gid", Some("GID"), Ignored, Libfuse, false, IGN_FUSE),
    opt("fd", Some("N"), Ignored, Libfuse, false, "set by fusermount/mount.fuse; unionrs opens /dev/fuse itself"),
    opt("rootmode", Some("MODE"), Ignored, Libfuse, false, "set by fusermount/mount.fuse; unionrs sets it itself"),
    opt("user_id", Some("UID"), Ignored, Libfuse, false, "set by fusermount/mount.fuse; unionrs sets it itself"),
    opt("group_id", Some("GID"), Ignored, Libfuse, false, "set by fusermount/mount.fuse; unionrs sets it itself"),
    opt("max_idle_threads", Some("N"), Ignored, Libfuse, false, IGN_FUSE),
    opt("max_threads", Some("N"), Ignored, Libfuse, false, IGN_FUSE),
    opt("intr_signal", Some("N"), Ignored, Libfuse, false, IGN_FUSE),
    opt("remember", Some("SECS"), Ignored, Libfuse, false, IGN_FUSE),
    // Kernel overlayfs.
    opt("userxattr", None, Ignored, Peer::No, true, IGN_OVL),
    opt("redirect_dir", Some("on|off|follow|nofollow"), Ignored, Own, true, IGN_OVL),
    opt("index", Some("on|off"), Ignored, Peer::No, true, IGN_OVL),
    opt("metacopy", Some("on|off"), Acted, Peer::No, true, "metacopy=on: chmod, chown, utimes and xattr changes of a lower regular file copy up its metadata only, in kernel overlayfs' format (`trusted.overlay.metacopy`, or `user.overlay.metacopy` where trusted.* is not permitted); the data is copied up when the file is first opened for writing or truncated (a rename moves the metacopy file with a redirect to its data, as the kernel does). Off by default, as on the kernel. Hard-linked lower files are always copied in full. Metacopy uppers written by the kernel are read either way."),
    opt("io_uring", Some("on|off"), Acted, Peer::No, false, "on (the default): requests travel over FUSE io_uring queues, one per CPU (kernel 6.14+), whenever the kernel offers them at INIT (root: `echo Y > /sys/module/fuse/parameters/enable_uring`; see FUSE over io_uring above), else over /dev/fuse. off: always /dev/fuse, the classic path. `unionrs stats` shows `transport uring|dev`."),
    opt("queue_sched", Some("idle|normal"), Acted, Peer::No, false, "idle (the default): the io_uring queue threads wait for requests, and answer those that copy no data, at SCHED_IDLE priority. The scheduler then sees the queue's CPU as free when an answer wakes the caller, and keeps the caller on it instead of moving it to an idle CPU (whose wake-up costs more than the request on a VM whose idle vCPUs halt: ls -laR 2x faster here). Requests that may copy file data run at normal priority: opens for writing, setattr, xattr changes and links of a file with no full upper copy yet (a copy-up), renames, and reads and writes the daemon serves itself. normal: SCHED_OTHER throughout. /dev/fuse threads are not affected."),
    opt("xino", Some("on|off|auto"), Ignored, Peer::No, true, IGN_OVL),
    opt("nfs_export", Some("on|off"), Ignored, Peer::No, true, IGN_OVL),
    opt("uuid", Some("on|off|null|auto"), Ignored, Peer::No, true, IGN_OVL),
    opt("verity", Some("on|off|require"), Ignored, Peer::No, true, IGN_OVL),
    // fuse-overlayfs tuning.
    opt("static_nlink", None, Ignored, Own, false, IGN_FOVL),
    opt("timeout", Some("SECS"), Ignored, Own, false, IGN_FOVL),
    opt("threaded", Some("0|1"), Ignored, Own, false, "fuse-overlayfs threading; unionrs uses 4 threads (1 with -s)"),
    opt("plugins", Some("LIST"), Ignored, Own, false, IGN_FOVL),
    opt("fast_ino", Some("0|1"), Ignored, Own, false, IGN_FOVL),
    opt("writeback", Some("0|1"), Ignored, Own, false, IGN_FOVL),
    opt("noxattrs", Some("0|1"), Ignored, Own, false, IGN_FOVL),
];

const ABOUT: &str = "A userspace union filesystem (FUSE): fuse-overlayfs compatible mounts";

const LONG_ABOUT: &str = "\
A userspace union filesystem (FUSE), a replacement for kernel overlayfs and fuse-overlayfs.

Mounts the union of read-only lower layers and an optional writable upper layer at MOUNTPOINT.
The command line is fuse-overlayfs' (`unionrs -o lowerdir=..,upperdir=..,workdir=.. MNT`) and
mount.fuse's (`unionrs SOURCE MNT -o OPTS`), so container engines (mount_program) and mount(8)
(`mount -t fuse.unionrs`, through /sbin/mount.fuse.unionrs) can run it. Without -f it goes to the
background and exits 0 only once the mount is live. Unmount with `umount MNT` or
`fusermount3 -u MNT`; SIGTERM or SIGINT to the daemon unmounts cleanly.";

/// The help's and man page's description of `-o`.
fn options_text() -> String {
    let mut s =
        String::from("MOUNT OPTIONS (-o, comma-separated; `\\,` for a comma in a value):\n");
    for o in MOUNT_OPTIONS.iter().filter(|o| o.action != Ignored) {
        let name = option_name(o);
        let tag = if o.action == Parsed {
            " [accepted, not yet acted on]"
        } else {
            ""
        };
        s += &format!("  {name}\n          {}{tag}\n", o.help);
    }
    s += "\nACCEPTED AND IGNORED (logged at debug level; mount(8), FUSE, kernel overlayfs and\n\
          fuse-overlayfs pass them):\n";
    s += &wrap(&ignored_names().join(", "), 2, 90);
    s += "\n\nAny other option is an error that names it. `remount` is refused by the daemon: \
          mount(8)'s `mount -o remount,ro|rw MNT` goes through mount.fuse.unionrs, which does a \
          kernel-only remount of the live mount.\n";
    s
}

fn option_name(o: &MountOption) -> String {
    match o.value {
        Some(v) => format!("{}={v}", o.key),
        None => o.key.to_string(),
    }
}

fn ignored_names() -> Vec<String> {
    MOUNT_OPTIONS
        .iter()
        .filter(|o| o.action == Ignored)
        .map(|o| match o.value {
            Some(_) if o.key != "x-*" => format!("{}=", o.key),
            _ => o.key.to_string(),
        })
        .collect()
}

/// Greedy word wrap of `text` at `width` columns, every line indented by `indent`.
fn wrap(text: &str, indent: usize, width: usize) -> String {
    let mut lines: Vec<String> = Vec::new();
    let mut line = " ".repeat(indent);
    for word in text.split(' ') {
        if line.trim().is_empty() {
            line += word;
        } else if line.len() + 1 + word.len() > width {
            lines.push(std::mem::replace(&mut line, " ".repeat(indent) + word));
        } else {
            line += " ";
            line += word;
        }
    }
    lines.push(line);
    lines.join("\n")
}

const EXAMPLES: &str = "\
EXAMPLES:
  unionrs -o lowerdir=/lower2:/lower1,upperdir=/upper,workdir=/work /merged
  mount -t fuse.unionrs unionrs /merged -o lowerdir=/lower,upperdir=/upper,workdir=/work
  mount -o remount,ro /merged      (kernel-only remount via mount.fuse.unionrs)
  umount /merged
  /etc/fstab: unionrs /merged fuse.unionrs lowerdir=/lower,upperdir=/upper,workdir=/work,nofail 0 0

See unionrs(1) and docs/mounting.md.";

/// The verbs alone, as clap parses them: `--store DIR` (before the verb or among its
/// options) and one subcommand per verb, from the derive definitions in [`super::Verb`].
pub fn verbs_command() -> Command {
    let cmd = Command::new("unionrs")
        .version(env!("CARGO_PKG_VERSION"))
        .subcommand_required(true)
        .subcommand_help_heading("Image, container and other commands (unionrs help COMMAND)")
        .arg(
            Arg::new("store")
                .long("store")
                .value_name("DIR")
                .global(true)
                .value_parser(clap::value_parser!(std::path::PathBuf))
                .value_hint(ValueHint::DirPath)
                .help("The image store (default: $UNIONRS_STORE, else /var/lib/unionrs as root, else $XDG_DATA_HOME/unionrs)"),
        );
    <super::Verb as clap::Subcommand>::augment_subcommands(cmd)
        .about(ABOUT)
        .long_about(LONG_ABOUT)
}

/// The whole command line as clap describes it: the verbs, and the mount form, which
/// `options::parse_mount_argv` parses (not clap). This feeds --help, the man page and
/// completions.
pub fn command() -> Command {
    verbs_command()
        .subcommand_required(false)
        .override_usage(
            "unionrs [-f] [-d] [-s] -o lowerdir=DIR[:DIR...][,upperdir=DIR,workdir=DIR][,OPTS] MOUNTPOINT\n       \
             unionrs [-f] [-d] [-s] SOURCE MOUNTPOINT -o OPTS\n       \
             unionrs [--store DIR] <COMMAND> [ARGS]",
        )
        .args_conflicts_with_subcommands(true)
        .arg(
            Arg::new("foreground")
                .short('f')
                .action(ArgAction::SetTrue)
                .help("Stay in the foreground (do not daemonize)"),
        )
        .arg(
            Arg::new("debug")
                .short('d')
                .long("debug")
                .action(ArgAction::SetTrue)
                .help("Debug log to stderr; implies -f"),
        )
        .arg(
            Arg::new("single-thread")
                .short('s')
                .action(ArgAction::SetTrue)
                .help("Serve FUSE requests on one thread"),
        )
        .arg(
            Arg::new("options")
                .short('o')
                .value_name("OPTS")
                .action(ArgAction::Append)
                .help("Mount options, comma-separated; may repeat (see MOUNT OPTIONS)"),
        )
        .arg(
            Arg::new("source")
                .value_name("SOURCE")
                .value_hint(ValueHint::Other)
                .help("mount.fuse form: the source shown in /proc/mounts (e.g. \"unionrs\")"),
        )
        .arg(
            Arg::new("mountpoint")
                .value_name("MOUNTPOINT")
                .value_hint(ValueHint::DirPath)
                .help("Where to mount"),
        )
}

/// What a bare `unionrs` prints (to stderr, exit 2).
pub fn short_usage() -> String {
    let mut cmd = command();
    format!(
        "{}\nSee 'unionrs --help'.",
        cmd.render_usage().to_string().trim_end()
    )
}

/// `unionrs --help`: the clap help with the full -o option list.
pub fn print_help() {
    let text = command()
        .after_long_help(format!("{}\n{EXAMPLES}", options_text()))
        .render_long_help();
    // A reader that stops early (`| head`) is no error: the write's result is dropped.
    let _ = if std::io::IsTerminal::is_terminal(&io::stdout()) {
        write!(io::stdout(), "{}", text.ansi())
    } else {
        write!(io::stdout(), "{text}")
    };
}

/// `unionrs completions SHELL`.
pub fn completions(shell: clap_complete::Shell, out: &mut dyn Write) {
    clap_complete::generate(shell, &mut command(), "unionrs", out);
    let _ = match shell {
        clap_complete::Shell::Bash => out.write_all(bash_names().as_bytes()),
        clap_complete::Shell::Fish => out.write_all(fish_names().as_bytes()),
        _ => Ok(()),
    };
}

/// What a verb's first positional names, for completing it from the store: images (IMAGE,
/// and tag's SOURCE) or containers (CONTAINER), as the clap definitions call them.
fn name_kinds() -> (Vec<String>, Vec<String>) {
    let (mut images, mut containers) = (Vec::new(), Vec::new());
    for v in verbs() {
        let first = v
            .get_positionals()
            .next()
            .and_then(|a| a.get_value_names()?.first().map(|n| n.to_string()));
        match first.as_deref() {
            Some(n) if n.starts_with("IMAGE") || n == "SOURCE" => {
                images.push(v.get_name().to_string())
            }
            Some("CONTAINER") => containers.push(v.get_name().to_string()),
            _ => {}
        }
    }
    (images, containers)
}

/// The commands that list names, as completion scripts run them.
const LIST_IMAGES: &str = "images --format '{{.Repository}}:{{.Tag}}'";
const LIST_CONTAINERS: &str = "ps -a --format '{{.Names}}'";

/// Bash: after clap's completion, the first positional of an image or container verb
/// completes to the names in the store (the one `--store` names, if given).
fn bash_names() -> String {
    let (images, containers) = name_kinds();
    // Per verb, the options that take the next word as their value.
    let mut valued = String::new();
    for v in verbs() {
        let mut flags: Vec<String> = Vec::new();
        for a in v
            .get_arguments()
            .filter(|a| a.get_action().takes_values() && !a.is_require_equals_set())
        {
            flags.extend(a.get_long().map(|l| format!("--{l}")));
            flags.extend(
                a.get_all_aliases()
                    .into_iter()
                    .flatten()
                    .map(|l| format!("--{l}")),
            );
            flags.extend(a.get_short().map(|s| format!("-{s}")));
        }
        valued += &format!(
            "        {}) echo \"{}\" ;;\n",
            v.get_name(),
            flags.join(" ")
        );
    }
    format!(
        r#"
# Image and container names from the store, for the verbs that take them.
_unionrs_valued() {{
    case "$1" in
{valued}    esac
}}
_unionrs_names() {{
    _unionrs "$@"
    local cur="${{COMP_WORDS[COMP_CWORD]}}" prev="${{COMP_WORDS[COMP_CWORD-1]}}"
    local i=1 w verb="" positionals=0 store=() valued=""
    while [ "$i" -lt "$COMP_CWORD" ]; do
        w="${{COMP_WORDS[i]}}"
        case "$w" in
            --store) store=(--store "${{COMP_WORDS[i+1]}}"); i=$((i+1)) ;;
            --store=*) store=(--store "${{w#--store=}}") ;;
            -*) [[ "$valued" == *" $w "* ]] && i=$((i+1)) ;;
            *)
                if [ -z "$verb" ]; then
                    verb="$w"
                    valued=" $(_unionrs_valued "$verb") "
                else
                    positionals=$((positionals+1))
                fi
                ;;
        esac
        i=$((i+1))
    done
    [[ "$cur" == -* || "$positionals" -gt 0 || "$valued" == *" $prev "* ]] && return
    local names
    case "$verb" in
        {images}) names=$(unionrs "${{store[@]}}" {list_images} 2>/dev/null | grep -v '<none>') ;;
        {containers}) names=$(unionrs "${{store[@]}}" {list_containers} 2>/dev/null) ;;
        *) return ;;
    esac
    COMPREPLY=($(compgen -W "$names" -- "$cur"))
}}
complete -F _unionrs_names -o bashdefault -o default unionrs
"#,
        images = images.join("|"),
        containers = containers.join("|"),
        list_images = LIST_IMAGES,
        list_containers = LIST_CONTAINERS,
    )
}

/// Fish: the same names for the same verbs (from the default store).
fn fish_names() -> String {
    let (images, containers) = name_kinds();
    format!(
        "\n# Image and container names from the store, for the verbs that take them.\n\
         complete -c unionrs -n \"__fish_seen_subcommand_from {}\" -f -a \"(unionrs {} 2>/dev/null | string match -v '*<none>*')\"\n\
         complete -c unionrs -n \"__fish_seen_subcommand_from {}\" -f -a \"(unionrs {} 2>/dev/null)\"\n",
        images.join(" "),
        LIST_IMAGES,
        containers.join(" "),
        LIST_CONTAINERS,
    )
}

/// Escapes text for a roff line: backslashes, hyphens, and a leading `.` or `'`.
fn roff(text: &str) -> String {
    let s = text.replace('\\', "\\e").replace('-', "\\-");
    if s.starts_with('.') || s.starts_with('\'') {
        format!("\\&{s}")
    } else {
        s
    }
}

/// The man page, unionrs(1).
pub fn man_page(w: &mut dyn Write) -> io::Result<()> {
    let man = clap_mangen::Man::new(command())
        .date("")
        .source(format!("unionrs {}", env!("CARGO_PKG_VERSION")));
    man.render_title(w)?;
    man.render_name_section(w)?;
    man.render_synopsis_section(w)?;
    man.render_description_section(w)?;
    man.render_options_section(w)?;
    man.render_subcommands_section(w)?;

    writeln!(w, ".SH \"MOUNT OPTIONS\"")?;
    writeln!(
        w,
        "Given with \\fB\\-o\\fR, comma\\-separated (\\fB\\e,\\fR for a comma in a value). \
         Any option not listed here is an error that names it."
    )?;
    for o in MOUNT_OPTIONS.iter().filter(|o| o.action != Ignored) {
        writeln!(w, ".TP")?;
        match o.value {
            Some(v) => writeln!(w, "\\fB{}\\fR=\\fI{}\\fR", roff(o.key), roff(v))?,
            None => writeln!(w, "\\fB{}\\fR", roff(o.key))?,
        }
        let tag = if o.action == Parsed {
            " (Accepted, not yet acted on.)"
        } else {
            ""
        };
        writeln!(w, "{}{}", roff(o.help), tag)?;
    }
    writeln!(w, ".SS \"Accepted and ignored\"")?;
    writeln!(
        w,
        "Options of the mount(8), FUSE, kernel overlayfs and fuse\\-overlayfs vocabularies that \
         unionrs does not act on are accepted and logged at debug level, because container \
         engines and mount(8) pass them:"
    )?;
    writeln!(w, ".PP")?;
    writeln!(w, "{}", roff(&ignored_names().join(", ")))?;

    writeln!(w, ".SH \"MOUNT(8), FSTAB AND REMOUNT\"")?;
    writeln!(
        w,
        "\\fBmount \\-t fuse.unionrs\\fR runs \\fB/sbin/mount.fuse.unionrs\\fR, which starts \
         unionrs with the mount.fuse form. The mount shows as fstype \\fBfuse.unionrs\\fR. \
         An /etc/fstab line:"
    )?;
    writeln!(w, ".PP")?;
    writeln!(w, ".nf")?;
    writeln!(
        w,
        "{}",
        roff(
            "unionrs /merged fuse.unionrs lowerdir=/lower,upperdir=/upper,workdir=/work,nofail 0 0"
        )
    )?;
    writeln!(w, ".fi")?;
    writeln!(w, ".PP")?;
    writeln!(
        w,
        "\\fBmount \\-o remount,ro MNT\\fR (or \\fBrw\\fR) does not start a second daemon: \
         the helper turns it into a kernel\\-only remount (\\fBmount \\-i \\-o remount,ro MNT\\fR) \
         of the live mount; writes then fail with EROFS. Layer options cannot change on a live \
         mount: unmount and mount again."
    )?;

    writeln!(w, ".SH EXAMPLES")?;
    writeln!(w, ".nf")?;
    for line in EXAMPLES.lines().skip(1).take_while(|l| !l.is_empty()) {
        writeln!(w, "{}", roff(line.trim_start()))?;
    }
    writeln!(w, ".fi")?;
    writeln!(w, ".SH \"SEE ALSO\"")?;
    writeln!(
        w,
        "mount(8), fstab(5), systemd.mount(5), fusermount3(1), fuse\\-overlayfs(1)"
    )?;
    man.render_version_section(w)?;
    Ok(())
}

/// The verbs a user can call, as clap sees them once built (with `--store` and `--help`):
/// every subcommand but the hidden ones and `help`.
pub fn verbs() -> Vec<Command> {
    let mut cmd = command();
    cmd.build();
    cmd.get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
        .cloned()
        .collect()
}

/// A verb's exit statuses, for its man page.
fn exit_status(verb: &str) -> &'static str {
    match verb {
        "run" => {
            "The command's own status (128+N if it died of signal N); 125 when unionrs fails \
             or the command line is wrong, 126 when the command cannot be executed, 127 when \
             it is not found (docker's numbers)."
        }
        "check" => {
            "0 when the upper is clean (or everything found was repaired), 1 when something \
             was found, 2 on a usage or I/O error."
        }
        _ => "0 on success, 1 when the command failed, 2 on a usage error.",
    }
}

/// Every man page: unionrs.1 and one per verb (unionrs-pull.1, ...), by file name.
pub fn man_pages() -> io::Result<Vec<(String, Vec<u8>)>> {
    let mut page = Vec::new();
    man_page(&mut page)?;
    let mut pages = vec![("unionrs.1".to_string(), page)];
    for sub in verbs() {
        // clap names are &'static str without its "string" feature; this runs once per page.
        let name: &'static str = format!("unionrs-{}", sub.get_name()).leak();
        let verb = sub.get_name().to_string();
        let man = clap_mangen::Man::new(sub.name(name))
            .date("")
            .source(format!("unionrs {}", env!("CARGO_PKG_VERSION")));
        let mut page = Vec::new();
        let w: &mut dyn Write = &mut page;
        man.render_title(w)?;
        man.render_name_section(w)?;
        man.render_synopsis_section(w)?;
        man.render_description_section(w)?;
        man.render_options_section(w)?;
        writeln!(w, ".SH \"EXIT STATUS\"")?;
        writeln!(w, "{}", roff(exit_status(&verb)))?;
        writeln!(w, ".SH \"SEE ALSO\"")?;
        writeln!(w, "unionrs(1), \\fBunionrs {verb} \\-\\-help\\fR")?;
        pages.push((format!("{name}.1"), page));
    }
    Ok(pages)
}

/// `unionrs generate-man DIR`: writes every page of [`man_pages`] into DIR.
pub fn generate_man(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, page) in man_pages()? {
        std::fs::write(dir.join(name), page)?;
    }
    Ok(())
}

/// The README's list of verbs: each one's usage line and what it does.
pub fn readme_verbs() -> String {
    let mut s = String::from("```text\n");
    for mut sub in verbs() {
        let usage = sub.render_usage().to_string();
        let usage = usage.trim().trim_start_matches("Usage: ");
        let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
        s += &format!("{usage}\n    {about}\n");
    }
    s += "```\n";
    s
}

fn peer_cell(p: Peer) -> &'static str {
    match p {
        Own => "yes",
        Libfuse => "libfuse",
        Mount8 => "mount(8)",
        Peer::No => "—",
    }
}

/// The option table of docs/mounting.md.
pub fn markdown_table() -> String {
    let mut s = String::from(
        "| option | unionrs | fuse-overlayfs | kernel overlayfs | what unionrs does |\n\
         | --- | --- | --- | --- | --- |\n",
    );
    for o in MOUNT_OPTIONS {
        let action = match o.action {
            Acted => "acted on",
            Parsed => "parsed, not yet acted on",
            Ignored => "accepted, ignored",
        };
        let name = option_name(o).replace('|', "\\|");
        let help = o.help.replace('|', "\\|");
        s += &format!(
            "| `{name}` | {action} | {} | {} | {help} |\n",
            peer_cell(o.fuse_overlayfs),
            if o.kernel { "yes" } else { "—" },
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::options::{IGNORED_FLAGS, IGNORED_VALUED, parse_mount_argv};
    use std::ffi::OsString;

    fn sample(o: &MountOption) -> String {
        let key = match o.key {
            "x-*" => return "x-systemd.automount".into(),
            "upperdir" | "workdir" => return "upperdir=u,workdir=w".into(),
            key => key,
        };
        let value = match o.value {
            None => return key.to_string(),
            Some(v) if v.starts_with("IN:") => "0:1000:1",
            Some("0|1") | Some("0|1|2") => "1",
            Some(v) if v.contains('|') => v.split(['|', '[']).next().unwrap(),
            Some("UID" | "GID" | "N" | "SECS" | "MODE") => "7",
            Some(_) => "v",
        };
        format!("{key}={value}")
    }

    #[test]
    fn every_documented_option_parses_with_its_documented_action() {
        for o in MOUNT_OPTIONS {
            let s = sample(o);
            let argv: Vec<OsString> = ["-o", &format!("lowerdir=l,{s}"), "/mnt"]
                .into_iter()
                .map(OsString::from)
                .collect();
            let args = parse_mount_argv(&argv)
                .unwrap_or_else(|e| panic!("documented option {s:?} does not parse: {e}"));
            let ignored = args.opts.ignored.contains(&s);
            assert_eq!(
                ignored,
                o.action == Ignored,
                "{s:?}: documented as {:?}, parser ignored it: {ignored}",
                o.action
            );
        }
    }

    #[test]
    fn every_ignored_option_is_documented() {
        for key in IGNORED_FLAGS.iter().chain(IGNORED_VALUED) {
            let doc = MOUNT_OPTIONS.iter().find(|o| o.key == *key);
            let doc = doc.unwrap_or_else(|| panic!("ignored option {key:?} is not documented"));
            assert_eq!(doc.action, Ignored, "{key}");
            assert_eq!(
                doc.value.is_some(),
                IGNORED_VALUED.contains(key),
                "{key}: flag/valued mismatch"
            );
        }
        let documented = MOUNT_OPTIONS.iter().filter(|o| o.action == Ignored).count();
        // x-* is the one documented pattern that is not in the two lists.
        assert_eq!(documented, IGNORED_FLAGS.len() + IGNORED_VALUED.len() + 1);
    }

    #[test]
    fn keys_are_unique() {
        let mut keys: Vec<&str> = MOUNT_OPTIONS.iter().map(|o| o.key).collect();
        keys.sort();
        let n = keys.len();
        keys.dedup();
        assert_eq!(keys.len(), n, "an option is documented twice");
    }

    /// docs/mounting.md carries the table this module renders, between two markers.
    /// `UNIONRS_UPDATE_DOCS=1 cargo test` rewrites it.
    #[test]
    fn docs_table_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/mounting.md");
        let doc = std::fs::read_to_string(path).expect("docs/mounting.md");
        let (begin, end) = (
            "<!-- options-table:begin -->\n",
            "<!-- options-table:end -->",
        );
        let start = doc.find(begin).expect("begin marker") + begin.len();
        let stop = doc.find(end).expect("end marker");
        let want = markdown_table();
        if doc[start..stop] != want {
            if std::env::var_os("UNIONRS_UPDATE_DOCS").is_some() {
                let new = format!("{}{want}{}", &doc[..start], &doc[stop..]);
                std::fs::write(path, new).unwrap();
            } else {
                panic!(
                    "docs/mounting.md's option table is stale: run UNIONRS_UPDATE_DOCS=1 cargo test docs_table"
                );
            }
        }
    }

    #[test]
    fn help_lists_every_acted_option() {
        let text = options_text();
        for o in MOUNT_OPTIONS {
            assert!(text.contains(o.key), "--help lacks {}", o.key);
        }
        command().debug_assert();
    }

    /// The README carries the verb list this module renders, between two markers.
    /// `UNIONRS_UPDATE_DOCS=1 cargo test` rewrites it.
    #[test]
    fn readme_verbs_are_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
        let doc = std::fs::read_to_string(path).expect("README.md");
        let (begin, end) = ("<!-- verbs:begin -->\n", "<!-- verbs:end -->");
        let start = doc.find(begin).expect("begin marker") + begin.len();
        let stop = doc.find(end).expect("end marker");
        let want = readme_verbs();
        if doc[start..stop] != want {
            if std::env::var_os("UNIONRS_UPDATE_DOCS").is_some() {
                let new = format!("{}{want}{}", &doc[..start], &doc[stop..]);
                std::fs::write(path, new).unwrap();
            } else {
                panic!(
                    "README.md's verb list is stale: run UNIONRS_UPDATE_DOCS=1 cargo test readme_verbs"
                );
            }
        }
    }

    #[test]
    fn every_verb_has_a_man_page_and_the_main_page_lists_it() {
        let pages = man_pages().unwrap();
        let main = String::from_utf8(pages[0].1.clone()).unwrap();
        for v in verbs() {
            let name = format!("unionrs-{}.1", v.get_name());
            let (_, page) = pages
                .iter()
                .find(|(n, _)| *n == name)
                .unwrap_or_else(|| panic!("no {name}"));
            let page = String::from_utf8_lossy(page);
            assert!(page.contains("EXIT STATUS"), "{name}");
            assert!(
                main.contains(&format!(
                    "unionrs\\-{}(1)",
                    v.get_name().replace('-', "\\-")
                )),
                "unionrs.1 does not list {}",
                v.get_name()
            );
        }
    }

    #[test]
    fn man_page_renders() {
        let mut page = Vec::new();
        man_page(&mut page).unwrap();
        let page = String::from_utf8(page).unwrap();
        assert!(
            page.starts_with(".ie") || page.contains(".TH unionrs 1"),
            "{page}"
        );
        assert!(page.contains("squash_to_uid"));
        assert!(page.contains("MOUNT OPTIONS"));
    }
}
