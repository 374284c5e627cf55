#!/usr/bin/env bash
# Proves the install steps on a clean machine: runs tests/lib/prereqs.sh and
# the workspace build inside a clean Debian bookworm root, with the host's
# Rust and Go toolchains bound in read-only.
#
#   bash tests/fresh-machine.sh            # prerequisites + cargo build
#   bash tests/fresh-machine.sh --prereqs-only  # only the apt-get part (minutes)
#   bash tests/fresh-machine.sh --shell    # the same root, then a shell in it
#
# Why: CI runs on a machine that has only what the image ships and what
# tests/lib/prereqs.sh installs. A package installed by hand on a developer's
# machine hides a missing install step (that is how `libprotobuf-dev` went
# missing: `--no-install-recommends` dropped it, and a fresh machine failed to
# build). Run this whenever the prerequisites change.
#
# The root holds what the project's machine image ships before any session
# (Debian bookworm with the compilers and tools listed in the image's package
# list: build-essential, git, curl, python3, pkg-config, ...), nothing more.
# The debootstrap of that base is cached under /var/cache/k8sup/fresh-base;
# every run starts from a new copy of it, so nothing installed by an earlier
# run is there. The build uses its own CARGO_HOME and target directory inside
# the copy, so it is a build from nothing (RocksDB included: allow 15 minutes
# or more on two cores).
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"

[ "$(id -u)" = 0 ] || { echo "error: run as root (debootstrap and chroot)" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "error: apt-get install debootstrap" >&2; exit 1; }

# What the machine image ships before a session: the subset of its package
# list that a build could plausibly lean on.
IMAGE_PACKAGES=build-essential,ca-certificates,curl,git,file,pkg-config,python3,xz-utils,zstd,openssl,openssh-client,gzip,tar

cache=/var/cache/k8sup/fresh-base
base="$cache/bookworm.tar"
mkdir -p "$cache"
if [ ! -s "$base" ]; then
  echo "== debootstrap bookworm (cached in $base)" >&2
  tmp="$(mktemp -d "$cache/root.XXXXXX")"
  debootstrap --variant=minbase --include="$IMAGE_PACKAGES" bookworm "$tmp" http://deb.debian.org/debian >&2
  tar -C "$tmp" -cf "$base.part" .
  rm -rf "$tmp"
  mv "$base.part" "$base"
fi

root="$(mktemp -d /var/tmp/k8sup-fresh.XXXXXX)"
mounts=()
cleanup() {
  local i
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount -l "${mounts[$i]}" 2>/dev/null || true; done
  rm -rf --one-file-system "$root"
}
trap cleanup EXIT
tar -C "$root" -xf "$base"

bind() { # bind SRC DST [ro]
  mkdir -p "$root$2"
  mount --bind "$1" "$root$2"
  mounts+=("$root$2")
  if [ "${3:-}" = ro ]; then mount -o remount,bind,ro "$root$2"; fi
}
mount -t proc proc "$root/proc"; mounts+=("$root/proc")
bind /dev /dev
bind /dev/pts /dev/pts
cp /etc/resolv.conf "$root/etc/resolv.conf"
# The machine's own trust store (a CA of the network's egress proxy sits in
# /usr/local/share/ca-certificates on these machines): part of the machine,
# not something the project installs.
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
  chroot "$root" update-ca-certificates >/dev/null
fi
# The same package sources as this machine (and CI's): bookworm, its updates
# and security.
if [ -f /etc/apt/sources.list.d/debian.sources ]; then
  rm -f "$root/etc/apt/sources.list"
  cp /etc/apt/sources.list.d/debian.sources "$root/etc/apt/sources.list.d/"
fi
# The toolchains, read-only: the build must not need to change them.
bind "${RUSTUP_HOME:-/root/.rustup}" /opt/rustup ro
bind /usr/local/go /usr/local/go ro
# A snapshot of the checkout (its tracked and new files, as they are now), so
# that editing the work tree during a long build changes nothing here; bound
# read-only, so a build that writes into the clone fails.
mkdir -p "$root/src"
git -C "$repo" ls-files -z --cached --others --exclude-standard |
  tar -C "$repo" --null -T - -cf - | tar -C "$root/src" -xf -
bind "$root/src" /src ro

cat > "$root/run-fresh.sh" <<'EOF'
set -euo pipefail
export RUSTUP_HOME=/opt/rustup CARGO_HOME=/var/tmp/cargo-home
export PATH="/opt/rustup/toolchains/stable-x86_64-unknown-linux-gnu/bin:/usr/local/go/bin:$PATH"
export CARGO_TARGET_DIR=/var/tmp/target
cd /src
source tests/lib/prereqs.sh
echo "== prerequisites (tests/lib/prereqs.sh)"
k8sup_install_prereqs
[ "${PREREQS_ONLY:-0}" = 1 ] && { echo "== prerequisites installed"; exit 0; }
echo "== cargo build --workspace --all-targets --locked (from nothing)"
start=$(date +%s)
cargo build --workspace --all-targets --locked
echo "== built in $(( $(date +%s) - start )) s"
EOF

case "${1:-}" in
  --shell) chroot "$root" /bin/bash -c 'source /run-fresh.sh; exec bash -i' ;;
  --prereqs-only)
    chroot "$root" /usr/bin/env PREREQS_ONLY=1 /bin/bash /run-fresh.sh
    echo "fresh machine: prerequisites installed" ;;
  "")
    chroot "$root" /bin/bash /run-fresh.sh
    echo "fresh machine: prerequisites and build passed" ;;
  *) echo "usage: $0 [--prereqs-only|--shell]" >&2; exit 2 ;;
esac
