#!/usr/bin/env bash
# Check a mirror made by tests/artifacts/build.sh for real:
#
#   bash tests/artifacts/check.sh ROOT v1.37.2
#
# - every file index.json lists has its recorded SHA-256, and the checksum
#   file beside it (in upstream's style) agrees;
# - every binary runs and reports the version it was built as;
# - every image archive is a valid OCI layout whose index.json names the image
#   as index.json says, with blobs matching their digests;
# - as root, a throwaway containerd (our build, its own root, state and socket
#   under a temp dir, CRI plugin off) imports every image archive with
#   `ctr -n k8s.io images import`, and lists it under the expected name.
# Prints one line per check and ends with "N passed, N failed".
set -euo pipefail

[ $# -eq 2 ] || { echo "usage: $0 ROOT vX.Y.Z" >&2; exit 2; }
ROOT=$(cd "$1" && pwd)
VERSION=$2
INDEX=$ROOT/index.json
[ -f "$INDEX" ] || { echo "no $INDEX" >&2; exit 1; }

PASS=0 FAIL=0
ok() { PASS=$((PASS + 1)); echo "ok   $*"; }
bad() { FAIL=$((FAIL + 1)); echo "FAIL $*"; }

# check NAME PATTERN CMD...: CMD succeeds and a line of its output matches PATTERN.
check() {
  local name=$1 pat=$2 out; shift 2
  if out=$("$@" 2>&1) && grep -q -- "$pat" <<<"$out"; then
    ok "$name"
  else
    bad "$name: wanted /$pat/, got: $(head -c 300 <<<"$out")"
  fi
}

q() { # q PYTHON-EXPR over index.json as `i`
  python3 -c 'import json,sys; i=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$INDEX" "$1"
}

WORK=$(mktemp -d)
CTRD_PID=
cleanup() {
  if [ -n "$CTRD_PID" ]; then kill "$CTRD_PID" 2>/dev/null || true; wait "$CTRD_PID" 2>/dev/null || true; fi
  # containerd may leave its snapshot mounts behind if it dies hard.
  grep -o " $WORK/[^ ]*" /proc/self/mounts 2>/dev/null | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# ---- checksums -------------------------------------------------------------
# Every file the index lists: its sha256, and the checksum file beside it.
while IFS=$'\t' read -r rel sum; do
  f=$ROOT/$rel
  if [ ! -f "$f" ]; then bad "sha256 $rel: missing"; continue; fi
  [ "$(sha256sum "$f" | cut -d' ' -f1)" = "$sum" ] || { bad "sha256 $rel"; continue; }
  # The sidecar: NAME.sha256 / NAME.sha256sum, or a release-wide file.
  side=
  for s in "$f.sha256" "$f.sha256sum" "$(dirname "$f")/runc.sha256sum" "$(dirname "$f")/SHA256SUMS"; do
    [ -f "$s" ] && { side=$s; break; }
  done
  if [ -z "$side" ]; then bad "sha256 $rel: no checksum file"; continue; fi
  # Either just the hex, or "HEX  NAME" lines.
  if [ "$(cat "$side")" = "$sum" ] || grep -qx "$sum  $(basename "$f")" "$side"; then
    ok "sha256 $rel (+ $(basename "$side"))"
  else
    bad "sha256 $rel: $(basename "$side") disagrees"
  fi
done < <(python3 - "$INDEX" <<'EOF'
import json, sys
i = json.load(open(sys.argv[1]))
for k in i["kubernetes"].values():
    for b in k["binaries"].values():
        print(b["path"], b["sha256"], sep="\t")
for c in list(i["components"].values()) + list(i["images"].values()):
    print(c["path"], c["sha256"], sep="\t")
EOF
)

# ---- Kubernetes --------------------------------------------------------------
if [ "$(q "'$VERSION' in i['kubernetes']")" != True ]; then
  bad "index.json has no kubernetes $VERSION"
else
  kbin() { echo "$ROOT/$(q "i['kubernetes']['$VERSION']['binaries']['$1']['path']")"; }
  for b in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy; do
    check "$b --version" "^Kubernetes $VERSION\$" "$(kbin "$b")" --version
  done
  check "kubectl version --client (gitVersion)" "^$VERSION\$" bash -c \
    "'$(kbin kubectl)' version --client -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"clientVersion\"][\"gitVersion\"])'"
  minor=${VERSION#v1.}; minor=${minor%%.*}
  check "kubectl version --client (major.minor)" "^1\.$minor\$" bash -c \
    "'$(kbin kubectl)' version --client -o json | python3 -c 'import json,sys; v=json.load(sys.stdin)[\"clientVersion\"]; print(v[\"major\"] + \".\" + v[\"minor\"])'"
fi

# ---- components --------------------------------------------------------------
comp() { q "i['components']['$1']['$2']"; }
unpack() { # COMPONENT -> directory with its tarball unpacked
  local d=$WORK/$1
  mkdir -p "$d"
  tar -C "$d" -xzf "$ROOT/$(comp "$1" path)"
  echo "$d"
}
v=$(comp containerd version); d=$(unpack containerd)
check "containerd --version" " $v" "$d/bin/containerd" --version
check "ctr --version" "$v" "$d/bin/ctr" --version
check "containerd-shim-runc-v2 -v" "$v" "$d/bin/containerd-shim-runc-v2" -v
CTRD_BIN=$d/bin

v=$(comp runc version); runc=$ROOT/$(comp runc path)
check "runc --version" "^runc version ${v#v}\$" "$runc" --version
check "runc has seccomp" "^libseccomp: " "$runc" --version
check "runc is static" "statically linked\|not a dynamic executable" bash -c "ldd '$runc' 2>&1 || true"

v=$(comp crictl version); d=$(unpack crictl)
check "crictl --version" "$v" "$d/crictl" --version

v=$(comp cni-plugins version); d=$(unpack cni-plugins)
for p in bridge host-local loopback portmap ptp; do
  check "CNI $p VERSION" "cniVersion" env CNI_COMMAND=VERSION "$d/$p"
done
check "CNI bridge build version" "$v" "$d/bridge" --version

v=$(comp coredns version); d=$(unpack coredns)
check "coredns -version" "^CoreDNS-${v#v}\$" "$d/coredns" -version

v=$(comp etcd version); d=$(unpack etcd)/etcd-$v-linux-amd64
check "etcd --version" "^etcd Version: ${v#v}\$" "$d/etcd" --version
check "etcdctl version" "^etcdctl version: ${v#v}\$" "$d/etcdctl" version
check "etcdutl version" "^etcdutl version: ${v#v}\$" "$d/etcdutl" version

# ---- images ------------------------------------------------------------------
pause=$(q "i['kubernetes'].get('$VERSION', {}).get('pause_image')")
check "pause image for $VERSION is indexed" "^True\$" q "'$pause' in i['images']"
check "coredns image is indexed" "^True\$" q "i['components']['coredns']['image'] in i['images']"
while IFS=$'\t' read -r name rel; do
  check "image $name: OCI layout, names, digests" "^ok\$" python3 - "$ROOT/$rel" "$name" <<'EOF'
import hashlib, json, sys, tarfile
path, name = sys.argv[1], sys.argv[2]
t = tarfile.open(path)
files = {m.name.lstrip("./"): m for m in t.getmembers() if m.isfile()}
read = lambda n: t.extractfile(files[n]).read()
assert json.loads(read("oci-layout"))["imageLayoutVersion"] == "1.0.0"
idx = json.loads(read("index.json"))
[m] = idx["manifests"]
ann = m["annotations"]
assert ann["io.containerd.image.name"] == name, ann
assert name.endswith(":" + ann["org.opencontainers.image.ref.name"]), ann
def blob(desc):
    data = read("blobs/sha256/" + desc["digest"].split(":")[1])
    assert "sha256:" + hashlib.sha256(data).hexdigest() == desc["digest"] and len(data) == desc["size"], desc
    return data
man = json.loads(blob(m))
cfg = json.loads(blob(man["config"]))
for l in man["layers"]:
    blob(l)
assert len(cfg["rootfs"]["diff_ids"]) == len(man["layers"])
print("ok")
EOF
done < <(q "'\n'.join(n + '\t' + e['path'] for n, e in sorted(i['images'].items()))")

# A real import into a throwaway containerd (root only: it mounts snapshots).
if [ "$(id -u)" = 0 ]; then
  C=$WORK/containerd
  mkdir -p "$C/root" "$C/state"
  cat >"$C/config.toml" <<EOF
version = 3
root = "$C/root"
state = "$C/state"
# Only what an import needs; nothing outside this temp dir (NRI's socket and
# the opt plugin's /opt/containerd would be shared with the host otherwise).
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.runtime", "io.containerd.cri.v1.images",
  "io.containerd.nri.v1.nri"]
[plugins.'io.containerd.internal.v1.opt']
  path = "$C/opt"
[grpc]
  address = "$C/containerd.sock"
[ttrpc]
  address = "$C/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
EOF
  "$CTRD_BIN/containerd" --config "$C/config.toml" >"$C/log" 2>&1 &
  CTRD_PID=$!
  for _ in $(seq 50); do [ -S "$C/containerd.sock" ] && break; sleep 0.2; done
  if [ ! -S "$C/containerd.sock" ]; then
    bad "containerd started for the import check: $(tail -5 "$C/log")"
  else
    while IFS=$'\t' read -r name rel; do
      check "ctr images import $(basename "$rel")" "$name" bash -c \
        "'$CTRD_BIN/ctr' --address '$C/containerd.sock' -n k8s.io images import '$ROOT/$rel' >/dev/null && '$CTRD_BIN/ctr' --address '$C/containerd.sock' -n k8s.io images ls -q"
    done < <(q "'\n'.join(n + '\t' + e['path'] for n, e in sorted(i['images'].items()))")
  fi
fi

echo "$PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
