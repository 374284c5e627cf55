//! Plan ops as shell. Every fragment is run inside `( set -e; ... )` by the
//! apply script, so the first failing command fails the action.

use base64::Engine as _;
use k8sup_ssh::quote;

use crate::plan::Op;

/// The stat cache consulted by observation for large files (see observe.sh).
/// (Quoted shell: under `K8SUP_STATE_DIR` when set, see `local.rs`.)
pub(crate) const SUMS: &str = "\"${K8SUP_STATE_DIR:-/var/lib/k8sup}/engine/sums\"";
const ENGINE_DIR: &str = "\"${K8SUP_STATE_DIR:-/var/lib/k8sup}/engine\"";

/// Split `/a/b/c` into (`/a/b`, `c`).
pub(crate) fn split(path: &str) -> (String, String) {
    match path.rsplit_once('/') {
        Some(("", base)) => ("/".into(), base.into()),
        Some((dir, base)) => (dir.into(), base.into()),
        None => (".".into(), path.into()),
    }
}

/// The temp name used for atomic replacement of `path` (same directory, so
/// the rename is atomic): `.NAME.k8sup-tmp.TAG`. The one definition of that
/// name; with an empty `tag`, the prefix every temp of `path` starts with.
pub(crate) fn temp_for(path: &str, tag: &str) -> String {
    let (dir, base) = split(path);
    format!("{}/.{base}.k8sup-tmp.{tag}", dir.trim_end_matches('/'))
}

fn owner_sh(target: &str, owner: &Option<String>, group: &Option<String>) -> String {
    match (owner, group) {
        (Some(o), Some(g)) => format!("chown {}:{} -- {target}\n", quote(o), quote(g)),
        (Some(o), None) => format!("chown {} -- {target}\n", quote(o)),
        (None, Some(g)) => format!("chgrp {} -- {target}\n", quote(g)),
        (None, None) => String::new(),
    }
}

fn parent_sh(path: &str) -> String {
    let (dir, _) = split(path);
    format!("[ -d {d} ] || mkdir -p -m 755 -- {d}\n", d = quote(&dir))
}

// Every command a fragment runs costs the host a fork and an exec, a
// millisecond or two of CPU; ten hosts share the workstation's cores in the
// lab and a busy control plane's in production. So fragments use the shell's
// builtins where a builtin does the same job: `printf` writes text, `umask`
// gives a new file its mode as it is created, and a glob finds leftover temps
// without running `rm` when there are none.

/// The `umask` under which a redirect creates a file with exactly `mode`
/// (the shell creates files 0666 & ~umask): for plain modes without execute
/// or special bits. With an owner or group to set, the file keeps the 0600
/// it is created with until `chown` and then `chmod` (in that order: a
/// `chown` clears set-user-ID and set-group-ID bits).
fn umask_for(mode: &str, owner: &Option<String>, group: &Option<String>) -> Option<u32> {
    let m = u32::from_str_radix(mode, 8).ok()?;
    (owner.is_none() && group.is_none() && m & !0o666 == 0).then_some(0o777 & !m)
}

/// Removes the temps an interrupted earlier run left for `path`, running
/// `rm` only when there are some (a glob that matches nothing stays literal).
fn stale_sh(path: &str) -> String {
    let stale = quote(&temp_for(path, ""));
    format!(
        "for k8sup_f in {stale}*; do if [ -e \"$k8sup_f\" ] || [ -L \"$k8sup_f\" ]; then rm -f -- \"$k8sup_f\"; fi; done\n"
    )
}

/// Attributes, rename into place and cleanup of older temps: the end of every
/// write. `chmod` comes after `chown`, which would clear a set-user-ID bit,
/// and is skipped when the temp was created with its mode already.
fn install_sh(
    path: &str,
    tmp_var: &str,
    mode: &str,
    owner: &Option<String>,
    group: &Option<String>,
    mode_set: bool,
) -> String {
    let chmod = if mode_set {
        String::new()
    } else {
        format!("chmod {mode} -- \"${tmp_var}\"\n")
    };
    format!(
        "{}{chmod}mv -f -- \"${tmp_var}\" {p}\n{}",
        owner_sh(&format!("\"${tmp_var}\""), owner, group),
        stale_sh(path),
        p = quote(path),
    )
}

/// Shell that writes `content` to the file named by `$k8sup_t`: the
/// builtin `printf` for text (most configuration), `base64 -d` for bytes a
/// shell word cannot hold (NUL, or not UTF-8).
fn write_sh(content: &[u8]) -> String {
    match std::str::from_utf8(content) {
        Ok(text) if !text.contains('\0') => {
            format!("printf '%s' {} > \"$k8sup_t\"\n", quote(text))
        }
        _ => {
            let b64 = base64::engine::general_purpose::STANDARD.encode(content);
            let mut wrapped = String::with_capacity(b64.len() + b64.len() / 76 + 1);
            for chunk in b64.as_bytes().chunks(76) {
                wrapped.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
                wrapped.push('\n');
            }
            format!("base64 -d > \"$k8sup_t\" <<'K8SUP_B64_END'\n{wrapped}K8SUP_B64_END\n")
        }
    }
}

/// Shell for an op. `content` is the in-memory body of a `write` op.
pub(crate) fn fragment(op: &Op, content: Option<&[u8]>) -> String {
    match op {
        Op::Mkdir {
            path,
            mode,
            owner,
            group,
        } => {
            // One `mkdir` when only the last component is missing (the
            // usual case); `-m` sets the mode exactly, whatever the umask.
            let p = quote(path);
            format!(
                "if ! mkdir -m {mode} -- {p} 2>/dev/null; then mkdir -p -- {p}; chmod {mode} -- {p}; fi\n{}",
                owner_sh(&p, owner, group)
            )
        }
        Op::Write {
            path,
            mode,
            owner,
            group,
            ..
        } => {
            // The action runs in a subshell of its own: its umask ends with it.
            let umask = umask_for(mode, owner, group);
            format!(
                "{parent}k8sup_t={tmp}\n{umask}{write}sync -- \"$k8sup_t\"\n{install}",
                parent = parent_sh(path),
                tmp = quote(&temp_for(path, "$$")).replace("$$", "'$$'"),
                umask = umask
                    .map(|u| format!("umask {u:03o}\n"))
                    .unwrap_or_default(),
                write = write_sh(content.unwrap_or_default()),
                install = install_sh(path, "k8sup_t", mode, owner, group, umask.is_some()),
            )
        }
        Op::Chmod { path, mode } => format!("chmod {mode} -- {}\n", quote(path)),
        Op::Chown { path, owner, group } => owner_sh(&quote(path), owner, group),
        Op::Symlink { path, target } => {
            let tmp = temp_for(path, "link");
            format!(
                "{parent}rm -f -- {t}\nln -s -- {target} {t}\nmv -Tf -- {t} {p}\n",
                parent = parent_sh(path),
                t = quote(&tmp),
                target = quote(target),
                p = quote(path)
            )
        }
        Op::Remove {
            path,
            recursive: true,
        } => format!("rm -rf -- {}\n", quote(path)),
        Op::Remove {
            path,
            recursive: false,
        } => format!("rm -f -- {}\n", quote(path)),
        Op::DaemonReload {} => "systemctl daemon-reload\n".into(),
        // `systemctl show` makes systemd look the unit up again; systemd
        // older than 245 keeps it `not-found` until a reload.
        Op::LoadUnit { unit } => format!(
            "[ \"$(systemctl show -p LoadState --value -- {u})\" = loaded ] || systemctl daemon-reload\n",
            u = quote(unit)
        ),
        Op::Systemctl { verb, unit, .. } if verb == "start" || verb == "restart" => {
            // On failure, show why: systemd's status with the unit's last log lines.
            // `systemctl start` returns as soon as a simple service has
            // forked, so a binary that is missing or exits at once would pass
            // unseen: wait until the unit has stayed up for 0.3 s (or
            // left `activating`, for notify/forking units, within a minute).
            format!(
                "if ! systemctl {verb} -- {u} || ! k8sup_settled {u}; then systemctl status --no-pager --lines=10 -- {u} >&2 || true; exit 1; fi\n",
                u = quote(unit)
            )
        }
        Op::Systemctl {
            verb,
            unit,
            no_reload,
        } => {
            let flag = if *no_reload { " --no-reload" } else { "" };
            format!("systemctl {}{flag} -- {}\n", quote(verb), quote(unit))
        }
        Op::Run { command } => format!("sh -c {} </dev/null >&2\n", quote(command)),
        Op::Probe {
            name,
            check,
            timeout_ms,
            interval_ms,
        } => crate::probe::fragment(name, check, *timeout_ms, *interval_ms),
    }
}

/// `k8sup_settled UNIT`: succeed once the unit has been `active` with the
/// same main process across 0.3 s (an exec failure shows within
/// milliseconds; a process replaced in between was restarted by systemd),
/// fail as soon as it is `failed`, `inactive` or in a crash loop
/// (`auto-restart`), and give up after a minute of `activating`.
///
/// What it costs: this runs on every host at once, at the very end of a
/// first apply, and each `systemctl show` costs the host several
/// milliseconds of CPU (systemctl, plus systemd answering). So the first look
/// asks systemd (state and main process); the second, 0.3 s later, reads the
/// main process's `/proc/PID/stat` with the shell's `read` (no fork): if that
/// process is still running and has the start time it had at the first look,
/// systemd has neither seen it exit nor started another, and the unit is up.
/// Only when it is gone (or a zombie, or the unit has no main process) does the
/// next look ask systemd again, which then reports the failure or the
/// restart exactly as before. Defined once at the top of every apply script.
pub(crate) const SETTLED_SH: &str = r#"k8sup_started() {
  k8sup_t=
  [ -r "/proc/$1/stat" ] || return 1
  IFS= read -r k8sup_l < "/proc/$1/stat" || return 1
  k8sup_l=${k8sup_l##*)}
  set -- $k8sup_l
  case "$1" in Z|X|x|'') return 1 ;; esac
  [ $# -ge 20 ] || return 1
  shift 19
  k8sup_t=$1
}
k8sup_settled() {
  k8sup_n=0; k8sup_pid0=; k8sup_t0=
  while [ "$k8sup_n" -lt 600 ]; do
    if [ -n "$k8sup_t0" ] && k8sup_started "$k8sup_pid0" && [ "$k8sup_t" = "$k8sup_t0" ]; then return 0; fi
    k8sup_a=; k8sup_s=; k8sup_pid=
    while IFS='=' read -r k8sup_k k8sup_v; do
      case "$k8sup_k" in
        ActiveState) k8sup_a=$k8sup_v ;;
        SubState) k8sup_s=$k8sup_v ;;
        ExecMainPID) k8sup_pid=$k8sup_v ;;
      esac
    done <<K8SUP_EOF
$(systemctl show -p ActiveState,SubState,ExecMainPID -- "$1")
K8SUP_EOF
    case "$k8sup_a/$k8sup_s" in
      */auto-restart|failed/*|inactive/*) echo "unit $1 did not stay up ($k8sup_a/$k8sup_s)" >&2; return 1 ;;
      active/*)
        if [ -n "$k8sup_pid0" ]; then
          [ "$k8sup_pid" = "$k8sup_pid0" ] && return 0
          echo "unit $1 did not stay up (systemd restarted it: main process $k8sup_pid0, then $k8sup_pid)" >&2; return 1
        fi
        k8sup_pid0=$k8sup_pid; k8sup_t0=
        if [ "$k8sup_pid" != 0 ] && k8sup_started "$k8sup_pid"; then k8sup_t0=$k8sup_t; fi
        sleep 0.3 ;;
      *) k8sup_pid0=; k8sup_t0=; sleep 0.1 ;;
    esac
    k8sup_n=$((k8sup_n + 1))
  done
  echo "unit $1 is still $k8sup_a/$k8sup_s after 60 s" >&2; return 1
}
"#;

/// Installing a streamed upload's temp file: size check, fsync, attributes,
/// rename, and a stat-cache entry so the next observation need not re-hash it.
pub(crate) fn finalize_upload(op: &Op, tmp: &str) -> String {
    let Op::Write {
        path,
        sha256,
        size,
        mode,
        owner,
        group,
    } = op
    else {
        unreachable!("finalize_upload is only called for write ops")
    };
    format!(
        "k8sup_u={t}\n\
         [ \"$(stat -c %s -- \"$k8sup_u\")\" = {size} ] || {{ echo \"k8sup: upload of {p_shown} arrived incomplete\" >&2; rm -f -- \"$k8sup_u\"; exit 1; }}\n\
         sync -- \"$k8sup_u\"\n{install}\
         [ -d {ENGINE_DIR} ] || mkdir -p -m 700 {ENGINE_DIR}\n\
         k8sup_key=$(stat -c '%d:%i:%s:%.9Y:%.9Z' -- {p})\n\
         {{ [ -f {SUMS} ] && tail -n 500 {SUMS}; printf '%s %s\\n' \"$k8sup_key\" {sha256}; }} > {SUMS_TMP}\n\
         mv -f -- {SUMS_TMP} {SUMS}\n",
        t = quote(tmp),
        p = quote(path),
        p_shown = path.replace(['"', '$', '`', '\\'], "_"),
        install = install_sh(path, "k8sup_u", mode, owner, group, false),
        SUMS_TMP = "\"${K8SUP_STATE_DIR:-/var/lib/k8sup}/engine/sums.tmp\"",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_paths() {
        assert_eq!(
            split("/usr/local/bin/x"),
            ("/usr/local/bin".into(), "x".into())
        );
        assert_eq!(split("/x"), ("/".into(), "x".into()));
        assert_eq!(temp_for("/x", "1"), "/.x.k8sup-tmp.1");
        assert_eq!(temp_for("/etc/a b", "1"), "/etc/.a b.k8sup-tmp.1");
    }

    /// Run `frag` the way an apply script does (`sh`, umask 077, inside
    /// `( set -e ... )`) and return its exit code.
    fn run_sh(frag: &str) -> i32 {
        let script = format!("umask 077\n( set -e\n{frag})\n");
        std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .status()
            .expect("sh runs")
            .code()
            .unwrap_or(-1)
    }

    fn mode_of(p: &std::path::Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    fn write_op(path: &std::path::Path, mode: &str) -> Op {
        Op::Write {
            path: path.display().to_string(),
            sha256: String::new(),
            size: 0,
            mode: mode.into(),
            owner: None,
            group: None,
        }
    }

    #[test]
    fn writes_text_with_the_shell_builtin_and_bytes_through_base64() {
        let dir = tempfile::tempdir().unwrap();
        let text = "it's $HOME `x` \\n %s\n\ttabs\nno newline at the end";
        let p = dir.path().join("sub dir/it's.conf");
        let frag = fragment(&write_op(&p, "640"), Some(text.as_bytes()));
        assert!(
            frag.contains("printf '%s' "),
            "text needs no base64 -d: {frag}"
        );
        assert_eq!(run_sh(&frag), 0, "{frag}");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), text);
        assert_eq!(mode_of(&p), 0o640, "created with its mode under umask 077");
        assert!(!frag.contains("chmod"), "the umask gave the mode: {frag}");

        let bytes = b"\x00\xff\x01binary\n".to_vec();
        let b = dir.path().join("blob");
        let frag = fragment(&write_op(&b, "755"), Some(&bytes));
        assert!(
            frag.contains("base64 -d"),
            "NUL bytes cannot be a shell word"
        );
        assert_eq!(run_sh(&frag), 0, "{frag}");
        assert_eq!(std::fs::read(&b).unwrap(), bytes);
        assert_eq!(mode_of(&b), 0o755, "execute bits come from chmod");

        // Empty content is an empty file, not a missing one.
        let e = dir.path().join("empty");
        assert_eq!(run_sh(&fragment(&write_op(&e, "600"), Some(b""))), 0);
        assert_eq!(std::fs::read(&e).unwrap(), b"");
        assert_eq!(mode_of(&e), 0o600);
    }

    #[test]
    fn a_write_removes_temps_left_by_an_interrupted_run_and_only_those() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.conf");
        let stale = dir.path().join(".a.conf.k8sup-tmp.123-old");
        let other = dir.path().join(".b.conf.k8sup-tmp.123-old");
        std::fs::write(&stale, "half").unwrap();
        std::fs::write(&other, "half").unwrap();
        assert_eq!(run_sh(&fragment(&write_op(&p, "644"), Some(b"x\n"))), 0);
        assert!(!stale.exists(), "the leftover of this file is removed");
        assert!(other.exists(), "another file's temp is left alone");
        // And with nothing left over (the glob stays literal), set -e is not tripped.
        assert_eq!(run_sh(&fragment(&write_op(&p, "644"), Some(b"y\n"))), 0);
        assert_eq!(std::fs::read(&p).unwrap(), b"y\n");
    }

    #[test]
    fn mkdir_sets_the_mode_exactly_whether_or_not_the_parents_exist() {
        let dir = tempfile::tempdir().unwrap();
        let op = |p: &std::path::Path, mode: &str| Op::Mkdir {
            path: p.display().to_string(),
            mode: mode.into(),
            owner: None,
            group: None,
        };
        let one = dir.path().join("one");
        assert_eq!(run_sh(&fragment(&op(&one, "755"), None)), 0);
        assert_eq!(mode_of(&one), 0o755, "not 0700 from the umask");
        let deep = dir.path().join("a/b/c");
        assert_eq!(run_sh(&fragment(&op(&deep, "750"), None)), 0);
        assert_eq!(mode_of(&deep), 0o750);
        // A directory that is already there gets the mode too.
        assert_eq!(run_sh(&fragment(&op(&one, "700"), None)), 0);
        assert_eq!(mode_of(&one), 0o700);
        // A failure still fails the action.
        let blocked = dir.path().join("file");
        std::fs::write(&blocked, "").unwrap();
        assert_ne!(run_sh(&fragment(&op(&blocked.join("x"), "755"), None)), 0);
    }
}
