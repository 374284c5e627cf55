//! Running a generated shell script on a host in one exec.
//!
//! Small scripts go on the exec command line. Large ones (apply scripts carry
//! file contents) would exceed Linux's 128 KiB limit on one argument, so they
//! are streamed on stdin into a private temp file, which runs only if it ends
//! with the end marker: a script cut short by a dropped connection is never
//! executed, not even partly. The body is also one `{ ...; }` group, which sh
//! parses whole before running anything.

use k8sup_ssh::{Output, quote};

use crate::error::EngineError;
use crate::transport::Transport;

/// Above this, scripts travel on stdin (Linux's MAX_ARG_STRLEN is 128 KiB,
/// and sudo wraps the script once more).
const INLINE_LIMIT: usize = 60 * 1024;

const END_MARKER: &str = "# k8sup-script-end";

/// Run `body` with `sh` as root. A non-zero exit is returned in the output.
pub(crate) async fn run<T: Transport>(session: &T, body: &str) -> Result<Output, EngineError> {
    let wrapped = format!("{{\n{body}\n}}\n");
    if wrapped.len() <= INLINE_LIMIT {
        return session.exec(&format!("sh -c {}", quote(&wrapped))).await;
    }
    let full = format!("{wrapped}{END_MARKER}\n");
    let cmd = format!(
        "t=$(mktemp /tmp/.k8sup-script.XXXXXXXX) || exit 70; cat > \"$t\"; \
         if [ \"$(tail -n 1 \"$t\")\" != {m} ]; then rm -f -- \"$t\"; echo 'k8sup: script arrived incomplete; nothing was run' >&2; exit 70; fi; \
         sh \"$t\" </dev/null; rc=$?; rm -f -- \"$t\"; exit $rc",
        m = quote(END_MARKER)
    );
    session
        .exec_with_stdin(&cmd, std::io::Cursor::new(full.into_bytes()), None)
        .await
}
