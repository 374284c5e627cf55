#!/usr/bin/env bash
# Benchmark: the same workload applied by k8sup, Ansible and pyinfra to the
# same lab machines in one run, next to the physical floor (a raw parallel
# OpenSSH push of the 50 MB binary). Prints every time and the ratios, and
# each stated target (first apply <= 1.2x the raw push, no-op <= 0.3 s)
# beside the figure measured, met or not.
#
#   RUNS=5 bash benches/apply/run.sh [NODES]   (as root; default 10 machines, 3 runs)
#   OTHERS=0 RUNS=7 bash benches/apply/run.sh  (k8sup and the raw push only: a quick check)
#
# Next to the no-op: OpenSSH logging in to every host at once to run `true`,
# which any agentless no-op must at least do.
#
# k8sup's first apply and the raw push run in pairs on freshly reset hosts;
# besides wall times it prints the CPU seconds each used (the lab machines'
# cgroup plus the workstation process), which other load moves far less.
#
# The workload: two directories, a 50 MB binary, three config files rendered
# from one template that lists every host's address, a systemd unit, and the
# service enabled and running, restarted when any of these change. Each tool
# writes under its own /opt/bench-TOOL and runs its own service, so every
# tool's first apply starts from nothing. Ansible runs with forks=NODES and
# pipelining; pyinfra with its defaults; all three verify host keys with the
# lab's known_hosts and log in with its key.
set -euo pipefail
cd "$(dirname "$0")/../.."
nodes="${1:-10}"
runs="${RUNS:-3}"
others="${OTHERS:-1}"
lab=bench-apply
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --release --locked -p k8sup >&2
k8sup="$CARGO_TARGET_DIR/release/k8sup"

[ -x /usr/bin/time ] || apt-get install -y -q time >&2
venv=/var/tmp/k8sup-bench-venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv" >&2
"$venv/bin/python" -c 'import yaml' 2>/dev/null || "$venv/bin/pip" install -q pyyaml >&2
if [ "$others" = 1 ]; then
  [ -x "$venv/bin/ansible-playbook" ] || "$venv/bin/pip" install -q ansible-core >&2
  [ -x "$venv/bin/pyinfra" ] || "$venv/bin/pip" install -q pyinfra >&2
fi

"$k8sup" lab down --name "$lab" >&2 2>&1 || true
inventory=$("$k8sup" lab up --name "$lab" --nodes "$nodes")
trap '"$k8sup" lab down --name "$lab" >&2' EXIT
labdir=$(dirname "$inventory")
work="$labdir/bench"
mkdir -p "$work"
cp benches/apply/* "$work/"
head -c $((50 * 1024 * 1024)) /dev/urandom > "$work/blob"
for tool in k8sup ansible pyinfra; do
  printf '[Unit]\nDescription=bench %s\n[Service]\nExecStart=/bin/sleep infinity\n[Install]\nWantedBy=multi-user.target\n' "$tool" \
    > "$work/bench-$tool.service"
done

# k8sup: the lab's inventory plus the workload, as a plain configuration
# tool (`components: none`: the same job as the playbook, no cluster).
{ sed 's/^cluster:$/&\n  components: none/' "$inventory"; cat "$work/k8sup-workload.yaml"; } > "$work/k8sup.yaml"
# Ansible and pyinfra: the same hosts, key and known_hosts.
"$venv/bin/python" - "$inventory" "$work" "$labdir" "$nodes" <<'PY'
import sys, yaml
inv, work, labdir, nodes = yaml.safe_load(open(sys.argv[1])), sys.argv[2], sys.argv[3], sys.argv[4]
hosts = [(h["name"], h["address"]) for h in inv["hosts"]]
with open(f"{work}/hosts.ini", "w") as f:
    f.write("[lab]\n" + "".join(f"{n} ansible_host={a} ansible_user=root\n" for n, a in hosts))
with open(f"{work}/ansible.cfg", "w") as f:
    f.write(f"""[defaults]
inventory = {work}/hosts.ini
forks = {nodes}
private_key_file = {labdir}/id_ed25519
interpreter_python = /usr/bin/python3
[ssh_connection]
pipelining = True
ssh_args = -o UserKnownHostsFile={labdir}/known_hosts -o StrictHostKeyChecking=yes
""")
with open(f"{work}/pyinfra_inventory.py", "w") as f:
    data = dict(ssh_user="root", ssh_key=f"{labdir}/id_ed25519", ssh_known_hosts_file=f"{labdir}/known_hosts",
                ssh_strict_host_key_checking="yes")
    f.write("hosts = " + repr([(a, dict(data)) for _, a in hosts]) + "\n")
PY
export ANSIBLE_CONFIG="$work/ansible.cfg"
addresses=$("$venv/bin/python" -c "import yaml,sys; print(' '.join(h['address'] for h in yaml.safe_load(open(sys.argv[1]))['hosts']))" "$inventory")
ssh_opts=(-i "$labdir/id_ed25519" -o "UserKnownHostsFile=$labdir/known_hosts" -o StrictHostKeyChecking=yes -o BatchMode=yes)

seconds() { local t0 t1; t0=$(date +%s.%N); "$@" >"$work/last.log" 2>&1 || { cat "$work/last.log" >&2; echo "failed: $*" >&2; exit 1; }; t1=$(date +%s.%N); python3 -c "print(round($t1 - $t0, 3))"; }
median() { python3 -c "import sys,statistics; print(statistics.median(float(x) for x in sys.argv[1:]))" "$@"; }
# The raw push as a script of its own, so that /usr/bin/time sees its ssh processes.
printf '%s\n' "for a in $addresses; do ssh ${ssh_opts[*]} root@\$a 'cat > /tmp/raw-blob' < $work/blob & done; wait" > "$work/raw-push.sh"
# The floor of a no-op: OpenSSH logging in to every host at once and running `true`.
printf '%s\n' "for a in $addresses; do ssh ${ssh_opts[*]} root@\$a true & done; wait" > "$work/raw-true.sh"
on_all() { for a in $addresses; do ssh "${ssh_opts[@]}" "root@$a" "$1" & done; wait; }
# Back to a first apply for k8sup (and no raw blob): what the hosts had before.
fresh() { on_all 'systemctl disable --now bench-k8sup 2>/dev/null; rm -rf /opt/bench-k8sup /etc/systemd/system/bench-k8sup.service /tmp/raw-blob; sync' >/dev/null 2>&1; }
# CPU seconds the lab's machines (their cgroup) and the workstation command
# used: unlike wall time, hardly moved by other load on this machine.
cg=/sys/fs/cgroup/unified/k8sup-lab/$lab/cpu.stat; [ -e "$cg" ] || cg=/sys/fs/cgroup/k8sup-lab/$lab/cpu.stat
lab_usec() { awk '/^usage_usec/ {print $2}' "$cg"; }
# "wall cpu" of one run of a command.
measure() {
  local c0 c1 t0 t1
  c0=$(lab_usec); t0=$(date +%s.%N)
  /usr/bin/time -f '%U %S' -o "$work/time" "$@" >"$work/last.log" 2>&1 || { cat "$work/last.log" >&2; echo "failed: $*" >&2; exit 1; }
  t1=$(date +%s.%N); c1=$(lab_usec)
  python3 -c "u, s = open('$work/time').read().split()[-2:]; print(round($t1 - $t0, 3), round(($c1 - $c0) / 1e6 + float(u) + float(s), 2))"
}

cd "$work"
load0=$(cut -d' ' -f1-3 /proc/loadavg)
# k8sup's first apply against the raw push, in pairs on the same fresh hosts.
kf=(); kc=(); raw=(); rc=(); pair=(); loads=()
for _ in $(seq "$runs"); do
  loads+=("$(cut -d' ' -f1 /proc/loadavg)")
  fresh; read -r w c < <(measure "$k8sup" apply -i k8sup.yaml --yes); kf+=("$w"); kc+=("$c")
  fresh; read -r rw r < <(measure bash "$work/raw-push.sh"); raw+=("$rw"); rc+=("$r")
  pair+=("$(python3 -c "print($w / $rw)")")
done
"$k8sup" apply -i k8sup.yaml --yes >/dev/null
ansible_first=0 pyinfra_first=0
if [ "$others" = 1 ]; then
  ansible_first=$(seconds "$venv/bin/ansible-playbook" playbook.yml)
  pyinfra_first=$(seconds "$venv/bin/pyinfra" -y pyinfra_inventory.py deploy.py)
fi
k=(); a=(0); p=(0); t=()
for _ in $(seq "$runs"); do
  k+=("$(seconds "$k8sup" apply -i k8sup.yaml --yes)")
  t+=("$(seconds bash "$work/raw-true.sh")")
  if [ "$others" = 1 ]; then
    a+=("$(seconds "$venv/bin/ansible-playbook" playbook.yml)")
    p+=("$(seconds "$venv/bin/pyinfra" -y pyinfra_inventory.py deploy.py)")
  fi
done
[ "$others" = 1 ] && { a=("${a[@]:1}"); p=("${p[@]:1}"); }
grep -q "No changes" <("$k8sup" apply -i k8sup.yaml --yes) || { echo "k8sup re-apply was not a no-op" >&2; exit 1; }
k8sup_first=$(median "${kf[@]}"); raw_m=$(median "${raw[@]}"); k_m=$(median "${k[@]}"); t_m=$(median "${t[@]}"); a_m=$(median "${a[@]}"); p_m=$(median "${p[@]}")
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
if [ "$others" = 1 ]; then
  printf '%s machines, 50 MB binary; k8sup and raw push: median of %s runs; Ansible and pyinfra: one first apply, median of %s no-ops\n' "$nodes" "$runs" "$runs"
else
  printf '%s machines, 50 MB binary; k8sup and raw push: median of %s runs (Ansible and pyinfra not run: OTHERS=0)\n' "$nodes" "$runs"
fi
printf 'load average: %s at the start, %s at the end\n\n' "$load0" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-30s %10s %14s\n' tool "first apply" "no-op re-apply"
printf '%-30s %9ss %13ss\n' "k8sup" "$k8sup_first" "$k_m"
if [ "$others" = 1 ]; then
  printf '%-30s %9ss %13ss\n' "Ansible (forks=$nodes, pipelining)" "$ansible_first" "$a_m"
  printf '%-30s %9ss %13ss\n' "pyinfra" "$pyinfra_first" "$p_m"
fi
printf '%-30s %9ss %13ss\n\n' "raw parallel ssh (cat; true)" "$raw_m" "$t_m"
printf 'k8sup first apply / raw push:   %sx (median of the paired runs: %sx)\n' "$(ratio "$k8sup_first" "$raw_m")" "$(ratio "$(median "${pair[@]}")" 1)"
printf 'CPU seconds (hosts + workstation), median: k8sup first apply %s, raw push %s (%sx)\n' "$(median "${kc[@]}")" "$(median "${rc[@]}")" "$(ratio "$(median "${kc[@]}")" "$(median "${rc[@]}")")"
printf 'paired runs (k8sup / raw push, wall), each with the 1-minute load average before it:\n  %s\n' \
  "$(python3 -c "import sys; n = len(sys.argv) // 2; print('  '.join(f'{float(r):.2f} (load {l})' for r, l in zip(sys.argv[1:n + 1], sys.argv[n + 1:])))" "${pair[@]}" "${loads[@]}")"
if [ "$others" = 1 ]; then
  printf 'Ansible / k8sup: first %sx, no-op %sx\n' "$(ratio "$ansible_first" "$k8sup_first")" "$(ratio "$a_m" "$k_m")"
  printf 'pyinfra / k8sup: first %sx, no-op %sx\n' "$(ratio "$pyinfra_first" "$k8sup_first")" "$(ratio "$p_m" "$k_m")"
fi
# The stated targets, each beside the figure measured: a benchmark reports,
# it never fails the suite (the exit status stays 0 either way).
met() { python3 -c "import sys; print('met' if float(sys.argv[1]) <= float(sys.argv[2]) else 'not met')" "$1" "$2"; }
first_ratio=$(ratio "$k8sup_first" "$raw_m")
printf '\ntargets:\n'
printf '  first apply <= 1.2x the raw push:  %sx  %s\n' "$first_ratio" "$(met "$first_ratio" 1.2)"
printf '  no-op re-apply <= 0.3 s:           %ss  %s\n' "$k_m" "$(met "$k_m" 0.3)"
