//! `RUN --mount=...` as BuildKit accepts it, for the types that need no daemon:
//!
//! - `type=bind` (the default): `source` (default: the root) from the build context or
//!   `from=STAGE|IMAGE`, read-only (`rw`, whose writes BuildKit throws away, is refused here
//!   rather than letting writes reach the context);
//! - `type=cache`: a directory kept across builds in STORE/buildmounts/<sha256(id)>, `id`
//!   defaulting to the target, `mode`/`uid`/`gid` when it is made;
//! - `type=tmpfs`: a fresh tmpfs (`size` in bytes).
//!
//! `secret` and `ssh` are refused. Mount points the runtime has to make in the rootfs are
//! removed after the command, so they never reach the layer.

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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunMount {
    pub kind: Kind,
    pub target: String,
    pub readonly: bool,
}

/// Parses one `--mount` value (`type=cache,target=/x,id=y`).
pub fn parse(v: &str) -> Result<RunMount, String> {
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
    let target = get(&["target", "dst", "destination"])
        .ok_or_else(|| format!("--mount={v}: target=PATH is required"))?;
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
        "secret" | "ssh" => return Err(format!("--mount=type={kind} is not supported")),
        k => return Err(format!("--mount: unknown type {k:?} (bind, cache, tmpfs)")),
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
        for bad in [
            "type=secret,id=a,target=/s",
            "type=cache",
            "type=bind,target=rel",
            "type=bind,target=/x,rw",
            "type=tmpfs,target=/x,bogus=1",
            "type=nfs,target=/x",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
