//! `unionrs build` with the real runtime (runc) over real union mounts, from a busybox
//! image the test loads: a two-stage Dockerfile with every instruction checked by running
//! the result and reading its config, the layer cache (hit, miss after a context change),
//! failures (a failing RUN, a bad instruction, a context escape) with the store checked
//! afterwards, and .dockerignore. Needs root, /dev/fuse, runc and busybox-static.

mod image_util;
mod registry_util;
use image_util::*;
use serde_json::{Value, json};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

fn build(store: &Path, args: &[&str]) -> Output {
    let mut a = vec!["build"];
    a.extend_from_slice(args);
    unionrs(store, &a)
}

/// Builds and insists on success; returns (stdout, image ID from its last line).
fn build_ok(store: &Path, args: &[&str]) -> (String, String) {
    let o = build(store, args);
    assert!(
        o.status.success(),
        "build failed:\n{}\n{}",
        out(&o),
        err(&o)
    );
    let s = out(&o);
    let id = s.lines().last().unwrap_or_default().to_string();
    assert!(
        id.starts_with("sha256:") && id.len() == 71,
        "last line {id:?}"
    );
    (s, id)
}

fn context(tmp: &Path, dockerfile: &str, files: &[(&str, &str)]) -> PathBuf {
    let ctx = tmp.join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    for (name, data) in files {
        let p = ctx.join(name);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, data).unwrap();
    }
    ctx
}

/// `unionrs run --rm IMAGE -- ARGS`, insisting on status 0; its stdout.
fn run(store: &Path, image: &str, args: &[&str]) -> String {
    let mut a = vec!["run", "--rm", image];
    if !args.is_empty() {
        a.push("--");
        a.extend_from_slice(args);
    }
    let o = unionrs(store, &a);
    assert!(o.status.success(), "run {a:?}: {}", err(&o));
    out(&o)
}

fn inspect(store: &Path, image: &str) -> Value {
    let v: Value = serde_json::from_str(&ok(store, &["inspect", image])).unwrap();
    v[0].clone()
}

/// Nothing of the store is mounted and no container dir is left.
fn assert_clean(store: &Path) {
    let mounts = fs::read_to_string("/proc/mounts").unwrap();
    let s = store.display().to_string();
    assert!(
        !mounts.lines().any(|l| l.contains(&s)),
        "a mount of the store is left:\n{mounts}"
    );
    let left: Vec<_> = fs::read_dir(store.join("containers"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "containers left: {left:?}");
}

const TWO_STAGES: &str = r#"# syntax=docker/dockerfile:1
ARG BASE=bb:1
FROM ${BASE} AS builder
ARG GREETING=hello
ENV APP_HOME=/opt/app
WORKDIR $APP_HOME
RUN echo "$GREETING from builder" > built.txt
RUN ["/bin/sh", "-c", "echo exec-form > exec.txt"]
COPY src/ ./src/

FROM bb:1
MAINTAINER someone@example.com
LABEL org.example.name="demo app" version=1
ENV GREETING=hi \
    OTHER=${GREETING:-unset}
COPY --from=builder /opt/app/built.txt /opt/app/exec.txt /app/
COPY --from=builder /opt/app/src /app/src
COPY --chown=app:app --chmod=640 conf.txt /app/conf.txt
ADD files.tar.gz /app/extracted/
COPY *.md /app/docs/
WORKDIR /app
RUN mkdir -p /data && echo "$GREETING $OTHER" > /app/env.txt
USER app
EXPOSE 8080 53/udp
VOLUME /data
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --retries=2 CMD ["true"]
ONBUILD RUN echo triggered > /tmp/onbuild
SHELL ["/bin/sh", "-c"]
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat /app/built.txt"]
"#;

fn two_stage_context(tmp: &Path) -> PathBuf {
    let ctx = context(
        tmp,
        TWO_STAGES,
        &[
            ("src/main.c", "int main(){}\n"),
            ("src/sub/x.h", "#define X\n"),
            ("conf.txt", "conf\n"),
            ("a.md", "A\n"),
            ("b.md", "B\n"),
        ],
    );
    let tgz = {
        let t = tar(&[dir("inner"), file("inner/f.txt", b"from the archive\n")]);
        let mut g = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut g, &t).unwrap();
        g.finish().unwrap()
    };
    fs::write(ctx.join("files.tar.gz"), tgz).unwrap();
    ctx
}

#[test]
fn two_stages_with_every_instruction() {
    preflight();
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_busybox(tmp.path());
    let _guard = UnmountUnder(store.join("containers"));
    let ctx = two_stage_context(tmp.path());
    let (output, id) = build_ok(&store, &["-t", "demo:1", ctx.to_str().unwrap()]);
    let steps = TWO_STAGES
        .lines()
        .filter(|l| {
            let t = l.trim_start();
            !t.is_empty() && !t.starts_with('#') && !l.starts_with(' ')
        })
        .count()
        - 1; // the ARG before FROM is no step
    assert!(
        output.contains(&format!("STEP 1/{steps}: FROM ${{BASE}} AS builder")),
        "{output}"
    );
    assert!(
        output.contains(&format!("STEP {steps}/{steps}: CMD")),
        "{output}"
    );
    assert_clean(&store);

    // CMD through ENTRYPOINT, the multi-stage COPY, ENV/ARG effects (ENV values see the
    // environment before the instruction; the builder stage's ARG is out of scope here).
    assert_eq!(run(&store, "demo:1", &[]), "hello from builder\n");
    assert_eq!(
        run(&store, "demo:1", &["cat /app/exec.txt /app/env.txt"]),
        "exec-form\nhi unset\n"
    );
    // USER and WORKDIR.
    assert_eq!(
        run(&store, "demo:1", &["id -u; id -g; pwd"]),
        "1000\n1000\n/app\n"
    );
    // Files: owners and modes (COPY --chown/--chmod; others root), the archive, globs.
    assert_eq!(
        run(
            &store,
            "demo:1",
            &[
                "stat -c '%a %u:%g %n' conf.txt built.txt src/main.c src/sub/x.h extracted/inner/f.txt docs/a.md docs/b.md"
            ]
        ),
        "640 1000:1000 conf.txt\n644 0:0 built.txt\n644 0:0 src/main.c\n644 0:0 src/sub/x.h\n\
         644 0:0 extracted/inner/f.txt\n644 0:0 docs/a.md\n644 0:0 docs/b.md\n"
    );
    assert_eq!(
        run(&store, "demo:1", &["cat extracted/inner/f.txt"]),
        "from the archive\n"
    );

    let img = inspect(&store, "demo:1");
    assert_eq!(img["Id"], id);
    let c = &img["Config"];
    assert_eq!(c["Env"], json!(["PATH=/bin", "GREETING=hi", "OTHER=unset"]));
    assert_eq!(c["Entrypoint"], json!(["/bin/sh", "-c"]));
    assert_eq!(c["Cmd"], json!(["cat /app/built.txt"]));
    assert_eq!(c["WorkingDir"], "/app");
    assert_eq!(c["User"], "app");
    assert_eq!(c["ExposedPorts"], json!({"8080/tcp": {}, "53/udp": {}}));
    assert_eq!(c["Volumes"], json!({"/data": {}}));
    assert_eq!(
        c["Labels"],
        json!({"org.example.name": "demo app", "version": "1"})
    );
    assert_eq!(c["StopSignal"], "SIGTERM");
    assert_eq!(
        c["Healthcheck"],
        json!({"Test": ["CMD", "true"], "Interval": 30_000_000_000u64, "Retries": 2})
    );
    assert_eq!(c["OnBuild"], json!(["RUN echo triggered > /tmp/onbuild"]));
    assert_eq!(c["Shell"], json!(["/bin/sh", "-c"]));
    assert_eq!(img["Author"], "someone@example.com");

    // History: the base's entry, then one per instruction of the last stage; layers only
    // for RUN/COPY/ADD.
    let raw = raw_config(&store, &id);
    let h = raw["history"].as_array().unwrap();
    let second_stage = TWO_STAGES.split("\nFROM bb:1\n").nth(1).unwrap();
    let n_instr = second_stage
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with(' '))
        .count();
    assert_eq!(h.len(), 1 + n_instr, "{h:#?}");
    let layered: Vec<&str> = h[1..]
        .iter()
        .filter(|e| e.get("empty_layer").is_none())
        .map(|e| e["created_by"].as_str().unwrap())
        .collect();
    assert_eq!(layered.len(), 6, "{layered:#?}");
    assert_eq!(raw["rootfs"]["diff_ids"].as_array().unwrap().len(), 1 + 6);
    assert!(
        h.iter()
            .any(|e| e["created_by"] == "/bin/sh -c #(nop)  USER app")
    );
    assert!(
        h.iter()
            .any(|e| e["created_by"] == "/bin/sh -c #(nop)  ENV GREETING=hi OTHER=unset")
    );
    assert!(h.iter().any(|e| e["created_by"]
        == "/bin/sh -c mkdir -p /data && echo \"$GREETING $OTHER\" > /app/env.txt"));
    assert!(layered.iter().any(
        |c| c.starts_with("/bin/sh -c #(nop) COPY file:") && c.ends_with(" in /app/conf.txt ")
    ));

    // `history` pairs the entries with layers: the metadata steps show no size.
    let shown = ok(&store, &["history", "--no-trunc", "demo:1"]);
    assert!(shown.contains("/bin/sh -c #(nop)  USER app"), "{shown}");
    assert_eq!(shown.lines().count(), 1 + h.len(), "{shown}");

    // ONBUILD: the trigger runs in a build FROM this image, and is not inherited.
    let ctx2 = tmp.path().join("ctx2");
    fs::create_dir_all(&ctx2).unwrap();
    fs::write(
        ctx2.join("Containerfile"),
        "FROM demo:1\nUSER root\nRUN cat /tmp/onbuild\n",
    )
    .unwrap();
    let (o2, _) = build_ok(&store, &["-t", "child:1", ctx2.to_str().unwrap()]);
    assert!(o2.contains("ONBUILD trigger: RUN echo triggered"), "{o2}");
    assert!(o2.contains("\ntriggered\n"), "{o2}");
    assert_eq!(inspect(&store, "child:1")["Config"]["OnBuild"], Value::Null);
    assert_clean(&store);
}

/// The image config blob of an image ID, as stored.
fn raw_config(store: &Path, id: &str) -> Value {
    let hex = id.strip_prefix("sha256:").unwrap();
    serde_json::from_slice(&fs::read(store.join("blobs/sha256").join(hex)).unwrap()).unwrap()
}

#[test]
fn cache_hits_on_a_rebuild_and_misses_from_the_changed_copy() {
    preflight();
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_busybox(tmp.path());
    let _guard = UnmountUnder(store.join("containers"));
    let df = "FROM bb:1\nRUN echo one > /one\nENV X=1\nCOPY data.txt /data.txt\nRUN cat /data.txt > /copy\nCMD [\"cat\", \"/copy\"]\n";
    let ctx = context(tmp.path(), df, &[("data.txt", "v1\n")]);
    let c = ctx.to_str().unwrap();
    let (first, id1) = build_ok(&store, &["-t", "c:1", c]);
    assert!(!first.contains("Using cache"), "{first}");
    let (second, id2) = build_ok(&store, &["-t", "c:1", c]);
    assert_eq!(id1, id2, "an unchanged rebuild gives the same image");
    assert_eq!(second.matches("--> Using cache").count(), 5, "{second}");
    assert_clean(&store);

    // A changed source: the steps before the COPY hit, the COPY and after run again.
    fs::write(ctx.join("data.txt"), "v2\n").unwrap();
    let (third, id3) = build_ok(&store, &["-t", "c:1", c]);
    assert_ne!(id3, id1);
    assert_eq!(third.matches("--> Using cache").count(), 2, "{third}");
    assert_eq!(run(&store, "c:1", &[]), "v2\n");

    // --no-cache runs every step.
    let (fourth, _) = build_ok(&store, &["--no-cache", "-q", c]);
    assert_eq!(fourth.lines().count(), 1, "-q prints only the ID: {fourth}");

    // prune frees the cache with the layers only it used; the next build runs again.
    ok(&store, &["rmi", "c:1"]);
    ok(&store, &["prune", "-f"]);
    assert!(
        fs::read_dir(store.join("buildcache"))
            .unwrap()
            .next()
            .is_none(),
        "prune leaves no cache entry whose layers it freed"
    );
    let (fifth, _) = build_ok(&store, &["-t", "c:1", c]);
    assert!(!fifth.contains("Using cache"), "{fifth}");
    assert_clean(&store);
}

#[test]
fn a_failing_run_stops_the_build_and_leaves_nothing() {
    preflight();
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_busybox(tmp.path());
    let _guard = UnmountUnder(store.join("containers"));
    let df = "FROM bb:1\nRUN echo before > /b\nRUN echo failing; exit 3\nRUN echo never\n";
    let ctx = context(tmp.path(), df, &[]);
    let images_before = ok(&store, &["images", "--format", "json"]);
    let o = build(&store, &["-t", "f:1", ctx.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert_eq!(
        err(&o).trim_end(),
        "unionrs: STEP 3/4: RUN echo failing; exit 3: exit status 3"
    );
    assert!(out(&o).contains("failing\n"), "{}", out(&o));
    assert!(!out(&o).contains("never"));
    assert_eq!(ok(&store, &["images", "--format", "json"]), images_before);
    assert_clean(&store);
    // The step before the failure stays cached.
    let o = build(&store, &[ctx.to_str().unwrap()]);
    assert_eq!(out(&o).matches("--> Using cache").count(), 1, "{}", out(&o));
    assert_clean(&store);
}

#[test]
fn bad_instructions_and_context_escapes_are_refused_before_anything_runs() {
    preflight();
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_busybox(tmp.path());
    let _guard = UnmountUnder(store.join("containers"));
    fs::write(tmp.path().join("secret"), "s\n").unwrap();
    let ctx = context(tmp.path(), "", &[("ok.txt", "ok\n")]);
    std::os::unix::fs::symlink("../secret", ctx.join("link")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", ctx.join("abs")).unwrap();
    let images_before = ok(&store, &["images", "--format", "json"]);
    let cases = [
        (
            "FROM bb:1\nRUN echo x\nFOO bar\n",
            "Dockerfile:3: unknown instruction: FOO",
        ),
        (
            "FROM bb:1\nCOPY --bogus=1 ok.txt /\n",
            "Dockerfile:2: unknown flag --bogus for COPY",
        ),
        (
            "FROM bb:1\nCOPY ../secret /s\n",
            "STEP 2/2: COPY ../secret /s: ../secret: outside the build context",
        ),
        (
            "FROM bb:1\nCOPY link /s\n",
            "STEP 2/2: COPY link /s: link: outside the build context",
        ),
        (
            "FROM bb:1\nCOPY abs /s\n",
            "STEP 2/2: COPY abs /s: abs: symlink abs points outside the build context",
        ),
        (
            "FROM bb:1\nCOPY *.txt Dockerfile /s\n",
            "STEP 2/2: COPY *.txt Dockerfile /s: COPY with several sources needs a destination ending in / (got /s)",
        ),
        (
            "FROM bb:1\nCOPY nothere /s\n",
            "STEP 2/2: COPY nothere /s: nothere: not found in the build context or excluded by .dockerignore",
        ),
    ];
    for (df, want) in cases {
        fs::write(ctx.join("Dockerfile"), df).unwrap();
        let o = build(&store, &[ctx.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1), "{df}: {}", err(&o));
        let e = err(&o);
        assert_eq!(e.lines().count(), 1, "{e}");
        assert!(e.trim_end().ends_with(want), "{df}\ngot:  {e}want: {want}");
        assert_clean(&store);
    }
    assert_eq!(ok(&store, &["images", "--format", "json"]), images_before);
}

#[test]
fn dockerignore_leaves_files_out_and_exceptions_in() {
    preflight();
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_busybox(tmp.path());
    let _guard = UnmountUnder(store.join("containers"));
    let ctx = context(
        tmp.path(),
        "FROM bb:1\nCOPY . /ctx/\nCMD [\"sh\", \"-c\", \"cd /ctx && ls -R\"]\n",
        &[
            ("keep.txt", "k"),
            ("debug.log", "d"),
            ("important.log", "i"),
            ("build/out.o", "o"),
            ("docs/a.md", "a"),
            ("docs/README.md", "r"),
            (
                ".dockerignore",
                "*.log\n!important.log\nbuild\ndocs/*.md\n!docs/README.md\n",
            ),
        ],
    );
    build_ok(&store, &["-t", "ig:1", ctx.to_str().unwrap()]);
    let listing = run(&store, "ig:1", &[]);
    assert_eq!(
        listing,
        ".:\nDockerfile\ndocs\nimportant.log\nkeep.txt\n\n./docs:\nREADME.md\n"
    );
    assert_clean(&store);
}

/// The two-stage Dockerfile of the buildah comparison (no heredocs: Debian's buildah 1.28
/// has none). REG is the loopback registry.
const COMPARED: &str = r#"FROM REG/bb:1 AS builder
ARG GREETING=hello
ENV APP_HOME=/opt/app
WORKDIR $APP_HOME
RUN echo "$GREETING from builder" > built.txt
RUN ["/bin/sh", "-c", "echo exec-form > exec.txt"]
COPY src/ ./src/

FROM REG/bb:1
LABEL org.example.name="demo app" version=1
ENV GREETING=hi OTHER=${GREETING:-unset}
COPY --from=builder /opt/app/built.txt /opt/app/exec.txt /app/
COPY --from=builder /opt/app/src /app/src
COPY --chown=app:app conf.txt /app/conf.txt
ADD files.tar.gz /app/extracted/
COPY *.md /app/docs/
WORKDIR /app/work
RUN mkdir -p /data && echo "$GREETING $OTHER" > /app/env.txt && chmod 600 /app/env.txt
USER app
EXPOSE 8080 53/udp
VOLUME /data
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --retries=2 CMD ["true"]
ONBUILD RUN echo triggered
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat /app/built.txt"]
"#;

/// The tree of an image of `store`, through a container's union mount (removed after).
fn image_tree(store: &Path, image: &str) -> std::collections::BTreeMap<String, String> {
    ok(store, &["create", "--name", "look", image]);
    let merged = store.join("containers/look/merged");
    let t = tree(&merged);
    ok(store, &["rm", "look"]);
    t
}

#[test]
fn the_same_dockerfile_built_by_buildah_gives_the_same_files_and_config() {
    preflight();
    assert!(
        have("buildah"),
        "buildah is missing (apt-get install buildah)"
    );
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_busybox(tmp.path());
    let _guard = UnmountUnder(store.join("containers"));
    let reg = registry_util::Registry::start();
    ok(
        &store,
        &[
            "push",
            "-q",
            "--tls-verify=false",
            "bb:1",
            &format!("{}/bb:1", reg.addr),
        ],
    );
    let ctx = two_stage_context(tmp.path());
    fs::write(ctx.join("Dockerfile"), COMPARED.replace("REG", &reg.addr)).unwrap();

    // unionrs, in a store without the base: FROM pulls it.
    let ours = tmp.path().join("ours");
    build_ok(
        &ours,
        &["--tls-verify=false", "-t", "cmp:1", ctx.to_str().unwrap()],
    );
    let _guard2 = UnmountUnder(ours.join("containers"));

    // buildah, with storage of its own, its result saved as a docker-archive and loaded
    // into a third store so both trees are read the same way.
    let broot = tmp.path().join("buildah");
    let bargs = |extra: &[&str]| -> Output {
        let o = std::process::Command::new("buildah")
            .arg("--root")
            .arg(broot.join("root"))
            .arg("--runroot")
            .arg(broot.join("runroot"))
            .args([
                "--storage-driver",
                "overlay",
                "--storage-opt",
                "overlay.mount_program=/usr/bin/fuse-overlayfs",
            ])
            .args(extra)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "buildah {extra:?}:\n{}\n{}",
            out(&o),
            err(&o)
        );
        o
    };
    bargs(&[
        "bud",
        "--runtime",
        "runc",
        "--isolation",
        "oci",
        "--tls-verify=false",
        "--layers",
        "--format",
        "docker",
        "-t",
        "cmp:1",
        ctx.to_str().unwrap(),
    ]);
    let archive = tmp.path().join("buildah.tar");
    bargs(&[
        "push",
        "cmp:1",
        &format!("docker-archive:{}:cmp:1", archive.display()),
    ]);
    let theirs = tmp.path().join("theirs");
    ok(&theirs, &["load", "-q", "-i", archive.to_str().unwrap()]);
    let _guard3 = UnmountUnder(theirs.join("containers"));
    // Runtimes mount these; buildah leaves empty ones behind.
    let skip = |t: &mut std::collections::BTreeMap<String, String>| {
        for p in ["etc/hosts", "etc/hostname", "etc/resolv.conf"] {
            t.remove(p);
        }
    };
    let mut a = image_tree(&ours, "cmp:1");
    let mut b = image_tree(&theirs, "cmp:1");
    skip(&mut a);
    skip(&mut b);
    // Buildah leaves the mount points of its RUN containers in the image as empty dirs;
    // docker (and unionrs) do not. The one difference in the files (docs/images.md).
    for m in ["dev", "proc", "run", "sys"] {
        if !a.contains_key(m) {
            let v = b.remove(m);
            assert!(
                v.as_deref()
                    .is_none_or(|v| v.starts_with("dir mode 755 owner 0:0")),
                "{m}: {v:?}"
            );
        }
    }
    let diff = tree_diff(&a, &b);
    assert!(diff.is_empty(), "unionrs vs buildah:\n{}", diff.join("\n"));

    let ca = inspect(&ours, "cmp:1");
    let mut cb = inspect(&theirs, "cmp:1");
    // Buildah labels its images with its version.
    cb["Config"]["Labels"]
        .as_object_mut()
        .unwrap()
        .remove("io.buildah.version");
    for k in [
        "Env",
        "Cmd",
        "Entrypoint",
        "WorkingDir",
        "User",
        "ExposedPorts",
        "Volumes",
        "Labels",
        "StopSignal",
        "Healthcheck",
        "OnBuild",
    ] {
        assert_eq!(ca["Config"][k], cb["Config"][k], "config {k}");
    }
    let ha = raw_config(&ours, ca["Id"].as_str().unwrap());
    let hb = raw_config(&theirs, cb["Id"].as_str().unwrap());
    let shape = |h: &Value| -> Vec<bool> {
        h["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                e.get("empty_layer")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
            })
            .collect()
    };
    assert_eq!(shape(&ha), shape(&hb), "history empty_layer pattern");
    // created_by: RUN's the same; metadata steps the same instruction (docker writes
    // "#(nop)  " and the text after substitution, buildah "#(nop) " and the text as
    // written); COPY/ADD the same kind and destination (each hashes the sources its way).
    let hist = |h: &Value| -> Vec<String> {
        h["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["created_by"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    for (x, y) in hist(&ha).iter().zip(hist(&hb).iter()) {
        match (x.split_once("#(nop)"), y.split_once("#(nop)")) {
            (None, None) => assert_eq!(x, y),
            (Some((_, xs)), Some((_, ys))) => {
                let (xk, xr) = xs.trim_start().split_once(' ').unwrap();
                let (yk, yr) = ys.trim_start().split_once(' ').unwrap();
                assert_eq!(xk, yk, "{x} / {y}");
                if xk == "COPY" || xk == "ADD" {
                    let kind = |r: &str| r.split(':').next().unwrap().to_string();
                    let dest = |r: &str| r.rsplit_once(" in ").unwrap().1.to_string();
                    assert_eq!((kind(xr), dest(xr)), (kind(yr), dest(yr)), "{x} / {y}");
                }
            }
            _ => panic!("created_by differ in kind: {x} / {y}"),
        }
    }
    assert_clean(&ours);
}

/// `tar(entries)` compressed by the system's `tool` (bzip2, xz, zstd), or plain.
fn archive(entries: &[E], tool: Option<&str>) -> Vec<u8> {
    let t = tar(entries);
    let Some(tool) = tool else {
        return t;
    };
    let mut child = std::process::Command::new(tool)
        .arg("-c")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &t).unwrap());
    let o = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(o.status.success(), "{tool} -c failed");
    o.stdout
}

#[test]
fn heredocs_archives_copy_rules_args_target_and_labels() {
    preflight();
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_busybox(tmp.path());
    let _guard = UnmountUnder(store.join("containers"));
    let df = r#"ARG NAME=world
FROM scratch AS files
ARG NAME
COPY <<EOF /hello.txt
hello $NAME
EOF
COPY <<'EOF' /literal.txt
keep $NAME
EOF

FROM bb:1 AS final
ARG NAME=default
RUN <<EOF
echo "heredoc run as $NAME" > /heredoc.txt
EOF
RUN <<EOF
#!/bin/sh -e
echo "shebang $0 $NAME" > /shebang.txt
EOF
ADD a.tar.bz2 b.tar.xz c.tar.zst d.tar /arch/
COPY one.txt /renamed.txt
COPY one.txt /into/
COPY tree /tree
COPY --chmod=700 one.txt /x/exec
COPY --from=files /hello.txt /literal.txt /from-scratch/
COPY --from=bb:1 /etc/group /group-copy
SHELL ["/bin/sh", "-e", "-c"]
CMD echo shell-form
"#;
    let ctx = context(
        tmp.path(),
        df,
        &[("one.txt", "one\n"), ("tree/sub/f.txt", "f\n")],
    );
    std::os::unix::fs::symlink("sub/f.txt", ctx.join("tree/link")).unwrap();
    for (name, tool) in [
        ("a.tar.bz2", Some("bzip2")),
        ("b.tar.xz", Some("xz")),
        ("c.tar.zst", Some("zstd")),
        ("d.tar", None),
    ] {
        let inner = format!("{name}.txt");
        fs::write(
            ctx.join(name),
            archive(&[file(&inner, name.as_bytes())], tool),
        )
        .unwrap();
    }
    let c = ctx.to_str().unwrap();
    build_ok(
        &store,
        &[
            "-t",
            "x:1",
            "--build-arg",
            "NAME=bob",
            "--label",
            "extra=1",
            c,
        ],
    );
    let sh = |cmd: &str| {
        let o = unionrs(&store, &["run", "--rm", "x:1", "sh", "-c", cmd]);
        assert!(o.status.success(), "{cmd}: {}", err(&o));
        out(&o)
    };
    assert_eq!(
        sh("cat /heredoc.txt /from-scratch/hello.txt /from-scratch/literal.txt"),
        "heredoc run as bob\nhello bob\nkeep $NAME\n"
    );
    assert_eq!(
        sh("cd /arch && cat a.tar.bz2.txt b.tar.xz.txt c.tar.zst.txt d.tar.txt"),
        "a.tar.bz2b.tar.xzc.tar.zstd.tar"
    );
    // Trailing-slash rules, directory contents, a symlink kept as one, --chmod.
    assert_eq!(
        sh(
            "cat /renamed.txt /into/one.txt /tree/sub/f.txt; readlink /tree/link; stat -c '%a %n' /x/exec /tree/sub/f.txt"
        ),
        "one\none\nf\nsub/f.txt\n700 /x/exec\n644 /tree/sub/f.txt\n"
    );
    assert_eq!(
        sh("cat /group-copy"),
        "root:x:0:\nstaff:x:50:app\napp:x:1000:\n"
    );
    // A `#!` heredoc runs through its interpreter, from /dev/pipes (not left in the image).
    assert_eq!(sh("cat /shebang.txt"), "shebang /dev/pipes/EOF bob\n");
    ok(&store, &["create", "--name", "look", "x:1"]);
    let dev = store.join("containers/look/merged/dev");
    let left = dev.exists();
    ok(&store, &["rm", "look"]);
    assert!(
        !left,
        "the image has /dev (the mount points of RUN reached a layer)"
    );
    let img = inspect(&store, "x:1");
    assert_eq!(
        img["Config"]["Cmd"],
        json!(["/bin/sh", "-e", "-c", "echo shell-form"])
    );
    assert_eq!(img["Config"]["Labels"], json!({"extra": "1"}));
    assert_eq!(run(&store, "x:1", &[]), "shell-form\n");

    // --target: only the scratch stage, with its two layers.
    let (o, id) = build_ok(&store, &["--target", "files", "-t", "files:1", c]);
    assert!(o.contains("STEP 4/4: COPY <<'EOF' /literal.txt"), "{o}");
    let raw = raw_config(&store, &id);
    assert_eq!(raw["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);
    ok(&store, &["create", "--name", "peek", "files:1"]);
    let merged = store.join("containers/peek/merged");
    assert_eq!(
        fs::read_to_string(merged.join("hello.txt")).unwrap(),
        "hello world\n"
    );
    ok(&store, &["rm", "peek"]);
    assert_clean(&store);
}

/// examples/build (the README's example) builds and runs, its base given as a build arg.
#[test]
fn the_readme_example_builds() {
    preflight();
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_busybox(tmp.path());
    let _guard = UnmountUnder(store.join("containers"));
    let ex = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/build");
    build_ok(
        &store,
        &[
            "-t",
            "hello:1",
            "--build-arg",
            "BASE=bb:1",
            ex.to_str().unwrap(),
        ],
    );
    assert_eq!(run(&store, "hello:1", &[]), "hello from a unionrs build\n");
    assert_clean(&store);
}

/// A build interrupted (SIGINT to unionrs, as `kill -INT`) while a RUN runs: the signal
/// reaches the command, the build fails naming the step, and nothing is left behind.
#[test]
fn an_interrupted_build_leaves_nothing() {
    preflight();
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_busybox(tmp.path());
    let _guard = UnmountUnder(store.join("containers"));
    let ctx = context(
        tmp.path(),
        "FROM bb:1\nRUN trap 'exit 130' INT TERM; echo started; sleep 30 & wait\nRUN echo never\n",
        &[],
    );
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_unionrs"))
        .arg("--store")
        .arg(&store)
        .args(["build", "-t", "i:1", ctx.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    // Until the step's container exists and its command had a moment to start.
    while fs::read_dir(store.join("containers")).map_or(true, |mut d| d.next().is_none()) {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(20),
            "no step started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(1500));
    unionrs::sys::proc::kill(child.id() as i32, libc::SIGINT).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(
        t0.elapsed() < std::time::Duration::from_secs(20),
        "the signal did not stop the RUN"
    );
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert_eq!(
        err(&o).trim_end(),
        "unionrs: STEP 2/3: RUN trap 'exit 130' INT TERM; echo started; sleep 30 & wait: exit status 130"
    );
    assert!(!out(&o).contains("never"));
    assert!(fails(&store, &["inspect", "i:1"]).contains("no such image"));
    assert_clean(&store);
}

/// RUN --mount: a bind of the context and of a stage's file, a cache kept across builds,
/// a tmpfs; none of their mount points reaches the image.
#[test]
fn run_mounts_bind_cache_and_tmpfs() {
    preflight();
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_busybox(tmp.path());
    let _guard = UnmountUnder(store.join("containers"));
    let df = "FROM bb:1 AS gen\n\
              RUN echo generated > /gen.txt\n\
              FROM bb:1\n\
              RUN --mount=type=bind,target=/ctx cat /ctx/data.txt > /from-bind.txt\n\
              RUN --mount=type=bind,from=gen,source=/gen.txt,target=/mnt/gen.txt cat /mnt/gen.txt > /from-stage.txt\n\
              RUN --mount=type=cache,target=/cache,id=c1 echo x >> /cache/log && wc -l < /cache/log > /cache-count.txt\n\
              RUN --mount=type=tmpfs,target=/scratch echo t > /scratch/t && ls /scratch > /tmpfs.txt\n";
    let ctx = context(tmp.path(), df, &[("data.txt", "from the context\n")]);
    let c = ctx.to_str().unwrap();
    build_ok(&store, &["-t", "m:1", c]);
    let check = "cat /from-bind.txt /from-stage.txt /cache-count.txt /tmpfs.txt; \
                 for p in /ctx /mnt /cache /scratch; do test -e $p && echo left $p; done; true";
    let o = unionrs(&store, &["run", "--rm", "m:1", "sh", "-c", check]);
    assert_eq!(
        out(&o),
        "from the context\ngenerated\n1\nt\n",
        "{}",
        err(&o)
    );
    // The cache directory outlives the build: a rebuild (every step run) sees it.
    build_ok(&store, &["--no-cache", "-t", "m:1", c]);
    let o = unionrs(&store, &["run", "--rm", "m:1", "cat", "/cache-count.txt"]);
    assert_eq!(out(&o), "2\n", "{}", err(&o));
    // A changed bound file is a cache miss for its step.
    fs::write(ctx.join("data.txt"), "changed\n").unwrap();
    let (o, _) = build_ok(&store, &["-t", "m:1", c]);
    assert_eq!(o.matches("--> Using cache").count(), 1, "{o}");
    let o = unionrs(&store, &["run", "--rm", "m:1", "cat", "/from-bind.txt"]);
    assert_eq!(out(&o), "changed\n");
    assert_clean(&store);
}

/// `RUN --mount=type=secret|ssh` with `--secret` and `--ssh`: the command reads the secret
/// (file with its mode and owner, or env=), sees its agent socket through SSH_AUTH_SOCK, and
/// nothing of either reaches the image: no file, no value in any layer, config or history.
/// A changed secret value still hits the cache (BuildKit's rule); a missing `required` one
/// stops the build before anything runs; a missing optional one is left out.
#[test]
fn run_mounts_secret_and_ssh() {
    preflight();
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_busybox(tmp.path());
    let _guard = UnmountUnder(store.join("containers"));
    let secret = tmp.path().join("token.txt");
    fs::write(&secret, "s3cret-value").unwrap();
    let agent = tmp.path().join("agent.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&agent).unwrap();
    // What the command saw, shown by its hash (the value itself must not reach the image).
    let sum = {
        use sha2::Digest;
        format!("{:x}", sha2::Sha256::digest(b"s3cret-value"))
    };
    let df = "FROM bb:1\n\
              RUN --mount=type=secret,id=tok stat -c '%a %u' /run/secrets/tok > /mode1 && sha256sum < /run/secrets/tok > /sum1\n\
              RUN --mount=type=secret,id=tok,target=/etc/tok.pem,mode=0440,uid=5,gid=6 stat -c '%a %u %g' /etc/tok.pem > /mode2\n\
              RUN --mount=type=secret,id=tok,env=TOKEN printf %s \"$TOKEN\" | sha256sum > /sum2 && test ! -e /run/secrets/tok && touch /env-ok\n\
              RUN --mount=type=secret,id=absent test ! -e /run/secrets/absent && touch /absent-ok\n\
              RUN --mount=type=ssh test -S \"$SSH_AUTH_SOCK\" && echo \"$SSH_AUTH_SOCK $(stat -c %a $SSH_AUTH_SOCK)\" > /ssh.txt\n";
    let ctx = context(tmp.path(), df, &[]);
    let c = ctx.to_str().unwrap();
    let sec = format!("id=tok,src={}", secret.display());
    let ssh = format!("default={}", agent.display());
    build_ok(&store, &["--secret", &sec, "--ssh", &ssh, "-t", "s:1", c]);
    let check = "cat /mode1 /mode2 /ssh.txt /sum1 /sum2; ls /env-ok /absent-ok; \
                 for p in /run/secrets /etc/tok.pem /run/buildkit; do test -e $p && echo left $p; done; true";
    let o = unionrs(&store, &["run", "--rm", "s:1", "sh", "-c", check]);
    assert_eq!(
        out(&o),
        format!(
            "400 0\n440 5 6\n/run/buildkit/ssh_agent.0 600\n{sum}  -\n{sum}  -\n/absent-ok\n/env-ok\n"
        ),
        "{}",
        err(&o)
    );
    // The value is nowhere in the store's blobs (layers, config, manifests).
    for e in fs::read_dir(store.join("blobs/sha256")).unwrap() {
        let p = e.unwrap().path();
        let mut data = fs::read(&p).unwrap();
        if data.starts_with(&[0x1f, 0x8b]) {
            let mut plain = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&data[..]), &mut plain)
                .unwrap();
            data = plain;
        }
        assert!(
            !data.windows(12).any(|w| w == b"s3cret-value"),
            "the secret is in blob {}",
            p.display()
        );
    }
    // A changed value hits the cache: secrets are not part of the key.
    fs::write(&secret, "other-value").unwrap();
    let (o, _) = build_ok(&store, &["--secret", &sec, "--ssh", &ssh, "-t", "s:1", c]);
    assert_eq!(o.matches("--> Using cache").count(), 5, "{o}");
    // A required secret that was not given: a one-line error naming it, nothing run.
    let df2 = "FROM bb:1\nRUN touch /ran\nRUN --mount=type=secret,id=must,required true\n";
    let ctx2 = tmp.path().join("ctx2");
    fs::create_dir(&ctx2).unwrap();
    fs::write(ctx2.join("Dockerfile"), df2).unwrap();
    let o = build(&store, &["-t", "s:2", ctx2.to_str().unwrap()]);
    assert!(!o.status.success());
    let e = err(&o);
    assert!(
        e.contains("secret \"must\" is required but not given"),
        "{e}"
    );
    assert!(
        unionrs(&store, &["inspect", "s:2"]).status.code() != Some(0),
        "s:2 was tagged"
    );
    // A bad --secret or --ssh value is a usage error.
    for bad in [
        vec!["--secret", "id=a,src=/x,env=Y"],
        vec!["--ssh", "default=/nonexistent/agent.sock"],
    ] {
        let mut a = bad.clone();
        a.push(c);
        let o = build(&store, &a);
        assert!(!o.status.success(), "{bad:?}");
        let first = err(&o).lines().next().unwrap_or_default().to_string();
        assert!(first.contains(bad[0]), "{}", err(&o));
    }
    assert_clean(&store);
}

/// ADD of a URL (a server on 127.0.0.1): downloaded, not unpacked, mode 0600, named after
/// the URL into a directory; a rebuild downloads again and hits the cache.
#[test]
fn add_downloads_a_url() {
    preflight();
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_busybox(tmp.path());
    let _guard = UnmountUnder(store.join("containers"));
    let gz = {
        let mut g = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut g, &tar(&[file("in.txt", b"x")])).unwrap();
        g.finish().unwrap()
    };
    let server = registry_util::TinyServer::start(
        std::collections::HashMap::from([
            (
                "/files/hello.txt".to_string(),
                registry_util::Canned::ok(b"hello over http\n".to_vec(), "text/plain"),
            ),
            (
                "/files/a.tar.gz".to_string(),
                registry_util::Canned::ok(gz.clone(), "application/gzip"),
            ),
        ]),
        None,
    );
    let df = format!(
        "FROM bb:1\nADD http://{a}/files/hello.txt http://{a}/files/a.tar.gz /web/\n\
         ADD http://{a}/files/hello.txt?v=1 /web/renamed.txt\n",
        a = server.addr
    );
    let ctx = context(tmp.path(), &df, &[]);
    let c = ctx.to_str().unwrap();
    build_ok(&store, &["-t", "u:1", c]);
    let o = unionrs(
        &store,
        &[
            "run",
            "--rm",
            "u:1",
            "sh",
            "-c",
            "cat /web/hello.txt /web/renamed.txt; stat -c '%a %u:%g %s %n' /web/hello.txt /web/a.tar.gz",
        ],
    );
    assert_eq!(
        out(&o),
        format!(
            "hello over http\nhello over http\n600 0:0 16 /web/hello.txt\n600 0:0 {} /web/a.tar.gz\n",
            gz.len()
        ),
        "{}",
        err(&o)
    );
    let (o, _) = build_ok(&store, &["-t", "u:1", c]);
    assert_eq!(o.matches("--> Using cache").count(), 2, "{o}");
    assert_clean(&store);
}

/// RUN's network: the host's by default, a namespace with only loopback with
/// `RUN --network=none` or `build --network none`.
#[test]
fn run_network_host_or_none() {
    preflight();
    let tmp = tempfile::tempdir().unwrap();
    let store = store_with_busybox(tmp.path());
    let _guard = UnmountUnder(store.join("containers"));
    let df = "FROM bb:1\nRUN --network=none wc -l < /proc/net/dev > /none\nRUN wc -l < /proc/net/dev > /default\n";
    let ctx = context(tmp.path(), df, &[]);
    let c = ctx.to_str().unwrap();
    let host_lines = fs::read_to_string("/proc/net/dev").unwrap().lines().count();
    assert!(
        host_lines > 3,
        "this host has only loopback: the test cannot tell"
    );
    build_ok(&store, &["-t", "n:1", c]);
    // The host's interfaces come and go with other tests' namespaces: more than loopback
    // is what tells the host's network.
    let o = unionrs(&store, &["run", "--rm", "n:1", "cat", "/none", "/default"]);
    let lines: Vec<usize> = out(&o).lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(lines[0], 3, "{}", err(&o));
    assert!(
        lines[1] > 3,
        "RUN without --network saw only loopback: {lines:?}"
    );
    build_ok(&store, &["--network", "none", "-t", "n:2", c]);
    let o = unionrs(&store, &["run", "--rm", "n:2", "cat", "/none", "/default"]);
    assert_eq!(out(&o), "3\n3\n", "{}", err(&o));
    assert_clean(&store);
}
