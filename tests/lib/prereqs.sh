# What k8sup's build, lab and tests need from Debian, installed only when
# missing. Sourced by tests/run-all.sh and tests/demo.sh.

K8SUP_APT_PACKAGES=(
  # the lab: machines booted with systemd-nspawn on a debootstrap root
  systemd-container debootstrap iproute2
  # SSH: the client for `k8sup lab ssh`, the server for the transport tests on loopback
  openssh-client openssh-server sudo
  # the datastore: RocksDB's bindings (bindgen). The protos need no protoc:
  # datastore/build.rs compiles them with the protox crate.
  libclang-dev
  # the datastore's etcdctl suite: Debian's etcdctl 3.4, an older client than
  # the mirror's 3.6. (The oracle, etcd 3.6, comes from tests/artifacts/build.sh.)
  etcd-client
  # the PKI's judge: its tests check every certificate with `openssl verify` and `x509 -text`
  openssl
  # tests/artifacts/build.sh (real Kubernetes from Go modules; Go itself is the
  # machine's /usr/local/go, Debian's golang is too old):
  #  - gcc and libc6-dev: pause.c (static) and runc's cgo. libc6-dev is only a
  #    Recommends of gcc, which --no-install-recommends would drop: name it.
  #  - libseccomp-dev (libseccomp.a for the static runc) and pkg-config, which
  #    libseccomp-golang's `#cgo pkg-config:` needs.
  #  - busybox-static: the test workload image's /bin/busybox.
  gcc libc6-dev libseccomp-dev pkg-config busybox-static
)

k8sup_install_prereqs() {
  if [ "$(id -u)" != 0 ]; then
    echo "error: run as root: the lab creates network namespaces, bridges and mounts" >&2
    return 1
  fi
  local missing=() p
  for p in "${K8SUP_APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "== installing ${missing[*]}"
  # Packages like openssh-server start their daemon on install;
  # on a workstation or CI box we want the binaries only.
  local policy=/usr/sbin/policy-rc.d created=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && created=1
  fi
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  [ "$created" = 1 ] && rm -f "$policy"
  return 0
}
