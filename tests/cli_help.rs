//! The verbs' command line as a user meets it: `unionrs VERB --help` and `unionrs help VERB`
//! for every verb, docker-shaped usage errors, completions and man pages that know every verb.

mod image_util;

use std::path::PathBuf;
use std::process::{Command, Output};

fn bin() -> PathBuf {
    std::env::var_os("UNIONRS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_unionrs")))
}

/// Runs unionrs with a store of its own, so that nothing here touches a real one.
fn unionrs(store: &std::path::Path, args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .env("UNIONRS_STORE", store)
        .output()
        .unwrap()
}

/// The verbs the binary must have (others may be added; none may go missing).
const KNOWN: &[&str] = &[
    "pull",
    "push",
    "load",
    "save",
    "images",
    "inspect",
    "history",
    "tag",
    "rmi",
    "prune",
    "create",
    "ps",
    "mount",
    "umount",
    "diff",
    "commit",
    "rm",
    "run",
    "build",
    "check",
    "export-layer",
    "stats",
    "completions",
    "logs",
    "exec",
    "attach",
    "start",
    "stop",
    "restart",
    "kill",
    "wait",
    "pause",
    "unpause",
    "top",
];

/// Every verb with its flags as `--long` / `-s` spellings.
fn verbs() -> Vec<(String, Vec<String>)> {
    let verbs: Vec<(String, Vec<String>)> = unionrs::cli::help::verbs()
        .iter()
        .map(|v| {
            let flags = v
                .get_arguments()
                .flat_map(|a| {
                    let long = a.get_long().map(|l| format!("--{l}"));
                    let short = a.get_short().map(|s| format!("-{s}"));
                    long.into_iter().chain(short)
                })
                .collect();
            (v.get_name().to_string(), flags)
        })
        .collect();
    for k in KNOWN {
        assert!(verbs.iter().any(|(v, _)| v == k), "verb {k} is missing");
    }
    verbs
}

#[test]
fn every_verb_explains_itself() {
    let tmp = tempfile::tempdir().unwrap();
    for (verb, flags) in verbs() {
        let o = unionrs(tmp.path(), &[&verb, "--help"]);
        assert!(o.status.success(), "{verb} --help: {}", o.status);
        let help = String::from_utf8_lossy(&o.stdout);
        assert!(help.contains(&format!("unionrs {verb}")), "{verb}: {help}");
        for f in &flags {
            assert!(
                help.contains(f.as_str()),
                "{verb} --help lacks {f}:\n{help}"
            );
        }
        let o = unionrs(tmp.path(), &["help", &verb]);
        assert!(o.status.success(), "help {verb}: {}", o.status);
        let help = String::from_utf8_lossy(&o.stdout);
        for f in &flags {
            assert!(help.contains(f.as_str()), "help {verb} lacks {f}:\n{help}");
        }
    }
}

#[test]
fn usage_errors_are_two_lines_that_point_at_the_help() {
    let tmp = tempfile::tempdir().unwrap();
    for (verb, _) in verbs() {
        let o = unionrs(tmp.path(), &[&verb, "--no-such-flag"]);
        let err = String::from_utf8_lossy(&o.stderr);
        let want = if unionrs::cli::RUN_LIKE.contains(&verb.as_str()) {
            125
        } else {
            2
        };
        assert_eq!(o.status.code(), Some(want), "{verb}: {err}");
        assert!(o.stdout.is_empty(), "{verb}");
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 2, "{verb}: {err}");
        assert!(lines[0].contains("--no-such-flag"), "{verb}: {err}");
        assert_eq!(lines[1], format!("See 'unionrs {verb} --help'."));
    }
    // A missing argument and an error found after parsing have the same shape.
    for args in [
        &["pull"][..],
        &["push", "--chunk-size", "0", "x:1"],
        &["tag", "a"],
    ] {
        let o = unionrs(tmp.path(), args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 2, "{args:?}: {err}");
        assert_eq!(
            err.lines().last(),
            Some(format!("See 'unionrs {} --help'.", args[0]).as_str())
        );
    }
    let o = unionrs(tmp.path(), &["help", "no-such-verb"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).lines().count() <= 2);
}

#[test]
fn completions_know_every_verb() {
    let tmp = tempfile::tempdir().unwrap();
    let script = |shell: &str| {
        let o = unionrs(tmp.path(), &["completions", shell]);
        assert!(o.status.success(), "{shell}");
        String::from_utf8(o.stdout).unwrap()
    };
    let (bash, zsh, fish) = (script("bash"), script("zsh"), script("fish"));
    for (verb, flags) in verbs() {
        assert!(bash.contains(&format!("unionrs,{verb})")), "bash: {verb}");
        assert!(zsh.contains(&format!("'{verb}:")), "zsh: {verb}");
        assert!(fish.contains(&format!("-a \"{verb}\"")), "fish: {verb}");
        for f in flags.iter().filter(|f| f.starts_with("--")) {
            assert!(bash.contains(f.as_str()), "bash: {verb} {f}");
        }
    }
}

#[test]
fn a_man_page_per_verb() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("man");
    let o = unionrs(tmp.path(), &["generate-man", dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let main = std::fs::read_to_string(dir.join("unionrs.1")).unwrap();
    for (verb, flags) in verbs() {
        let page = std::fs::read_to_string(dir.join(format!("unionrs-{verb}.1")))
            .unwrap_or_else(|e| panic!("unionrs-{verb}.1: {e}"));
        assert!(page.contains(".SH \"EXIT STATUS\""), "{verb}");
        for f in &flags {
            assert!(
                page.contains(&f.replace('-', "\\-")),
                "unionrs-{verb}.1 lacks {f}"
            );
        }
        let roff_name = format!("unionrs\\-{}(1)", verb.replace('-', "\\-"));
        assert!(main.contains(&roff_name), "unionrs.1 does not list {verb}");
    }
}

/// bash: the first positional of an image verb completes to the store's images, of a
/// container verb to its containers; a flag's value and the words after it do not.
#[test]
fn bash_completes_image_and_container_names() {
    assert!(
        image_util::can_mount(),
        "needs root, /dev/fuse and fusermount3"
    );
    let tmp = tempfile::tempdir().unwrap();
    let store = image_util::store_with_busybox(tmp.path());
    let _unmount = image_util::UnmountUnder(store.clone());
    image_util::ok(&store, &["create", "--name", "c1", "bb:1"]);
    let script = tmp.path().join("unionrs.bash");
    let o = unionrs(&store, &["completions", "bash"]);
    std::fs::write(&script, &o.stdout).unwrap();
    let path = format!(
        "{}:{}",
        bin().parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let complete = |words: &[&str]| -> Vec<String> {
        let mut all = vec!["unionrs", "--store", store.to_str().unwrap()];
        all.extend(words);
        let quoted: Vec<String> = all.iter().map(|w| format!("'{w}'")).collect();
        let cword = all.len() - 1;
        let prog = format!(
            ". '{}'\nCOMP_WORDS=({})\nCOMP_CWORD={cword}\n\
             _unionrs_names unionrs '{}' '{}'\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
            script.display(),
            quoted.join(" "),
            all[cword],
            all[cword - 1],
        );
        let o = Command::new("bash")
            .args(["-c", &prog])
            .env("PATH", &path)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    };
    assert_eq!(complete(&["rmi", ""]), ["bb:1"]);
    assert_eq!(complete(&["inspect", "-f", "{{.Id}}", "b"]), ["bb:1"]);
    assert_eq!(complete(&["run", "--rm", "-e", "A=1", ""]), ["bb:1"]);
    assert_eq!(complete(&["tag", ""]), ["bb:1"]);
    assert_eq!(complete(&["rm", ""]), ["c1"]);
    assert_eq!(complete(&["diff", "c"]), ["c1"]);
    assert!(!complete(&["run", "bb:1", ""]).contains(&"bb:1".to_string()));
    assert!(!complete(&["run", "--name", ""]).contains(&"bb:1".to_string()));
    assert!(!complete(&["pull", ""]).contains(&"bb:1".to_string()));
    image_util::ok(&store, &["rm", "c1"]);
}
