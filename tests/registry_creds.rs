//! Registry credentials against a real `docker-registry` on 127.0.0.1 with Basic auth
//! (htpasswd): `--password-stdin` with `-u USER` or `--creds USER` logs in for push and
//! pull, as `docker login --password-stdin` reads the password; a wrong or missing
//! password fails clearly; docker's credential helpers (`credHelpers`, `credsStore`) log in
//! too; and no output, error or debug log ever holds the password.

mod image_util;
mod registry_util;

use image_util::{Comp, config, file, layer, load_image, ok};
use registry_util::Registry;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const USER: &str = "tester";
/// A colon and a space in it: the password is everything after the user's colon.
const PASSWORD: &str = "pa:ss w0rd!";
/// bcrypt (cost 4) of PASSWORD, made once with Python's crypt.crypt.
const HTPASSWD: &str = "tester:$2b$04$YmRQJ7kOq7h06EcEKLJlCeGAq9Ch0CLvzqLWM6NOwqKJkCAVzKOPS\n";

/// `unionrs --store STORE ARGS` with `stdin` piped in and debug logging asked for.
fn with_stdin(store: &Path, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_unionrs"))
        .arg("--store")
        .arg(store)
        .args(args)
        .env("RUST_LOG", "trace")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // unionrs may refuse its arguments and exit before it reads stdin: a broken pipe here
    // is its answer, not the test's failure.
    let _ = child.stdin.take().unwrap().write_all(stdin);
    child.wait_with_output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Neither the password nor the Basic header made of it appear in `o`.
fn assert_no_secret(o: &Output, secret: &str) {
    let t = text(o);
    let basic = base64(format!("{USER}:{secret}").as_bytes());
    assert!(!t.contains(secret), "the password is in the output:\n{t}");
    assert!(
        !t.contains(&basic),
        "the Basic credentials are in the output:\n{t}"
    );
}

fn base64(data: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn password_stdin_logs_in_for_push_and_pull_and_never_shows_the_password() {
    assert_eq!(base64(b"tester:pa:ss w0rd!"), "dGVzdGVyOnBhOnNzIHcwcmQh");
    let reg = Registry::start_with_htpasswd(Some(HTPASSWD));
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let l = layer(&[file("hello", b"world")], Comp::Gzip);
    load_image(
        &store,
        tmp.path(),
        "img:1",
        &[&l],
        config(&[&l], "2024-01-01T00:00:00Z"),
    );
    let dest = format!("{}/sec/img:1", reg.addr);

    // No credentials: the registry's 401 is a clear error.
    let o = with_stdin(&store, &["push", "img:1", &dest], b"");
    assert!(!o.status.success());
    assert!(
        text(&o).contains("asks for a user name and password"),
        "{}",
        text(&o)
    );
    // A wrong password through stdin: refused, and not shown.
    let wrong = "not-the:password";
    let o = with_stdin(
        &store,
        &["push", "-u", USER, "--password-stdin", "img:1", &dest],
        format!("{wrong}\n").as_bytes(),
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("refused the credentials"), "{}", text(&o));
    assert_no_secret(&o, wrong);

    // -u USER --password-stdin (with docker login's trailing newline) pushes.
    let o = with_stdin(
        &store,
        &["push", "-u", USER, "--password-stdin", "img:1", &dest],
        format!("{PASSWORD}\n").as_bytes(),
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_no_secret(&o, PASSWORD);

    // --creds USER --password-stdin pulls it into another store, the same image.
    let store2 = tmp.path().join("store2");
    let o = with_stdin(
        &store2,
        &["pull", "--creds", USER, "--password-stdin", &dest],
        format!("{PASSWORD}\r\n").as_bytes(),
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_no_secret(&o, PASSWORD);
    let image_id = |s: &Path, name: &str| {
        let v: serde_json::Value = serde_json::from_str(&ok(s, &["inspect", name])).unwrap();
        v[0]["Id"].as_str().unwrap().to_string()
    };
    assert_eq!(image_id(&store, "img:1"), image_id(&store2, &dest));
    // --creds USER:PASS still works, and is not echoed either.
    let store3 = tmp.path().join("store3");
    let o = with_stdin(
        &store3,
        &["pull", "--creds", &format!("{USER}:{PASSWORD}"), &dest],
        b"",
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_no_secret(&o, PASSWORD);
}

#[test]
fn password_stdin_usage_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    // Nothing is contacted: port 9 on loopback answers nothing anyway.
    let dest = "127.0.0.1:9/x/y:1";
    for (args, stdin, want) in [
        (
            vec!["pull", "--password-stdin", dest],
            "pw\n",
            "--password-stdin needs a user: --username USER or --creds USER",
        ),
        (
            vec!["pull", "--creds", "tester:pw", "--password-stdin", dest],
            "pw\n",
            "--password-stdin takes the password from stdin: give --creds USER without :PASSWORD",
        ),
        (
            vec![
                "pull",
                "-u",
                "tester",
                "--creds",
                "tester",
                "--password-stdin",
                dest,
            ],
            "pw\n",
            "give the user once",
        ),
        (
            vec!["pull", "-u", "tester", dest],
            "",
            "--username goes with --password-stdin",
        ),
        (
            vec!["pull", "--creds", "tester", dest],
            "",
            "--creds takes USER:PASSWORD (or --creds USER with --password-stdin)",
        ),
        (
            vec!["pull", "-u", "tester", "--password-stdin", dest],
            "\n",
            "--password-stdin: stdin held no password",
        ),
    ] {
        let o = with_stdin(&store, &args, stdin.as_bytes());
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        let first = String::from_utf8_lossy(&o.stderr)
            .lines()
            .next()
            .unwrap_or("")
            .to_string();
        assert!(first.contains(want), "{args:?}: {first}");
    }
}

/// `unionrs --store STORE ARGS` with DOCKER_CONFIG=`config` and `bin` first on PATH.
fn with_docker_config(store: &Path, config: &Path, bin: &Path, args: &[&str]) -> Output {
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new(env!("CARGO_BIN_EXE_unionrs"))
        .arg("--store")
        .arg(store)
        .args(args)
        .env("DOCKER_CONFIG", config)
        .env_remove("REGISTRY_AUTH_FILE")
        .env("PATH", path)
        .env("RUST_LOG", "trace")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// docker's credential helpers: `credHelpers` names one for the registry, `credsStore` is
/// the default; each is `docker-credential-NAME get`, the server on stdin, JSON on stdout.
/// The helper here is a shell script that knows the test registry and logs what it is asked.
#[test]
fn docker_credential_helpers_log_in_for_push_and_pull() {
    use std::os::unix::fs::PermissionsExt;
    let reg = Registry::start_with_htpasswd(Some(HTPASSWD));
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let l = layer(&[file("hello", b"helper")], Comp::Gzip);
    load_image(
        &store,
        tmp.path(),
        "img:2",
        &[&l],
        config(&[&l], "2024-01-02T00:00:00Z"),
    );
    let dest = format!("{}/helped/img:2", reg.addr);
    let bin = tmp.path().join("bin");
    let asked = tmp.path().join("asked");
    std::fs::create_dir(&bin).unwrap();
    let helper = |name: &str, script: String| {
        let p = bin.join(format!("docker-credential-{name}"));
        std::fs::write(&p, script).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    helper(
        "unionrs-test",
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 3\nread -r server\n\
             echo \"$server\" >> {asked}\n\
             if [ \"$server\" = {addr} ]; then\n\
             printf '{{\"ServerURL\":\"%s\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}\\n' \"$server\"\n\
             else echo 'credentials not found in native keychain'; exit 1; fi\n",
            asked = asked.display(),
            addr = reg.addr,
        ),
    );
    helper(
        "knows-nothing",
        "#!/bin/sh\necho 'credentials not found in native keychain'\nexit 1\n".into(),
    );
    helper(
        "broken",
        "#!/bin/sh\necho 'keychain locked' >&2\nexit 2\n".into(),
    );
    let cfg = |name: &str, json: String| {
        let d = tmp.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("config.json"), json).unwrap();
        d
    };

    // credHelpers names the helper for this registry (credsStore would say nothing).
    let named = cfg(
        "named",
        format!(
            r#"{{"credsStore":"knows-nothing","credHelpers":{{"{}":"unionrs-test"}}}}"#,
            reg.addr
        ),
    );
    let o = with_docker_config(&store, &named, &bin, &["push", "img:2", &dest]);
    assert!(o.status.success(), "{}", text(&o));
    assert_no_secret(&o, PASSWORD);
    assert_eq!(
        std::fs::read_to_string(&asked).unwrap(),
        format!("{}\n", reg.addr)
    );

    // credsStore serves every registry without its own helper: pull into another store.
    let default = cfg("default", r#"{"credsStore":"unionrs-test"}"#.into());
    let store2 = tmp.path().join("store2");
    let o = with_docker_config(&store2, &default, &bin, &["pull", &dest]);
    assert!(o.status.success(), "{}", text(&o));
    assert_no_secret(&o, PASSWORD);
    let image_id = |s: &Path, name: &str| {
        let v: serde_json::Value = serde_json::from_str(&ok(s, &["inspect", name])).unwrap();
        v[0]["Id"].as_str().unwrap().to_string()
    };
    assert_eq!(image_id(&store, "img:2"), image_id(&store2, &dest));

    // A helper with nothing for the registry: no credentials, so the registry's 401.
    let none = cfg("none", r#"{"credsStore":"knows-nothing"}"#.into());
    let o = with_docker_config(&store, &none, &bin, &["pull", &dest]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("asks for a user name and password"),
        "{}",
        text(&o)
    );
    // A helper that fails, or is not there, is an error that names it.
    let broken = cfg("broken", r#"{"credsStore":"broken"}"#.into());
    let o = with_docker_config(&store, &broken, &bin, &["pull", &dest]);
    assert!(!o.status.success());
    let t = text(&o);
    assert!(
        t.contains("docker-credential-broken") && t.contains("keychain locked"),
        "{t}"
    );
    let missing = cfg(
        "missing",
        format!(r#"{{"credHelpers":{{"{}":"absent"}}}}"#, reg.addr),
    );
    let o = with_docker_config(&store, &missing, &bin, &["push", "img:2", &dest]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("docker-credential-absent cannot run"),
        "{}",
        text(&o)
    );
    // --creds still wins over any helper.
    let o = with_docker_config(
        &store,
        &broken,
        &bin,
        &["pull", "--creds", &format!("{USER}:{PASSWORD}"), &dest],
    );
    assert!(o.status.success(), "{}", text(&o));
}
