#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target into fuzz/corpus/TARGET/ (committed).

    python3 scripts/fuzz-seeds.py

Small, valid examples of each input kind, so the fuzzer starts from inputs that get deep
into the parsers: layer tars in ustar, GNU and pax form (long names, xattrs, links,
whiteouts, devices), gzip and zstd layers, docker-archive and OCI layout tars whose digests
check out, the JSON documents, references, mount command lines, and marker layer sets.
The output is deterministic (fixed mtimes, owners, order), so rerunning changes nothing.
"""
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fuzz", "corpus")


def tar_bytes(entries, fmt=tarfile.PAX_FORMAT):
    """entries: (name, kind, data_or_target, extra) tuples; kind in file/dir/sym/link/fifo/chr."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for name, kind, data, extra in entries:
            ti = tarfile.TarInfo(name)
            ti.mtime = 1700000000
            ti.uid = ti.gid = 0
            ti.uname = ti.gname = ""
            ti.mode = extra.get("mode", 0o755 if kind == "dir" else 0o644)
            if "pax" in extra:
                ti.pax_headers = extra["pax"]
            body = None
            if kind == "file":
                ti.size = len(data)
                body = io.BytesIO(data)
            elif kind == "dir":
                ti.type = tarfile.DIRTYPE
            elif kind == "sym":
                ti.type, ti.linkname = tarfile.SYMTYPE, data
            elif kind == "link":
                ti.type, ti.linkname = tarfile.LNKTYPE, data
            elif kind == "fifo":
                ti.type = tarfile.FIFOTYPE
            elif kind == "chr":
                ti.type, ti.devmajor, ti.devminor = tarfile.CHRTYPE, 0, 0
            t.addfile(ti, body)
    return buf.getvalue()


def f(name, data=b"x", **extra):
    return (name, "file", data, extra)


def d(name, **extra):
    return (name, "dir", None, extra)


def zstd(data):
    if shutil.which("zstd") is None:
        return None
    return subprocess.run(["zstd", "-q", "-c"], input=data, capture_output=True, check=True).stdout


def gz(data):
    return gzip.compress(data, mtime=0)


def sha(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def write(target, name, data):
    p = os.path.join(ROOT, target)
    os.makedirs(p, exist_ok=True)
    with open(os.path.join(p, name), "wb") as fh:
        fh.write(data)


LAYERS = {
    "basic.tar": tar_bytes([d("etc"), f("etc/hostname", b"box\n"), f("etc/shadow", b"", mode=0o600)]),
    "links.tar": tar_bytes([
        d("bin"), f("bin/busybox", b"\x7fELF"), ("bin/sh", "sym", "busybox", {}),
        ("bin/ls", "link", "bin/busybox", {}), ("abs", "sym", "/etc/passwd", {}),
        ("up", "sym", "../../..", {}),
    ]),
    "whiteouts.tar": tar_bytes([
        d("a"), f("a/.wh.gone", b""), d("b"), f("b/.wh..wh..opq", b""), f(".wh.top", b""),
    ]),
    "special.tar": tar_bytes([("dev", "dir", None, {}), ("dev/null", "chr", None, {}),
                              ("fifo", "fifo", None, {}), d("ro", mode=0o500), f("ro/f")]),
    "longname-gnu.tar": tar_bytes([d("d" * 120), f("d" * 120 + "/" + "n" * 150, b"long")],
                                  fmt=tarfile.GNU_FORMAT),
    "pax-xattr.tar": tar_bytes([
        f("cap", b"x", pax={"SCHILY.xattr.user.k": "v", "SCHILY.xattr.trusted.overlay.opaque": "y"}),
        f("p" * 200, b"pax path"), ("l", "sym", "t" * 150, {}),
    ]),
    "ustar-dotdot.tar": tar_bytes([d("./"), d("./x/"), f("./x/../y", b"y")], fmt=tarfile.USTAR_FORMAT),
    "replace.tar": tar_bytes([d("x"), f("x/in"), f("x", b"now a file"), d("x")]),
}


def layer_seeds():
    for name, data in LAYERS.items():
        write("unpack_layer", name, data)
    write("unpack_layer", "basic.tar.gz", gz(LAYERS["basic.tar"]))
    z = zstd(LAYERS["links.tar"])
    if z is not None:
        write("unpack_layer", "links.tar.zst", z)


def config_for(layers):
    return json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [sha(l) for l in layers]},
        "history": [{"created": "2024-01-01T00:00:00Z"}],
    }, sort_keys=True).encode()


def archive_tar(files):
    return tar_bytes([f(n, data) for n, data in sorted(files.items())], fmt=tarfile.USTAR_FORMAT)


def archive_seeds():
    l1, l2 = LAYERS["basic.tar"], LAYERS["whiteouts.tar"]
    cfg = config_for([l1, l2])
    h = lambda b: hashlib.sha256(b).hexdigest()
    # docker save (legacy paths).
    docker = archive_tar({
        "manifest.json": json.dumps([{"Config": h(cfg) + ".json", "RepoTags": ["seed:1"],
                                      "Layers": ["l1/layer.tar", "l2/layer.tar"]}]).encode(),
        h(cfg) + ".json": cfg, "l1/layer.tar": l1, "l2/layer.tar": l2,
    })
    write("archive_load", "docker-archive.tar", docker)
    # OCI layout with a gzip layer, tagged through an index.
    gl1 = gz(l1)
    cfg1 = config_for([l1])
    man = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(cfg1), "size": len(cfg1)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha(gl1), "size": len(gl1)}],
    }).encode()
    index = json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha(man), "size": len(man),
        "annotations": {"io.containerd.image.name": "docker.io/library/seed:2",
                        "org.opencontainers.image.ref.name": "2"},
        "platform": {"os": "linux", "architecture": "amd64"}}]}).encode()
    oci = archive_tar({
        "oci-layout": b'{"imageLayoutVersion":"1.0.0"}', "index.json": index,
        "blobs/sha256/" + h(cfg1): cfg1, "blobs/sha256/" + h(gl1): gl1, "blobs/sha256/" + h(man): man,
    })
    write("archive_load", "oci-layout.tar", oci)
    return {"manifest.json": man, "index.json": index, "config.json": cfg}


def json_seeds(docs):
    write("json_documents", "manifest.json", docs["manifest.json"])
    write("json_documents", "index.json", docs["index.json"])
    write("json_documents", "config.json", docs["config.json"])
    lst = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
           "manifests": [{"mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                          "digest": "sha256:" + "a" * 64, "size": 7,
                          "platform": {"os": "linux", "architecture": a, **({"variant": "v7"} if a == "arm" else {})}}
                         for a in ["amd64", "arm64", "arm"]]}
    write("json_documents", "manifest-list.json", json.dumps(lst).encode())
    write("json_documents", "docker-archive-manifest.json", json.dumps(
        [{"Config": "c.json", "RepoTags": ["a:1", "localhost:5000/b/c:2"], "Layers": ["l/layer.tar"]}]).encode())
    write("json_documents", "token.json", b'{"token":"abc","access_token":"def","expires_in":300}')
    write("json_documents", "auth.json", json.dumps({"auths": {
        "https://index.docker.io/v1/": {"auth": "dXNlcjpwYXNz"},
        "127.0.0.1:5000": {"username": "u", "password": "p"}}}).encode())
    write("json_documents", "layerinfo.json", b'{"diff_id":"sha256:' + b"0" * 64 + b'","size":10240,"entries":3}')


def reference_seeds():
    for i, s in enumerate([
        "ubuntu", "ubuntu:22.04", "docker.io/library/ubuntu:latest", "localhost:5000/a/b-c:v1.2",
        "quay.io/org/app__x.y:1", "127.0.0.1:5000/x@sha256:" + "ab" * 32, "sha256:" + "0" * 64,
        "linux/arm64/v8", 'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/ubuntu:pull"',
        "Basic realm=x", "dXNlcjpwYXNz",
    ]):
        write("image_reference", f"ref{i:02}", s.encode())


def options_seeds():
    for i, argv in enumerate([
        ["-o", "lowerdir=l1:l2,upperdir=u,workdir=w", "m"],
        ["-f", "-o", "lowerdir=l1", "m"],
        ["overlay", "m", "-o", "rw,lowerdir=l2:l1,upperdir=u,workdir=w,allow_other,default_permissions,nodev,nosuid"],
        ["-o", "lowerdir=l\\:1:l2,upperdir=u,workdir=w,squash_to_root,fsync=0", "--", "m"],
        ["-o", "lowerdir=l1,uidmapping=0:1000:65536,gidmapping=0:1000:65536,volatile,,", "m"],
        ["-fds", "-olowerdir=s,upperdir=u,workdir=u/in", "m"],
        ["-o", "lowerdir=l1:l1,upperdir=f,workdir=w", "m"],
    ]):
        write("mount_options", f"argv{i:02}", b"\0".join(a.encode() for a in argv))


def marker_seeds():
    for i, recs in enumerate([
        ["1f a=lower", "1d dir", "1f dir/x=1", "uf .wh.a", "2f b=bottom", "1f .wh.b"],
        ["2d d", "2f d/old", "1d d", "1f d/.wh..wh..opq", "1f d/new", "uc d/new"],
        ["2d src", "2f src/f", "1d dst", "1r dst=/src", "1o dst=y", "ud up", "uo up=y"],
        ["1d x", "1X x", "1f x/w", "1x x/w", "1o x=x", "2f x/w=hidden"],
        ["1l link=/", "1l rel=../..", "2d link", "2f link/f", "ur d=../../x", "ud d"],
        ["1d a", "1d a/b", "1d a/b/c", "2d a", "2f a/.wh.b", "uO a=y", "1f a/b/c/.wh.", "2d .wh..wh..opq"],
    ]):
        write("whiteout_markers", f"layers{i:02}", "\n".join(recs).encode() + b"\n")


if __name__ == "__main__":
    shutil.rmtree(ROOT, ignore_errors=True)
    layer_seeds()
    json_seeds(archive_seeds())
    reference_seeds()
    options_seeds()
    marker_seeds()
    for t in sorted(os.listdir(ROOT)):
        print(t, len(os.listdir(os.path.join(ROOT, t))), "seeds")
