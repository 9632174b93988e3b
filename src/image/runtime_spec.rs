//! The OCI runtime bundle's `config.json` (runtime-spec 1.0): only the fields `run` sets,
//! as plain serde structs (the `oci-spec` crate would bring a builder framework and a
//! long compile for a dozen fields).
//!
//! What a container gets, and why:
//! - namespaces mount, pid, ipc, uts; by default no network namespace: the command shares
//!   the host's network (`docker run --network host`). `--network none` asks for an
//!   isolated namespace with only loopback; `--network private` (and `-p`) for a named one
//!   that pasta serves ([`super::lifecycle::network`]).
//! - mounts /proc, /dev (tmpfs), /dev/pts, /dev/shm, /dev/mqueue, /sys (read-only), as
//!   runc's and Docker's defaults; the runtime adds the standard device nodes.
//! - Docker's confinement ([`super::security`]): its default capability set and seccomp
//!   profile, masked and read-only /proc paths, all devices denied but the runtime's
//!   defaults; `--privileged` lifts these as docker's does.
//! - RLIMIT_NOFILE soft = hard = this process's hard limit (capped at Docker's 1048576):
//!   a limit above our own hard limit cannot be set here, even by root.

use super::seccomp::SpecSeccomp;
use super::security::Confinement;
use serde::Serialize;

pub const OCI_VERSION: &str = "1.0.2";

const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
];

const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Docker's default RLIMIT_NOFILE, lowered to what this process may set.
const NOFILE_WANTED: u64 = 1 << 20;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    pub oci_version: String,
    pub process: Process,
    pub root: Root,
    pub hostname: String,
    pub mounts: Vec<Mount>,
    pub linux: Linux,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Process {
    pub terminal: bool,
    /// The terminal's size from the start (a resize after the process started races it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub console_size: Option<ConsoleSize>,
    pub user: User,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub capabilities: Capabilities,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rlimits: Vec<Rlimit>,
    pub no_new_privileges: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ConsoleSize {
    pub height: u16,
    pub width: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub additional_gids: Vec<u32>,
}

#[derive(Debug, Serialize)]
pub struct Capabilities {
    pub bounding: Vec<String>,
    pub effective: Vec<String>,
    pub permitted: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Rlimit {
    #[serde(rename = "type")]
    pub kind: String,
    pub hard: u64,
    pub soft: u64,
}

#[derive(Debug, Serialize)]
pub struct Root {
    pub path: String,
    pub readonly: bool,
}

#[derive(Debug, Serialize)]
pub struct Mount {
    pub destination: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub source: String,
    pub options: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Linux {
    pub namespaces: Vec<Namespace>,
    pub masked_paths: Vec<String>,
    pub readonly_paths: Vec<String>,
    pub resources: Resources,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<Device>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seccomp: Option<SpecSeccomp>,
}

/// A device node the runtime creates in the container's /dev.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    pub path: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub major: u64,
    pub minor: u64,
    pub file_mode: u32,
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, Serialize)]
pub struct Namespace {
    #[serde(rename = "type")]
    pub kind: String,
    /// Join this namespace rather than make a new one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Resources {
    pub devices: Vec<DeviceRule>,
}

#[derive(Debug, Serialize)]
pub struct DeviceRule {
    pub allow: bool,
    pub access: String,
}

/// The container's network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// The host's network stack (no network namespace).
    Host,
    /// A network namespace of its own, with only a loopback interface.
    None,
    /// A network namespace of its own, with an interface and outbound access through a
    /// user-space forwarder (pasta), which also publishes ports (`-p`).
    Private,
}

/// What differs between containers; the rest of the spec is fixed.
pub struct SpecInput {
    pub rootfs: String,
    pub hostname: String,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub user: User,
    pub network: Network,
    /// This process's RLIMIT_NOFILE hard limit, if known.
    pub nofile_hard: Option<u64>,
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn mount(dest: &str, kind: &str, source: &str, options: &[&str]) -> Mount {
    Mount {
        destination: dest.into(),
        kind: kind.into(),
        source: source.into(),
        options: strings(options),
    }
}

/// Mount points the runtime creates in the rootfs when the image lacks them.
pub const MOUNT_POINTS: &[&str] = &["proc", "dev", "sys"];

/// The host's device nodes, for a privileged container (as docker and runc list them:
/// /dev and its subdirectories but pts, shm, fd, mqueue, and not /dev/console).
fn host_devices() -> Vec<Device> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut out = Vec::new();
    let mut dirs = vec![std::path::PathBuf::from("/dev")];
    while let Some(d) = dirs.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(m) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            let ft = m.file_type();
            if ft.is_dir() {
                let skip = ["pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"];
                if !skip.iter().any(|s| e.file_name() == *s) {
                    dirs.push(p);
                }
                continue;
            }
            let kind = if ft.is_char_device() {
                "c"
            } else if ft.is_block_device() {
                "b"
            } else {
                continue;
            };
            if p == std::path::Path::new("/dev/console") {
                continue;
            }
            let dev = m.rdev();
            // The kernel's dev_t split (glibc's gnu_dev_major/minor).
            let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
            let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
            out.push(Device {
                path: p.display().to_string(),
                kind: kind.into(),
                major,
                minor,
                file_mode: m.mode() & 0o7777,
                uid: m.uid(),
                gid: m.gid(),
            });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// The spec with docker's default confinement (capabilities, seccomp profile).
pub fn build(i: SpecInput) -> Spec {
    build_with(i, Confinement::docker_default())
}

/// The spec with the confinement `c` (capabilities, seccomp, no-new-privileges,
/// `--privileged`).
pub fn build_with(i: SpecInput, c: Confinement) -> Spec {
    let mut namespaces: Vec<Namespace> = ["pid", "ipc", "uts", "mount"]
        .iter()
        .map(|k| Namespace {
            kind: k.to_string(),
            path: None,
        })
        .collect();
    if i.network != Network::Host {
        // Private: `run` points it at the named namespace pasta serves.
        namespaces.push(Namespace {
            kind: "network".into(),
            path: None,
        });
    }
    let rlimits = i
        .nofile_hard
        .map(|hard| {
            let n = hard.min(NOFILE_WANTED);
            vec![Rlimit {
                kind: "RLIMIT_NOFILE".into(),
                hard: n,
                soft: n,
            }]
        })
        .unwrap_or_default();
    Spec {
        oci_version: OCI_VERSION.into(),
        process: Process {
            terminal: false,
            console_size: None,
            user: i.user,
            args: i.args,
            env: i.env,
            cwd: i.cwd,
            capabilities: Capabilities {
                bounding: c.caps.clone(),
                effective: c.caps.clone(),
                permitted: c.caps.clone(),
            },
            rlimits,
            no_new_privileges: c.no_new_privileges,
        },
        root: Root {
            path: i.rootfs,
            readonly: false,
        },
        hostname: i.hostname,
        mounts: vec![
            mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
            mount(
                "/dev",
                "tmpfs",
                "tmpfs",
                &["nosuid", "strictatime", "mode=755", "size=65536k"],
            ),
            mount(
                "/dev/pts",
                "devpts",
                "devpts",
                &[
                    "nosuid",
                    "noexec",
                    "newinstance",
                    "ptmxmode=0666",
                    "mode=0620",
                    "gid=5",
                ],
            ),
            mount(
                "/dev/shm",
                "tmpfs",
                "shm",
                &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
            ),
            mount(
                "/dev/mqueue",
                "mqueue",
                "mqueue",
                &["nosuid", "noexec", "nodev"],
            ),
            mount(
                "/sys",
                "sysfs",
                "sysfs",
                &["nosuid", "noexec", "nodev", "ro"][..if c.privileged { 3 } else { 4 }],
            ),
        ],
        linux: Linux {
            namespaces,
            masked_paths: if c.privileged {
                Vec::new()
            } else {
                strings(MASKED_PATHS)
            },
            readonly_paths: if c.privileged {
                Vec::new()
            } else {
                strings(READONLY_PATHS)
            },
            resources: Resources {
                devices: vec![DeviceRule {
                    allow: c.privileged,
                    access: "rwm".into(),
                }],
            },
            devices: if c.privileged {
                host_devices()
            } else {
                Vec::new()
            },
            seccomp: c.seccomp,
        },
    }
}

/// RLIMIT_NOFILE's hard limit of this process, from /proc/self/limits.
pub fn own_nofile_hard() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = s.lines().find(|l| l.starts_with("Max open files"))?;
    let mut f = line["Max open files".len()..].split_whitespace();
    let _soft = f.next()?;
    f.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(network: Network) -> SpecInput {
        SpecInput {
            rootfs: "/r".into(),
            hostname: "h".into(),
            args: vec!["sh".into()],
            env: vec!["PATH=/bin".into()],
            cwd: "/".into(),
            user: User {
                uid: 1,
                gid: 2,
                additional_gids: vec![],
            },
            network,
            nofile_hard: Some(20000),
        }
    }

    #[test]
    fn spec_json_has_the_runtime_spec_names() {
        let v = serde_json::to_value(build(input(Network::Host))).unwrap();
        assert_eq!(v["ociVersion"], OCI_VERSION);
        assert_eq!(
            v["process"]["user"],
            serde_json::json!({"uid": 1, "gid": 2})
        );
        assert_eq!(v["process"]["noNewPrivileges"], false);
        assert_eq!(
            v["process"]["rlimits"],
            serde_json::json!([{"type": "RLIMIT_NOFILE", "hard": 20000, "soft": 20000}])
        );
        assert_eq!(v["root"]["path"], "/r");
        let ns: Vec<&str> = v["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert_eq!(ns, ["pid", "ipc", "uts", "mount"]);
        let dests: Vec<&str> = v["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect();
        for d in ["/proc", "/dev", "/dev/pts", "/dev/shm", "/sys"] {
            assert!(dests.contains(&d), "{d} missing from {dests:?}");
        }
        let v = serde_json::to_value(build(input(Network::None))).unwrap();
        assert_eq!(v["linux"]["namespaces"][4]["type"], "network");
        assert_eq!(v["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
        assert!(v["linux"].get("devices").is_none());
        assert_eq!(v["linux"]["resources"]["devices"][0]["allow"], false);
    }

    #[test]
    fn privileged_lifts_the_confinement() {
        let c = super::super::security::confinement(&super::super::security::SecurityOptions {
            privileged: true,
            ..Default::default()
        })
        .unwrap();
        let v = serde_json::to_value(build_with(input(Network::Host), c)).unwrap();
        assert!(v["linux"].get("seccomp").is_none());
        assert_eq!(v["linux"]["maskedPaths"], serde_json::json!([]));
        assert_eq!(v["linux"]["readonlyPaths"], serde_json::json!([]));
        assert_eq!(v["linux"]["resources"]["devices"][0]["allow"], true);
        let devs = v["linux"]["devices"].as_array().unwrap();
        let null = devs.iter().find(|d| d["path"] == "/dev/null").unwrap();
        assert_eq!(
            (&null["type"], &null["major"], &null["minor"]),
            (&"c".into(), &1.into(), &3.into())
        );
        assert!(!devs.iter().any(|d| d["path"] == "/dev/console"));
        let sys = v["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/sys")
            .unwrap();
        assert!(!sys["options"].as_array().unwrap().iter().any(|o| o == "ro"));
    }

    #[test]
    fn nofile_is_capped_at_docker_default() {
        let mut i = input(Network::Host);
        i.nofile_hard = Some(u64::MAX);
        assert_eq!(build(i).process.rlimits[0].hard, NOFILE_WANTED);
        let mut i = input(Network::Host);
        i.nofile_hard = None;
        assert!(build(i).process.rlimits.is_empty());
        assert!(own_nofile_hard().is_some());
    }
}
