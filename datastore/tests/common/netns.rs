//! Real network partitions for fault tests: one network namespace per
//! member, each with a veth into one bridge (its own /24 in 10.214.0.0/16),
//! the test process reaching every member through the bridge. Partitioning
//! a member takes its link down: no peer, no client reaches it, and it
//! reaches nobody; healing brings the link back. Needs root (as in CI).

use std::process::Command;

fn run(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("running ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub struct NetLab {
    subnet: u8,
    members: usize,
}

impl NetLab {
    /// Creates `members` namespaces on a fresh bridge. Panics (never skips)
    /// without root: the partition tests must not pass unrun.
    pub fn new(members: usize) -> NetLab {
        let uid = Command::new("id").arg("-u").output().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&uid.stdout).trim(),
            "0",
            "network-namespace partition tests need root (CI runs them as root)"
        );
        let routes = String::from_utf8(
            Command::new("ip")
                .args(["-4", "route"])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap();
        let links = String::from_utf8(
            Command::new("ip")
                .args(["-o", "link"])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap();
        let spaces = String::from_utf8(
            Command::new("ip")
                .args(["netns", "list"])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap();
        // A subnet and names nobody uses: leftovers of a crashed run are skipped.
        let subnet = (1..=250u8)
            .map(|n| n.wrapping_add((std::process::id() % 250) as u8).max(1))
            .find(|n| {
                !routes.contains(&format!("10.214.{n}."))
                    && !links.contains(&format!("k8ds{n}:"))
                    && !spaces.contains(&format!("k8ds{n}-"))
            })
            .expect("a free 10.214.x.0/24");
        let lab = NetLab { subnet, members };
        let br = lab.bridge();
        run(&["link", "add", &br, "type", "bridge"]);
        run(&[
            "addr",
            "add",
            &format!("10.214.{subnet}.254/24"),
            "dev",
            &br,
        ]);
        run(&["link", "set", &br, "up"]);
        for i in 0..members {
            let ns = lab.ns(i);
            let veth = format!("{br}v{i}");
            run(&["netns", "add", &ns]);
            run(&[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ]);
            run(&["link", "set", &veth, "master", &br, "up"]);
            run(&[
                "netns",
                "exec",
                &ns,
                "ip",
                "addr",
                "add",
                &format!("{}/24", lab.ip(i)),
                "dev",
                "eth0",
            ]);
            run(&["netns", "exec", &ns, "ip", "link", "set", "eth0", "up"]);
            run(&["netns", "exec", &ns, "ip", "link", "set", "lo", "up"]);
        }
        lab
    }

    fn bridge(&self) -> String {
        format!("k8ds{}", self.subnet)
    }

    pub fn ns(&self, i: usize) -> String {
        format!("k8ds{}-m{i}", self.subnet)
    }

    pub fn ip(&self, i: usize) -> String {
        format!("10.214.{}.{}", self.subnet, i + 1)
    }

    /// Cuts member `i` off from everyone (peers and clients).
    pub fn partition(&self, i: usize) {
        run(&[
            "netns",
            "exec",
            &self.ns(i),
            "ip",
            "link",
            "set",
            "eth0",
            "down",
        ]);
    }

    pub fn heal(&self, i: usize) {
        run(&[
            "netns",
            "exec",
            &self.ns(i),
            "ip",
            "link",
            "set",
            "eth0",
            "up",
        ]);
    }
}

impl Drop for NetLab {
    fn drop(&mut self) {
        // Delete the veth pairs explicitly: a namespace outlives its name
        // while the kernel still tears down its sockets.
        for i in 0..self.members {
            let _ = Command::new("ip")
                .args(["link", "delete", &format!("{}v{i}", self.bridge())])
                .output();
            let _ = Command::new("ip")
                .args(["netns", "delete", &self.ns(i)])
                .output();
        }
        let _ = Command::new("ip")
            .args(["link", "delete", &self.bridge()])
            .output();
    }
}
