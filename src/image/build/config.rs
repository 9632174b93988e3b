//! The image config a build edits: the metadata instructions (ENV, LABEL, EXPOSE, VOLUME,
//! WORKDIR, USER, CMD, ENTRYPOINT, SHELL, STOPSIGNAL, HEALTHCHECK, ONBUILD, MAINTAINER) as
//! changes to the config's Docker-named fields, and the history entries with `created_by`
//! written as the classic docker builder writes it (`/bin/sh -c #(nop)  ENV A=b`).

use serde_json::{Value, json};

/// The shell of shell-form RUN, CMD and ENTRYPOINT when SHELL does not set one.
pub const DEFAULT_SHELL: &[&str] = &["/bin/sh", "-c"];

/// The empty config of `FROM scratch`.
pub fn scratch() -> Value {
    json!({
        "architecture": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": []},
        "history": [],
    })
}

/// The `config` object of an image config, made if missing.
pub fn inner(cfg: &mut Value) -> &mut serde_json::Map<String, Value> {
    if !cfg.get("config").is_some_and(Value::is_object) {
        cfg["config"] = json!({});
    }
    cfg["config"].as_object_mut().expect("made an object above")
}

pub fn strings(cfg: &Value, key: &str) -> Vec<String> {
    cfg.pointer(&format!("/config/{key}"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

pub fn string(cfg: &Value, key: &str) -> Option<String> {
    cfg.pointer(&format!("/config/{key}"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// The config's Env as (key, value) pairs, in order.
pub fn env_pairs(cfg: &Value) -> Vec<(String, String)> {
    strings(cfg, "Env")
        .into_iter()
        .map(|e| match e.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (e, String::new()),
        })
        .collect()
}

pub fn set_env(cfg: &mut Value, key: &str, value: &str) {
    let env = inner(cfg).entry("Env").or_insert_with(|| json!([]));
    if !env.is_array() {
        *env = json!([]);
    }
    let list = env.as_array_mut().expect("an array");
    let item = json!(format!("{key}={value}"));
    match list.iter().position(|e| {
        e.as_str()
            .is_some_and(|s| s.split_once('=').map_or(s, |(k, _)| k) == key)
    }) {
        Some(i) => list[i] = item,
        None => list.push(item),
    }
}

/// Sets `map_key`'s entry `k` (Labels, ExposedPorts, Volumes).
pub fn set_in_map(cfg: &mut Value, map_key: &str, k: &str, v: Value) {
    let m = inner(cfg).entry(map_key).or_insert_with(|| json!({}));
    if !m.is_object() {
        *m = json!({});
    }
    m.as_object_mut().expect("an object").insert(k.into(), v);
}

/// A history entry; `empty_layer` for metadata steps.
pub fn push_history(cfg: &mut Value, created: &str, created_by: &str, empty_layer: bool) {
    let h = cfg
        .as_object_mut()
        .expect("an image config is an object")
        .entry("history")
        .or_insert_with(|| json!([]));
    if !h.is_array() {
        *h = json!([]);
    }
    let mut e = json!({"created": created, "created_by": created_by});
    if empty_layer {
        e["empty_layer"] = json!(true);
    }
    h.as_array_mut().expect("an array").push(e);
    cfg["created"] = json!(created);
}

/// Docker's `created_by` of a metadata step.
pub fn nop(text: &str) -> String {
    format!("/bin/sh -c #(nop)  {text}")
}

/// A list as Go's `%q` of a string slice prints it: `["a" "b c"]`.
pub fn go_list(v: &[String]) -> String {
    let items: Vec<String> = v
        .iter()
        .map(|s| serde_json::to_string(s).unwrap_or_default())
        .collect();
    format!("[{}]", items.join(" "))
}

/// Go's time.Duration syntax (`1m30s`, `500ms`, `2h`) in nanoseconds.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let bad = || format!("invalid duration {s:?} (like 30s, 1m30s, 500ms)");
    if s == "0" {
        return Ok(0);
    }
    let mut rest = s;
    let mut total: f64 = 0.0;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let num: f64 = rest[..n].parse().map_err(|_| bad())?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..u] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        total += num * mult;
        rest = &rest[u..];
    }
    Ok(total as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_replaces_in_place_and_maps_are_made() {
        let mut c = json!({"config": {"Env": ["A=1", "B=2"]}});
        set_env(&mut c, "A", "3");
        set_env(&mut c, "C", "x=y");
        assert_eq!(strings(&c, "Env"), ["A=3", "B=2", "C=x=y"]);
        set_in_map(&mut c, "ExposedPorts", "80/tcp", json!({}));
        assert_eq!(c["config"]["ExposedPorts"], json!({"80/tcp": {}}));
        push_history(&mut c, "t", &nop("ENV A=3"), true);
        assert_eq!(
            c["history"][0],
            json!({"created": "t", "created_by": "/bin/sh -c #(nop)  ENV A=3", "empty_layer": true})
        );
    }

    #[test]
    fn durations_and_lists() {
        assert_eq!(parse_duration("1m30s").unwrap(), 90_000_000_000);
        assert_eq!(parse_duration("500ms").unwrap(), 500_000_000);
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("x").is_err());
        assert_eq!(go_list(&["a".into(), "b c".into()]), r#"["a" "b c"]"#);
    }
}
