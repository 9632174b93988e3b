//! The metadata instructions (ENV, LABEL, ARG, EXPOSE, VOLUME, WORKDIR, USER, CMD,
//! ENTRYPOINT, SHELL, STOPSIGNAL, HEALTHCHECK, ONBUILD, MAINTAINER): substitution where the
//! reference allows it, the config edit, and an `empty_layer` history entry.

use super::parse::{self, Args, Instruction};
use super::{Builder, Stage, config, now_rfc3339, one_line, shell_text, words};
use serde_json::{Value, json};

impl Builder<'_> {
    /// The metadata instructions: config edits and an empty_layer history entry.
    pub(super) fn meta(&mut self, s: &mut Stage, ins: &Instruction) -> Result<(), String> {
        let vars = s.vars();
        let esc = self.escape;
        let word = |t: &str| words::process_word(t, esc, &vars);
        let text = shell_text(ins);
        // The change, as a closure over the config, and the created_by text.
        let mut cfg = s.state.config.clone();
        let mut new_args = s.args.clone();
        let mut shell = s.shell.clone();
        let mut cmd_set = s.cmd_set;
        let as_list = |shell: &[String]| -> Vec<String> {
            match &ins.args {
                Args::Exec(v) => v.clone(),
                Args::Shell(t) => {
                    let mut a = shell.to_vec();
                    a.push(t.clone());
                    a
                }
                _ => Vec::new(),
            }
        };
        let shown: String = match ins.keyword.as_str() {
            "ENV" | "LABEL" => {
                let Args::Pairs(p) = &ins.args else {
                    return Err("expected KEY=VALUE".into());
                };
                let mut shown = Vec::new();
                for (k, v) in p {
                    let k = word(k)?;
                    let v = word(v)?;
                    if ins.keyword == "ENV" {
                        config::set_env(&mut cfg, &k, &v);
                    } else {
                        config::set_in_map(&mut cfg, "Labels", &k, json!(v));
                    }
                    shown.push(format!("{k}={v}"));
                }
                format!("{} {}", ins.keyword, shown.join(" "))
            }
            "ARG" => {
                let gv = self.global_vars()?;
                for w in parse::split_raw(text, esc)? {
                    let (name, default) = match w.split_once('=') {
                        Some((k, d)) => (k.to_string(), Some(word(d)?)),
                        None => (w.clone(), None),
                    };
                    let val = self
                        .build_arg(&name)
                        .or(default)
                        .or_else(|| gv.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone()));
                    new_args.retain(|(k, _)| *k != name);
                    if let Some(v) = val {
                        new_args.push((name, v));
                    }
                }
                format!("ARG {text}")
            }
            "EXPOSE" => {
                let mut ports = Vec::new();
                for p in words::process_words(text, esc, &vars)? {
                    let (num, proto) = p.split_once('/').unwrap_or((&p, "tcp"));
                    let ok = !num.is_empty()
                        && num.split('-').all(|n| n.parse::<u16>().is_ok())
                        && matches!(proto.to_ascii_lowercase().as_str(), "tcp" | "udp" | "sctp");
                    if !ok {
                        return Err(format!("invalid port {p:?}"));
                    }
                    let k = format!("{num}/{}", proto.to_ascii_lowercase());
                    config::set_in_map(&mut cfg, "ExposedPorts", &k, json!({}));
                    ports.push(k);
                }
                format!("EXPOSE {}", ports.join(" "))
            }
            "VOLUME" => {
                let vols = match &ins.args {
                    Args::Exec(v) => v
                        .iter()
                        .map(|w| words::expand_only(w, esc, &vars))
                        .collect::<Result<Vec<_>, _>>()?,
                    _ => words::process_words(text, esc, &vars)?,
                };
                for v in &vols {
                    config::set_in_map(&mut cfg, "Volumes", v, json!({}));
                }
                format!("VOLUME {}", config::go_list(&vols).replace('"', ""))
            }
            "WORKDIR" => {
                let w = word(text)?;
                let base = config::string(&cfg, "WorkingDir").unwrap_or_else(|| "/".into());
                let joined = if w.starts_with('/') {
                    w
                } else {
                    format!("{}/{w}", base.trim_end_matches('/'))
                };
                let clean = clean_path(&joined);
                config::inner(&mut cfg).insert("WorkingDir".into(), json!(clean));
                format!("WORKDIR {clean}")
            }
            "USER" => {
                let u = word(text)?;
                config::inner(&mut cfg).insert("User".into(), json!(u));
                format!("USER {u}")
            }
            "CMD" | "ENTRYPOINT" => {
                let v = as_list(&shell);
                let field = if ins.keyword == "CMD" {
                    "Cmd"
                } else {
                    "Entrypoint"
                };
                config::inner(&mut cfg).insert(field.into(), json!(v));
                if ins.keyword == "CMD" {
                    cmd_set = true;
                } else if !cmd_set {
                    // Docker: an ENTRYPOINT drops the Cmd inherited from the base.
                    config::inner(&mut cfg).insert("Cmd".into(), Value::Null);
                }
                format!("{} {}", ins.keyword, config::go_list(&v))
            }
            "SHELL" => {
                let Args::Exec(v) = &ins.args else {
                    return Err("SHELL must be a JSON array".into());
                };
                config::inner(&mut cfg).insert("Shell".into(), json!(v));
                shell = v.clone();
                format!("SHELL {}", config::go_list(v))
            }
            "STOPSIGNAL" => {
                let sig = word(text)?;
                config::inner(&mut cfg).insert("StopSignal".into(), json!(sig));
                format!("STOPSIGNAL {sig}")
            }
            "HEALTHCHECK" => {
                let mut hc = serde_json::Map::new();
                match &ins.args {
                    Args::None => {
                        hc.insert("Test".into(), json!(["NONE"]));
                    }
                    Args::Nested(c) => {
                        let test = match &c.args {
                            Args::Exec(v) => {
                                let mut t = vec!["CMD".to_string()];
                                t.extend(v.iter().cloned());
                                t
                            }
                            Args::Shell(t) => vec!["CMD-SHELL".to_string(), t.clone()],
                            _ => return Err("HEALTHCHECK CMD needs a command".into()),
                        };
                        hc.insert("Test".into(), json!(test));
                        for (flag, field) in [
                            ("interval", "Interval"),
                            ("timeout", "Timeout"),
                            ("start-period", "StartPeriod"),
                            ("start-interval", "StartInterval"),
                        ] {
                            if let Some(v) = ins.flag(flag) {
                                hc.insert(field.into(), json!(config::parse_duration(v)?));
                            }
                        }
                        if let Some(r) = ins.flag("retries") {
                            let n: u64 =
                                r.parse().map_err(|_| format!("--retries={r}: a number"))?;
                            hc.insert("Retries".into(), json!(n));
                        }
                    }
                    _ => return Err("HEALTHCHECK takes NONE or CMD".into()),
                }
                config::inner(&mut cfg).insert("Healthcheck".into(), Value::Object(hc));
                ins.original.clone()
            }
            "ONBUILD" => {
                let Args::Nested(n) = &ins.args else {
                    return Err("ONBUILD needs an instruction".into());
                };
                let list = config::inner(&mut cfg)
                    .entry("OnBuild")
                    .or_insert_with(|| json!([]));
                if !list.is_array() {
                    *list = json!([]);
                }
                list.as_array_mut()
                    .expect("an array")
                    .push(json!(n.original));
                format!("ONBUILD {}", n.original)
            }
            "MAINTAINER" => {
                cfg["author"] = json!(text);
                format!("MAINTAINER {text}")
            }
            k => return Err(format!("{k} is not a metadata instruction")),
        };
        let created_by = config::nop(&one_line(&shown));
        // ARG changes what later steps see, not the config: it is part of the key.
        let args_key: Vec<String> = new_args.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let args_key = args_key.join("\0");
        let (key, hit) = self.cached(
            s,
            &[
                &created_by,
                &args_key,
                &serde_json::to_string(&cfg["config"]).unwrap_or_default(),
            ],
        );
        s.args = new_args;
        s.shell = shell;
        s.cmd_set = cmd_set;
        if hit {
            return Ok(());
        }
        config::push_history(&mut cfg, &now_rfc3339(), &created_by, true);
        s.state.config = cfg;
        self.remember(&key, s)
    }
}

/// `/a/./b/../c/` -> `/a/c` (lexically, as Go's path.Clean).
fn clean_path(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    format!("/{}", out.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_paths() {
        assert_eq!(clean_path("/a/./b/../c/"), "/a/c");
        assert_eq!(clean_path("/../x"), "/x");
        assert_eq!(clean_path("/"), "/");
    }
}
