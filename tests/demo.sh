#!/usr/bin/env bash
# Try k8sup on local lab machines, from a fresh Debian bookworm machine, as root:
#   bash tests/demo.sh
# Installs the lab's packages, builds k8sup, boots a 3-machine lab (Debian
# under systemd-nspawn, each with its own network namespace and sshd) and
# runs k8sup against it. Tear it down with `target/release/k8sup lab down`.
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/lib/prereqs.sh
k8sup_install_prereqs
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --release --locked -p k8sup
k8sup="$CARGO_TARGET_DIR/release/k8sup"
inventory=$("$k8sup" lab up --nodes 3)
echo "inventory: $inventory"
"$k8sup" inventory check -i "$inventory"
"$k8sup" facts -i "$inventory"
