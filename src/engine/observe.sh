# k8sup observation functions (POSIX sh, run as root). Defined here, called by
# the observation exec and again, under the run lock, by the first apply script
# of a host, which compares the SHA-256 of k8sup_observe's output with the
# fingerprint the plan was computed against. Its output must therefore be a
# pure function of the host's state: no timestamps, no ordering from the disk.
# The engine's state directory: /var/lib/k8sup on every real host (nothing
# sets K8SUP_STATE_DIR there); the local test transport roots it in a temp dir.
K8SUP_SUMS="${K8SUP_STATE_DIR:-/var/lib/k8sup}/engine/sums"
K8SUP_LOCK="${K8SUP_STATE_DIR:-/var/lib/k8sup}/run.lock"
LC_ALL=C
export LC_ALL
K8SUP_MANIFEST=@MANIFEST@

# The run lock, if any: age in seconds (by the host's own clock) and content.
k8sup_lock() {
  if [ -f "$K8SUP_LOCK" ]; then
    n=$(date +%s)
    m=$(stat -c %Y -- "$K8SUP_LOCK" 2>/dev/null || echo "$n")
    printf 'L\t%s\t%s\n' "$((n - m))" "$(tr '\n\t' ';;' < "$K8SUP_LOCK" 2>/dev/null)"
  else
    printf 'L\t-\n'
  fi
}

# Succeeds when a file the manifest wants with some content does not exist
# yet: the host is certain to change. An apply that will not stop to ask
# takes the run lock right then, before observing (see `observe::claim_sh`),
# instead of observing the host a second time under the lock. Builtins only.
k8sup_wants_new() {
  while IFS='	' read -r k8sup_k k8sup_a k8sup_b k8sup_c; do
    if [ "$k8sup_k" = P ] && [ "$k8sup_b" != - ] && [ ! -e "$k8sup_a" ] && [ ! -L "$k8sup_a" ]; then return 0; fi
  done <<K8SUP_M
$K8SUP_MANIFEST
K8SUP_M
  return 1
}

# How the observation stays cheap: every fork costs a millisecond or more on a
# busy host, and ten hosts share the workstation's cores while planning. So all
# existing paths are stat'ed by ONE `stat` call, all small files hashed by ONE
# `sha256sum` call, systemd asked by ONE `systemctl show`; everything else is
# shell builtins. Files over 1 MiB take their hash from the stat cache written
# by the engine when the (dev, inode, size, mtime, ctime) key still matches: a
# 50 MB binary is not re-hashed on every run. ctime cannot be set by hand, so
# any later write invalidates the entry. A file's content is sent back
# (base64) only when its hash differs from the wanted one and it is at most
# MAX bytes: that is what the plan's diff is made from.
#
# Manifest lines (tab-separated; paths never hold tabs, newlines or backslashes):
#   P PATH WANTED-SHA256-OR-- MAX-DIFF-BYTES-OR--1
#   U UNIT
#   C ID PATH        (a `creates:` guard)
#   X ID BASE64-CMD  (an `unless:` guard)
#   Q NAME           (a probe: did its last check fail here? see probe.rs)

# Sets k8sup_t (stat's file type, empty if not stat'ed), k8sup_m, k8sup_o, k8sup_g, k8sup_s, k8sup_key.
k8sup_find_stat() {
  k8sup_t=
  while IFS='	' read -r k8sup_n k8sup_t k8sup_m k8sup_o k8sup_g k8sup_s k8sup_key; do
    [ "$k8sup_n" = "$1" ] && return 0
  done <<K8SUP_STATS
$k8sup_stats
K8SUP_STATS
  k8sup_t=
}

# Sets k8sup_sum from the stat cache (large files) or the batch of hashes.
k8sup_find_sum() {
  k8sup_sum=
  while IFS= read -r k8sup_l; do
    [ "${k8sup_l#*  }" = "$1" ] && { k8sup_sum=${k8sup_l%%  *}; return 0; }
  done <<K8SUP_SUMS_END
$k8sup_sums
K8SUP_SUMS_END
}

# Sets k8sup_sum from the stat cache if key $1 is there.
k8sup_cached() {
  k8sup_sum=
  [ -f "$K8SUP_SUMS" ] || return 0
  while read -r k8sup_ck k8sup_cs; do
    [ "$k8sup_ck" = "$1" ] && { k8sup_sum=$k8sup_cs; return 0; }
  done < "$K8SUP_SUMS"
}

k8sup_observe() {
  printf 'V\t1\n'
  # 1. One stat for every existing path that is not a symlink.
  set --
  while IFS='	' read -r k8sup_k k8sup_a k8sup_b k8sup_c; do
    if [ "$k8sup_k" = P ] && [ ! -L "$k8sup_a" ] && [ -e "$k8sup_a" ]; then set -- "$@" "$k8sup_a"; fi
  done <<K8SUP_M
$K8SUP_MANIFEST
K8SUP_M
  k8sup_stats=
  if [ $# -gt 0 ]; then
    k8sup_stats=$(stat -c '%n	%F	%a	%U	%G	%s	%d:%i:%s:%.9Y:%.9Z' -- "$@" 2>/dev/null)
  fi
  # 2. Hashes: large files from the cache when it still matches, the rest in one sha256sum.
  set --
  k8sup_known=
  while IFS='	' read -r k8sup_n k8sup_t k8sup_m k8sup_o k8sup_g k8sup_s k8sup_key; do
    case $k8sup_t in
      "regular file"|"regular empty file") ;;
      *) continue ;;
    esac
    if [ "$k8sup_s" -gt 1048576 ]; then
      k8sup_cached "$k8sup_key"
      if [ -n "$k8sup_sum" ]; then
        k8sup_known="$k8sup_known$k8sup_sum  $k8sup_n
"
        continue
      fi
    fi
    set -- "$@" "$k8sup_n"
  done <<K8SUP_STATS
$k8sup_stats
K8SUP_STATS
  k8sup_sums=$k8sup_known
  if [ $# -gt 0 ]; then
    k8sup_sums="$k8sup_sums$(sha256sum -- "$@" 2>/dev/null)"
  fi
  # 3. The report, in manifest order.
  k8sup_units=
  while IFS='	' read -r k8sup_k k8sup_a k8sup_b k8sup_c; do
    case $k8sup_k in
      P)
        if [ -L "$k8sup_a" ]; then
          printf 'P\t%s\tlink\t%s\n' "$k8sup_a" "$(readlink -- "$k8sup_a")"
          continue
        fi
        k8sup_find_stat "$k8sup_a"
        case $k8sup_t in
          directory) printf 'P\t%s\tdir\t%s\t%s\t%s\n' "$k8sup_a" "$k8sup_m" "$k8sup_o" "$k8sup_g" ;;
          "regular file"|"regular empty file")
            k8sup_find_sum "$k8sup_a"
            printf 'P\t%s\tfile\t%s\t%s\t%s\t%s\t%s\n' "$k8sup_a" "$k8sup_m" "$k8sup_o" "$k8sup_g" "$k8sup_s" "$k8sup_sum"
            if [ "$k8sup_b" != - ] && [ "$k8sup_sum" != "$k8sup_b" ] && [ "$k8sup_c" -ge 0 ] && [ "$k8sup_s" -le "$k8sup_c" ]; then
              printf 'B\t%s\t' "$k8sup_a"
              base64 -w0 < "$k8sup_a"
              printf '\n'
            fi ;;
          "")
            if [ -e "$k8sup_a" ]; then printf 'P\t%s\tother\n' "$k8sup_a"; else printf 'P\t%s\tabsent\n' "$k8sup_a"; fi ;;
          *) printf 'P\t%s\tother\n' "$k8sup_a" ;;
        esac ;;
      U) k8sup_units="$k8sup_units $k8sup_a" ;;
      C) if [ -e "$k8sup_b" ] || [ -L "$k8sup_b" ]; then
           printf 'G\t%s\tskip\t0\n' "$k8sup_a"
         else
           printf 'G\t%s\trun\t0\n' "$k8sup_a"
         fi ;;
      Q) if [ -e "${K8SUP_STATE_DIR:-/var/lib/k8sup}/probes/$k8sup_a.failed" ]; then
           printf 'Q\t%s\tfailed\n' "$k8sup_a"
         else
           printf 'Q\t%s\tok\n' "$k8sup_a"
         fi ;;
      X) sh -c "$(printf '%s' "$k8sup_b" | base64 -d)" </dev/null >/dev/null 2>&1
         k8sup_rc=$?
         if [ "$k8sup_rc" -eq 0 ]; then
           printf 'G\t%s\tskip\t0\n' "$k8sup_a"
         else
           printf 'G\t%s\trun\t%s\n' "$k8sup_a" "$k8sup_rc"
         fi ;;
    esac
  done <<K8SUP_M
$K8SUP_MANIFEST
K8SUP_M
  if [ -n "$k8sup_units" ]; then
    # One systemctl call for every unit; blocks come back in argument order.
    # shellcheck disable=SC2086
    k8sup_show=$(systemctl show --no-pager -p LoadState,ActiveState,SubState,Result,UnitFileState,NeedDaemonReload -- $k8sup_units </dev/null)
    # systemd caches UnitFileState: a unit enabled with --no-reload (as
    # apply does, to spare a daemon-reload) after systemd loaded it reads
    # "disabled" until the next reload. `is-enabled` reads the disk: ask it,
    # only for blocks that say disabled (none in a converged no-op).
    k8sup_n=1
    while IFS= read -r k8sup_l; do
      if [ -z "$k8sup_l" ]; then
        k8sup_n=$((k8sup_n + 1))
      elif [ "$k8sup_l" = UnitFileState=disabled ]; then
        # shellcheck disable=SC2086
        k8sup_u=$(printf '%s\n' $k8sup_units | sed -n "${k8sup_n}p")
        k8sup_l="UnitFileState=$(systemctl is-enabled -- "$k8sup_u" 2>/dev/null)"
        [ "$k8sup_l" = UnitFileState= ] && k8sup_l=UnitFileState=disabled
      fi
      printf 'S\t%s\n' "$k8sup_l"
    done <<K8SUP_SHOW
$k8sup_show
K8SUP_SHOW
    printf 'S\t\n'
  fi
}
