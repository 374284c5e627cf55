#!/usr/bin/env bash
# A real Kubernetes cluster on three local machines, in one command, from a
# fresh Debian bookworm machine, as root (Go 1.26 and a Rust toolchain on
# PATH; no internet needed beyond the Go module proxy and crates.io):
#
#   bash tests/demo.sh
#
# What it does:
#   1. installs the lab's packages, builds k8sup (release);
#   2. builds the artifacts mirror: Kubernetes v1.37.2, containerd, runc,
#      the CNI plugins, CoreDNS and etcd from their Go modules, plus image
#      archives (about 25 minutes the first time, then cached);
#   3. boots three lab machines (Debian under systemd-nspawn, each with its
#      own network namespace and sshd) and writes their inventory: one
#      control plane, two workers;
#   4. `k8sup plan`, then `k8sup apply`: bootstrap of the control plane
#      (datastore, kube-apiserver, controller manager, scheduler), the
#      workers join, pod networking and CoreDNS;
#   5. `k8sup status`, then a pod that runs and says where;
#   6. leaves the cluster up and prints its kubeconfig's path.
#
# Remove it all with: k8sup lab down --name demo
# K8SUP_BIN_DIR=DIR uses the k8sup, k8sup-datastore and k8sup-apiserver-proxy
# already built there instead of building them.
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/lib/prereqs.sh
k8sup_install_prereqs
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
name="${K8SUP_DEMO_NAME:-demo}"

step() { printf '\n== %s\n' "$*"; }

if [ -n "${K8SUP_BIN_DIR:-}" ]; then
  # Binaries built already (k8sup and its node daemons side by side).
  k8sup="$K8SUP_BIN_DIR/k8sup"
else
  step "building k8sup"
  # One package per build: built together, the three unify their
  # dependencies' features differently from the datastore's own build, and
  # each alternation rebuilds RocksDB (about 20 minutes on 2 cores).
  for p in k8sup k8sup-datastore k8sup-apiserver-proxy; do
    cargo build --release --locked -p "$p"
  done
  k8sup="$CARGO_TARGET_DIR/release/k8sup"
fi

step "the artifacts mirror (cached after the first build)"
mirror=$(bash tests/artifacts/build.sh v1.37.2 | tail -n1)
echo "$mirror"

step "three lab machines: one control plane, two workers"
"$k8sup" lab down --name "$name" >/dev/null 2>&1 || true
inventory=$("$k8sup" lab up --name "$name" --nodes 3 --mirror "$mirror" | tail -n1)
echo "inventory: $inventory"

# A test image for the pod below, put on every node by the inventory's own
# files and commands (as one pre-loads images on hosts without a registry).
busybox=$(sed -n 's/.*"name": "\(.*\)",/\1/p' "$mirror/index.d/image-busybox.json")
cp "$mirror/images/busybox-1.tar" "$(dirname "$inventory")/busybox.tar"
cat >>"$inventory" <<EOF
files:
  - { path: /var/lib/k8sup-demo/busybox.tar, src: busybox.tar }
commands:
  - name: import-busybox
    run: /usr/local/bin/ctr -n k8s.io images import /var/lib/k8sup-demo/busybox.tar
    unless: /usr/local/bin/ctr -n k8s.io images ls -q | grep -qxF $busybox
EOF

step "k8sup plan"
"$k8sup" plan -i "$inventory"

step "k8sup apply: bootstrap the control plane, join the workers"
"$k8sup" apply -i "$inventory" --yes

step "k8sup apply again: nothing to do"
"$k8sup" apply -i "$inventory" --yes

step "k8sup status"
"$k8sup" status -i "$inventory"

kubeconfig="$(dirname "$inventory")/admin.conf"
"$k8sup" kubeconfig -i "$inventory" --out "$kubeconfig"
kubectl="$mirror/dl.k8s.io/release/v1.37.2/bin/linux/amd64/kubectl"
k() { "$kubectl" --kubeconfig "$kubeconfig" "$@"; }

step "a pod that runs"
k delete pod hello --ignore-not-found >/dev/null
k apply -f - <<EOF
apiVersion: v1
kind: Pod
metadata: {name: hello, namespace: default}
spec:
  restartPolicy: Never
  containers:
    - name: hello
      image: $busybox
      imagePullPolicy: Never
      command: ["sh", "-c", "echo hello from pod \$(hostname) on node \$NODE; nslookup kubernetes.default.svc.cluster.local"]
      env:
        - name: NODE
          valueFrom: {fieldRef: {fieldPath: spec.nodeName}}
EOF
k wait --for=jsonpath='{.status.phase}'=Succeeded pod/hello --timeout=120s
k logs hello
k get nodes -o wide

step "done"
echo "The cluster is up. Its admin kubeconfig: $kubeconfig"
echo "  $kubectl --kubeconfig $kubeconfig get pods -A"
echo "Remove it: $k8sup lab down --name $name"
