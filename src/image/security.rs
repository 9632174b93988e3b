//! How a container is confined, from docker's flags: `--privileged`, `--cap-add`,
//! `--cap-drop` and `--security-opt seccomp=unconfined|FILE` /
//! `--security-opt no-new-privileges[=true|false]`.
//!
//! The seccomp profile follows the final capability set: a rule that docker's profile
//! gates by a capability applies when the container has it (so `--cap-add SYS_ADMIN`
//! allows mount, as in docker). `--privileged` is docker's: every capability, no seccomp
//! profile, all devices, no masked or read-only /proc paths, /sys writable. An explicit
//! `seccomp=FILE` still applies under `--privileged` (docker drops it silently; a profile
//! someone wrote on purpose is kept here).

use super::caps;
use super::seccomp::{Profile, SpecSeccomp, Target};
use super::seccomp_default;
use std::path::PathBuf;

/// Which seccomp profile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SeccompChoice {
    /// Docker's default profile (or none under `--privileged`).
    #[default]
    Default,
    /// `seccomp=unconfined`: no filter.
    Unconfined,
    /// `seccomp=FILE`: a docker-format profile.
    File(PathBuf),
}

/// The security flags as given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecurityOptions {
    pub privileged: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub seccomp: SeccompChoice,
    pub no_new_privileges: bool,
}

impl SecurityOptions {
    /// One `--security-opt` value: `seccomp=unconfined|FILE`, `no-new-privileges`,
    /// `no-new-privileges=true|false` (docker also accepts `:` for `=`).
    pub fn security_opt(&mut self, v: &str) -> Result<(), String> {
        let (key, value) = match v.split_once('=') {
            Some((k, val)) => (k, Some(val)),
            None if v == "no-new-privileges" => (v, None),
            None => match v.split_once(':') {
                Some((k, val)) => (k, Some(val)),
                None => (v, None),
            },
        };
        match (key, value) {
            ("seccomp", Some("unconfined")) => self.seccomp = SeccompChoice::Unconfined,
            ("seccomp", Some("") | None) => {
                return Err("--security-opt seccomp needs unconfined or a profile file".into());
            }
            ("seccomp", Some(f)) => self.seccomp = SeccompChoice::File(PathBuf::from(f)),
            ("no-new-privileges", None | Some("true")) => self.no_new_privileges = true,
            ("no-new-privileges", Some("false")) => self.no_new_privileges = false,
            ("no-new-privileges", Some(x)) => {
                return Err(format!(
                    "--security-opt no-new-privileges={x}: true or false"
                ));
            }
            _ => {
                return Err(format!(
                    "--security-opt {v:?}: unionrs knows seccomp=unconfined|FILE and \
                     no-new-privileges[=true|false]"
                ));
            }
        }
        Ok(())
    }
}

/// What the runtime spec gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confinement {
    /// Bounding = effective = permitted set.
    pub caps: Vec<String>,
    pub seccomp: Option<SpecSeccomp>,
    pub no_new_privileges: bool,
    /// All devices, no masked or read-only paths, /sys writable.
    pub privileged: bool,
}

impl Confinement {
    /// Docker's defaults: the default capabilities and seccomp profile.
    pub fn docker_default() -> Confinement {
        confinement(&SecurityOptions::default()).expect("the default profile is valid")
    }
}

/// Reads and checks everything the options name; the error is one line.
pub fn confinement(o: &SecurityOptions) -> Result<Confinement, String> {
    let caps = caps::resolve(&o.cap_add, &o.cap_drop, o.privileged)?;
    let profile = match &o.seccomp {
        SeccompChoice::Unconfined => None,
        SeccompChoice::Default if o.privileged => None,
        SeccompChoice::Default => Some(seccomp_default::profile()),
        SeccompChoice::File(f) => {
            let bytes = std::fs::read(f)
                .map_err(|e| format!("--security-opt seccomp={}: {e}", f.display()))?;
            Some(
                Profile::parse(&bytes)
                    .map_err(|e| format!("--security-opt seccomp={}: {e}", f.display()))?,
            )
        }
    };
    let seccomp = profile.map(|p| p.resolve(&Target::host(caps.clone())));
    Ok(Confinement {
        caps,
        seccomp,
        no_new_privileges: o.no_new_privileges,
        privileged: o.privileged,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn security_opt_values() {
        let mut o = SecurityOptions::default();
        o.security_opt("seccomp=unconfined").unwrap();
        assert_eq!(o.seccomp, SeccompChoice::Unconfined);
        o.security_opt("seccomp:/p.json").unwrap();
        assert_eq!(o.seccomp, SeccompChoice::File("/p.json".into()));
        o.security_opt("no-new-privileges").unwrap();
        assert!(o.no_new_privileges);
        o.security_opt("no-new-privileges=false").unwrap();
        assert!(!o.no_new_privileges);
        o.security_opt("no-new-privileges:true").unwrap();
        assert!(o.no_new_privileges);
        assert!(o.security_opt("no-new-privileges=maybe").is_err());
        assert!(o.security_opt("seccomp=").is_err());
        assert!(
            o.security_opt("label=disable")
                .unwrap_err()
                .contains("knows")
        );
    }

    #[test]
    fn the_profile_follows_the_capabilities() {
        let d = Confinement::docker_default();
        assert_eq!(d.caps.len(), caps::DEFAULT.len());
        assert!(!d.privileged && !d.no_new_privileges);
        let mounts = |c: &Confinement| {
            c.seccomp
                .as_ref()
                .unwrap()
                .syscalls
                .iter()
                .any(|r| r.names.iter().any(|n| n == "mount"))
        };
        assert!(!mounts(&d));
        let admin = confinement(&SecurityOptions {
            cap_add: vec!["sys_admin".into()],
            ..SecurityOptions::default()
        })
        .unwrap();
        assert!(mounts(&admin));
        let p = confinement(&SecurityOptions {
            privileged: true,
            ..SecurityOptions::default()
        })
        .unwrap();
        assert!(p.seccomp.is_none() && p.privileged);
        assert_eq!(p.caps.len(), caps::supported().len());
        let e = confinement(&SecurityOptions {
            seccomp: SeccompChoice::File("/nonexistent/p.json".into()),
            ..SecurityOptions::default()
        })
        .unwrap_err();
        assert!(
            e.starts_with("--security-opt seccomp=/nonexistent/p.json: "),
            "{e}"
        );
    }
}
