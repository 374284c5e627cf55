//! Removal: saying that something must be gone.
//!
//! A resource's absent form ([`crate::Resource::absent`]) removes a path, a
//! unit file (after its service is stopped and disabled, then one
//! daemon-reload), or stops and disables a service; the plan shows each as a
//! deletion (`-`) or an update, and an apply carries them out idempotently
//! (a second apply finds nothing to remove). On top of that, a whole host
//! can be planned for decommissioning: [`DesiredState::removal`] turns what
//! a host has into what it must no longer have, and [`hosts_to_remove`]
//! names the hosts a cluster knows (from its facts) that the inventory no
//! longer lists. What else removal means (leaving a cluster, draining) is
//! the caller's, as guarded commands or phases of its own.

use std::collections::BTreeSet;

use crate::desired::DesiredState;
use crate::resource::{Resource, Spec};

impl DesiredState {
    /// The desired state of this host once it is removed: every directory,
    /// file, binary, link and unit absent, every service stopped and
    /// disabled, in reverse order (what was set up last goes first).
    /// Commands and probes have no absent form and are left out; add the
    /// commands a removal needs (leaving a cluster) to the result.
    /// Dependencies and notifications are dropped: what they ordered is being
    /// undone, and the engine orders removals itself (a service is stopped
    /// before its unit file goes).
    pub fn removal(&self) -> DesiredState {
        let mut out = DesiredState::new(self.host.clone());
        out.context = self.context.clone();
        for r in self.resources.iter().rev() {
            if matches!(r.spec, Spec::Command { .. } | Spec::Probe { .. }) {
                continue;
            }
            let mut gone: Resource = r.clone().absent();
            gone.depends_on.clear();
            gone.notify.clear();
            out.resources.push(gone);
        }
        out
    }
}

/// Hosts the cluster knows (`known`, e.g. members listed in the facts of a
/// control-plane host) that are not `wanted` (the inventory's hosts): the
/// ones to plan a removal for. Sorted, without duplicates.
pub fn hosts_to_remove<'a>(
    known: impl IntoIterator<Item = &'a str>,
    wanted: &[String],
) -> Vec<String> {
    let wanted: BTreeSet<&str> = wanted.iter().map(String::as_str).collect();
    known
        .into_iter()
        .filter(|h| !wanted.contains(h))
        .map(str::to_string)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::Content;
    use crate::resource::Guard;

    #[test]
    fn a_removal_undoes_paths_and_services_in_reverse_and_drops_commands() {
        let d = DesiredState::new("w-1")
            .with(Resource::directory("/etc/demo"))
            .with(
                Resource::file("/etc/demo/a.conf", Content::text("a\n"))
                    .notify("service:demo.service"),
            )
            .with(Resource::unit("demo.service", Content::text("[Service]\n")))
            .with(Resource::service("demo.service"))
            .with(Resource::command(
                "init",
                "true",
                Guard::Unless("true".into()),
            ));
        let r = d.removal();
        let ids: Vec<String> = r.resources.iter().map(|r| r.id().to_string()).collect();
        assert_eq!(
            ids,
            [
                "service:demo.service",
                "unit:demo.service",
                "file:/etc/demo/a.conf",
                "dir:/etc/demo"
            ]
        );
        assert!(r.resources.iter().all(Resource::is_absent));
        assert!(r.resources.iter().all(|r| r.notify.is_empty()));
    }

    #[tokio::test]
    async fn a_removed_service_is_stopped_and_disabled_before_its_unit_file_goes() {
        let d = DesiredState::new("w-1")
            .with(Resource::directory("/etc/demo"))
            .with(Resource::file("/etc/demo/a.conf", Content::text("a\n")))
            .with(Resource::unit("demo.service", Content::text("[Service]\n")))
            .with(Resource::service("demo.service"))
            .removal();
        let st = d.resolve().await.unwrap();
        let observed = "L\t-\nV\t1\n\
             P\t/etc/systemd/system/demo.service\tfile\t644\troot\troot\t10\tabc\n\
             P\t/etc/demo/a.conf\tfile\t644\troot\troot\t2\tdef\n\
             P\t/etc/demo\tdir\t755\troot\troot\n\
             S\tLoadState=loaded\nS\tActiveState=active\nS\tUnitFileState=enabled\nS\tNeedDaemonReload=no\nS\t\n";
        let obs = crate::observe::parse("w-1", observed.as_bytes(), &[&st]).unwrap();
        let p = crate::planner::plan_host(&st, &obs).unwrap();
        let got: Vec<(String, crate::ActionKind)> = p
            .actions
            .iter()
            .map(|a| (a.resource.to_string(), a.kind))
            .collect();
        use crate::ActionKind::*;
        assert_eq!(
            got,
            [
                ("service:demo.service".to_string(), Update),
                ("unit:demo.service".to_string(), Delete),
                (crate::DAEMON_RELOAD_ID.to_string(), Reload),
                ("file:/etc/demo/a.conf".to_string(), Delete),
                ("dir:/etc/demo".to_string(), Delete),
            ]
        );
        assert_eq!(
            p.actions[0].reason,
            "disable (enabled → disabled); stop (active → inactive)"
        );
        // Once gone, nothing is left to do.
        let gone = "L\t-\nV\t1\n\
             P\t/etc/systemd/system/demo.service\tabsent\n\
             P\t/etc/demo/a.conf\tabsent\n\
             P\t/etc/demo\tabsent\n\
             S\tLoadState=not-found\nS\tActiveState=inactive\nS\tUnitFileState=\nS\tNeedDaemonReload=no\nS\t\n";
        let obs = crate::observe::parse("w-1", gone.as_bytes(), &[&st]).unwrap();
        assert!(
            crate::planner::plan_host(&st, &obs)
                .unwrap()
                .actions
                .is_empty()
        );
    }

    #[test]
    fn hosts_known_but_not_wanted_are_removed() {
        let wanted = vec!["cp-1".to_string(), "w-1".to_string()];
        assert_eq!(
            hosts_to_remove(["w-2", "cp-1", "w-2", "w-1", "cp-9"], &wanted),
            ["cp-9", "w-2"]
        );
    }
}
