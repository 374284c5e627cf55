//! Health gates: a probe waits until a condition holds on the host (an HTTP(S)
//! endpoint answers with the expected status, a TCP port accepts, a command
//! succeeds), trying every `interval` for at most `timeout`.
//!
//! A probe never changes a host. It is planned (kind `wait`) only when a
//! resource it depends on (`depends_on`; without any, any earlier resource of
//! its host in the same step) changes in this run, or when the last probe of
//! that name failed on the host: a failing probe leaves a marker
//! (`/var/lib/k8sup/probes/NAME.failed`) that the next observation reads with
//! a shell builtin. Why not on every apply: a no-op apply stays one exec per
//! host with nothing run (a health check is a network round trip or a
//! process per host), and the marker keeps a failed gate from being
//! forgotten by the next run, which re-checks it even though nothing else
//! changes. A failure names the host (through the apply's report), the
//! probe, how long and how often it tried, and the check's last output.

use std::time::Duration;

use k8sup_ssh::quote;
use serde::{Deserialize, Serialize};

/// What a probe checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ProbeCheck {
    /// `curl` gets `url` and must see HTTP `status`; `insecure` skips TLS
    /// verification (a self-signed endpoint during bootstrap).
    Http {
        url: String,
        status: u16,
        #[serde(default)]
        insecure: bool,
    },
    /// A TCP connection to `host:port` is accepted (bash's `/dev/tcp`, or `nc`).
    Tcp { host: String, port: u16 },
    /// The command (run with `sh -c`) exits 0.
    Command(String),
}

impl ProbeCheck {
    /// A short description for plans and errors.
    pub fn describe(&self) -> String {
        match self {
            ProbeCheck::Http { url, status, .. } => format!("GET {url} answers {status}"),
            ProbeCheck::Tcp { host, port } => format!("TCP {host}:{port} accepts"),
            ProbeCheck::Command(c) => format!("`{c}` succeeds"),
        }
    }

    /// Shell that succeeds when the check passes, and otherwise prints why.
    fn check_sh(&self, attempt_secs: u64) -> String {
        match self {
            ProbeCheck::Http {
                url,
                status,
                insecure,
            } => format!(
                "command -v curl >/dev/null 2>&1 || {{ echo 'curl is not installed on the host (an HTTP probe needs it)'; return 1; }}\n\
                 k8sup_c=$(curl -sS {k}-o /dev/null -w '%{{http_code}}' --max-time {attempt_secs} -- {u} 2>&1)\n\
                 [ \"$k8sup_c\" = {status} ] && return 0\n\
                 echo \"wanted HTTP {status}, got: $k8sup_c\"; return 1",
                k = if *insecure { "-k " } else { "" },
                u = quote(url),
            ),
            ProbeCheck::Tcp { host, port } => format!(
                "if command -v bash >/dev/null 2>&1; then timeout {attempt_secs} bash -c {c} 2>&1 && return 0\n\
                 elif command -v nc >/dev/null 2>&1; then nc -z -w {attempt_secs} {h} {port} 2>&1 && return 0\n\
                 else echo 'neither bash nor nc is installed on the host (a TCP probe needs one)'; return 1; fi\n\
                 echo \"{h_shown}:{port} did not accept a connection\"; return 1",
                c = quote(&format!("exec 3<>/dev/tcp/{host}/{port}")),
                h = quote(host),
                h_shown = host.replace(['"', '$', '`', '\\'], "_"),
            ),
            ProbeCheck::Command(cmd) => format!("sh -c {} </dev/null 2>&1", quote(cmd)),
        }
    }
}

/// Seconds as the shell's `sleep` takes them (fractions allowed).
fn secs(d: Duration) -> String {
    let s = format!("{:.3}", d.as_secs_f64());
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The apply fragment of a probe: try until it passes or the time is up;
/// on failure leave the marker the next observation reads, and say why.
/// Time is read from `/proc/uptime` with the shell's `read` (centiseconds,
/// no fork; `date +%s` would round a 0.8 s timeout down to almost nothing
/// when started late in a second).
pub(crate) fn fragment(
    name: &str,
    check: &ProbeCheck,
    timeout_ms: u64,
    interval_ms: u64,
) -> String {
    let timeout = Duration::from_millis(timeout_ms);
    let interval = Duration::from_millis(interval_ms);
    let attempt = timeout.as_secs().clamp(1, 10);
    format!(
        "k8sup_check() {{\n{check}\n}}\n\
         k8sup_pf=\"${{K8SUP_STATE_DIR:-/var/lib/k8sup}}/probes/\"{n}.failed\n\
         k8sup_now() {{ read -r k8sup_u k8sup_x < /proc/uptime; k8sup_cs=$(( ${{k8sup_u%.*}} * 100 + 1${{k8sup_u#*.}} - 100 )); }}\n\
         k8sup_now; k8sup_end=$((k8sup_cs + {tcs}))\nk8sup_try=0\n\
         while :; do\n\
           k8sup_try=$((k8sup_try + 1))\n\
           if k8sup_out=$(k8sup_check); then rm -f -- \"$k8sup_pf\"; break; fi\n\
           k8sup_now\n\
           if [ \"$k8sup_cs\" -ge \"$k8sup_end\" ]; then\n\
             mkdir -p -- \"${{k8sup_pf%/*}}\"; : > \"$k8sup_pf\"\n\
             printf 'probe %s (%s) did not pass within %s s (tried %s times, every %s s); last output:\\n%s\\n' {n} {what} {t} \"$k8sup_try\" {i} \"$k8sup_out\" >&2\n\
             exit 1\n\
           fi\n\
           sleep {i}\n\
         done\n",
        check = check.check_sh(attempt),
        n = quote(name),
        what = quote(&check.describe()),
        tcs = timeout_ms.div_ceil(10),
        t = secs(timeout),
        i = secs(interval),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_are_short() {
        assert_eq!(secs(Duration::from_millis(200)), "0.2");
        assert_eq!(secs(Duration::from_secs(3)), "3");
    }
}
