//! Lab machines can be Kubernetes nodes: what a kubelet and containerd need
//! from their machine is there, and none of it changes the host.
//! (Running containers in them, with the real containerd and runc, is
//! tests/e2e_containerd.rs.)

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{Cleanup, leftovers, ssh, ssh_output};
use k8sup_lab::{Lab, UpOptions};

/// The kernel settings the kubelet insists on, as it wants them.
const KUBELET_SETTINGS: &[(&str, &str)] = &[
    ("vm/overcommit_memory", "1"),
    ("vm/panic_on_oom", "0"),
    ("kernel/panic", "10"),
    ("kernel/panic_on_oops", "1"),
    ("kernel/keys/root_maxkeys", "1000000"),
    ("kernel/keys/root_maxbytes", "25000000"),
];

/// The host's global kernel settings a lab could be tempted to change.
fn host_settings() -> Vec<(String, String)> {
    KUBELET_SETTINGS
        .iter()
        .map(|(k, _)| *k)
        .chain([
            "fs/inotify/max_user_instances",
            "fs/inotify/max_user_watches",
            "net/netfilter/nf_conntrack_max",
            // Per network namespace: the machines change theirs, not ours.
            "net/ipv4/ip_forward",
            "net/bridge/bridge-nf-call-iptables",
        ])
        .map(|k| {
            let value = fs::read_to_string(format!("/proc/sys/{k}")).unwrap_or_default();
            (k.to_owned(), value.trim().to_owned())
        })
        .collect()
}

/// The machine's cgroup in the hierarchy mounted at `/sys/fs/cgroup/NAME`.
fn machine_cgroup(lab: &Lab, node: &str, hierarchy: &str) -> PathBuf {
    let prefix = Path::new("/sys/fs/cgroup").join(hierarchy);
    lab.machine_cgroups(node)
        .unwrap()
        .into_iter()
        .find(|g| g.starts_with(&prefix))
        .unwrap_or_else(|| panic!("{node} has no cgroup in {}", prefix.display()))
}

#[test]
fn machines_are_ready_to_be_nodes_without_touching_the_host() {
    common::require_root();
    let before = host_settings();
    let lab = Lab::new("t-lab-node");
    let _ = lab.down();
    let cleanup = Cleanup(&lab);
    let info = lab
        .up(&UpOptions {
            nodes: 2,
            ..Default::default()
        })
        .expect("up");
    // Hybrid hosts (v1 controllers beside an empty unified hierarchy) need
    // the machine's own cgroup in each controller; pure v2 hosts do not.
    let hybrid = Path::new("/sys/fs/cgroup/pids/cgroup.procs").exists();

    for m in &info.machines {
        let node = m.name.as_str();
        // The setup unit ran and nothing failed (a failed unit: "degraded").
        assert_eq!(
            ssh(&lab, node, "systemctl is-system-running --wait"),
            "running"
        );
        assert_eq!(
            ssh(&lab, node, "systemctl is-active k8sup-lab-node.service"),
            "active"
        );
        // The kubelet reads the values it wants, so it writes nothing, and a
        // write could not reach the host anyway.
        for (key, want) in KUBELET_SETTINGS {
            assert_eq!(
                ssh(&lab, node, &format!("cat /proc/sys/{key}")),
                *want,
                "{node}: /proc/sys/{key}"
            );
        }
        let write = ssh_output(&lab, node, "echo 0 > /proc/sys/kernel/panic");
        assert!(!write.status.success(), "{node}: /proc/sys is writable");
        // The machine's own network settings are its to change (CNI turns on
        // forwarding), as on a VM.
        ssh(
            &lab,
            node,
            "echo 1 > /proc/sys/net/ipv4/ip_forward && echo 1 > /proc/sys/net/bridge/bridge-nf-call-iptables",
        );
        assert_eq!(ssh(&lab, node, "cat /proc/sys/net/ipv4/ip_forward"), "1");
        // The kubelet's OOM watcher reads the kernel log.
        ssh(
            &lab,
            node,
            "dd if=/dev/kmsg of=/dev/null bs=8192 count=1 iflag=nonblock status=none",
        );
        // containerd's snapshots and the kubelet's volumes are not on overlayfs.
        for dir in ["/var/lib/containerd", "/var/lib/kubelet", "/var/log/pods"] {
            let fs_type = ssh(&lab, node, &format!("stat -f -c %T {dir}"));
            assert_ne!(fs_type, "overlayfs", "{node}: {dir} is on overlayfs");
        }
        assert_eq!(ssh(&lab, node, "findmnt -no PROPAGATION /"), "shared");
        // What a cloud image has, and nothing of Kubernetes.
        ssh(
            &lab,
            node,
            "for t in iptables nft ipset conntrack ethtool socat modprobe sysctl; do \
             command -v $t >/dev/null || { echo \"missing $t\" >&2; exit 1; }; done; \
             test -s /etc/ssl/certs/ca-certificates.crt",
        );
        let kube = ssh_output(
            &lab,
            node,
            "command -v containerd || command -v runc || command -v kubelet",
        );
        assert!(
            !kube.status.success(),
            "{node} has Kubernetes parts in its root: {}",
            String::from_utf8_lossy(&kube.stdout)
        );
        if hybrid {
            // A cgroup the machine creates (as a kubelet creates /kubepods)
            // lands beneath the machine's own cgroup on the host, in every
            // controller, never at the host's root.
            ssh(
                &lab,
                node,
                "for c in cpu cpuacct cpuset memory devices freezer blkio pids; do \
                 mkdir /sys/fs/cgroup/$c/k8sup-probe; done",
            );
            for c in [
                "cpu", "cpuset", "memory", "pids", "devices", "blkio", "freezer",
            ] {
                let group = machine_cgroup(&lab, node, c);
                assert!(
                    group.join("k8sup-probe").is_dir(),
                    "{node}: probe not beneath {}",
                    group.display()
                );
                assert!(
                    !Path::new("/sys/fs/cgroup")
                        .join(c)
                        .join("k8sup-probe")
                        .exists(),
                    "{node}: probe at the host's root of {c}"
                );
            }
            // A process moved there is in the machine's group on the host.
            ssh(
                &lab,
                node,
                "nohup sh -c 'echo $$ > /sys/fs/cgroup/pids/k8sup-probe/cgroup.procs; exec sleep 600' \
                 >/dev/null 2>&1 &",
            );
            let procs = machine_cgroup(&lab, node, "pids").join("k8sup-probe/cgroup.procs");
            let mut seen = String::new();
            for _ in 0..50 {
                seen = fs::read_to_string(&procs).unwrap_or_default();
                if !seen.trim().is_empty() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            assert!(
                !seen.trim().is_empty(),
                "{node}: no process in {}",
                procs.display()
            );
        }
    }
    if hybrid {
        // The two machines' groups are distinct (each kubelet would own its
        // own /kubepods), and the memory one is beneath the cgroup this
        // process runs in, never moved out of it.
        let a = machine_cgroup(&lab, &info.machines[0].name, "cpu");
        let b = machine_cgroup(&lab, &info.machines[1].name, "cpu");
        assert_ne!(a, b);
        let own_memory = fs::read_to_string("/proc/self/cgroup")
            .unwrap()
            .lines()
            .find_map(|l| l.split_once(":memory:").map(|(_, p)| p.to_owned()))
            .unwrap();
        let mem = machine_cgroup(&lab, &info.machines[0].name, "memory");
        assert!(
            mem.starts_with(
                Path::new("/sys/fs/cgroup/memory").join(own_memory.trim_start_matches('/'))
            ),
            "{} is not beneath our own memory cgroup {own_memory}",
            mem.display()
        );
    }

    // The storage is the machine's disk: it survives a power cut, and the
    // setup is done again at the next boot.
    let m2 = info.machines[1].name.clone();
    ssh(&lab, &m2, "echo kept > /var/lib/containerd/marker");
    lab.stop(&m2).expect("stop");
    lab.start(&m2).expect("start");
    assert_eq!(ssh(&lab, &m2, "cat /var/lib/containerd/marker"), "kept");
    assert_eq!(ssh(&lab, &m2, "cat /proc/sys/kernel/panic"), "10");

    drop(cleanup);
    assert_eq!(leftovers("t-lab-node", 2), Vec::<String>::new());
    assert_eq!(
        host_settings(),
        before,
        "the host's kernel settings changed"
    );
}
