//! The `k8sup` binary: parse the command line, run the command, map errors to
//! exit codes. Everything else lives in the `k8sup` library and the crates
//! under `src/` so that it can be tested without spawning processes.

use std::process::ExitCode;

fn main() -> ExitCode {
    k8sup::app::main()
}
