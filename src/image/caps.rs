//! Container capabilities: the names the kernel knows, docker's default set, and the final
//! set after `--cap-add`, `--cap-drop` and `--privileged`, as docker computes it:
//!
//! - `--privileged`: every capability this kernel has (add and drop are not looked at);
//! - `--cap-add ALL`: every capability but the dropped ones;
//! - `--cap-drop ALL`: only the added ones;
//! - otherwise: the default set without the dropped ones, plus the added ones.
//!
//! Names are accepted in any case, with or without `CAP_`; an unknown name is an error.
//! "Every capability" means every one the kernel has and unionrs holds itself: a process
//! cannot hand on what is not in its own bounding set (some sandboxes run root without a
//! few), so a default one it lacks is left out and an added one is an error.

/// Every capability by number (capability(7)); index = the kernel's number.
pub const ALL: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Docker's default capabilities for a container.
pub const DEFAULT: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// The capabilities a container can get: those this kernel has (up to
/// /proc/sys/kernel/cap_last_cap) that are in our own bounding set (no process can hand
/// on a capability it lost; some sandboxes run even root without a few).
pub fn supported() -> Vec<&'static str> {
    let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .unwrap_or(ALL.len() - 1);
    let bounding = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find_map(|l| l.strip_prefix("CapBnd:"))?;
            u64::from_str_radix(line.trim(), 16).ok()
        })
        .unwrap_or(u64::MAX);
    ALL.iter()
        .enumerate()
        .take(last + 1)
        .filter(|(n, _)| bounding & (1 << n) != 0)
        .map(|(_, c)| *c)
        .collect()
}

/// `ALL`, or the canonical `CAP_X` name of `name` (any case, `CAP_` optional).
fn normalize(name: &str, flag: &str) -> Result<Option<&'static str>, String> {
    let up = name.trim().to_ascii_uppercase();
    if up == "ALL" {
        return Ok(None);
    }
    let full = if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    };
    ALL.iter()
        .find(|c| **c == full)
        .map(|c| Some(*c))
        .ok_or_else(|| format!("{flag} {name:?}: unknown capability (see capabilities(7))"))
}

/// The final capability set, in the kernel's order.
pub fn resolve(add: &[String], drop: &[String], privileged: bool) -> Result<Vec<String>, String> {
    resolve_among(add, drop, privileged, &supported())
}

/// [`resolve`] when unionrs holds the capabilities `have`: an added one it lacks is an
/// error; a default one it lacks is left out (the runtime could not grant it).
fn resolve_among(
    add: &[String],
    drop: &[String],
    privileged: bool,
    have: &[&'static str],
) -> Result<Vec<String>, String> {
    let parse = |v: &[String], flag: &str| -> Result<(bool, Vec<&'static str>), String> {
        let mut all = false;
        let mut names = Vec::new();
        for n in v {
            match normalize(n, flag)? {
                None => all = true,
                Some(c) => names.push(c),
            }
        }
        Ok((all, names))
    };
    let (add_all, add) = parse(add, "--cap-add")?;
    let (drop_all, drop) = parse(drop, "--cap-drop")?;
    if let Some(c) = add.iter().find(|c| !have.contains(c)) {
        return Err(format!(
            "--cap-add {c}: unionrs itself does not hold it (not in its bounding set), so \
             no container can get it"
        ));
    }
    let set: Vec<&str> = if privileged {
        have.to_vec()
    } else if add_all {
        have.iter().copied().filter(|c| !drop.contains(c)).collect()
    } else if drop_all {
        add
    } else {
        DEFAULT
            .iter()
            .copied()
            .filter(|c| !drop.contains(c) && have.contains(c))
            .chain(add)
            .collect()
    };
    Ok(ALL
        .iter()
        .filter(|c| set.contains(c))
        .map(|c| c.to_string())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn names_and_numbers_agree_with_the_kernel_headers() {
        assert_eq!(ALL.len(), 41);
        assert_eq!(ALL[21], "CAP_SYS_ADMIN");
        assert_eq!(ALL[40], "CAP_CHECKPOINT_RESTORE");
        assert!(DEFAULT.iter().all(|c| ALL.contains(c)));
    }

    #[test]
    fn add_and_drop_as_docker() {
        let d = resolve(&[], &[], false).unwrap();
        assert_eq!(d.len(), DEFAULT.len());
        let v = resolve(&s(&["sys_admin", "Cap_Net_Admin"]), &s(&["CHOWN"]), false).unwrap();
        assert!(v.contains(&"CAP_SYS_ADMIN".into()) && v.contains(&"CAP_NET_ADMIN".into()));
        assert!(!v.contains(&"CAP_CHOWN".into()));
        assert_eq!(
            resolve(&s(&["KILL"]), &s(&["all"]), false).unwrap(),
            ["CAP_KILL"]
        );
        let all_but = resolve(&s(&["ALL"]), &s(&["SYS_ADMIN"]), false).unwrap();
        assert_eq!(all_but.len(), supported().len() - 1);
        assert!(!all_but.contains(&"CAP_SYS_ADMIN".into()));
        // --privileged ignores the drops.
        assert_eq!(
            resolve(&[], &s(&["ALL"]), true).unwrap().len(),
            supported().len()
        );
        assert_eq!(
            resolve(&s(&["CAP_BOGUS"]), &[], false).unwrap_err(),
            "--cap-add \"CAP_BOGUS\": unknown capability (see capabilities(7))"
        );
        assert!(resolve(&[], &s(&["nope"]), false).is_err());
    }

    #[test]
    fn a_capability_unionrs_lacks_cannot_be_given() {
        let have: Vec<&str> = ALL
            .iter()
            .copied()
            .filter(|c| *c != "CAP_SYS_RESOURCE" && *c != "CAP_MKNOD")
            .collect();
        assert_eq!(
            resolve_among(&s(&["sys_resource"]), &[], false, &have).unwrap_err(),
            "--cap-add CAP_SYS_RESOURCE: unionrs itself does not hold it (not in its bounding \
             set), so no container can get it"
        );
        let d = resolve_among(&[], &[], false, &have).unwrap();
        assert_eq!(d.len(), DEFAULT.len() - 1);
        assert!(!d.contains(&"CAP_MKNOD".into()));
        let all = resolve_among(&s(&["ALL"]), &[], false, &have).unwrap();
        assert_eq!(all.len(), ALL.len() - 2);
        assert_eq!(resolve_among(&[], &[], true, &have).unwrap(), all);
    }
}
