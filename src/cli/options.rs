//! Mount command line: the fuse-overlayfs / mount.fuse compatible argv and its `-o` options.
//!
//! Parsing is purely textual; `validate` (the sibling module) checks the filesystem.
//! Paths are kept as bytes (`OsString`) from argv to `PathBuf`: layer paths need not be UTF-8.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

/// Kernel overlayfs' limit on lower layers; we keep the same so stacks move between the two.
pub const MAX_LOWERDIRS: usize = 500;

/// A bad command line or a bad mount, as one line that says what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionError(String);

impl OptionError {
    /// Control characters (a newline in an option value) become `?`: the message stays one line.
    pub fn new(message: impl Into<String>) -> Self {
        OptionError(message.into().replace(|c: char| c.is_control(), "?"))
    }
}

impl fmt::Display for OptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for OptionError {}

/// One `uidmapping=`/`gidmapping=` triple: ids `inside..inside+count` are stored on disk as
/// `outside..outside+count` (the order of /proc/self/uid_map).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMapping {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

/// What the mount command line asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct MountArgs {
    pub foreground: bool,
    pub debug: bool,
    pub single_thread: bool,
    /// mount.fuse form only: the SOURCE that mount(8) shows (e.g. in /proc/mounts).
    pub source: Option<String>,
    pub mountpoint: PathBuf,
    pub opts: MountOptions,
}

/// The `-o` options. `Option<bool>` fields are `None` when the user said nothing, so the
/// caller can apply its own default (e.g. default_permissions follows allow_other).
#[derive(Debug, Clone, PartialEq)]
pub struct MountOptions {
    /// In option order: the first is the top lower layer.
    pub lowerdirs: Vec<PathBuf>,
    pub upperdir: Option<PathBuf>,
    pub workdir: Option<PathBuf>,
    /// `ro`, or forced because there is no upperdir.
    pub read_only: bool,
    pub allow_other: Option<bool>,
    pub default_permissions: Option<bool>,
    pub suid: Option<bool>,
    pub dev: Option<bool>,
    pub exec: Option<bool>,
    pub noatime: bool,
    /// `strictatime`: every read updates the atime; beats `noatime`, as in the kernel.
    pub strictatime: bool,
    /// `nodiratime`: listing a directory leaves its atime alone.
    pub nodiratime: bool,
    /// The VFS `lazytime` flag (later `nolazytime` turns it off).
    pub lazytime: bool,
    pub uid_mappings: Vec<IdMapping>,
    pub gid_mappings: Vec<IdMapping>,
    pub squash_to_root: bool,
    pub squash_to_uid: Option<u32>,
    pub squash_to_gid: Option<u32>,
    pub noacl: bool,
    pub volatile: bool,
    /// `fsync=0` turns fsync into a no-op (fuse-overlayfs); on by default.
    pub fsync: bool,
    pub xattr_permissions: Option<u8>,
    /// `metacopy=on`: chmod, chown, utimes and xattr changes of a lower file copy up its
    /// metadata only (kernel overlayfs format); off by default, as on the kernel.
    pub metacopy: bool,
    /// `io_uring=on` (the default): FUSE over io_uring when the kernel offers it at INIT
    /// (FUSE_OVER_IO_URING), else /dev/fuse; `off`: always /dev/fuse.
    pub io_uring: Option<bool>,
    /// `queue_sched=idle` (the default): io_uring queue threads wait for requests at
    /// SCHED_IDLE, so a woken caller stays on its CPU; `normal`: SCHED_OTHER throughout.
    pub queue_sched_idle: bool,
    pub context: Option<String>,
    pub fsname: Option<String>,
    pub subtype: Option<String>,
    /// Accepted but not acted on, as written (e.g. `x-systemd.automount`, `redirect_dir=on`):
    /// container engines and mount(8) pass them, so they must not fail the mount.
    pub ignored: Vec<String>,
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            lowerdirs: Vec::new(),
            upperdir: None,
            workdir: None,
            read_only: false,
            allow_other: None,
            default_permissions: None,
            suid: None,
            dev: None,
            exec: None,
            noatime: false,
            strictatime: false,
            nodiratime: false,
            lazytime: false,
            uid_mappings: Vec::new(),
            gid_mappings: Vec::new(),
            squash_to_root: false,
            squash_to_uid: None,
            squash_to_gid: None,
            noacl: false,
            volatile: false,
            fsync: true,
            xattr_permissions: None,
            metacopy: false,
            io_uring: None,
            queue_sched_idle: true,
            context: None,
            fsname: None,
            subtype: None,
            ignored: Vec::new(),
        }
    }
}

/// Flags (no `=value`) of the mount(8), FUSE, kernel overlayfs and fuse-overlayfs
/// vocabularies that we accept without acting on them.
#[rustfmt::skip]
pub(crate) const IGNORED_FLAGS: &[&str] = &[
    // mount(8)
    "auto", "noauto", "user", "nouser", "users", "owner", "group", "_netdev", "nofail",
    "defaults", "async", "sync", "dirsync", "mand", "nomand", "relatime", "norelatime",
    "silent", "loud", "iversion", "noiversion",
    // FUSE (libfuse mount and low-level options)
    "kernel_cache", "auto_cache", "noauto_cache", "direct_io", "use_ino", "readdir_ino",
    "hard_remove", "nonempty", "auto_unmount", "large_read", "splice_read", "splice_write",
    "splice_move", "no_splice_read", "no_splice_write", "no_splice_move", "clone_fd",
    "async_read", "sync_read", "atomic_o_trunc", "big_writes", "writeback_cache",
    "no_writeback_cache", "intr", "nopath",
    // kernel overlayfs, fuse-overlayfs
    "userxattr", "static_nlink",
];

/// `key=value` options of the same vocabularies that we accept without acting on them.
#[rustfmt::skip]
pub(crate) const IGNORED_VALUED: &[&str] = &[
    // mount(8), SELinux
    "comment", "fscontext", "defcontext", "rootcontext",
    // FUSE
    "max_read", "max_write", "max_background", "congestion_threshold", "blksize",
    "entry_timeout", "attr_timeout", "negative_timeout", "ac_attr_timeout", "umask", "uid", "gid",
    "fd", "rootmode", "user_id", "group_id", "max_idle_threads", "max_threads", "intr_signal",
    "remember",
    // kernel overlayfs features that our union core decides for itself
    "redirect_dir", "index", "xino", "nfs_export", "uuid", "verity",
    // fuse-overlayfs tuning
    "timeout", "threaded", "plugins", "fast_ino", "writeback", "noxattrs",
];

const USAGE: &str = "usage: unionrs [-f] [-d] -o lowerdir=DIR[:DIR...][,upperdir=DIR,workdir=DIR] \
                     MOUNTPOINT, or unionrs SOURCE MOUNTPOINT -o OPTIONS";

/// Parses a mount command line (without argv[0]) in either accepted form:
/// `[-f] [-d] [-s] -o OPTS [-o OPTS...] MNT` (fuse-overlayfs) or `SOURCE MNT -o OPTS`
/// (mount.fuse3). Flags and `-o` may come anywhere; `--` ends the flags.
pub fn parse_mount_argv(args: &[OsString]) -> Result<MountArgs, OptionError> {
    let mut option_strings: Vec<&[u8]> = Vec::new();
    let mut positionals: Vec<&OsStr> = Vec::new();
    let mut parser = OptionParser::default();
    let mut only_positionals = false;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let bytes = arg.as_bytes();
        if only_positionals || bytes.len() < 2 || bytes[0] != b'-' {
            positionals.push(arg);
            continue;
        }
        match bytes {
            b"--" => only_positionals = true,
            b"-o" => match args.next() {
                Some(opts) => option_strings.push(opts.as_bytes()),
                None => return Err(OptionError::new("-o needs a value: -o OPTION[,OPTION...]")),
            },
            b"--debug" => parser.set_debug(),
            _ if bytes.starts_with(b"-o") => option_strings.push(&bytes[2..]),
            // Short flags may be clustered (`-fd`), as getopt allows.
            _ if bytes[1..].iter().all(|c| b"fds".contains(c)) => {
                for flag in &bytes[1..] {
                    match flag {
                        b'f' => parser.foreground = true,
                        b'd' => parser.set_debug(),
                        _ => parser.single_thread = true,
                    }
                }
            }
            _ => {
                let flag = arg.to_string_lossy();
                return Err(OptionError::new(format!(
                    "unknown flag \"{flag}\"; {USAGE}"
                )));
            }
        }
    }

    let (source, mountpoint) = match positionals.as_slice() {
        [] => return Err(OptionError::new(format!("no mountpoint given; {USAGE}"))),
        [mnt] => (None, *mnt),
        [src, mnt] => (Some(src.to_string_lossy().into_owned()), *mnt),
        more => {
            return Err(OptionError::new(format!(
                "too many arguments ({} positional, at most SOURCE and MOUNTPOINT); {USAGE}",
                more.len()
            )));
        }
    };

    for opts in option_strings {
        for item in split_unescaped(opts, b',') {
            // `,,` and trailing commas: containers/storage sometimes adds an empty option.
            if !item.is_empty() {
                parser.apply(item)?;
            }
        }
    }
    let OptionParser {
        foreground,
        debug,
        single_thread,
        opts,
    } = parser;
    Ok(MountArgs {
        foreground,
        debug,
        single_thread,
        source,
        mountpoint: PathBuf::from(mountpoint),
        opts: finish(opts)?,
    })
}

#[derive(Default)]
struct OptionParser {
    foreground: bool,
    debug: bool,
    single_thread: bool,
    opts: MountOptions,
}

impl OptionParser {
    /// libfuse makes `-d` and `-o debug` imply `-f`: debug output goes to the terminal.
    fn set_debug(&mut self) {
        self.debug = true;
        self.foreground = true;
    }

    /// Applies one raw option (`key` or `key=value`, escapes still in place).
    fn apply(&mut self, item: &[u8]) -> Result<(), OptionError> {
        let (key, value) = match item.iter().position(|&c| c == b'=') {
            Some(eq) => (&item[..eq], Some(&item[eq + 1..])),
            None => (item, None),
        };
        let shown = || String::from_utf8_lossy(item).into_owned();
        let Ok(key) = std::str::from_utf8(key) else {
            return Err(OptionError::new(format!(
                "unknown mount option \"{}\"",
                shown()
            )));
        };
        let val = || {
            value.ok_or_else(|| {
                OptionError::new(format!("mount option \"{key}\" needs a value: {key}=..."))
            })
        };
        let flag = || match value {
            Some(_) => Err(OptionError::new(format!(
                "mount option \"{key}\" takes no value (got \"{}\")",
                shown()
            ))),
            None => Ok(true),
        };
        let o = &mut self.opts;
        match key {
            // Like fuse-overlayfs (last one wins); `lowerdir+=` is the kernel's append form.
            "lowerdir" => o.lowerdirs = parse_lowerdirs(val()?)?,
            "lowerdir+" => o.lowerdirs.extend(parse_lowerdirs(val()?)?),
            "upperdir" => o.upperdir = Some(path_value(key, val()?)?),
            "workdir" => o.workdir = Some(path_value(key, val()?)?),
            "ro" => o.read_only = flag()?,
            // mount(8) semantics: the later of ro/rw wins.
            "rw" => o.read_only = !flag()?,
            "allow_other" | "allow_root" => o.allow_other = Some(flag()?),
            "noallow_other" => o.allow_other = Some(!flag()?),
            "default_permissions" => o.default_permissions = Some(flag()?),
            "nodefault_permissions" => o.default_permissions = Some(!flag()?),
            "suid" => o.suid = Some(flag()?),
            "nosuid" => o.suid = Some(!flag()?),
            "dev" => o.dev = Some(flag()?),
            "nodev" => o.dev = Some(!flag()?),
            "exec" => o.exec = Some(flag()?),
            "noexec" => o.exec = Some(!flag()?),
            "noatime" => o.noatime = flag()?,
            "atime" => o.noatime = !flag()?,
            "strictatime" => o.strictatime = flag()?,
            "nostrictatime" => o.strictatime = !flag()?,
            "nodiratime" => o.nodiratime = flag()?,
            "diratime" => o.nodiratime = !flag()?,
            "lazytime" => o.lazytime = flag()?,
            "nolazytime" => o.lazytime = !flag()?,
            // Repeats add ranges, so `uidmapping=A,uidmapping=B` means both.
            "uidmapping" => o.uid_mappings.extend(parse_mappings(key, val()?)?),
            "gidmapping" => o.gid_mappings.extend(parse_mappings(key, val()?)?),
            "squash_to_root" => o.squash_to_root = flag()?,
            "squash_to_uid" => o.squash_to_uid = Some(parse_number(key, val()?)?),
            "squash_to_gid" => o.squash_to_gid = Some(parse_number(key, val()?)?),
            "noacl" => o.noacl = flag()?,
            "volatile" => o.volatile = flag()?,
            "fsync" => {
                o.fsync = match val()? {
                    b"0" => false,
                    b"1" => true,
                    _ => {
                        return Err(OptionError::new(format!(
                            "bad {}: use fsync=0 or fsync=1",
                            shown()
                        )));
                    }
                }
            }
            "xattr_permissions" => {
                o.xattr_permissions = Some(match val()? {
                    b"0" => 0,
                    b"1" => 1,
                    b"2" => 2,
                    _ => {
                        return Err(OptionError::new(format!(
                            "bad {}: use xattr_permissions=0, 1 or 2",
                            shown()
                        )));
                    }
                })
            }
            "metacopy" => {
                o.metacopy = match val()? {
                    b"on" => true,
                    b"off" => false,
                    _ => {
                        return Err(OptionError::new(format!(
                            "bad {}: use metacopy=on or metacopy=off",
                            shown()
                        )));
                    }
                }
            }
            "io_uring" => {
                o.io_uring = Some(match val()? {
                    b"on" => true,
                    b"off" => false,
                    _ => {
                        return Err(OptionError::new(format!(
                            "bad {}: use io_uring=on or io_uring=off",
                            shown()
                        )));
                    }
                })
            }
            "queue_sched" => {
                o.queue_sched_idle = match val()? {
                    b"idle" => true,
                    b"normal" => false,
                    _ => {
                        return Err(OptionError::new(format!(
                            "bad {}: use queue_sched=idle or queue_sched=normal",
                            shown()
                        )));
                    }
                }
            }
            "context" => o.context = Some(unquote(string_value(val()?))),
            "fsname" => o.fsname = Some(string_value(val()?)),
            "subtype" => o.subtype = Some(string_value(val()?)),
            "debug" => {
                flag()?;
                self.set_debug();
            }
            "remount" => {
                return Err(OptionError::new(
                    "remount is not supported by the daemon: unmount and mount again, or use `mount -i -o remount,...` for a kernel-only remount",
                ));
            }
            _ if IGNORED_FLAGS.contains(&key) => {
                flag()?;
                o.ignored.push(shown());
            }
            _ if IGNORED_VALUED.contains(&key) => {
                val()?;
                o.ignored.push(shown());
            }
            // mount(8) and systemd keep their own `x-*` options; they may or may not have values.
            _ if key.starts_with("x-") => o.ignored.push(shown()),
            _ => {
                return Err(OptionError::new(format!(
                    "unknown mount option \"{}\"",
                    shown()
                )));
            }
        }
        Ok(())
    }
}

/// Whole-command checks that need every option seen.
fn finish(mut opts: MountOptions) -> Result<MountOptions, OptionError> {
    if opts.lowerdirs.is_empty() {
        return Err(OptionError::new(
            "lowerdir= is required: -o lowerdir=DIR[:DIR...] (first = top layer)",
        ));
    }
    if opts.lowerdirs.len() > MAX_LOWERDIRS {
        return Err(OptionError::new(format!(
            "too many lower layers ({}): at most {MAX_LOWERDIRS} are supported",
            opts.lowerdirs.len()
        )));
    }
    match (&opts.upperdir, &opts.workdir) {
        (Some(_), None) => {
            return Err(OptionError::new(
                "upperdir= needs workdir= too: an empty directory on the same filesystem as upperdir",
            ));
        }
        (None, Some(_)) => {
            return Err(OptionError::new(
                "workdir= needs upperdir= too (without upperdir the mount is read-only and needs no workdir)",
            ));
        }
        (None, None) => opts.read_only = true,
        (Some(_), Some(_)) => {}
    }
    Ok(opts)
}

/// `lowerdir=A:B:C`, with `\:` for a colon inside a path.
fn parse_lowerdirs(value: &[u8]) -> Result<Vec<PathBuf>, OptionError> {
    split_unescaped(value, b':')
        .into_iter()
        .enumerate()
        .map(|(i, part)| {
            if part.is_empty() {
                Err(OptionError::new(format!(
                    "lowerdir= has an empty path (layer {}): remove the stray ':' or write a colon in a path as \\:",
                    i + 1
                )))
            } else {
                Ok(PathBuf::from(OsString::from_vec(unescape(part))))
            }
        })
        .collect()
}

fn path_value(key: &str, value: &[u8]) -> Result<PathBuf, OptionError> {
    if value.is_empty() {
        return Err(OptionError::new(format!("{key}= has an empty path")));
    }
    Ok(PathBuf::from(OsString::from_vec(unescape(value))))
}

/// `"TEXT"` -> `TEXT`: mount(8)'s quoting of a value that holds commas.
fn unquote(text: String) -> String {
    match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(inner) => inner.to_string(),
        None => text,
    }
}

fn string_value(value: &[u8]) -> String {
    String::from_utf8_lossy(&unescape(value)).into_owned()
}

fn parse_number(key: &str, value: &[u8]) -> Result<u32, OptionError> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            OptionError::new(format!(
                "bad number in {key}={}: use a whole number from 0 to {}",
                String::from_utf8_lossy(value),
                u32::MAX
            ))
        })
}

/// fuse-overlayfs syntax: `INSIDE:OUTSIDE:COUNT` triples joined by ':' (fuse-overlayfs 1.x
/// splits on ':' only, so we do too). Empty fields are skipped as fuse-overlayfs does:
/// containers/storage writes a ':' before every triple (`uidmapping=:0:100000:65536`).
fn parse_mappings(key: &str, value: &[u8]) -> Result<Vec<IdMapping>, OptionError> {
    let bad = || {
        OptionError::new(format!(
            "bad {key}={}: use INSIDE:OUTSIDE:COUNT triples joined by ':', e.g. {key}=0:1000:1:1:100000:65536",
            String::from_utf8_lossy(value)
        ))
    };
    let text = std::str::from_utf8(value).map_err(|_| bad())?;
    let fields: Vec<&str> = text.split(':').filter(|f| !f.is_empty()).collect();
    if fields.is_empty() || !fields.len().is_multiple_of(3) {
        return Err(bad());
    }
    let number = |s: &str| s.parse::<u32>().map_err(|_| bad());
    fields
        .chunks(3)
        .map(|triple| {
            let mapping = IdMapping {
                inside: number(triple[0])?,
                outside: number(triple[1])?,
                count: number(triple[2])?,
            };
            // An empty or 32-bit-overflowing range is a typo, not a mapping.
            let fits = |start: u32| u64::from(start) + u64::from(mapping.count) <= 1 << 32;
            if mapping.count == 0 || !fits(mapping.inside) || !fits(mapping.outside) {
                return Err(bad());
            }
            Ok(mapping)
        })
        .collect()
}

/// Splits at `sep` unless it is backslash-escaped or inside double quotes (mount(8) and
/// containers/storage quote SELinux contexts, which hold commas: `context="...:c1,c2"`).
/// Escapes and quotes stay in the pieces, so a later split (`,` then `:` for lowerdir) still
/// sees them; `unescape` and `unquote` remove them at the end.
fn split_unescaped(s: &[u8], sep: u8) -> Vec<&[u8]> {
    let mut pieces = Vec::new();
    let (mut start, mut i) = (0, 0);
    let mut quoted = false;
    while i < s.len() {
        if s[i] == b'\\' {
            i += 2;
        } else {
            if s[i] == b'"' && sep == b',' {
                quoted = !quoted;
            }
            if s[i] == sep && !quoted {
                pieces.push(&s[start..i]);
                start = i + 1;
            }
            i += 1;
        }
    }
    pieces.push(&s[start..]);
    pieces
}

/// `\X` -> `X` for any X (as the kernel's overlayfs does); a trailing lone `\` is kept.
fn unescape(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.iter();
    while let Some(&c) = bytes.next() {
        if c == b'\\' {
            out.push(*bytes.next().unwrap_or(&b'\\'));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    /// Splits a test command line at spaces (no test path contains one).
    fn parse(args: &str) -> Result<MountArgs, OptionError> {
        let argv: Vec<OsString> = args.split_whitespace().map(OsString::from).collect();
        parse_mount_argv(&argv)
    }

    fn paths(ps: &[&str]) -> Vec<PathBuf> {
        ps.iter().map(PathBuf::from).collect()
    }

    fn map(inside: u32, outside: u32, count: u32) -> IdMapping {
        IdMapping {
            inside,
            outside,
            count,
        }
    }

    /// What `-o lowerdir=l,upperdir=u,workdir=w /mnt` parses to; cases edit this.
    fn base() -> MountArgs {
        MountArgs {
            foreground: false,
            debug: false,
            single_thread: false,
            source: None,
            mountpoint: PathBuf::from("/mnt"),
            opts: MountOptions {
                lowerdirs: paths(&["l"]),
                upperdir: Some(PathBuf::from("u")),
                workdir: Some(PathBuf::from("w")),
                ..MountOptions::default()
            },
        }
    }

    type Edit = fn(&mut MountArgs);

    #[rustfmt::skip]
    const ACCEPTED: &[(&str, &str, Edit)] = &[
        ("fuse-overlayfs form", "-o lowerdir=l,upperdir=u,workdir=w /mnt", |_| {}),
        ("glued -o", "-olowerdir=l,upperdir=u,workdir=w /mnt", |_| {}),
        ("several -o", "-o lowerdir=l -oupperdir=u -o workdir=w /mnt", |_| {}),
        ("-f -d -s", "-f -d -s -o lowerdir=l,upperdir=u,workdir=w /mnt", |a| {
            a.foreground = true; a.debug = true; a.single_thread = true;
        }),
        ("clustered flags", "-fs -o lowerdir=l,upperdir=u,workdir=w /mnt", |a| {
            a.foreground = true; a.single_thread = true;
        }),
        ("--debug implies -f", "--debug -o lowerdir=l,upperdir=u,workdir=w /mnt", |a| {
            a.foreground = true; a.debug = true;
        }),
        ("-o debug implies -f", "-o debug -o lowerdir=l,upperdir=u,workdir=w /mnt", |a| {
            a.foreground = true; a.debug = true;
        }),
        ("containers/storage: empty options, volatile", "-o lowerdir=l,upperdir=u,,workdir=w,volatile, /mnt", |a| {
            a.opts.volatile = true;
        }),
        ("mount.fuse3 form, -o last", "src /mnt -o rw,lowerdir=l,upperdir=u,workdir=w,dev,suid", |a| {
            a.source = Some("src".into()); a.opts.dev = Some(true); a.opts.suid = Some(true);
        }),
        ("-- ends flags", "-o lowerdir=l,upperdir=u,workdir=w -- -src /mnt", |a| {
            a.source = Some("-src".into());
        }),
        ("lowerdir only => read-only", "-o lowerdir=a:b:c /mnt", |a| {
            a.opts.lowerdirs = paths(&["a", "b", "c"]);
            a.opts.upperdir = None; a.opts.workdir = None; a.opts.read_only = true;
        }),
        ("ro", "-o ro,lowerdir=l,upperdir=u,workdir=w /mnt", |a| a.opts.read_only = true),
        ("later rw beats ro", "-o ro,rw,lowerdir=l,upperdir=u,workdir=w /mnt", |_| {}),
        ("lowerdir= last wins, lowerdir+= appends", "-o lowerdir=x,lowerdir=a,lowerdir+=b:c,upperdir=u,workdir=w /mnt", |a| {
            a.opts.lowerdirs = paths(&["a", "b", "c"]);
        }),
        ("escapes", r"-o lowerdir=a\:b:c\,d:e\\,upperdir=u\,1,workdir=w /mnt", |a| {
            a.opts.lowerdirs = paths(&["a:b", "c,d", r"e\"]);
            a.opts.upperdir = Some(PathBuf::from("u,1"));
        }),
        ("generic flags", "-o allow_other,default_permissions,nosuid,nodev,noexec,noatime,lowerdir=l,upperdir=u,workdir=w /mnt", |a| {
            a.opts.allow_other = Some(true); a.opts.default_permissions = Some(true);
            a.opts.suid = Some(false); a.opts.dev = Some(false); a.opts.exec = Some(false);
            a.opts.noatime = true;
        }),
        ("negations, allow_root", "-o allow_root,noallow_other,nodefault_permissions,exec,lowerdir=l,upperdir=u,workdir=w /mnt", |a| {
            a.opts.allow_other = Some(false); a.opts.default_permissions = Some(false);
            a.opts.exec = Some(true);
        }),
        ("allow_root", "-o allow_root,lowerdir=l,upperdir=u,workdir=w /mnt", |a| a.opts.allow_other = Some(true)),
        ("fuse-overlayfs options", "-o squash_to_root,squash_to_uid=7,squash_to_gid=8,noacl,fsync=0,xattr_permissions=2,lowerdir=l,upperdir=u,workdir=w /mnt", |a| {
            a.opts.squash_to_root = true; a.opts.squash_to_uid = Some(7);
            a.opts.squash_to_gid = Some(8); a.opts.noacl = true; a.opts.fsync = false;
            a.opts.xattr_permissions = Some(2);
        }),
        ("fsync=1", "-o fsync=1,lowerdir=l,upperdir=u,workdir=w /mnt", |_| {}),
        ("metacopy=on", "-o metacopy=on,lowerdir=l,upperdir=u,workdir=w /mnt", |a| a.opts.metacopy = true),
        ("later metacopy=off wins", "-o metacopy=on,metacopy=off,lowerdir=l,upperdir=u,workdir=w /mnt", |_| {}),
        ("io_uring=on", "-o io_uring=on,lowerdir=l,upperdir=u,workdir=w /mnt", |a| a.opts.io_uring = Some(true)),
        ("io_uring=off", "-o io_uring=off,lowerdir=l,upperdir=u,workdir=w /mnt", |a| a.opts.io_uring = Some(false)),
        ("queue_sched=normal", "-o queue_sched=normal,lowerdir=l,upperdir=u,workdir=w /mnt", |a| a.opts.queue_sched_idle = false),
        ("later queue_sched=idle wins", "-o queue_sched=normal,queue_sched=idle,lowerdir=l,upperdir=u,workdir=w /mnt", |_| {}),
        ("id mappings, repeats add", "-o uidmapping=0:1000:1:1:100000:65536,gidmapping=0:1000:1,gidmapping=5:6:7,lowerdir=l,upperdir=u,workdir=w /mnt", |a| {
            a.opts.uid_mappings = vec![map(0, 1000, 1), map(1, 100000, 65536)];
            a.opts.gid_mappings = vec![map(0, 1000, 1), map(5, 6, 7)];
        }),
        ("containers/storage form with leading ':'", "-o lowerdir=l,upperdir=u,workdir=w,uidmapping=:0:100000:65536:1:2:3,gidmapping=:0:100000:65536 /mnt", |a| {
            a.opts.uid_mappings = vec![map(0, 100000, 65536), map(1, 2, 3)];
            a.opts.gid_mappings = vec![map(0, 100000, 65536)];
        }),
        ("mappings up to u32::MAX", "-o uidmapping=0:1:4294967295,uidmapping=4294967295:0:1,lowerdir=l,upperdir=u,workdir=w /mnt", |a| {
            a.opts.uid_mappings = vec![map(0, 1, u32::MAX), map(u32::MAX, 0, 1)];
        }),
        ("quoted context with commas", r#"-o lowerdir=l,upperdir=u,workdir=w,context="system_u:object_r:container_file_t:s0:c1,c2",ro /mnt"#, |a| {
            a.opts.context = Some("system_u:object_r:container_file_t:s0:c1,c2".into());
            a.opts.read_only = true;
        }),
        ("lazytime, nolazytime", "-o lazytime,lowerdir=l,upperdir=u,workdir=w /mnt", |a| a.opts.lazytime = true),
        ("later nolazytime wins", "-o lazytime,nolazytime,lowerdir=l,upperdir=u,workdir=w /mnt", |_| {}),
        ("strings", r"-o context=system_u:object_r:container_file_t:s0,fsname=a\,b,subtype=unionrs,lowerdir=l,upperdir=u,workdir=w /mnt", |a| {
            a.opts.context = Some("system_u:object_r:container_file_t:s0".into());
            a.opts.fsname = Some("a,b".into()); a.opts.subtype = Some("unionrs".into());
        }),
        ("ignored vocabulary", "-o defaults,_netdev,relatime,x-systemd.automount,x-gvfs-show,comment=x,redirect_dir=on,index=off,userxattr,max_read=4096,splice_read,no_splice_move,threaded=1,static_nlink,uid=0,rootmode=40000 -o lowerdir=l,upperdir=u,workdir=w /mnt", |a| {
            a.opts.ignored = "defaults _netdev relatime x-systemd.automount x-gvfs-show comment=x redirect_dir=on index=off userxattr max_read=4096 splice_read no_splice_move threaded=1 static_nlink uid=0 rootmode=40000"
                .split(' ').map(String::from).collect();
        }),
    ];

    #[test]
    fn accepted_forms() {
        for (name, args, edit) in ACCEPTED {
            let mut want = base();
            edit(&mut want);
            assert_eq!(parse(args), Ok(want), "case {name:?}");
        }
    }

    #[rustfmt::skip]
    const REJECTED: &[(&str, &str, &str)] = &[
        ("no mountpoint", "-o lowerdir=l", "no mountpoint given"),
        ("too many positionals", "-o lowerdir=l a b c", "too many arguments (3 positional"),
        ("dangling -o", "/mnt -o", "-o needs a value"),
        ("unknown flag", "-x -o lowerdir=l /mnt", "unknown flag \"-x\""),
        ("unknown option", "-o frobnicate,lowerdir=l /mnt", "unknown mount option \"frobnicate\""),
        ("unknown valued option", "-o lowerdir=l,frob=1 /mnt", "unknown mount option \"frob=1\""),
        ("data-only layers", "-o lowerdir=l,datadir+=d /mnt", "unknown mount option \"datadir+=d\""),
        ("missing lowerdir", "-o upperdir=u,workdir=w /mnt", "lowerdir= is required"),
        ("no options at all", "/mnt", "lowerdir= is required"),
        ("upper without work", "-o lowerdir=l,upperdir=u /mnt", "upperdir= needs workdir= too"),
        ("work without upper", "-o lowerdir=l,workdir=w /mnt", "workdir= needs upperdir= too"),
        ("empty lowerdir", "-o lowerdir= /mnt", "lowerdir= has an empty path (layer 1)"),
        ("empty lower component", "-o lowerdir=a::b /mnt", "lowerdir= has an empty path (layer 2)"),
        ("trailing colon", "-o lowerdir=a: /mnt", "lowerdir= has an empty path (layer 2)"),
        ("empty upperdir", "-o lowerdir=a,upperdir=,workdir=w /mnt", "upperdir= has an empty path"),
        ("mapping not triples", "-o lowerdir=l,uidmapping=0:1000 /mnt", "bad uidmapping=0:1000: use INSIDE:OUTSIDE:COUNT"),
        ("mapping not numbers", "-o lowerdir=l,gidmapping=0:x:1 /mnt", "bad gidmapping=0:x:1"),
        ("mapping with @", "-o lowerdir=l,uidmapping=0:1000:1@1:2:3 /mnt", "bad uidmapping="),
        ("mapping count 0", "-o lowerdir=l,uidmapping=0:1000:0 /mnt", "bad uidmapping="),
        ("mapping overflows", "-o lowerdir=l,uidmapping=4294967295:0:2 /mnt", "bad uidmapping="),
        ("mapping empty", "-o lowerdir=l,uidmapping= /mnt", "bad uidmapping="),
        ("bad number", "-o lowerdir=l,squash_to_uid=-1 /mnt", "bad number in squash_to_uid=-1"),
        ("number too big", "-o lowerdir=l,squash_to_gid=4294967296 /mnt", "bad number in squash_to_gid="),
        ("bad fsync", "-o lowerdir=l,fsync=yes /mnt", "bad fsync=yes: use fsync=0 or fsync=1"),
        ("bad metacopy", "-o lowerdir=l,metacopy=yes /mnt", "bad metacopy=yes: use metacopy=on or metacopy=off"),
        ("bad io_uring", "-o lowerdir=l,io_uring=yes /mnt", "bad io_uring=yes: use io_uring=on or io_uring=off"),
        ("bad queue_sched", "-o lowerdir=l,queue_sched=low /mnt", "bad queue_sched=low: use queue_sched=idle or queue_sched=normal"),
        ("bad xattr_permissions", "-o lowerdir=l,xattr_permissions=3 /mnt", "bad xattr_permissions=3"),
        ("flag with value", "-o lowerdir=l,ro=1 /mnt", "mount option \"ro\" takes no value"),
        ("ignored flag with value", "-o lowerdir=l,kernel_cache=1 /mnt", "\"kernel_cache\" takes no value"),
        ("valued option bare", "-o lowerdir=l,squash_to_uid /mnt", "\"squash_to_uid\" needs a value"),
        ("ignored valued bare", "-o lowerdir=l,max_read /mnt", "\"max_read\" needs a value"),
        ("bare lowerdir", "-o lowerdir /mnt", "\"lowerdir\" needs a value"),
        ("remount", "-o remount,ro,lowerdir=l /mnt", "remount is not supported"),
    ];

    #[test]
    fn rejected_forms() {
        for (name, args, want) in REJECTED {
            let err = parse(args).expect_err(name).to_string();
            assert!(
                err.contains(want),
                "case {name:?}: got {err:?}, want {want:?}"
            );
            assert!(!err.contains('\n'), "case {name:?}: not one line: {err:?}");
        }
    }

    #[test]
    fn layer_count_limit() {
        let lowers = |n| format!("-o lowerdir={} /mnt", vec!["l"; n].join(":"));
        let ok = parse(&lowers(MAX_LOWERDIRS)).unwrap();
        assert_eq!(ok.opts.lowerdirs.len(), MAX_LOWERDIRS);
        let err = parse(&lowers(MAX_LOWERDIRS + 1)).unwrap_err().to_string();
        assert!(err.contains("too many lower layers (501)"), "{err}");
    }

    #[test]
    fn errors_stay_on_one_line() {
        let args = [OsString::from("-ofrob\nnicate"), OsString::from("/mnt")];
        let e = parse_mount_argv(&args).unwrap_err().to_string();
        assert_eq!(e, "unknown mount option \"frob?nicate\"");
    }

    #[test]
    fn non_utf8_paths_survive() {
        let args = [
            OsString::from("-o"),
            OsString::from_vec(b"lowerdir=/l\xff,upperdir=u,workdir=w".to_vec()),
            OsString::from_vec(b"/m\xfe".to_vec()),
        ];
        let got = parse_mount_argv(&args).unwrap();
        assert_eq!(got.opts.lowerdirs[0].as_os_str().as_bytes(), b"/l\xff");
        assert_eq!(got.mountpoint.as_os_str().as_bytes(), b"/m\xfe");
    }

    #[test]
    fn splitting_keeps_escapes_for_the_next_stage() {
        type Case = (&'static [u8], u8, &'static [&'static [u8]]);
        let cases: &[Case] = &[
            (b"a,b", b',', &[b"a", b"b"]),
            (br"a\,b,c", b',', &[br"a\,b", b"c"]),
            (br"a\\,b", b',', &[br"a\\", b"b"]),
            (br"a\:b:c", b':', &[br"a\:b", b"c"]),
            (b",", b',', &[b"", b""]),
            (br#"a="x,y",b"#, b',', &[br#"a="x,y""#, b"b"]),
            (br#"a="x:y""#, b':', &[br#"a="x"#, br#"y""#]),
            (br"trail\", b',', &[br"trail\"]),
        ];
        for (input, sep, want) in cases {
            assert_eq!(split_unescaped(input, *sep), want.to_vec(), "{input:?}");
        }
        assert_eq!(unescape(br"a\:b\\c\,d"), b"a:b\\c,d");
        assert_eq!(unescape(br"x\"), br"x\");
    }
}
