# k8sup facts: everything k8sup needs to know about a host, in one round trip.
# POSIX sh only (dash on Debian, busybox ash elsewhere); prints `key=value` lines.
# Each value is on one line; nothing here may fail the whole script.
set +e
kv() { printf '%s=%s\n' "$1" "$2"; }
kv hostname "$(cat /proc/sys/kernel/hostname 2>/dev/null)"
if [ -r /etc/os-release ]; then
  . /etc/os-release
  kv os_id "${ID:-}"; kv os_version "${VERSION_ID:-}"; kv os_pretty "${PRETTY_NAME:-}"
fi
kv kernel "$(uname -r)"
kv arch "$(uname -m)"
kv cpus "$(getconf _NPROCESSORS_ONLN 2>/dev/null || grep -c ^processor /proc/cpuinfo)"
kv mem_kib "$(sed -n 's/^MemTotal:[[:space:]]*\([0-9]*\).*/\1/p' /proc/meminfo)"
init="$(cat /proc/1/comm 2>/dev/null)"
[ -d /run/systemd/system ] && init=systemd
kv init "$init"
kv uptime_s "$(cut -d. -f1 /proc/uptime)"
kv machine_id "$(cat /etc/machine-id 2>/dev/null)"
# What k8sup finds installed: its components' binaries and units, in one systemctl call.
for b in $K8SUP_COMPONENTS; do
  p="$(command -v "$b" 2>/dev/null)"
  [ -z "$p" ] && [ -x "/usr/local/bin/$b" ] && p="/usr/local/bin/$b"
  [ -n "$p" ] && kv "bin.$b" "$p"
done
if [ "$init" = systemd ] && command -v systemctl >/dev/null 2>&1; then
  units=""; for b in $K8SUP_COMPONENTS; do units="$units $b.service"; done
  # Blocks are separated by blank lines; property order is systemd's own,
  # so the parser (lib.rs) groups lines by block rather than by position.
  systemctl show --property=Id,LoadState,ActiveState,UnitFileState $units 2>/dev/null | sed 's/^/sd./'
fi
# Versions that k8sup itself recorded when it installed something.
if [ -r /var/lib/k8sup/installed ]; then
  while IFS=' ' read -r name version; do [ -n "$name" ] && kv "version.$name" "$version"; done < /var/lib/k8sup/installed
fi
exit 0
