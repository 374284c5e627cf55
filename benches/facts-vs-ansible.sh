#!/usr/bin/env bash
# Benchmark: `k8sup facts` against `ansible all -m setup`, on the same lab
# machines, in the same run. Prints both times and their ratio.
#
#   bash benches/facts-vs-ansible.sh [NODES]     (as root; default 10 machines)
#
# Ansible (ansible-core from PyPI, in a venv under /var/tmp) runs with
# forks=NODES and pipelining, connecting with the lab's key and known_hosts,
# exactly as k8sup does. Each tool runs RUNS times (default 5) after one
# warm-up; the median wall time is reported.
set -euo pipefail
cd "$(dirname "$0")/.."
nodes="${1:-10}"
runs="${RUNS:-5}"
lab="bench-facts"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --release --locked -p k8sup >&2
k8sup="$CARGO_TARGET_DIR/release/k8sup"

venv=/var/tmp/k8sup-bench-venv
if [ ! -x "$venv/bin/ansible" ]; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q ansible-core >&2
fi

inventory=$("$k8sup" lab up --name "$lab" --nodes "$nodes")
trap '"$k8sup" lab down --name "$lab" >&2' EXIT
labdir=$(dirname "$inventory")

# The same hosts, key and known_hosts for Ansible.
"$venv/bin/python" - "$inventory" "$labdir/ansible-hosts.ini" <<'PY'
import sys, yaml
inv = yaml.safe_load(open(sys.argv[1]))
with open(sys.argv[2], "w") as f:
    f.write("[lab]\n")
    for h in inv["hosts"]:
        f.write(f'{h["name"]} ansible_host={h["address"]} ansible_user=root\n')
PY
cat > "$labdir/ansible.cfg" <<CFG
[defaults]
inventory = $labdir/ansible-hosts.ini
forks = $nodes
private_key_file = $labdir/id_ed25519
interpreter_python = /usr/bin/python3
gathering = explicit
[ssh_connection]
pipelining = True
ssh_args = -o UserKnownHostsFile=$labdir/known_hosts -o StrictHostKeyChecking=yes
CFG
export ANSIBLE_CONFIG="$labdir/ansible.cfg"

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
time_runs() {  # time_runs CMD...: median wall seconds of $runs runs after a warm-up
  "$@" >/dev/null 2>&1 || { echo "failed: $*" >&2; "$@" >&2; exit 1; }
  for _ in $(seq "$runs"); do
    local t0 t1; t0=$(date +%s.%N); "$@" >/dev/null 2>&1; t1=$(date +%s.%N)
    python3 -c "print($t1 - $t0)"
  done | median
}

k=$(time_runs "$k8sup" facts -i "$inventory" --output json)
a=$(time_runs "$venv/bin/ansible" all -m setup)
printf 'hosts: %s, runs: %s (median wall time)\n' "$nodes" "$runs"
printf 'k8sup facts:          %6.3f s\n' "$k"
printf 'ansible all -m setup: %6.3f s\n' "$a"
printf 'ratio (ansible/k8sup): %.1fx\n' "$(python3 -c "print($a / $k)")"
