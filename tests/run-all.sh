#!/usr/bin/env bash
# The whole k8sup test suite, from a fresh Debian bookworm machine, as root:
#   bash tests/run-all.sh
# It installs what the tests need with apt-get (only what is missing), checks
# the formatting, builds everything, runs clippy (warnings are errors) and
# runs every test: unit tests, the datastore's etcdctl and
# differential suites, and the end-to-end tests that boot lab machines.
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/lib/prereqs.sh
k8sup_install_prereqs

# Lab machines share the host's inotify budget (128 instances per user by
# default; a booted machine holds about 8, a Kubernetes node more), and the
# suite boots many at once. Raise the ceilings for this test machine, as
# kind's and minikube's docs advise; they are limits, not behaviour. The lab
# itself never changes a host setting: it only warns (see src/lab/preflight.rs).
for limit in max_user_instances=8192 max_user_watches=524288; do
  f=/proc/sys/fs/inotify/${limit%=*}
  if [ "$(cat "$f")" -lt "${limit#*=}" ]; then
    echo "== raising fs.inotify.${limit%=*} to ${limit#*=} for the lab machines"
    echo "${limit#*=}" > "$f"
  fi
done

# Reuse a target directory outside the clone when one is given (CI keeps one
# warm); a run from nothing works too, it only takes longer (RocksDB ~10 min).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

# Formatting first: it takes a second and needs no build.
echo "== fmt"
cargo fmt --all --check

echo "== build"
cargo build --workspace --all-targets --locked

# Lints after the build, which they reuse; every warning is an error.
echo "== clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

# The artifacts crate's tests fetch from the mirror of real upstream binaries
# built from Go modules (about 25 min the first time, then cached): build it
# here, outside any test's time limit. Its root is the last line printed.
echo "== artifacts mirror"
bash tests/artifacts/build.sh v1.37.2 | tail -n1

echo "== tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --profile ci --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi
