//! `RUN --mount=...` as BuildKit accepts it, for the types that need no daemon:
//!
//! - `type=bind` (the default): `source` (default: the root) from the build context or
//!   `from=STAGE|IMAGE`, read-only (`rw`, whose writes BuildKit throws away, is refused here
//!   rather than letting writes reach the context);
//! - `type=cache`: a directory kept across builds in STORE/buildmounts/<sha256(id)>, `id`
//!   defaulting to the target, `mode`/`uid`/`gid` when it is made;
//! - `type=tmpfs`: a fresh tmpfs (`size` in bytes).
//!
//! - `type=secret`: a secret given to the build with `--secret`, as a read-only file (`target`,
//!   default `/run/secrets/ID`, `mode` 0400, `uid`, `gid`) and/or an environment variable
//!   (`env=NAME`; with `env` and no `target`, no file); left out when not given unless
//!   `required` (see `secrets`);
//! - `type=ssh`: an agent given with `--ssh`, as a socket (`target`, default
//!   `/run/buildkit/ssh_agent.N`, `mode` 0600) named by `SSH_AUTH_SOCK`.
//!
//! Mount points the runtime has to make in the rootfs are removed after the command, so they
//! never reach the layer.

use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Bind {
        source: String,
        from: Option<String>,
    },
    Cache {
        id: String,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    Tmpfs {
        size: Option<u64>,
    },
    Secret {
        id: String,
        /// Shown as this environment variable too.
        env: Option<String>,
        /// Shown as a file at the target (false: `env` only).
        file: bool,
        required: bool,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    Ssh {
        id: String,
        required: bool,
        mode: u32,
        uid: u32,
        gid: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunMount {
    pub kind: Kind,
    pub target: String,
    pub readonly: bool,
}

/// Parses a RUN's `--mount` values (ssh mounts without a target are numbered in order).
pub fn parse_all<'a>(values: impl IntoIterator<Item = &'a str>) -> Result<Vec<RunMount>, String> {
    let mut ssh = 0;
    let mut out = Vec::new();
    for v in values {
        let m = parse_one(v, ssh)?;
        ssh += matches!(m.kind, Kind::Ssh { .. }) as usize;
        out.push(m);
    }
    Ok(out)
}

/// Parses one `--mount` value (`type=cache,target=/x,id=y`).
pub fn parse(v: &str) -> Result<RunMount, String> {
    parse_one(v, 0)
}

/// Parses one `--mount` value; `ssh` is the number of ssh mounts before it.
fn parse_one(v: &str, ssh: usize) -> Result<RunMount, String> {
    let mut kind = "bind".to_string();
    let mut fields: Vec<(String, Option<String>)> = Vec::new();
    for part in v.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('=') {
            Some(("type", t)) => kind = t.to_ascii_lowercase(),
            Some((k, val)) => fields.push((k.to_ascii_lowercase(), Some(val.to_string()))),
            None => fields.push((part.to_ascii_lowercase(), None)),
        }
    }
    let get = |names: &[&str]| {
        fields
            .iter()
            .rev()
            .find(|(k, _)| names.contains(&k.as_str()))
            .map(|(_, v)| v.clone().unwrap_or_else(|| "true".into()))
    };
    let flag = |names: &[&str]| get(names).is_some_and(|v| v != "false");
    let given_target = get(&["target", "dst", "destination"]);
    let target = match kind.as_str() {
        "secret" => {
            let id = get(&["id"])
                .or_else(|| given_target.as_deref().map(base_name))
                .ok_or_else(|| format!("--mount={v}: id=ID or target=PATH is required"))?;
            given_target
                .clone()
                .unwrap_or_else(|| format!("/run/secrets/{id}"))
        }
        "ssh" => given_target
            .clone()
            .unwrap_or_else(|| format!("/run/buildkit/ssh_agent.{ssh}")),
        _ => given_target
            .clone()
            .ok_or_else(|| format!("--mount={v}: target=PATH is required"))?,
    };
    if !target.starts_with('/') {
        return Err(format!("--mount={v}: target {target:?} must be absolute"));
    }
    let num = |k: &str, radix: u32, default: u32| -> Result<u32, String> {
        match get(&[k]) {
            None => Ok(default),
            Some(s) => u32::from_str_radix(&s, radix).map_err(|_| format!("--mount={v}: {k}={s}")),
        }
    };
    let known: &[&str] = match kind.as_str() {
        "bind" => &[
            "target",
            "dst",
            "destination",
            "source",
            "src",
            "from",
            "ro",
            "readonly",
            "rw",
            "readwrite",
        ],
        "cache" => &[
            "target",
            "dst",
            "destination",
            "id",
            "sharing",
            "from",
            "source",
            "src",
            "mode",
            "uid",
            "gid",
            "ro",
            "readonly",
        ],
        "tmpfs" => &["target", "dst", "destination", "size"],
        "secret" => &[
            "target",
            "dst",
            "destination",
            "id",
            "env",
            "required",
            "mode",
            "uid",
            "gid",
        ],
        "ssh" => &[
            "target",
            "dst",
            "destination",
            "id",
            "required",
            "mode",
            "uid",
            "gid",
        ],
        k => {
            return Err(format!(
                "--mount: unknown type {k:?} (bind, cache, tmpfs, secret, ssh)"
            ));
        }
    };
    if let Some((k, _)) = fields.iter().find(|(k, _)| !known.contains(&k.as_str())) {
        return Err(format!("--mount={v}: unknown option {k:?} for type={kind}"));
    }
    let m = match kind.as_str() {
        "bind" => {
            if flag(&["rw", "readwrite"]) {
                return Err(format!(
                    "--mount={v}: rw bind mounts are not supported (their writes would reach the source)"
                ));
            }
            RunMount {
                kind: Kind::Bind {
                    source: get(&["source", "src"]).unwrap_or_else(|| "/".into()),
                    from: get(&["from"]),
                },
                target,
                readonly: true,
            }
        }
        "cache" => {
            if get(&["from"]).is_some() || get(&["source", "src"]).is_some() {
                return Err(format!(
                    "--mount={v}: a cache seeded from= is not supported"
                ));
            }
            RunMount {
                kind: Kind::Cache {
                    id: get(&["id"]).unwrap_or_else(|| target.clone()),
                    mode: num("mode", 8, 0o755)?,
                    uid: num("uid", 10, 0)?,
                    gid: num("gid", 10, 0)?,
                },
                readonly: flag(&["ro", "readonly"]),
                target,
            }
        }
        "secret" => {
            let env = get(&["env"]);
            RunMount {
                kind: Kind::Secret {
                    id: get(&["id"]).unwrap_or_else(|| base_name(&target)),
                    file: given_target.is_some() || env.is_none(),
                    env,
                    required: flag(&["required"]),
                    mode: num("mode", 8, 0o400)?,
                    uid: num("uid", 10, 0)?,
                    gid: num("gid", 10, 0)?,
                },
                target,
                readonly: true,
            }
        }
        "ssh" => RunMount {
            kind: Kind::Ssh {
                id: get(&["id"]).unwrap_or_else(|| "default".into()),
                required: flag(&["required"]),
                mode: num("mode", 8, 0o600)?,
                uid: num("uid", 10, 0)?,
                gid: num("gid", 10, 0)?,
            },
            target,
            readonly: true,
        },
        _ => RunMount {
            kind: Kind::Tmpfs {
                size: get(&["size"])
                    .map(|s| {
                        s.parse::<u64>()
                            .map_err(|_| format!("--mount={v}: size={s} (bytes)"))
                    })
                    .transpose()?,
            },
            target,
            readonly: false,
        },
    };
    Ok(m)
}

fn base_name(p: &str) -> String {
    p.rsplit('/').next().unwrap_or_default().to_string()
}

/// Where a cache mount's directory lives.
pub fn cache_dir(store_root: &std::path::Path, id: &str) -> PathBuf {
    store_root
        .join("buildmounts")
        .join(crate::image::digest::Digest::of(id.as_bytes()).hex())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_values() {
        assert_eq!(
            parse("type=cache,target=/root/.cache,id=x,uid=5,mode=0700").unwrap(),
            RunMount {
                kind: Kind::Cache {
                    id: "x".into(),
                    mode: 0o700,
                    uid: 5,
                    gid: 0
                },
                target: "/root/.cache".into(),
                readonly: false
            }
        );
        assert_eq!(
            parse("target=/src").unwrap().kind,
            Kind::Bind {
                source: "/".into(),
                from: None
            }
        );
        assert_eq!(
            parse("type=tmpfs,dst=/t,size=1048576").unwrap().kind,
            Kind::Tmpfs {
                size: Some(1 << 20)
            }
        );
        assert_eq!(
            parse("type=secret,id=tok").unwrap(),
            RunMount {
                kind: Kind::Secret {
                    id: "tok".into(),
                    env: None,
                    file: true,
                    required: false,
                    mode: 0o400,
                    uid: 0,
                    gid: 0
                },
                target: "/run/secrets/tok".into(),
                readonly: true
            }
        );
        let m = parse("type=secret,id=tok,env=TOKEN,required").unwrap();
        assert!(matches!(
            m.kind,
            Kind::Secret { file: false, required: true, ref env, .. } if env.as_deref() == Some("TOKEN")
        ));
        let m = parse("type=secret,target=/etc/k.pem,mode=0440,uid=5").unwrap();
        assert!(matches!(
            m.kind,
            Kind::Secret { ref id, file: true, mode: 0o440, uid: 5, .. } if id == "k.pem"
        ));
        let all = parse_all(["type=ssh", "type=ssh,id=gh,target=/a", "type=ssh,required"]).unwrap();
        let targets: Vec<&str> = all.iter().map(|m| m.target.as_str()).collect();
        assert_eq!(
            targets,
            [
                "/run/buildkit/ssh_agent.0",
                "/a",
                "/run/buildkit/ssh_agent.2"
            ]
        );
        assert!(matches!(&all[1].kind, Kind::Ssh { id, mode: 0o600, .. } if id == "gh"));
        for bad in [
            "type=secret",
            "type=secret,id=a,src=/x",
            "type=ssh,env=X",
            "type=cache",
            "type=bind,target=rel",
            "type=bind,target=/x,rw",
            "type=tmpfs,target=/x,bogus=1",
            "type=nfs,target=/x",
            "type=secret,id=a,mode=9",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
