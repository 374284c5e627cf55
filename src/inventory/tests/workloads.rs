//! The workload sections (`files:`, `services:`, `commands:`): what they
//! read into, and every problem reported at its line.

use std::path::Path;

use k8sup_inventory::{Diagnostic, FileKind, Report, Role, ServiceState, Source, parse_str};

const HOSTS: &str = "apiVersion: k8sup.io/v1alpha1
kind: Cluster
cluster: { name: demo }
hosts:
  - { name: cp-1, address: 10.0.0.11, role: control-plane, groups: [rack-a] }
  - { name: w-1, address: 10.0.0.21, role: worker }
";

fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(d.path().join(name), text).unwrap();
    }
    d
}

fn parse_in(dir: &Path, body: &str) -> Result<k8sup_inventory::Loaded, Report> {
    parse_str(&format!("{HOSTS}{body}"), &dir.join("inv.yaml"), &|_| None)
}

fn find<'a>(r: &'a Report, needle: &str) -> &'a Diagnostic {
    r.diagnostics
        .iter()
        .find(|d| d.message.contains(needle))
        .unwrap_or_else(|| panic!("no diagnostic containing {needle:?} in:\n{r}"))
}

#[test]
fn reads_files_services_and_commands_with_their_targets() {
    let d = dir_with(&[
        ("demo.conf.j2", "port={{ vars.port }}\n"),
        ("demo.bin", "BIN"),
    ]);
    let inv = parse_in(
        d.path(),
        r#"files:
  - path: /etc/demo/demo.conf
    template: demo.conf.j2
    mode: "0640"
    owner: root
    group: root
    notify: [demo.service]
    roles: [worker]
  - path: /opt/demo
    type: directory
    mode: 0755
  - path: /usr/local/bin/demo
    src: ./demo.bin
    mode: 755
    hosts: [cp-1]
  - path: /usr/bin/demo
    type: link
    target: /usr/local/bin/demo
    groups: [rack-a]
services:
  - name: demo
    unit: { content: "[Service]\nExecStart=/bin/sleep infinity\n" }
  - name: cron
    enabled: false
    state: stopped
commands:
  - name: init
    run: touch /var/lib/demo/.init
    creates: /var/lib/demo/.init
"#,
    )
    .unwrap_or_else(|r| panic!("{r}"))
    .inventory;
    assert_eq!(inv.files.len(), 4);
    let conf = &inv.files[0];
    assert_eq!(conf.mode, Some(0o640));
    assert_eq!(conf.notify, vec!["demo"]);
    assert_eq!(conf.targets.roles, vec![Role::Worker]);
    assert!(
        matches!(&conf.kind, FileKind::File { source: Source::Template(p) } if p == &d.path().join("demo.conf.j2"))
    );
    assert_eq!(inv.files[1].kind, FileKind::Directory);
    assert_eq!(
        inv.files[1].mode,
        Some(0o755),
        "YAML's 0755 is read as chmod's octal"
    );
    assert_eq!(inv.files[2].mode, Some(0o755));
    assert!(
        matches!(&inv.files[2].kind, FileKind::File { source: Source::Src(p) } if p.ends_with("demo.bin"))
    );
    assert_eq!(
        inv.files[3].kind,
        FileKind::Link {
            target: "/usr/local/bin/demo".into()
        }
    );
    let (cp, w) = (&inv.hosts[0], &inv.hosts[1]);
    assert!(!conf.targets.matches(cp) && conf.targets.matches(w));
    assert!(
        inv.files[1].targets.matches(cp) && inv.files[1].targets.matches(w),
        "no target means every host"
    );
    assert!(
        inv.files[3].targets.matches(cp) && !inv.files[3].targets.matches(w),
        "by group"
    );
    assert!(matches!(&inv.services[0].unit, Some(Source::Content(t)) if t.contains("ExecStart")));
    assert_eq!(
        (inv.services[0].enabled, inv.services[0].state),
        (true, ServiceState::Running)
    );
    assert_eq!(
        (inv.services[1].enabled, inv.services[1].state),
        (false, ServiceState::Stopped)
    );
    assert_eq!(
        inv.commands[0].creates.as_deref(),
        Some("/var/lib/demo/.init")
    );
}

#[test]
fn every_problem_of_the_workload_sections_is_reported_at_its_line() {
    let d = dir_with(&[]);
    let r = parse_in(
        d.path(),
        r#"files:
  - path: etc/relative
    content: x
  - path: /etc/a
    src: missing.bin
  - path: /etc/b
    content: x
    template: y.j2
  - path: /etc/c
    mode: rw-r--r--
    content: x
    hosts: [cp-2]
    groups: [rack-b]
  - path: /etc/d
  - path: /etc/e
    type: link
  - path: /etc/f
    type: directory
    content: x
services:
  - name: nginx.socket
  - name: demo
    state: started
commands:
  - name: once
    run: "true"
"#,
    )
    .unwrap_err();
    let line = |needle: &str| find(&r, needle).line;
    assert_eq!(line("must be an absolute path"), 8);
    assert_eq!(line("cannot read"), 11);
    assert!(
        find(&r, "cannot read")
            .help
            .as_deref()
            .unwrap()
            .contains("relative to the inventory")
    );
    assert_eq!(line("give only one"), 14);
    assert_eq!(line("octal permission bits"), 16);
    assert_eq!(line("targets host 'cp-2'"), 18);
    assert_eq!(
        find(&r, "targets host 'cp-2'").help.as_deref(),
        Some("did you mean 'cp-1'?")
    );
    assert_eq!(
        find(&r, "targets group 'rack-b'").help.as_deref(),
        Some("did you mean 'rack-a'?")
    );
    assert_eq!(line("has no content"), 20);
    assert_eq!(line("link without 'target'"), 21);
    assert!(
        find(&r, "is a directory")
            .message
            .contains("only for files")
    );
    assert!(
        find(&r, "not a systemd service name")
            .help
            .as_deref()
            .unwrap()
            .contains("without a suffix")
    );
    let state = find(&r, "unknown value 'started'");
    assert_eq!(state.help.as_deref(), None, "{state:?}");
    assert_eq!(state.line, 29);
    let guard = find(&r, "has no guard");
    assert_eq!(guard.severity, k8sup_inventory::Severity::Warning);
}

#[test]
fn two_entries_writing_one_path_on_one_host_are_refused() {
    let d = dir_with(&[]);
    let r = parse_in(
        d.path(),
        "files:\n  - { path: /etc/x, content: a, roles: [worker] }\n  - { path: /etc/x, content: b, hosts: [cp-1] }\n  - { path: /etc/x, content: c, hosts: [w-1] }\n",
    )
    .unwrap_err();
    let e = find(&r, "also written by files[0] on host 'w-1'");
    assert_eq!(e.line, 10);
    assert_eq!(
        r.diagnostics
            .iter()
            .filter(|d| d.message.contains("also written"))
            .count(),
        1,
        "the cp-1 entry does not overlap"
    );
}

#[test]
fn a_service_or_command_listed_twice_is_refused_at_the_second_entry() {
    let d = dir_with(&[]);
    let r = parse_in(
        d.path(),
        "services:\n  - name: demo\n  - name: demo.service\ncommands:\n  - { name: init, run: 'true', creates: /a }\n  - { name: init, run: 'false', creates: /b }\n",
    )
    .unwrap_err();
    let s = find(&r, "service 'demo' is listed twice");
    assert_eq!(s.line, 9, "the second entry, named with its suffix: {s:?}");
    let c = find(&r, "command 'init' is listed twice");
    assert_eq!(
        (c.line, c.help.as_deref()),
        (12, Some("command names must be unique"))
    );
}
