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
    Ok(())
}

/// inotify instances one booted lab machine holds (its systemd, dbus,
/// logind), counted on this project's bookworm root. A node's containerd and
/// kubelet take more.
pub const INOTIFY_PER_MACHINE: u64 = 8;

/// Warns when booting `machines` more machines would likely exhaust the
/// host's inotify instances ("Failed to create inotify object: Too many open
/// files" at boot). The limit is per user and global: every machine's root
/// counts against the host root's budget (`fs.inotify.max_user_instances`,
/// 128 by default). The lab never raises it: that would change a kernel
/// setting of the whole host. The warning names the setting for the host's
/// administrator instead.
pub fn check_inotify_budget(machines: usize) {
    if machines == 0 {
        return;
    }
    let path = "/proc/sys/fs/inotify/max_user_instances";
    let Some(limit) = std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
    else {
        return;
    };
    let in_use = inotify_instances_of_root();
    let needed = machines as u64 * INOTIFY_PER_MACHINE;
    if in_use + needed > limit {
        tracing::warn!(
            "booting {machines} machines needs about {needed} inotify instances and root already \
             holds {in_use} of fs.inotify.max_user_instances = {limit}: machines may fail to boot \
             with \"Too many open files\". The lab does not change host kernel settings; an \
             administrator may raise it (sysctl fs.inotify.max_user_instances=1024)"
        );
    }
}

/// inotify instances open by root's processes (each `anon_inode:inotify`
/// descriptor of a process owned by uid 0).
fn inotify_instances_of_root() -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return 0;
    };
    procs
        .flatten()
        .filter(|p| {
            p.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .filter(|p| p.metadata().is_ok_and(|m| m.uid() == 0))
        .map(|p| {
            std::fs::read_dir(p.path().join("fd"))
                .map(|fds| {
                    fds.flatten()
                        .filter(|fd| {
                            std::fs::read_link(fd.path())
                                .is_ok_and(|l| l.as_os_str() == "anon_inode:inotify")
                        })
                        .count() as u64
                })
                .unwrap_or(0)
        })
        .sum()
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
