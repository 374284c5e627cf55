#!/usr/bin/env python3
"""Bookkeeping for tests/artifacts/build.sh: the mirror's index and its OCI image archives.

Only the standard library, so it runs on any machine of the project without an install.

  mirror.py fragment ROOT PART META_JSON KEY=RELPATH...
      Record a finished part: hash each file (relative to ROOT) and write
      ROOT/index.d/PART.json atomically. build.sh writes it last, after every
      file of the part is in place, so its presence means "complete".
  mirror.py check ROOT PART
      Exit 0 when the part's record exists and every file it lists is there
      with the recorded SHA-256; 1 otherwise (then build.sh rebuilds the part).
  mirror.py index ROOT
      Merge every record into ROOT/index.json (atomically).
  mirror.py oci OUT.tar --name NAME [--entrypoint JSON] [--cmd JSON] [--user U]
                [--env K=V]... [--file SRC:DEST[:MODE]]... [--dir DEST[:MODE]]...
                [--symlink DEST:TARGET]...
      Write a one-layer OCI image layout as a tar that `ctr images import` takes.
"""
import argparse
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile
import tempfile


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_atomic(path, data):
    """Write to a temp file beside PATH, fsync, then rename: readers see old or new, never half."""
    d = os.path.dirname(path) or "."
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def cmd_fragment(a):
    meta = json.loads(a.meta)
    files = {}
    for kv in a.files:
        key, rel = kv.split("=", 1)
        files[key] = {"path": rel, "sha256": sha256_file(os.path.join(a.root, rel))}
    meta["part"] = a.part
    meta["files"] = files
    write_atomic(os.path.join(a.root, "index.d", a.part + ".json"),
                 (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())


def cmd_check(a):
    p = os.path.join(a.root, "index.d", a.part + ".json")
    try:
        with open(p) as f:
            rec = json.load(f)
        for ent in rec["files"].values():
            if sha256_file(os.path.join(a.root, ent["path"])) != ent["sha256"]:
                print(f"mirror: {ent['path']} does not match its recorded sha256", file=sys.stderr)
                return 1
    except (OSError, ValueError, KeyError):
        return 1
    return 0


def cmd_index(a):
    d = os.path.join(a.root, "index.d")
    idx = {"schema": 1, "arch": "amd64", "kubernetes": {}, "components": {}, "images": {}}
    for name in sorted(os.listdir(d)) if os.path.isdir(d) else []:
        if not name.endswith(".json"):
            continue
        with open(os.path.join(d, name)) as f:
            rec = json.load(f)
        kind = rec.get("kind")
        if kind == "kubernetes":
            idx["kubernetes"][rec["version"]] = {
                "version": rec["version"],
                "binaries": rec["files"],
                "pause_image": rec.get("pause_image"),
                "module_sum": rec.get("module_sum"),
                "build_seconds": rec.get("build_seconds"),
            }
        elif kind == "component":
            main = rec["files"]["main"]
            idx["components"][rec["name"]] = {
                "version": rec["version"],
                "path": main["path"],
                "sha256": main["sha256"],
                "contents": rec.get("contents", []),
                "build_seconds": rec.get("build_seconds"),
            }
            if rec.get("image"):  # CoreDNS: the image made from this binary
                idx["components"][rec["name"]]["image"] = rec["image"]
        elif kind == "image":
            main = rec["files"]["main"]
            idx["images"][rec["name"]] = {
                "role": rec["role"],
                "path": main["path"],
                "sha256": main["sha256"],
                "source": rec.get("source"),
            }
    # Every Kubernetes version names its pause image; say so beside the image too.
    for v, k in idx["kubernetes"].items():
        img = idx["images"].get(k.get("pause_image") or "")
        if img is not None:
            img.setdefault("kubernetes", []).append(v)
    write_atomic(os.path.join(a.root, "index.json"),
                 (json.dumps(idx, indent=2, sort_keys=True) + "\n").encode())


# ---- OCI image layout -------------------------------------------------------

def _tarinfo(name, mode, typ=tarfile.REGTYPE, size=0, linkname=""):
    ti = tarfile.TarInfo(name)
    ti.mode, ti.type, ti.size, ti.linkname = mode, typ, size, linkname
    # Fixed owner and time: the same inputs give the same digests on every run.
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = "root"
    ti.mtime = 0
    return ti


def _layer(files, dirs, symlinks):
    """An uncompressed layer tar; parents are created so every path has a directory entry."""
    entries = {}
    for dest, mode in dirs:
        entries[dest.strip("/")] = ("dir", mode, None)
    for src, dest, mode in files:
        entries[dest.strip("/")] = ("file", mode, src)
    for dest, target in symlinks:
        entries[dest.strip("/")] = ("link", 0o777, target)
    for path in list(entries):
        parent = os.path.dirname(path)
        while parent and parent not in entries:
            entries[parent] = ("dir", 0o755, None)
            parent = os.path.dirname(parent)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for path in sorted(entries):
            kind, mode, arg = entries[path]
            if kind == "dir":
                t.addfile(_tarinfo(path + "/", mode, tarfile.DIRTYPE))
            elif kind == "link":
                t.addfile(_tarinfo(path, mode, tarfile.SYMTYPE, linkname=arg))
            else:
                with open(arg, "rb") as f:
                    data = f.read()
                t.addfile(_tarinfo(path, mode, size=len(data)), io.BytesIO(data))
    return buf.getvalue()


def cmd_oci(a):
    def split_mode(spec, n):
        parts = spec.split(":")
        mode = int(parts[n], 8) if len(parts) > n else None
        return parts[:n], mode

    files = []
    for spec in a.file:
        (src, dest), mode = split_mode(spec, 2)
        files.append((src, dest, mode if mode is not None else (os.stat(src).st_mode & 0o7777)))
    dirs = []
    for spec in a.dir:
        (dest,), mode = split_mode(spec, 1)
        dirs.append((dest, mode if mode is not None else 0o755))
    symlinks = [tuple(s.split(":", 1)) for s in a.symlink]

    layer = _layer(files, dirs, symlinks)
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    gz = gzip.compress(layer, compresslevel=9, mtime=0)

    blobs = {}

    def blob(data, media_type, annotations=None):
        dig = hashlib.sha256(data).hexdigest()
        blobs[dig] = data
        desc = {"mediaType": media_type, "digest": "sha256:" + dig, "size": len(data)}
        if annotations:
            desc["annotations"] = annotations
        return desc

    cfg = {"Env": a.env or ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]}
    if a.entrypoint:
        cfg["Entrypoint"] = json.loads(a.entrypoint)
    if a.cmd:
        cfg["Cmd"] = json.loads(a.cmd)
    if a.user:
        cfg["User"] = a.user
    if a.workdir:
        cfg["WorkingDir"] = a.workdir
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": cfg,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "k8sup tests/artifacts/mirror.py"}],
    }
    enc = lambda o: json.dumps(o, sort_keys=True, separators=(",", ":")).encode()
    config_desc = blob(enc(config), "application/vnd.oci.image.config.v1+json")
    layer_desc = blob(gz, "application/vnd.oci.image.layer.v1.tar+gzip")
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config_desc,
        "layers": [layer_desc],
    }
    tag = a.name.rsplit(":", 1)[1] if ":" in a.name.rsplit("/", 1)[-1] else "latest"
    manifest_desc = blob(enc(manifest), "application/vnd.oci.image.manifest.v1+json", {
        # containerd names the imported image after this annotation (what ctr shows);
        # ref.name is the OCI spec's own tag, as `docker save` writes it.
        "io.containerd.image.name": a.name,
        "org.opencontainers.image.ref.name": tag,
    })
    manifest_desc["platform"] = {"architecture": "amd64", "os": "linux"}
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [manifest_desc]}

    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as t:
        def add(name, data):
            t.addfile(_tarinfo(name, 0o644, size=len(data)), io.BytesIO(data))
        t.addfile(_tarinfo("blobs/", 0o755, tarfile.DIRTYPE))
        t.addfile(_tarinfo("blobs/sha256/", 0o755, tarfile.DIRTYPE))
        for dig in sorted(blobs):
            add("blobs/sha256/" + dig, blobs[dig])
        add("index.json", enc(index))
        add("oci-layout", enc({"imageLayoutVersion": "1.0.0"}))
    write_atomic(a.out, out.getvalue())


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="sub", required=True)
    f = sub.add_parser("fragment")
    f.add_argument("root"); f.add_argument("part"); f.add_argument("meta"); f.add_argument("files", nargs="*")
    c = sub.add_parser("check")
    c.add_argument("root"); c.add_argument("part")
    i = sub.add_parser("index")
    i.add_argument("root")
    o = sub.add_parser("oci")
    o.add_argument("out"); o.add_argument("--name", required=True)
    o.add_argument("--entrypoint"); o.add_argument("--cmd"); o.add_argument("--user"); o.add_argument("--workdir")
    o.add_argument("--env", action="append", default=[])
    o.add_argument("--file", action="append", default=[])
    o.add_argument("--dir", action="append", default=[])
    o.add_argument("--symlink", action="append", default=[])
    a = p.parse_args()
    return {"fragment": cmd_fragment, "check": cmd_check, "index": cmd_index, "oci": cmd_oci}[a.sub](a) or 0


if __name__ == "__main__":
    sys.exit(main())
