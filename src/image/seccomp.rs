//! Seccomp profiles: docker's JSON profile format (what `--security-opt seccomp=FILE`
//! reads, and what [`super::seccomp_default`] builds), its validation, and its resolution
//! into the runtime spec's `linux.seccomp` for one container.
//!
//! The format is docker's: `defaultAction`, `defaultErrnoRet`, `architectures` or
//! `archMap`, and `syscalls` rules (`names` or `name`, `action`, `errnoRet`, `args`) that
//! may apply only `includes` / `excludes` given capabilities (all listed caps must be in
//! the container's bounding set), host architectures (Go's names: amd64, arm64, ...) or
//! kernel versions (`minKernel`). Resolving picks the rules that apply to this container on
//! this host, as docker's daemon does before it hands the profile to the runtime.

use serde::{Deserialize, Deserializer, Serialize};

/// Actions libseccomp and runc know (runc 1.1's `runc features`). SCMP_ACT_NOTIFY is left
/// out: it needs a seccomp agent listening, which unionrs does not run.
const ACTIONS: &[&str] = &[
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_TRAP",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_LOG",
];

const OPERATORS: &[&str] = &[
    "SCMP_CMP_NE",
    "SCMP_CMP_LT",
    "SCMP_CMP_LE",
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_MASKED_EQ",
];

const ARCHES: &[&str] = &[
    "SCMP_ARCH_X86",
    "SCMP_ARCH_X86_64",
    "SCMP_ARCH_X32",
    "SCMP_ARCH_ARM",
    "SCMP_ARCH_AARCH64",
    "SCMP_ARCH_MIPS",
    "SCMP_ARCH_MIPS64",
    "SCMP_ARCH_MIPS64N32",
    "SCMP_ARCH_MIPSEL",
    "SCMP_ARCH_MIPSEL64",
    "SCMP_ARCH_MIPSEL64N32",
    "SCMP_ARCH_PPC",
    "SCMP_ARCH_PPC64",
    "SCMP_ARCH_PPC64LE",
    "SCMP_ARCH_S390",
    "SCMP_ARCH_S390X",
    "SCMP_ARCH_RISCV64",
    "SCMP_ARCH_LOONGARCH64",
];

const FLAGS: &[&str] = &[
    "SECCOMP_FILTER_FLAG_TSYNC",
    "SECCOMP_FILTER_FLAG_LOG",
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
];

/// `null` in a profile means an empty list (docker's profiles write `"args": null`).
fn nullable<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

/// A profile in docker's format.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    pub default_action: String,
    #[serde(default)]
    pub default_errno_ret: Option<u32>,
    #[serde(default, deserialize_with = "nullable")]
    pub architectures: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub arch_map: Vec<ArchMap>,
    #[serde(default, deserialize_with = "nullable")]
    pub syscalls: Vec<Rule>,
    #[serde(default, deserialize_with = "nullable")]
    pub flags: Vec<String>,
    #[serde(default)]
    pub listener_path: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchMap {
    pub architecture: String,
    #[serde(default, deserialize_with = "nullable")]
    pub sub_architectures: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    #[serde(default, deserialize_with = "nullable")]
    pub names: Vec<String>,
    /// The older one-name form.
    #[serde(default)]
    pub name: Option<String>,
    pub action: String,
    #[serde(default)]
    pub errno_ret: Option<u32>,
    #[serde(default, deserialize_with = "nullable")]
    pub args: Vec<Arg>,
    #[serde(default)]
    pub includes: Filter,
    #[serde(default)]
    pub excludes: Filter,
}

/// When a rule applies (`includes`) or does not (`excludes`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    #[serde(default, deserialize_with = "nullable")]
    pub caps: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub arches: Vec<String>,
    #[serde(default)]
    pub min_kernel: Option<String>,
}

impl Filter {
    fn is_empty(&self) -> bool {
        self.caps.is_empty() && self.arches.is_empty() && self.min_kernel.is_none()
    }
}

/// A condition on one syscall argument; for SCMP_CMP_MASKED_EQ `value` is the mask and
/// `value_two` what the masked argument must equal.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Arg {
    pub index: u32,
    pub value: u64,
    #[serde(default)]
    pub value_two: u64,
    pub op: String,
}

/// The runtime spec's `linux.seccomp`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SpecSeccomp {
    pub default_action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_errno_ret: Option<u32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub architectures: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
    pub syscalls: Vec<SpecSyscall>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SpecSyscall {
    pub names: Vec<String>,
    pub action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errno_ret: Option<u32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<Arg>,
}

/// What a profile is resolved for: the container's capabilities and the host.
#[derive(Debug, Clone)]
pub struct Target {
    /// The container's bounding set (`CAP_X` names).
    pub caps: Vec<String>,
    /// Go's name of the host architecture (what `arches` lists): amd64, arm64, ...
    pub go_arch: &'static str,
    /// libseccomp's name of it: SCMP_ARCH_X86_64, ...
    pub native_arch: &'static str,
    /// The running kernel's (major, minor).
    pub kernel: (u32, u32),
}

impl Target {
    /// This host, for a container with `caps`.
    pub fn host(caps: Vec<String>) -> Target {
        let (go_arch, native_arch) = host_arch();
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .ok()
            .and_then(|r| parse_kernel(r.trim()))
            .unwrap_or((0, 0));
        Target {
            caps,
            go_arch,
            native_arch,
            kernel,
        }
    }
}

/// (Go's name, libseccomp's name) of the architecture unionrs was built for.
fn host_arch() -> (&'static str, &'static str) {
    match std::env::consts::ARCH {
        "x86_64" => ("amd64", "SCMP_ARCH_X86_64"),
        "x86" => ("386", "SCMP_ARCH_X86"),
        "aarch64" => ("arm64", "SCMP_ARCH_AARCH64"),
        "arm" => ("arm", "SCMP_ARCH_ARM"),
        "riscv64" => ("riscv64", "SCMP_ARCH_RISCV64"),
        "s390x" => ("s390x", "SCMP_ARCH_S390X"),
        "loongarch64" => ("loong64", "SCMP_ARCH_LOONGARCH64"),
        "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", "SCMP_ARCH_PPC64LE"),
        "powerpc64" => ("ppc64", "SCMP_ARCH_PPC64"),
        other => (other, ""),
    }
}

/// "6.18.44-foo" or "4.8" -> (6, 18).
fn parse_kernel(s: &str) -> Option<(u32, u32)> {
    let mut it = s.split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

fn is_syscall_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

impl Profile {
    /// Parses and checks a docker-format profile; the error is one line.
    pub fn parse(json: &[u8]) -> Result<Profile, String> {
        let p: Profile = serde_json::from_slice(json).map_err(|e| format!("not a profile: {e}"))?;
        p.validate()?;
        Ok(p)
    }

    /// Every name, action, operator, architecture and capability is one the runtime knows.
    pub fn validate(&self) -> Result<(), String> {
        let action = |a: &str, errno: Option<u32>, what: &str| -> Result<(), String> {
            if a == "SCMP_ACT_NOTIFY" {
                return Err(format!(
                    "{what}: SCMP_ACT_NOTIFY needs a seccomp agent, which unionrs does not run"
                ));
            }
            if !ACTIONS.contains(&a) {
                return Err(format!("{what}: unknown action {a:?}"));
            }
            if errno.is_some() && a != "SCMP_ACT_ERRNO" && a != "SCMP_ACT_TRACE" {
                return Err(format!(
                    "{what}: an errno return goes with SCMP_ACT_ERRNO or SCMP_ACT_TRACE, not {a}"
                ));
            }
            Ok(())
        };
        action(
            &self.default_action,
            self.default_errno_ret,
            "defaultAction",
        )?;
        if self.listener_path.is_some() {
            return Err("listenerPath: seccomp agents are not supported".into());
        }
        if !self.architectures.is_empty() && !self.arch_map.is_empty() {
            return Err("both architectures and archMap are given; use one".into());
        }
        let arch_names = self.architectures.iter().chain(
            self.arch_map
                .iter()
                .flat_map(|m| std::iter::once(&m.architecture).chain(&m.sub_architectures)),
        );
        for a in arch_names {
            if !ARCHES.contains(&a.as_str()) {
                return Err(format!("unknown architecture {a:?}"));
            }
        }
        for f in &self.flags {
            if !FLAGS.contains(&f.as_str()) {
                return Err(format!("unknown or unsupported flag {f:?}"));
            }
        }
        for (i, r) in self.syscalls.iter().enumerate() {
            let what = format!("syscalls[{i}]");
            if r.name.is_some() && !r.names.is_empty() {
                return Err(format!("{what}: both name and names are given; use one"));
            }
            let names: Vec<&String> = r.name.iter().chain(&r.names).collect();
            if names.is_empty() {
                return Err(format!("{what}: no syscall names"));
            }
            if let Some(n) = names.iter().find(|n| !is_syscall_name(n)) {
                return Err(format!("{what}: {n:?} is not a syscall name"));
            }
            action(&r.action, r.errno_ret, &what)?;
            for a in &r.args {
                if a.index > 5 {
                    return Err(format!(
                        "{what}: argument index {} (a syscall has 6: 0 to 5)",
                        a.index
                    ));
                }
                if !OPERATORS.contains(&a.op.as_str()) {
                    return Err(format!("{what}: unknown operator {:?}", a.op));
                }
            }
            for f in [&r.includes, &r.excludes] {
                if let Some(c) = f
                    .caps
                    .iter()
                    .find(|c| !super::caps::ALL.contains(&c.as_str()))
                {
                    return Err(format!("{what}: unknown capability {c:?}"));
                }
                if let Some(k) = &f.min_kernel
                    && parse_kernel(k).is_none()
                {
                    return Err(format!("{what}: minKernel {k:?} is not a version like 4.8"));
                }
            }
        }
        Ok(())
    }

    /// The rules that apply to `t`, as the runtime spec wants them.
    pub fn resolve(&self, t: &Target) -> SpecSeccomp {
        let architectures = if self.arch_map.is_empty() {
            self.architectures.clone()
        } else {
            self.arch_map
                .iter()
                .filter(|m| m.architecture == t.native_arch)
                .flat_map(|m| std::iter::once(&m.architecture).chain(&m.sub_architectures))
                .cloned()
                .collect()
        };
        let has = |c: &String| t.caps.contains(c);
        let kernel_at_least = |k: &Option<String>| {
            k.as_deref()
                .and_then(parse_kernel)
                .is_some_and(|min| t.kernel >= min)
        };
        let arch_in = |a: &[String]| a.iter().any(|a| a == t.go_arch);
        let syscalls = self
            .syscalls
            .iter()
            .filter(|r| {
                let inc = &r.includes;
                let exc = &r.excludes;
                let included = inc.is_empty()
                    || ((inc.caps.is_empty() || inc.caps.iter().all(has))
                        && (inc.arches.is_empty() || arch_in(&inc.arches))
                        && (inc.min_kernel.is_none() || kernel_at_least(&inc.min_kernel)));
                let excluded = exc.caps.iter().any(has)
                    || arch_in(&exc.arches)
                    || (exc.min_kernel.is_some() && kernel_at_least(&exc.min_kernel));
                included && !excluded
            })
            .map(|r| SpecSyscall {
                names: r.name.iter().chain(&r.names).cloned().collect(),
                action: r.action.clone(),
                errno_ret: r.errno_ret,
                args: r.args.clone(),
            })
            .collect();
        SpecSeccomp {
            default_action: self.default_action.clone(),
            default_errno_ret: self.default_errno_ret,
            architectures,
            flags: self.flags.clone(),
            syscalls,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(caps: &[&str]) -> Target {
        Target {
            caps: caps.iter().map(|c| c.to_string()).collect(),
            go_arch: "amd64",
            native_arch: "SCMP_ARCH_X86_64",
            kernel: (6, 1),
        }
    }

    #[test]
    fn rules_apply_by_caps_arch_and_kernel() {
        let p = Profile::parse(
            br#"{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
            "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]},
                        {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": null}],
            "syscalls": [
              {"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": null},
              {"name": "mount", "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
              {"names": ["clone"], "action": "SCMP_ACT_ALLOW", "excludes": {"caps": ["CAP_SYS_ADMIN"]},
               "args": [{"index": 0, "value": 2114060288, "op": "SCMP_CMP_MASKED_EQ"}]},
              {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64"]}},
              {"names": ["cacheflush"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["arm64"]}},
              {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}},
              {"names": ["newer"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "7.0"}}
            ]}"#,
        )
        .unwrap();
        let names = |s: &SpecSeccomp| -> Vec<String> {
            s.syscalls.iter().flat_map(|r| r.names.clone()).collect()
        };
        let plain = p.resolve(&target(&[]));
        assert_eq!(plain.architectures, ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"]);
        assert_eq!(plain.default_errno_ret, Some(1));
        assert_eq!(names(&plain), ["read", "clone", "arch_prctl", "ptrace"]);
        let admin = p.resolve(&target(&["CAP_SYS_ADMIN"]));
        assert_eq!(names(&admin), ["read", "mount", "arch_prctl", "ptrace"]);
        let v = serde_json::to_value(&plain).unwrap();
        assert_eq!(
            v["syscalls"][1]["args"][0],
            serde_json::json!({"index": 0, "value": 2114060288u64, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"})
        );
        assert!(v["syscalls"][0].get("args").is_none());
    }

    #[test]
    fn bad_profiles_are_one_line_errors() {
        let bad = |j: &str| Profile::parse(j.as_bytes()).unwrap_err();
        for (json, want) in [
            ("{", "not a profile"),
            (r#"{"syscalls": []}"#, "missing field `defaultAction`"),
            (r#"{"defaultAction": "SCMP_ACT_NOPE"}"#, "unknown action"),
            (
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 1}"#,
                "errno return",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_NOTIFY"}"#,
                "needs a seccomp agent",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_Z80"]}"#,
                "unknown architecture",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": [], "action": "SCMP_ACT_ALLOW"}]}"#,
                "no syscall names",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["a b"], "action": "SCMP_ACT_ALLOW"}]}"#,
                "not a syscall name",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}]}]}"#,
                "argument index 6",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 0, "op": "EQ"}]}]}"#,
                "unknown operator",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["SYS_ADMIN"]}}]}"#,
                "unknown capability",
            ),
        ] {
            let e = bad(json);
            assert!(e.contains(want), "{json}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }
}
