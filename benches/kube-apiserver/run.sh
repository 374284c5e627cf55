#!/usr/bin/env bash
# kube-apiserver v1.37.2 on 3 k8sup-datastore members against 3 etcd 3.6
# members, side by side in one run, then the datastore's loadgen with etcd
# 3.6 as the peer. Needs the artifacts mirror (built here when missing, see
# tests/artifacts/README.md). Env: see main.rs and benches/datastore/loadgen.rs;
# BENCH_LOADGEN=0 skips the loadgen.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
K8SUP_MIRROR=${K8SUP_MIRROR:-$(bash tests/artifacts/build.sh v1.37.2 | tail -n1)}
export K8SUP_MIRROR
# The stores measured are release builds.
cargo build --release --locked -p k8sup-datastore
bin=$CARGO_TARGET_DIR/release/k8sup-datastore
K8SUP_DATASTORE_BIN=$bin cargo bench --locked -p k8sup-testbed --bench kube_apiserver
if [ "${BENCH_LOADGEN:-1}" != 0 ]; then
  # The loadgen's driver runs in the dev profile (its dependencies are
  # optimised there too), the same for both stores: a release build of the
  # datastore's dev-dependencies unifies features differently and compiles
  # RocksDB a second time (40 minutes on two busy cores).
  BENCH_SECS=${BENCH_SECS:-5} BENCH_K8SUP_BIN=$bin \
    cargo test --locked -p k8sup-datastore --bench loadgen
fi
