//! Host facts: what a host is (OS, kernel, CPU, memory, init) and what of
//! k8sup it already runs.
//!
//! Facts are gathered by one POSIX shell script (`gather.sh`) run in a single
//! exec per host: round trips, not bandwidth, decide how fast a fleet answers,
//! so no fact costs a command of its own. The script prints `key=value`
//! lines; [`HostFacts::parse`] turns them into the stable, documented model
//! that `k8sup facts --output json` prints and that later phases (planning,
//! binary selection by architecture) read.

use std::collections::BTreeMap;

use serde::Serialize;

/// The components k8sup installs and therefore looks for on every host.
pub const COMPONENTS: &[&str] = &[
    "k8sup-datastore",
    "k8sup-apiserver-proxy",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
    "containerd",
];

const GATHER: &str = include_str!("gather.sh");

/// The script to run on a host (as root, so that every file is readable).
pub fn script() -> String {
    format!("K8SUP_COMPONENTS='{}'\n{GATHER}", COMPONENTS.join(" "))
}

/// What one host is. Field names are the JSON schema of `k8sup facts`:
/// add fields freely, never rename or remove one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HostFacts {
    /// The kernel's hostname (`/proc/sys/kernel/hostname`).
    pub hostname: String,
    /// `PRETTY_NAME` from `/etc/os-release`, e.g. `Debian GNU/Linux 12 (bookworm)`.
    pub os: String,
    /// `ID` from `/etc/os-release`, e.g. `debian`.
    pub os_id: String,
    /// `VERSION_ID` from `/etc/os-release`, e.g. `12`.
    pub os_version: String,
    /// `uname -r`.
    pub kernel: String,
    /// The architecture as Kubernetes and Go name it (`amd64`, `arm64`, ...),
    /// which is what selects the binaries to push.
    pub arch: String,
    /// `uname -m` as the kernel reports it (`x86_64`, `aarch64`, ...).
    pub machine: String,
    /// Online CPUs.
    pub cpus: u32,
    /// `MemTotal` in bytes.
    pub memory_bytes: u64,
    /// The init system running as PID 1 (`systemd`, or the command name).
    pub init: String,
    pub uptime_seconds: u64,
    pub machine_id: String,
    /// k8sup components found on the host, by name. Absent when none is.
    pub installed: BTreeMap<String, Component>,
}

/// A k8sup component found on a host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Component {
    /// Where its binary is, if one is on PATH or in /usr/local/bin.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The version k8sup recorded when it installed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// systemd `ActiveState` of its unit (`active`, `inactive`, `failed`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active: Option<String>,
    /// systemd `UnitFileState` of its unit (`enabled`, `disabled`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<String>,
}

impl HostFacts {
    /// Parse the output of [`script`]. Unknown keys are ignored so that a
    /// newer script never breaks an older parser.
    pub fn parse(output: &str) -> HostFacts {
        let mut f = HostFacts::default();
        let mut unit: BTreeMap<&str, &str> = BTreeMap::new();
        let mut units: Vec<BTreeMap<&str, &str>> = Vec::new();
        for line in output.lines() {
            if let Some(rest) = line.strip_prefix("sd.") {
                if rest.is_empty() {
                    units.push(std::mem::take(&mut unit));
                } else if let Some((k, v)) = rest.split_once('=') {
                    unit.insert(k, v);
                }
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let value = value.trim();
            match key {
                "hostname" => f.hostname = value.to_string(),
                "os_id" => f.os_id = value.to_string(),
                "os_version" => f.os_version = value.to_string(),
                "os_pretty" => f.os = value.to_string(),
                "kernel" => f.kernel = value.to_string(),
                "arch" => {
                    f.machine = value.to_string();
                    f.arch = go_arch(value).to_string();
                }
                "cpus" => f.cpus = value.parse().unwrap_or(0),
                "mem_kib" => f.memory_bytes = value.parse::<u64>().unwrap_or(0) * 1024,
                "init" => f.init = value.to_string(),
                "uptime_s" => f.uptime_seconds = value.parse().unwrap_or(0),
                "machine_id" => f.machine_id = value.to_string(),
                _ => {
                    if let Some(name) = key.strip_prefix("bin.") {
                        f.component(name).path = Some(value.to_string());
                    } else if let Some(name) = key.strip_prefix("version.") {
                        f.component(name).version = Some(value.to_string());
                    }
                }
            }
        }
        units.push(unit);
        for u in units {
            let (Some(id), Some("loaded")) = (u.get("Id"), u.get("LoadState").copied()) else {
                continue;
            };
            let name = id.strip_suffix(".service").unwrap_or(id);
            let c = f.component(name);
            c.active = u.get("ActiveState").map(|s| s.to_string());
            c.enabled = u
                .get("UnitFileState")
                .filter(|s| !s.is_empty())
                .map(|s| s.to_string());
        }
        if f.os.is_empty() && !f.os_id.is_empty() {
            f.os = format!("{} {}", f.os_id, f.os_version).trim().to_string();
        }
        f
    }

    fn component(&mut self, name: &str) -> &mut Component {
        self.installed.entry(name.to_string()).or_default()
    }
}

/// `uname -m` to the GOARCH name used by Kubernetes release artefacts.
pub fn go_arch(machine: &str) -> &str {
    match machine {
        "x86_64" | "amd64" => "amd64",
        "aarch64" | "arm64" => "arm64",
        "armv7l" | "armv7" | "armhf" => "arm",
        "ppc64le" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_script_output_with_units_in_any_property_order() {
        let out = "hostname=cp-1\nos_id=debian\nos_version=12\nos_pretty=Debian GNU/Linux 12 (bookworm)\n\
                   kernel=6.1.0\narch=aarch64\ncpus=4\nmem_kib=2048\ninit=systemd\nuptime_s=42\n\
                   bin.kubelet=/usr/local/bin/kubelet\nversion.kubelet=v1.31.4\n\
                   sd.Id=kubelet.service\nsd.ActiveState=active\nsd.LoadState=loaded\nsd.UnitFileState=enabled\nsd.\n\
                   sd.LoadState=not-found\nsd.Id=containerd.service\nsd.ActiveState=inactive\nsd.UnitFileState=\n";
        let f = HostFacts::parse(out);
        assert_eq!(f.hostname, "cp-1");
        assert_eq!(f.os, "Debian GNU/Linux 12 (bookworm)");
        assert_eq!((f.arch.as_str(), f.machine.as_str()), ("arm64", "aarch64"));
        assert_eq!(f.memory_bytes, 2048 * 1024);
        assert_eq!(f.cpus, 4);
        let k = &f.installed["kubelet"];
        assert_eq!(k.path.as_deref(), Some("/usr/local/bin/kubelet"));
        assert_eq!(k.version.as_deref(), Some("v1.31.4"));
        assert_eq!(
            (k.active.as_deref(), k.enabled.as_deref()),
            (Some("active"), Some("enabled"))
        );
        assert!(
            !f.installed.contains_key("containerd"),
            "a unit that is not loaded is not installed"
        );
    }

    #[test]
    fn script_runs_under_dash_and_reports_this_machine() {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(script())
            .output()
            .expect("run sh");
        let f = HostFacts::parse(&String::from_utf8_lossy(&out.stdout));
        assert!(out.status.success());
        assert_eq!(
            f.kernel,
            String::from_utf8_lossy(
                &std::process::Command::new("uname")
                    .arg("-r")
                    .output()
                    .unwrap()
                    .stdout
            )
            .trim()
        );
        assert!(f.cpus >= 1 && f.memory_bytes > 0 && !f.arch.is_empty());
    }
}
