# k8sup observation functions (POSIX sh, run as root). Defined here, called by
# the observation exec and again, under the run lock, by the first apply script
# of a host, which compares the SHA-256 of k8sup_observe's output with the
# fingerprint the plan was computed against. Its output must therefore be a
# pure function of the host's state: no timestamps, no ordering from the disk.
K8SUP_SUMS=/var/lib/k8sup/engine/sums
K8SUP_LOCK=/var/lib/k8sup/run.lock
LC_ALL=C
export LC_ALL

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

# One path: type, attributes, SHA-256. Files over 1 MiB take their hash from
# the stat cache written by the engine when the (dev, inode, size, mtime, ctime)
# key still matches: a 50 MB binary is not re-hashed on every run. ctime cannot
# be set by hand, so any later write invalidates the entry. The content is sent
# back (base64) only when the hash differs from the wanted one and the file is
# at most $3 bytes: that is what the plan's diff is made from.
k8sup_path() {
  if [ -L "$1" ]; then
    printf 'P\t%s\tlink\t%s\n' "$1" "$(readlink -- "$1")"
  elif [ -d "$1" ]; then
    printf 'P\t%s\tdir\t%s\n' "$1" "$(stat -c '%a	%U	%G' -- "$1")"
  elif [ -f "$1" ]; then
    k8sup_st=$(stat -c '%a %U %G %s %d:%i:%s:%.9Y:%.9Z' -- "$1")
    set -- "$1" "$2" "$3" $k8sup_st
    k8sup_sum=
    if [ "$7" -gt 1048576 ] && [ -f "$K8SUP_SUMS" ]; then
      k8sup_sum=$(awk -v k="$8" '$1 == k { print $2; exit }' "$K8SUP_SUMS")
    fi
    [ -n "$k8sup_sum" ] || k8sup_sum=$(sha256sum < "$1" | cut -c1-64)
    printf 'P\t%s\tfile\t%s\t%s\t%s\t%s\t%s\n' "$1" "$4" "$5" "$6" "$7" "$k8sup_sum"
    if [ "$2" != - ] && [ "$k8sup_sum" != "$2" ] && [ "$3" -ge 0 ] && [ "$7" -le "$3" ]; then
      printf 'B\t%s\t' "$1"
      base64 -w0 < "$1"
      printf '\n'
    fi
  elif [ -e "$1" ]; then
    printf 'P\t%s\tother\n' "$1"
  else
    printf 'P\t%s\tabsent\n' "$1"
  fi
}

# Everything the manifest asks about. Manifest lines (tab-separated):
#   P PATH WANTED-SHA256-OR-- MAX-DIFF-BYTES-OR--1
#   U UNIT
#   C ID PATH        (a `creates:` guard)
#   X ID BASE64-CMD  (an `unless:` guard)
k8sup_observe() {
  printf 'V\t1\n'
  k8sup_units=
  while IFS='	' read -r k8sup_k k8sup_a k8sup_b k8sup_c; do
    case $k8sup_k in
      P) k8sup_path "$k8sup_a" "$k8sup_b" "$k8sup_c" ;;
      U) k8sup_units="$k8sup_units $k8sup_a" ;;
      C) if [ -e "$k8sup_b" ] || [ -L "$k8sup_b" ]; then
           printf 'G\t%s\tskip\t0\n' "$k8sup_a"
         else
           printf 'G\t%s\trun\t0\n' "$k8sup_a"
         fi ;;
      X) sh -c "$(printf '%s' "$k8sup_b" | base64 -d)" </dev/null >/dev/null 2>&1
         k8sup_rc=$?
         if [ "$k8sup_rc" -eq 0 ]; then
           printf 'G\t%s\tskip\t0\n' "$k8sup_a"
         else
           printf 'G\t%s\trun\t%s\n' "$k8sup_a" "$k8sup_rc"
         fi ;;
    esac
  done <<'K8SUP_MANIFEST_END'
@MANIFEST@
K8SUP_MANIFEST_END
  if [ -n "$k8sup_units" ]; then
    # One systemctl call for every unit; blocks come back in argument order.
    # shellcheck disable=SC2086
    systemctl show --no-pager -p LoadState,ActiveState,UnitFileState,NeedDaemonReload -- $k8sup_units </dev/null \
      | while IFS= read -r k8sup_l; do printf 'S\t%s\n' "$k8sup_l"; done
    printf 'S\t\n'
  fi
}
