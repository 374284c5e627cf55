#!/usr/bin/env bash
# Scenario 1 of the cluster tests on real VMs with the official downloads:
# three Vagrant VMs (Ubuntu 24.04: cgroup v2, systemd, as a cloud image has
# them), one control plane and two workers; `k8sup plan`, `k8sup apply`
# with artifacts from dl.k8s.io and the projects' GitHub releases (checked
# against their published SHA-256) and images from their registries; then
# every Node Ready, a 3-replica Deployment spread over the nodes, a
# ClusterIP Service answering a pod on another node, DNS, `kubectl logs` and
# `exec`, and a second apply with nothing to do.
#
# Not run in CI (CI has no hypervisor and no internet). Needs, on the
# workstation: vagrant with a provider (libvirt or virtualbox), internet,
# ssh-keygen, and a k8sup build (`cargo build --release -p k8sup
# -p k8sup-datastore -p k8sup-apiserver-proxy`) or K8SUP=/path/to/k8sup.
#
#   bash tests/vm/run.sh            # up, test, leave the VMs running
#   bash tests/vm/run.sh down       # destroy them
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
work="${K8SUP_VM_DIR:-$HOME/.cache/k8sup/vm-test}"
k8sup="${K8SUP:-${CARGO_TARGET_DIR:-$repo/target}/release/k8sup}"
version="${K8SUP_VM_KUBERNETES:-v1.37.2}"
box="${K8SUP_VM_BOX:-bento/ubuntu-24.04}"
net="${K8SUP_VM_NET:-192.168.56}"
mkdir -p "$work"
cd "$work"

if [ "${1:-}" = down ]; then
  vagrant destroy -f
  exit 0
fi

command -v vagrant >/dev/null || { echo "vagrant is not installed" >&2; exit 1; }
[ -x "$k8sup" ] || { echo "no k8sup at $k8sup: build it, or set K8SUP" >&2; exit 1; }

# A key of its own: the VMs authorize it; their host keys are recorded in a
# known_hosts of its own, so host keys stay strictly checked.
[ -f id_ed25519 ] || ssh-keygen -q -t ed25519 -N '' -f id_ed25519
pub="$(cat id_ed25519.pub)"

cat >Vagrantfile <<EOF
Vagrant.configure("2") do |config|
  config.vm.box = "$box"
  config.vm.synced_folder ".", "/vagrant", disabled: true
  [["cp-1", 11], ["worker-1", 21], ["worker-2", 22]].each do |name, octet|
    config.vm.define name do |m|
      m.vm.hostname = name
      m.vm.network "private_network", ip: "$net.#{octet}"
      [:libvirt, :virtualbox].each do |p|
        m.vm.provider p do |v|
          v.memory = name.start_with?("cp") ? 4096 : 2048
          v.cpus = 2
        end
      end
      m.vm.provision "shell", inline: <<-SHELL
        install -d -m 700 /root/.ssh
        grep -qxF '$pub' /root/.ssh/authorized_keys 2>/dev/null || echo '$pub' >> /root/.ssh/authorized_keys
        chmod 600 /root/.ssh/authorized_keys
        apt-get install -y -q iptables conntrack >/dev/null
      SHELL
    end
  end
end
EOF

vagrant up
: >known_hosts
for ip in "$net.11" "$net.21" "$net.22"; do
  ssh-keyscan -t ed25519 "$ip" 2>/dev/null >>known_hosts
done

cat >inventory.yaml <<EOF
apiVersion: k8sup.io/v1alpha1
kind: Cluster
cluster:
  name: vm-test
  kubernetesVersion: $version
ssh:
  user: root
  identityFile: $work/id_ed25519
  knownHostsFile: $work/known_hosts
  hostKeyPolicy: strict
hosts:
  - { name: cp-1, address: $net.11, role: control-plane }
  - { name: worker-1, address: $net.21, role: worker }
  - { name: worker-2, address: $net.22, role: worker }
EOF

"$k8sup" inventory check -i inventory.yaml
"$k8sup" plan -i inventory.yaml
start=$(date +%s)
"$k8sup" apply -i inventory.yaml --yes
echo "apply: $(( $(date +%s) - start )) s, downloads included"
"$k8sup" status -i inventory.yaml
"$k8sup" kubeconfig -i inventory.yaml --out admin.conf

kubectl="$HOME/.cache/k8sup/vm-test/kubectl"
if [ ! -x "$kubectl" ]; then
  curl -fsSLo "$kubectl" "https://dl.k8s.io/release/$version/bin/linux/amd64/kubectl"
  chmod +x "$kubectl"
fi
k() { "$kubectl" --kubeconfig admin.conf --request-timeout 20s "$@"; }

k wait --for=condition=Ready node --all --timeout=180s
sed -e 's|IMAGE|busybox:1.36|' -e 's|PULL_POLICY|IfNotPresent|' "$repo/tests/workloads/web.yaml" | k apply -f -
k rollout status deployment/web --timeout=180s
nodes=$(k get pods -l app=web -o jsonpath='{range .items[*]}{.spec.nodeName}{"\n"}{end}' | sort -u | wc -l)
[ "$nodes" -eq 3 ] || { echo "the Deployment is on $nodes nodes, not 3" >&2; exit 1; }

# From a pod on one node to the Service (backed by pods on the others), by name.
client=$(k get pods -l app=web -o jsonpath='{.items[0].metadata.name}')
k exec "$client" -- nslookup kubernetes.default.svc.cluster.local
k exec "$client" -- nslookup web.default.svc.cluster.local
for _ in 1 2 3 4 5 6; do k exec "$client" -- wget -qO- http://web.default.svc.cluster.local; done
k logs "$client" | head -n 3

again=$("$k8sup" plan -i inventory.yaml --color never)
echo "$again" | grep -q "No changes\." || { echo "a second plan has changes:"; echo "$again"; exit 1; } >&2
echo "scenario 1 passed on VMs; admin kubeconfig: $work/admin.conf"
echo "destroy the VMs: bash $here/run.sh down"
