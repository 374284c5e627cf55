#!/usr/bin/env bash
# Build the real upstream binaries for one Kubernetes version (plus containerd,
# runc, crictl, the CNI plugins, CoreDNS, etcd and three OCI image archives)
# from Go modules, and lay them out as a local mirror of the official download
# locations. See tests/artifacts/README.md for the layout and the figures.
#
#   bash tests/artifacts/build.sh v1.37.2
#
# Builds only what is missing. Progress goes to stderr; the LAST line of stdout
# is the mirror's root directory (callers take `| tail -n1`).
#
# Environment:
#   K8SUP_ARTIFACTS_DIR        mirror root            (default /var/cache/k8sup/mirror)
#   K8SUP_ARTIFACTS_BUILD_DIR  wrapper modules, scratch (default /var/cache/k8sup/build)
#   K8SUP_ARTIFACTS_JOBS       go build -p            (default 2: a shared 2-core box)
#   K8SUP_ARTIFACTS_MEASURE=1  also record GOMODCACHE/GOCACHE growth per part (slow du)
#   GOMODCACHE, GOCACHE        Go's own; left at Go's defaults unless set
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MIRROR_PY="$HERE/mirror.py"

log() { printf '[artifacts %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

[ $# -eq 1 ] || die "usage: $0 vMAJOR.MINOR.PATCH (e.g. v1.37.2)"
K8S_VERSION=$1
# Releases only: the staging modules' v0.MINOR.PATCH tags exist for those.
[[ $K8S_VERSION =~ ^v1\.([0-9]+)\.([0-9]+)$ ]] || die "not a Kubernetes release version: $K8S_VERSION"
K8S_MINOR=${BASH_REMATCH[1]}
K8S_PATCH=${BASH_REMATCH[2]}

# shellcheck source=versions.env
. "$HERE/versions.env"

ROOT=${K8SUP_ARTIFACTS_DIR:-/var/cache/k8sup/mirror}
BUILD=${K8SUP_ARTIFACTS_BUILD_DIR:-/var/cache/k8sup/build}
JOBS=${K8SUP_ARTIFACTS_JOBS:-2}
MEASURE=${K8SUP_ARTIFACTS_MEASURE:-0}
ARCH=amd64

# Everything we build is for this machine's kind (linux/amd64); a stray
# GOOS/GOARCH in the caller's environment would silently cross-compile.
export GOOS=linux GOARCH=$ARCH
# Never reach for a VCS host: only the module proxy is reachable here.
export GOFLAGS="${GOFLAGS:-} -buildvcs=false"

# ---- prerequisites ----------------------------------------------------------
# The C toolchain (pause.c, runc's cgo), libseccomp's static library (runc),
# pkg-config (libseccomp-golang finds libseccomp with it) and busybox-static
# (the test workload image) come from Debian via tests/lib/prereqs.sh. Go itself
# is the machine's /usr/local/go (Debian's golang is far too old).
need_prereqs() {
  command -v go >/dev/null || die "go is not on PATH"
  command -v python3 >/dev/null || die "python3 is not on PATH"
  local p missing=0
  for p in gcc libc6-dev libseccomp-dev pkg-config busybox-static; do
    [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || missing=1
  done
  if [ "$missing" = 1 ]; then
    # shellcheck source=../lib/prereqs.sh
    . "$HERE/../lib/prereqs.sh"
    k8sup_install_prereqs >&2
  fi
}
need_prereqs

mkdir -p "$ROOT" "$BUILD"
ROOT=$(cd "$ROOT" && pwd)

# ---- one builder at a time --------------------------------------------------
# Several tests may call us at once: the second waits for the first and then
# finds everything present, instead of building the same thing twice (and two
# Kubernetes builds at once would swamp a 2-core box).
exec 9>"$BUILD/.lock"
if ! flock -n 9; then
  log "another build.sh holds $BUILD/.lock; waiting for it"
  flock 9
fi

# Scratch lives inside ROOT so a finished file reaches its place by rename(2),
# which is atomic on one filesystem: an interrupted build leaves only scratch,
# never a half file under a real name. Holding the lock, anything left in
# .tmp is from a dead run.
rm -rf "$ROOT/.tmp"
mkdir -p "$ROOT/.tmp"
SCRATCH=$(mktemp -d "$ROOT/.tmp/run.XXXXXX")
trap 'rm -rf "$SCRATCH"' EXIT

sha256() { sha256sum "$1" | cut -d' ' -f1; }

# publish SRC REL: move a finished file (in SCRATCH) to ROOT/REL.
publish() {
  local src=$1 rel=$2
  mkdir -p "$(dirname "$ROOT/$rel")"
  chmod go+r "$src"
  mv -f "$src" "$ROOT/$rel"
}

# publish_with_sum SRC REL STYLE: the file, then its checksum file in upstream's style:
#   hex       REL.sha256     holding just the hex digest (dl.k8s.io, crictl)
#   hexname   REL.sha256     "HEX  NAME" (CNI plugins, CoreDNS)
#   sha256sum REL.sha256sum  "HEX  NAME" (containerd)
#   FILE      DIR/FILE       "HEX  NAME" in a release-wide file (runc.sha256sum, etcd's SHA256SUMS)
publish_with_sum() {
  local src=$1 rel=$2 style=$3 name sum sumrel
  name=$(basename "$rel")
  sum=$(sha256 "$src")
  case $style in
    hex) sumrel=$rel.sha256; printf '%s' "$sum" >"$SCRATCH/sum" ;;
    hexname) sumrel=$rel.sha256; printf '%s  %s\n' "$sum" "$name" >"$SCRATCH/sum" ;;
    sha256sum) sumrel=$rel.sha256sum; printf '%s  %s\n' "$sum" "$name" >"$SCRATCH/sum" ;;
    *) sumrel=$(dirname "$rel")/$style; printf '%s  %s\n' "$sum" "$name" >"$SCRATCH/sum" ;;
  esac
  publish "$src" "$rel"
  publish "$SCRATCH/sum" "$sumrel"
}

# A reproducible tarball: fixed owner, order and time, like a release's.
mktar() { # OUT.tar.gz DIR MEMBERS...
  local out=$1 dir=$2; shift 2
  tar -C "$dir" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -cf - "$@" | gzip -9n >"$out"
}

# ---- parts ------------------------------------------------------------------
# Each part ends by writing ROOT/index.d/PART.json (mirror.py fragment) after
# all its files are in place; `mirror.py check` re-hashes them, so a part is
# skipped only when it is complete and intact.

du_bytes() { du -sb "$1" 2>/dev/null | cut -f1 || echo 0; }

# CPU seconds (user+sys) used so far by finished children, into CHILD_CPU: on
# a shared box the wall clock says more about the neighbours than the build.
# No $(…) and no pipe: those fork, and a fork starts with no children's times.
child_cpu() {
  local _ c
  times >"$SCRATCH/times"
  { read -r _; read -r c; } <"$SCRATCH/times"
  # "1m2.300s 0m5.100s" -> 67
  c=${c//m/ } c=${c//s/}
  # shellcheck disable=SC2086 # split into its four numbers on purpose
  set -- $c
  CHILD_CPU=$(awk -v a="$1" -v b="$2" -v c="$3" -v d="$4" 'BEGIN { printf "%d", a * 60 + b + c * 60 + d }')
}

PART_START=0 CPU_START=0 MOD_BEFORE=0 CACHE_BEFORE=0
run_part() { # PART FUNCTION
  local part=$1 fn=$2
  if python3 "$MIRROR_PY" check "$ROOT" "$part"; then
    log "$part: present"
    return 0
  fi
  log "$part: building"
  if [ "$MEASURE" = 1 ]; then
    MOD_BEFORE=$(du_bytes "$(go env GOMODCACHE)")
    CACHE_BEFORE=$(du_bytes "$(go env GOCACHE)")
  fi
  PART_START=$SECONDS
  child_cpu
  CPU_START=$CHILD_CPU
  "$fn"
  # Its files are published by now: what is left in scratch is unpacked copies.
  rm -rf "${SCRATCH:?}"/*
  log "$part: done in $((SECONDS - PART_START)) s"
}

# record PART META_JSON KEY=REL...: the part's index record. META_JSON holds
# only version strings and names, which need no escaping.
record() {
  local part=$1 meta=$2; shift 2
  local extra
  child_cpu
  extra=$(printf '"build_seconds": %d, "cpu_seconds": %d, "go": "%s"' \
    $((SECONDS - PART_START)) $((CHILD_CPU - CPU_START)) "$(go env GOVERSION)")
  if [ "$MEASURE" = 1 ]; then
    extra+=$(printf ', "measure": {"gomodcache_growth_bytes": %d, "gocache_growth_bytes": %d}' \
      $(($(du_bytes "$(go env GOMODCACHE)") - MOD_BEFORE)) $(($(du_bytes "$(go env GOCACHE)") - CACHE_BEFORE)))
  fi
  python3 "$MIRROR_PY" fragment "$ROOT" "$part" "{$meta, $extra}" "$@"
}

# says PATTERN CMD...: CMD's output (stdout+stderr) has a line matching PATTERN.
# Captured first: `cmd | grep -q` can kill cmd with SIGPIPE, which pipefail
# would report as a failure.
says() {
  local pat=$1 o; shift
  o=$("$@" 2>&1) || return 1
  grep -q -- "$pat" <<<"$o"
}

# A new version of a component replaces the old one in the index (its files
# stay in the mirror, unlisted): drop the other versions' records.
drop_other_versions() { # NAME KEEP_PART
  local f
  for f in "$ROOT/index.d/$1"-v*.json; do
    [ -e "$f" ] && [ "$f" != "$ROOT/index.d/$2.json" ] && rm -f "$f"
  done
  return 0
}

# The k8s.io/kubernetes module zip: its go.mod gives the staging list and
# godebug lines, its tree gives pause.c and the pause tag.
K8S_DL_JSON=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION") ||
  die "the module proxy does not serve k8s.io/kubernetes@$K8S_VERSION"
jget() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$K8S_DL_JSON" "$1"; }
K8S_GOMOD=$(jget GoMod)
K8S_DIR=$(jget Dir)
K8S_SUM=$(jget Sum)
K8S_TIME=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["Time"])' "$(jget Info)")
PAUSE_VERSION=$(sed -n 's/^[[:space:]]*PauseVersion = "\(.*\)"$/\1/p' "$K8S_DIR/cmd/kubeadm/app/constants/constants.go")
[ -n "$PAUSE_VERSION" ] || die "no PauseVersion in kubeadm's constants.go of $K8S_VERSION"
PAUSE_IMAGE=registry.k8s.io/pause:$PAUSE_VERSION
COREDNS_IMAGE=registry.k8s.io/coredns/coredns:$COREDNS_VERSION

K8S_BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)

build_kubernetes() {
  local w=$BUILD/kubernetes-$K8S_VERSION out=$SCRATCH/kubernetes
  mkdir -p "$w" "$out"
  # Staging modules: every `k8s.io/X => ./staging/src/k8s.io/X` of this tag's
  # go.mod. `replace` counts only in the main module, so the wrapper pins each
  # one to its published v0.MINOR.PATCH instead.
  local staging
  staging=$(sed -n 's#^[[:space:]]*\(k8s\.io/[A-Za-z0-9._-]*\)[[:space:]]*=>[[:space:]]*\./staging/src/k8s\.io/.*#\1#p' "$K8S_GOMOD")
  [ -n "$staging" ] || die "no staging replace lines in $K8S_GOMOD"
  log "kubernetes: $(wc -w <<<"$staging") staging modules pinned to v0.$K8S_MINOR.$K8S_PATCH"
  {
    echo "// Generated by k8sup's tests/artifacts/build.sh: builds k8s.io/kubernetes $K8S_VERSION"
    echo "// from the module proxy. Regenerated on every build."
    echo "module k8sup.local/artifacts/kubernetes"
    echo
    grep -m1 '^go ' "$K8S_GOMOD"
    echo
    # godebug lines act only in the main module: copy them (one-line or block form).
    awk '/^godebug \(/{b=1} b{print} b&&/^\)/{b=0; next} /^godebug [^(]/{print}' "$K8S_GOMOD"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    echo "replace ("
    local m
    for m in $staging; do printf '\t%s => %s v0.%s.%s\n' "$m" "$m" "$K8S_MINOR" "$K8S_PATCH"; done
    echo ")"
    echo
    echo "tool ("
    for m in "${K8S_BINARIES[@]}"; do printf '\tk8s.io/kubernetes/cmd/%s\n' "$m"; done
    echo ")"
  } >"$w/go.mod"
  (cd "$w" && go mod tidy) >&2

  # Version stamps as hack/lib/version.sh sets them, on both packages that
  # carry them; unstamped binaries say v0.0.0-master and fail skew checks.
  # The proxy does not tell the commit: gitCommit stays empty and index.json
  # carries the module zip's h1: sum instead. buildDate is the tag's time, so
  # rebuilding gives the same bytes.
  local ldf="-s -w" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldf+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$K8S_MINOR"
    ldf+=" -X $pkg.gitCommit= -X $pkg.gitTreeState=clean -X $pkg.buildDate=$K8S_TIME"
  done
  local pkgs=()
  for m in "${K8S_BINARIES[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$m"); done
  # One go build for all six: they share most compiled packages.
  (cd "$w" && CGO_ENABLED=0 go build -p "$JOBS" -trimpath -ldflags "$ldf" -o "$out/" "${pkgs[@]}") >&2

  local b
  for b in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy; do
    [ "$("$out/$b" --version 2>/dev/null)" = "Kubernetes $K8S_VERSION" ] ||
      die "$b --version does not say Kubernetes $K8S_VERSION"
  done
  "$out/kubectl" version --client -o json |
    python3 -c 'import json,sys; v=json.load(sys.stdin)["clientVersion"]["gitVersion"]; sys.exit(v!=sys.argv[1])' "$K8S_VERSION" ||
    die "kubectl version --client does not say $K8S_VERSION"

  local rel=dl.k8s.io/release/$K8S_VERSION/bin/linux/$ARCH files=()
  for b in "${K8S_BINARIES[@]}"; do
    publish_with_sum "$out/$b" "$rel/$b" hex
    files+=("$b=$rel/$b")
  done
  record "kubernetes-$K8S_VERSION" \
    "\"kind\": \"kubernetes\", \"version\": \"$K8S_VERSION\", \"pause_image\": \"$PAUSE_IMAGE\", \"module_sum\": \"$K8S_SUM\", \"staging_modules\": $(wc -w <<<"$staging")" \
    "${files[@]}"
}

build_containerd() {
  local v=$CONTAINERD_VERSION out=$SCRATCH/containerd p=github.com/containerd/containerd/v2
  mkdir -p "$out/bin"
  # containerd's go.mod at this tag has no replace or exclude lines, so a
  # direct `go install pkg@version` (which refuses modules that have them)
  # builds it with containerd's own go.sum. Tags and stamps as its Makefile's
  # static build; the shim is always built without cgo upstream too.
  CGO_ENABLED=0 GOBIN=$out/bin go install -p "$JOBS" -trimpath \
    -tags "urfave_cli_no_docs osusergo netgo static_build" \
    -ldflags "-s -w -X $p/version.Version=$v -X $p/version.Package=$p" \
    "$p/cmd/containerd@$v" "$p/cmd/containerd-shim-runc-v2@$v" "$p/cmd/ctr@$v" >&2
  says " $v" "$out/bin/containerd" --version || die "containerd --version does not say $v"
  says " $v" "$out/bin/ctr" --version || die "ctr --version does not say $v"
  local name=containerd-${v#v}-linux-$ARCH.tar.gz
  mktar "$SCRATCH/$name" "$out" bin/containerd bin/containerd-shim-runc-v2 bin/ctr
  local rel=github.com/containerd/containerd/releases/download/$v/$name
  publish_with_sum "$SCRATCH/$name" "$rel" sha256sum
  record "containerd-$v" "\"kind\": \"component\", \"name\": \"containerd\", \"version\": \"$v\", \"contents\": [\"bin/containerd\", \"bin/containerd-shim-runc-v2\", \"bin/ctr\"]" "main=$rel"
  drop_other_versions containerd "containerd-$v"
}

build_runc() {
  local v=$RUNC_VERSION out=$SCRATCH/runc
  mkdir -p "$out"
  # runc needs cgo (nsenter, libseccomp). Static PIE as its Makefile's
  # `static` target, with Debian's libseccomp.a. The libpathrs tag (a Rust
  # library Debian does not ship) is left out: runc then uses its pure-Go
  # pathrs-lite, as `make RUNC_BUILDTAGS=-libpathrs` does.
  CGO_ENABLED=1 GOBIN=$out go install -p "$JOBS" -trimpath -buildmode=pie \
    -tags "seccomp urfave_cli_no_docs netgo osusergo" \
    -ldflags "-s -w -linkmode external -extldflags -static-pie" \
    "github.com/opencontainers/runc@$v" >&2
  says "^runc version ${v#v}$" "$out/runc" --version || die "runc --version does not say ${v#v}"
  says "^libseccomp: " "$out/runc" --version || die "runc was built without seccomp"
  # It runs inside lab machines and VMs whatever their libc: static, as upstream's.
  says "statically linked\|not a dynamic executable" ldd "$out/runc" || ! ldd "$out/runc" >/dev/null 2>&1 ||
    die "runc is not static"
  local rel=github.com/opencontainers/runc/releases/download/$v/runc.$ARCH
  mv "$out/runc" "$out/runc.$ARCH"
  publish_with_sum "$out/runc.$ARCH" "$rel" runc.sha256sum
  record "runc-$v" "\"kind\": \"component\", \"name\": \"runc\", \"version\": \"$v\"" "main=$rel"
  drop_other_versions runc "runc-$v"
}

build_crictl() {
  local v=$CRICTL_VERSION out=$SCRATCH/crictl
  mkdir -p "$out"
  CGO_ENABLED=0 GOBIN=$out go install -p "$JOBS" -trimpath \
    -ldflags "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$v" \
    "sigs.k8s.io/cri-tools/cmd/crictl@$v" >&2
  says "$v" "$out/crictl" --version || die "crictl --version does not say $v"
  local name=crictl-$v-linux-$ARCH.tar.gz
  mktar "$SCRATCH/$name" "$out" crictl
  local rel=github.com/kubernetes-sigs/cri-tools/releases/download/$v/$name
  publish_with_sum "$SCRATCH/$name" "$rel" hex
  record "crictl-$v" "\"kind\": \"component\", \"name\": \"crictl\", \"version\": \"$v\", \"contents\": [\"crictl\"]" "main=$rel"
  drop_other_versions crictl "crictl-$v"
}

# The plugins upstream's release tarball holds for linux (its build_linux.sh
# builds every plugins/{main,ipam,meta}/* but windows).
CNI_PLUGINS=(main/bridge main/dummy main/host-device main/ipvlan main/loopback main/macvlan main/ptp
  main/tap main/vlan ipam/dhcp ipam/host-local ipam/static
  meta/bandwidth meta/firewall meta/portmap meta/sbr meta/tuning meta/vrf)

build_cni() {
  local v=$CNI_PLUGINS_VERSION out=$SCRATCH/cni m=github.com/containernetworking/plugins
  mkdir -p "$out"
  local pkgs=() p names=()
  for p in "${CNI_PLUGINS[@]}"; do pkgs+=("$m/plugins/$p@$v"); names+=("./${p#*/}"); done
  CGO_ENABLED=0 GOBIN=$out go install -p "$JOBS" -trimpath \
    -ldflags "-s -w -X $m/pkg/utils/buildversion.BuildVersion=$v" "${pkgs[@]}" >&2
  # A CNI plugin run with CNI_COMMAND=VERSION answers with the spec versions it speaks.
  says cniVersion env CNI_COMMAND=VERSION "$out/bridge" </dev/null || die "bridge does not answer CNI VERSION"
  local name=cni-plugins-linux-$ARCH-$v.tgz
  mktar "$SCRATCH/$name" "$out" "${names[@]}"
  local rel=github.com/containernetworking/plugins/releases/download/$v/$name
  publish_with_sum "$SCRATCH/$name" "$rel" hexname
  local contents
  contents=$(printf '"%s", ' "${names[@]#./}")
  record "cni-plugins-$v" "\"kind\": \"component\", \"name\": \"cni-plugins\", \"version\": \"$v\", \"contents\": [${contents%, }]" "main=$rel"
  drop_other_versions cni-plugins "cni-plugins-$v"
}

build_coredns() {
  local v=$COREDNS_VERSION out=$SCRATCH/coredns
  mkdir -p "$out"
  # coredns.go at the module root is package main and go.mod has no replace
  # or exclude: a direct build.
  CGO_ENABLED=0 GOBIN=$out go install -p "$JOBS" -trimpath -ldflags "-s -w" \
    "github.com/coredns/coredns@$v" >&2
  says "^CoreDNS-${v#v}$" "$out/coredns" -version || die "coredns -version does not say ${v#v}"
  local name=coredns_${v#v}_linux_$ARCH.tgz
  mktar "$SCRATCH/$name" "$out" coredns
  local rel=github.com/coredns/coredns/releases/download/$v/$name
  publish_with_sum "$SCRATCH/$name" "$rel" hexname
  record "coredns-$v" "\"kind\": \"component\", \"name\": \"coredns\", \"version\": \"$v\", \"image\": \"$COREDNS_IMAGE\", \"contents\": [\"coredns\"]" "main=$rel"
  drop_other_versions coredns "coredns-$v"
}

build_etcd() {
  local v=$ETCD_VERSION w=$BUILD/etcd-$ETCD_VERSION
  local dir=etcd-$v-linux-$ARCH
  local out=$SCRATCH/etcd/$dir
  mkdir -p "$w/cmd/etcd" "$out"
  # etcd's modules point at each other with `replace … => ../x`, which only a
  # main module may use: a wrapper requires the three at the tag (their
  # requirements pin the sibling modules to the same tag) and a 3-line main
  # runs the server. The version is a constant in the code; nothing to stamp.
  local goline
  goline=$(grep -m1 '^go ' "$(go mod download -json "go.etcd.io/etcd/server/v3@$v" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')")
  cat >"$w/go.mod" <<EOF
// Generated by k8sup's tests/artifacts/build.sh: builds etcd $v from the module proxy.
module k8sup.local/artifacts/etcd

$goline

require (
	go.etcd.io/etcd/etcdctl/v3 $v
	go.etcd.io/etcd/etcdutl/v3 $v
	go.etcd.io/etcd/server/v3 $v
)

tool (
	go.etcd.io/etcd/etcdctl/v3
	go.etcd.io/etcd/etcdutl/v3
)
EOF
  cat >"$w/cmd/etcd/main.go" <<'EOF'
// The etcd server, as go.etcd.io/etcd/server/v3's own main.go runs it.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOF
  (cd "$w" && go mod tidy) >&2
  (cd "$w" && CGO_ENABLED=0 go build -p "$JOBS" -trimpath -ldflags "-s -w" -o "$out/" \
    ./cmd/etcd go.etcd.io/etcd/etcdctl/v3 go.etcd.io/etcd/etcdutl/v3) >&2
  says "^etcd Version: ${v#v}$" "$out/etcd" --version || die "etcd --version does not say ${v#v}"
  says "^etcdctl version: ${v#v}$" "$out/etcdctl" version || die "etcdctl version does not say ${v#v}"
  says "^etcdutl version: ${v#v}$" "$out/etcdutl" version || die "etcdutl version does not say ${v#v}"
  local name=$dir.tar.gz
  mktar "$SCRATCH/$name" "$SCRATCH/etcd" "$dir"
  local rel=github.com/etcd-io/etcd/releases/download/$v/$name
  publish_with_sum "$SCRATCH/$name" "$rel" SHA256SUMS
  record "etcd-$v" "\"kind\": \"component\", \"name\": \"etcd\", \"version\": \"$v\", \"contents\": [\"$dir/etcd\", \"$dir/etcdctl\", \"$dir/etcdutl\"]" "main=$rel"
  drop_other_versions etcd "etcd-$v"
}

# ---- images -----------------------------------------------------------------

build_image_pause() {
  local out=$SCRATCH/pause
  mkdir -p "$out"
  local src=$K8S_DIR/build/pause/linux/pause.c
  if [ -f "$src" ]; then
    # As upstream's build/pause/Makefile compiles it.
    gcc -Os -Wall -Werror -static -DVERSION="v$PAUSE_VERSION-$K8S_VERSION" -o "$out/pause" "$src" >&2
    strip "$out/pause"
    says "v$PAUSE_VERSION" "$out/pause" -v || die "pause -v does not say $PAUSE_VERSION"
  else
    die "no build/pause/linux/pause.c in k8s.io/kubernetes@$K8S_VERSION"
  fi
  local rel=images/pause-$PAUSE_VERSION.tar
  # As upstream's build/pause/Dockerfile: /pause, user 65535.
  python3 "$MIRROR_PY" oci "$out/image.tar" --name "$PAUSE_IMAGE" \
    --entrypoint '["/pause"]' --user 65535:65535 --file "$out/pause:pause:0755"
  publish_with_sum "$out/image.tar" "$rel" hex
  record "image-pause-$PAUSE_VERSION" \
    "\"kind\": \"image\", \"role\": \"pause\", \"name\": \"$PAUSE_IMAGE\", \"source\": \"k8s.io/kubernetes@$K8S_VERSION build/pause/linux/pause.c\"" "main=$rel"
}

build_image_coredns() {
  local out=$SCRATCH/coredns-image
  mkdir -p "$out"
  tar -C "$out" -xzf "$ROOT/github.com/coredns/coredns/releases/download/$COREDNS_VERSION/coredns_${COREDNS_VERSION#v}_linux_$ARCH.tgz" coredns
  local extra=()
  # Upstream's image carries the CA bundle (for forwarding over TLS).
  [ -f /etc/ssl/certs/ca-certificates.crt ] &&
    extra+=(--file /etc/ssl/certs/ca-certificates.crt:etc/ssl/certs/ca-certificates.crt:0644)
  local rel=images/coredns-$COREDNS_VERSION.tar
  # As upstream's Dockerfile: /coredns, user nonroot (65532). Port 53 needs
  # no capability with containerd 2.x, which sets
  # net.ipv4.ip_unprivileged_port_start=0 in pods by default.
  python3 "$MIRROR_PY" oci "$out/image.tar" --name "$COREDNS_IMAGE" \
    --entrypoint '["/coredns"]' --user 65532:65532 --file "$out/coredns:coredns:0755" "${extra[@]}"
  publish_with_sum "$out/image.tar" "$rel" hex
  record "image-coredns-$COREDNS_VERSION" \
    "\"kind\": \"image\", \"role\": \"coredns\", \"name\": \"$COREDNS_IMAGE\", \"source\": \"coredns $COREDNS_VERSION built above\"" "main=$rel"
  drop_other_versions image-coredns "image-coredns-$COREDNS_VERSION"
}

build_image_busybox() {
  local out=$SCRATCH/busybox-image bb debver
  mkdir -p "$out"
  debver=$(dpkg-query -W -f='${Version}' busybox-static) || die "busybox-static is not installed"
  bb=$(dpkg -L busybox-static | grep -m1 '/bin/busybox$') || die "busybox-static has no bin/busybox"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$out/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$out/group"
  local args=(--file "$bb:bin/busybox:0755" --file "$out/passwd:etc/passwd:0644" --file "$out/group:etc/group:0644"
    --dir tmp:1777 --dir root:0700 --dir var/www:0755)
  # Every applet this busybox has, as a symlink in /bin (sh, httpd, wget,
  # nslookup, cat, echo, sleep, ls, hostname, …).
  local a
  for a in $("$bb" --list); do
    [ "$a" = busybox ] || args+=(--symlink "bin/$a:busybox")
  done
  local rel=images/busybox-1.tar
  python3 "$MIRROR_PY" oci "$out/image.tar" --name "$BUSYBOX_IMAGE" --cmd '["sh"]' "${args[@]}"
  publish_with_sum "$out/image.tar" "$rel" hex
  record image-busybox \
    "\"kind\": \"image\", \"role\": \"busybox\", \"name\": \"$BUSYBOX_IMAGE\", \"source\": \"Debian busybox-static $debver\"" "main=$rel"
}

# ---- main -------------------------------------------------------------------
log "Kubernetes $K8S_VERSION into $ROOT (go build -p $JOBS, $(go env GOVERSION))"
T0=$SECONDS
# Quick parts first, Kubernetes (the long one) last: a failure shows early.
run_part image-busybox build_image_busybox
run_part "image-pause-$PAUSE_VERSION" build_image_pause
run_part "etcd-$ETCD_VERSION" build_etcd
run_part "coredns-$COREDNS_VERSION" build_coredns
run_part "image-coredns-$COREDNS_VERSION" build_image_coredns
run_part "crictl-$CRICTL_VERSION" build_crictl
run_part "cni-plugins-$CNI_PLUGINS_VERSION" build_cni
run_part "runc-$RUNC_VERSION" build_runc
run_part "containerd-$CONTAINERD_VERSION" build_containerd
run_part "kubernetes-$K8S_VERSION" build_kubernetes
python3 "$MIRROR_PY" index "$ROOT"
log "all present after $((SECONDS - T0)) s; index: $ROOT/index.json"
echo "$ROOT"
