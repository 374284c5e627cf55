//! Checks made before touching the host, so that a missing tool or missing
//! privilege is reported once and clearly rather than as a failed command.

use std::env;
use std::path::{Path, PathBuf};

use crate::error::LabError;

/// A host tool the lab runs, and the Debian package that provides it.
#[derive(Debug, Clone, Copy)]
pub struct Tool {
    pub name: &'static str,
    pub package: &'static str,
}

pub const NSPAWN: Tool = Tool {
    name: "systemd-nspawn",
    package: "systemd-container",
};
pub const DEBOOTSTRAP: Tool = Tool {
    name: "debootstrap",
    package: "debootstrap",
};
pub const IP: Tool = Tool {
    name: "ip",
    package: "iproute2",
};
pub const SSH_KEYGEN: Tool = Tool {
    name: "ssh-keygen",
    package: "openssh-client",
};
pub const SSH: Tool = Tool {
    name: "ssh",
    package: "openssh-client",
};

/// Fails with [`LabError::NotRoot`] unless the effective user is root.
pub fn require_root() -> Result<(), LabError> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        Err(LabError::NotRoot)
    }
}

/// Fails with [`LabError::MissingTool`] naming the first tool not in PATH.
pub fn require_tools(tools: &[Tool]) -> Result<(), LabError> {
    for tool in tools {
        if !in_path(tool.name) {
            return Err(LabError::MissingTool {
                tool: tool.name,
                package: tool.package,
            });
        }
    }
    Ok(())
}

/// Root and the tools every lab operation on machines needs.
pub fn require_host() -> Result<(), LabError> {
    require_root()?;
    require_tools(&[NSPAWN, IP, SSH_KEYGEN])?;
    raise_inotify_limits();
    Ok(())
}

/// Every machine's systemd (and its services) takes inotify instances from
/// one per-user budget shared with the host, 128 by default: a dozen
/// machines exhaust it and then fail to boot ("Failed to create inotify
/// object: Too many open files"). Raise the limits as kind and minikube
/// advise; they are only ceilings, so raising them costs nothing until used.
fn raise_inotify_limits() {
    for (file, want) in [
        ("max_user_instances", 8192u64),
        ("max_user_watches", 524_288),
    ] {
        let path = format!("/proc/sys/fs/inotify/{file}");
        let current = std::fs::read_to_string(&path)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok());
        if current.is_some_and(|c| c < want) {
            match std::fs::write(&path, want.to_string()) {
                Ok(()) => {
                    tracing::info!("raised fs.inotify.{file} to {want} for the lab's machines")
                }
                Err(e) => tracing::warn!(
                    "cannot raise fs.inotify.{file} to {want} ({e}); many lab machines may fail to boot"
                ),
            }
        }
    }
}

fn in_path(name: &str) -> bool {
    which(name).is_some()
}

/// Full path of `name` from PATH, then the system directories: sudo and
/// minimal environments often leave /usr/sbin (where `ip` and `debootstrap`
/// live) out of PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    let extra = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"];
    let path = env::var_os("PATH").unwrap_or_default();
    env::split_paths(&path)
        .chain(extra.iter().map(Into::into))
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_tool_names_the_package() {
        let tool = Tool {
            name: "k8sup-no-such-tool",
            package: "k8sup-pkg",
        };
        let err = require_tools(&[IP, tool]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`k8sup-no-such-tool` was not found in PATH; install it with `apt-get install k8sup-pkg`"
        );
    }
}
