//! Lab machines run containers as Kubernetes nodes do: containerd 2, its
//! runc shim, runc, crictl and the CNI plugins from the test mirror
//! (tests/artifacts/build.sh builds them from source), put on two machines by
//! `k8sup apply` (files and a service, the product path), run a pod sandbox
//! from the imported pause image and a busybox container whose output is
//! read back with `crictl logs`. Each machine's containers live beneath its
//! own host cgroups, and the host's kernel settings do not change.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{TestLab, component, image, k8sup, mirror, text};
use serde_json::Value;

fn untar(archive: &Path, into: &Path) {
    fs::create_dir_all(into).unwrap();
    let status = Command::new("tar")
        .arg("-xzf")
        .arg(archive)
        .arg("-C")
        .arg(into)
        .status()
        .unwrap();
    assert!(status.success(), "extracting {}", archive.display());
}

const CONTAINERD_UNIT: &str = "\
[Unit]
Description=containerd container runtime
After=network.target local-fs.target

[Service]
ExecStartPre=-/sbin/modprobe overlay
ExecStart=/usr/local/bin/containerd
Type=notify
Delegate=yes
KillMode=process
Restart=always
RestartSec=5
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
OOMScoreAdjust=-999

[Install]
WantedBy=multi-user.target
";

/// containerd 2 (config version 3): CRI with the pause image pinned to the
/// imported one, runc with the cgroupfs driver (the lab is cgroup v1 on
/// hybrid hosts, and nspawn does not delegate v1 controllers to systemd),
/// CNI from /opt/cni/bin. `restrict_oom_score_adj`: where the host's root
/// lacks CAP_SYS_RESOURCE (this project's sandboxed hosts), nothing in a lab
/// machine may lower an OOM score below its own, and runc fails to give the
/// pod sandbox its -998 ("failed to update /proc/self/oom_score_adj:
/// Permission denied"); containerd then keeps scores at or above its own.
fn containerd_config(pause: &str) -> String {
    format!(
        "version = 3
[plugins.'io.containerd.cri.v1.images']
  snapshotter = 'overlayfs'
[plugins.'io.containerd.cri.v1.images'.pinned_images]
  sandbox = '{pause}'
[plugins.'io.containerd.cri.v1.runtime']
  restrict_oom_score_adj = true
[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
  runtime_type = 'io.containerd.runc.v2'
[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
  SystemdCgroup = false
[plugins.'io.containerd.cri.v1.runtime'.cni]
  bin_dirs = ['/opt/cni/bin']
  conf_dir = '/etc/cni/net.d'
"
    )
}

/// A bridge network with host-local addresses, one /24 per machine.
fn cni_conf(index: usize) -> String {
    format!(
        r#"{{"cniVersion": "1.0.0", "name": "k8sup-e2e", "plugins": [
  {{"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false,
    "ipam": {{"type": "host-local", "ranges": [[{{"subnet": "10.244.{}.0/24"}}]],
              "routes": [{{"dst": "0.0.0.0/0"}}]}}}}
]}}
"#,
        index + 1
    )
}

const POD: &str = r#"{"metadata": {"name": "probe", "namespace": "default", "uid": "k8sup-e2e-probe", "attempt": 0},
 "log_directory": "/var/log/pods/default_probe_k8sup-e2e-probe",
 "linux": {"cgroup_parent": "/k8sup-e2e"}}
"#;

fn container(busybox: &str) -> String {
    format!(
        r#"{{"metadata": {{"name": "hello"}}, "image": {{"image": "{busybox}"}},
 "command": ["sh", "-c", "echo k8sup-cri-ok $(cat /etc/hostname); exec sleep 600"],
 "log_path": "hello.log", "linux": {{}}}}
"#
    )
}

/// The inventory installing the node's runtime on every machine.
fn runtime_inventory(lab: &TestLab, root: &Path, index: &Value) -> PathBuf {
    let stage = lab.info.inventory.parent().unwrap().join("runtime");
    let _ = fs::remove_dir_all(&stage);
    untar(
        &component(root, index, "containerd"),
        &stage.join("containerd"),
    );
    untar(&component(root, index, "crictl"), &stage.join("crictl"));
    untar(&component(root, index, "cni-plugins"), &stage.join("cni"));
    fs::copy(component(root, index, "runc"), stage.join("runc")).unwrap();
    let (pause, pause_tar) = image(root, index, "pause");
    let (_, busybox_tar) = image(root, index, "busybox");
    fs::copy(pause_tar, stage.join("pause.tar")).unwrap();
    fs::copy(busybox_tar, stage.join("busybox.tar")).unwrap();
    fs::write(stage.join("config.toml"), containerd_config(&pause)).unwrap();
    fs::write(stage.join("containerd.service"), CONTAINERD_UNIT).unwrap();

    let bin = |src: &str, path: &str, notify: bool| {
        format!(
            "  - {{ path: {path}, src: runtime/{src}, mode: '0755'{} }}\n",
            if notify { ", notify: [containerd]" } else { "" }
        )
    };
    let mut files = String::from("files:\n");
    for b in ["containerd", "containerd-shim-runc-v2", "ctr"] {
        files += &bin(
            &format!("containerd/bin/{b}"),
            &format!("/usr/local/bin/{b}"),
            b == "containerd",
        );
    }
    files += &bin("runc", "/usr/local/sbin/runc", false);
    files += &bin("crictl/crictl", "/usr/local/bin/crictl", false);
    for p in ["bridge", "host-local", "loopback"] {
        files += &bin(&format!("cni/{p}"), &format!("/opt/cni/bin/{p}"), false);
    }
    files += "  - { path: /etc/containerd/config.toml, src: runtime/config.toml, notify: [containerd] }\n";
    files += "  - { path: /opt/k8sup-e2e/pause.tar, src: runtime/pause.tar }\n";
    files += "  - { path: /opt/k8sup-e2e/busybox.tar, src: runtime/busybox.tar }\n";
    files += "  - path: /etc/crictl.yaml\n    content: |\n      runtime-endpoint: unix:///run/containerd/containerd.sock\n      image-endpoint: unix:///run/containerd/containerd.sock\n";
    for (i, m) in lab.info.machines.iter().enumerate() {
        files += &format!(
            "  - path: /etc/cni/net.d/10-k8sup-e2e.conflist\n    hosts: [{}]\n    content: |\n{}",
            m.name,
            cni_conf(i)
                .lines()
                .map(|l| format!("      {l}\n"))
                .collect::<String>()
        );
    }
    let services = "services:\n  - name: containerd\n    unit: { src: runtime/containerd.service }\n    enabled: true\n    state: running\n";
    // The runtime alone, put on by the inventory's own files and services:
    // no Kubernetes component (`components: none`).
    lab.inventory_variant("runtime.yaml", |text| {
        format!(
            "{}{files}{services}",
            text.replacen("cluster:\n", "cluster:\n  components: none\n", 1)
        )
    })
}

/// The container's cgroup path (relative to the machine's cgroup, which is
/// the root the machine sees) in hierarchy `controller`.
fn container_cgroup(lab: &TestLab, i: usize, pid: &str, controller: &str) -> String {
    let lines = lab.root(i, &format!("cat /proc/{pid}/cgroup"));
    lines
        .lines()
        .find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, c, path) = (f.next()?, f.next()?, f.next()?);
            c.split(',')
                .any(|c| c == controller)
                .then(|| path.to_owned())
        })
        .unwrap_or_else(|| panic!("no {controller} line in:\n{lines}"))
}

fn kernel_settings() -> Vec<String> {
    [
        "vm/overcommit_memory",
        "vm/panic_on_oom",
        "kernel/panic",
        "kernel/panic_on_oops",
        "kernel/keys/root_maxkeys",
        "kernel/keys/root_maxbytes",
        "fs/inotify/max_user_instances",
        "fs/inotify/max_user_watches",
        "net/ipv4/ip_forward",
    ]
    .iter()
    .map(|k| {
        format!(
            "{k}={}",
            fs::read_to_string(format!("/proc/sys/{k}"))
                .unwrap_or_default()
                .trim()
        )
    })
    .collect()
}

#[test]
fn containerd_runs_a_pod_and_a_container_on_two_lab_machines() {
    let (root, index) = mirror();
    let before = kernel_settings();
    let lab = TestLab::up("t-e2e-cri", 2);
    let inventory = runtime_inventory(&lab, &root, &index);

    let out = k8sup(&["apply", "-i", inventory.to_str().unwrap(), "--yes"]);
    assert!(
        out.status.success(),
        "apply failed:\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let (pause, _) = image(&root, &index, "pause");
    let (busybox, _) = image(&root, &index, "busybox");
    let hybrid = Path::new("/sys/fs/cgroup/pids/cgroup.procs").exists();
    let mut host_groups = Vec::new();

    for i in 0..2 {
        let node = lab.node(i);
        assert_eq!(
            lab.root(i, "systemctl is-active containerd").trim(),
            "active"
        );
        lab.root(
            i,
            "ctr -n k8s.io images import /opt/k8sup-e2e/pause.tar \
             && ctr -n k8s.io images import /opt/k8sup-e2e/busybox.tar",
        );
        let images = lab.root(i, "crictl images -o json");
        for name in [&pause, &busybox] {
            assert!(
                images.contains(name.as_str()),
                "{node}: {name} not imported:\n{images}"
            );
        }
        lab.root(i, &format!("cat > /root/pod.json <<'EOF'\n{POD}EOF"));
        lab.root(
            i,
            &format!("cat > /root/hello.json <<'EOF'\n{}EOF", container(&busybox)),
        );
        let pod = lab.root(i, "crictl runp /root/pod.json").trim().to_owned();
        let ctr = lab
            .root(
                i,
                &format!("crictl create {pod} /root/hello.json /root/pod.json"),
            )
            .trim()
            .to_owned();
        lab.root(i, &format!("crictl start {ctr}"));

        // The line the container printed, read back through the CRI.
        let mut logs = String::new();
        for _ in 0..50 {
            logs = lab.root(i, &format!("crictl logs {ctr} 2>&1"));
            if logs.contains("k8sup-cri-ok") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        assert_eq!(
            logs.trim(),
            format!("k8sup-cri-ok {node}"),
            "{node}: crictl logs"
        );

        // The pod got an address from the bridge network.
        let pod_ip = lab.root(
            i,
            &format!(
                "crictl inspectp -o go-template --template '{{{{.status.network.ip}}}}' {pod}"
            ),
        );
        assert!(
            pod_ip.trim().starts_with(&format!("10.244.{}.", i + 1)),
            "{node}: pod address {pod_ip:?}"
        );

        // The container lives beneath the machine's own cgroup on the host.
        let pid = lab
            .root(
                i,
                &format!("crictl inspect -o go-template --template '{{{{.info.pid}}}}' {ctr}"),
            )
            .trim()
            .to_owned();
        if hybrid {
            for controller in ["cpu", "memory", "pids"] {
                let inside = container_cgroup(&lab, i, &pid, controller);
                assert!(
                    inside.starts_with("/k8sup-e2e/"),
                    "{node}: {controller} {inside}"
                );
                let machine = lab
                    .lab
                    .machine_cgroups(&node)
                    .unwrap()
                    .into_iter()
                    .find(|g| g.starts_with(Path::new("/sys/fs/cgroup").join(controller)))
                    .unwrap();
                let on_host = machine.join(inside.trim_start_matches('/'));
                let procs = fs::read_to_string(on_host.join("cgroup.procs"))
                    .unwrap_or_else(|e| panic!("{node}: {}: {e}", on_host.display()));
                assert!(
                    !procs.trim().is_empty(),
                    "{node}: {} is empty",
                    on_host.display()
                );
                assert!(
                    !Path::new("/sys/fs/cgroup")
                        .join(controller)
                        .join("k8sup-e2e")
                        .exists(),
                    "{node}: a pod cgroup at the host's root of {controller}"
                );
                host_groups.push(on_host);
            }
        }

        lab.root(
            i,
            &format!(
                "crictl stop {ctr} && crictl rm {ctr} && crictl stopp {pod} && crictl rmp {pod}"
            ),
        );
        assert_eq!(
            lab.root(i, "crictl ps -a -q").trim(),
            "",
            "{node}: containers left"
        );
    }
    if hybrid {
        // Two machines, two distinct sets of host cgroups.
        let (a, b) = host_groups.split_at(host_groups.len() / 2);
        for g in a {
            assert!(
                !b.contains(g),
                "both machines' containers in {}",
                g.display()
            );
        }
    }
    // Nothing the machines mounted for their containers reached the host.
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    for needle in ["/run/containerd/", "io.containerd."] {
        assert!(
            !mounts.contains(needle),
            "a container mount reached the host: {needle}"
        );
    }
    drop(lab);
    assert_eq!(
        kernel_settings(),
        before,
        "the host's kernel settings changed"
    );
}
