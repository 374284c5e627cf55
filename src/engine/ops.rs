//! Plan ops as shell. Every fragment is run inside `( set -e; ... )` by the
//! apply script, so the first failing command fails the action.

use base64::Engine as _;
use k8sup_ssh::quote;

use crate::plan::Op;

/// The stat cache consulted by observation for large files (see observe.sh).
pub(crate) const SUMS: &str = "/var/lib/k8sup/engine/sums";

/// Split `/a/b/c` into (`/a/b`, `c`).
pub(crate) fn split(path: &str) -> (String, String) {
    match path.rsplit_once('/') {
        Some(("", base)) => ("/".into(), base.into()),
        Some((dir, base)) => (dir.into(), base.into()),
        None => (".".into(), path.into()),
    }
}

/// The temp name used for atomic replacement of `path` (same directory, so
/// the rename is atomic; the same pattern as k8sup-ssh's uploads).
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

/// Attributes, rename into place and cleanup of older temps: the end of every write.
fn install_sh(
    path: &str,
    tmp_var: &str,
    mode: &str,
    owner: &Option<String>,
    group: &Option<String>,
) -> String {
    let (dir, base) = split(path);
    let stale = format!("{}/.{}.k8sup-tmp.", dir.trim_end_matches('/'), base);
    format!(
        "chmod {mode} -- \"${tmp_var}\"\n{}mv -f -- \"${tmp_var}\" {p}\nrm -f -- {stale}*\n",
        owner_sh(&format!("\"${tmp_var}\""), owner, group),
        p = quote(path),
        stale = quote(&stale),
    )
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
            let p = quote(path);
            format!(
                "mkdir -p -- {p}\nchmod {mode} -- {p}\n{}",
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
            let b64 = base64::engine::general_purpose::STANDARD.encode(content.unwrap_or_default());
            let mut wrapped = String::with_capacity(b64.len() + b64.len() / 76 + 1);
            for chunk in b64.as_bytes().chunks(76) {
                wrapped.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
                wrapped.push('\n');
            }
            format!(
                "{parent}k8sup_t={tmp}\nbase64 -d > \"$k8sup_t\" <<'K8SUP_B64_END'\n{wrapped}K8SUP_B64_END\nsync -- \"$k8sup_t\"\n{install}",
                parent = parent_sh(path),
                tmp = quote(&temp_for(path, "$$")).replace("$$", "'$$'"),
                install = install_sh(path, "k8sup_t", mode, owner, group),
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
    }
}

/// `k8sup_settled UNIT`: succeed once the unit has been `active` with the
/// same main process across 0.3 s (an exec failure shows within
/// milliseconds; a process replaced in between was restarted by systemd),
/// fail as soon as it is `failed`, `inactive` or in a crash loop
/// (`auto-restart`), and give up after a minute of `activating`. One
/// `systemctl show` per look, two looks for a healthy unit: this runs on every
/// host at once, and each look costs the host a few milliseconds of CPU.
/// Defined once at the top of every apply script.
pub(crate) const SETTLED_SH: &str = r#"k8sup_settled() {
  k8sup_n=0; k8sup_pid0=
  while [ "$k8sup_n" -lt 600 ]; do
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
        k8sup_pid0=$k8sup_pid; sleep 0.3 ;;
      *) k8sup_pid0=; sleep 0.1 ;;
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
         mkdir -p -m 700 /var/lib/k8sup/engine\n\
         k8sup_key=$(stat -c '%d:%i:%s:%.9Y:%.9Z' -- {p})\n\
         {{ [ -f {SUMS} ] && tail -n 500 {SUMS}; printf '%s %s\\n' \"$k8sup_key\" {sha256}; }} > {SUMS}.tmp\n\
         mv -f -- {SUMS}.tmp {SUMS}\n",
        t = quote(tmp),
        p = quote(path),
        p_shown = path.replace(['"', '$', '`', '\\'], "_"),
        install = install_sh(path, "k8sup_u", mode, owner, group),
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
}
