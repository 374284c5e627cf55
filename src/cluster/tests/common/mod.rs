//! What the cluster's rootless tests share: a 1+N inventory, stand-in
//! local files (never pushed anywhere), facts, and readers of a resolved
//! phase.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8sup_cluster::NodeFiles;
use k8sup_engine::{Facts, ResolvedRollout};

pub fn inventory(cps: usize, workers: usize, extra: &str) -> k8sup_inventory::Inventory {
    let mut y = format!(
        "apiVersion: k8sup.io/v1alpha1\nkind: Cluster\ncluster:\n  name: t\n{extra}hosts:\n"
    );
    for i in 0..cps {
        y += &format!(
            "  - {{ name: cp-{i}, address: 10.0.0.{}, role: control-plane }}\n",
            10 + i
        );
    }
    for i in 0..workers {
        y += &format!(
            "  - {{ name: w-{i}, address: 10.0.0.{}, role: worker }}\n",
            20 + i
        );
    }
    k8sup_inventory::parse_str(&y, Path::new("t.yaml"), &|_| None)
        .expect("valid")
        .inventory
}

pub fn files(dir: &Path) -> NodeFiles {
    let f = dir.join("program");
    std::fs::write(&f, b"#!/bin/sh\n").unwrap();
    let mut n = NodeFiles {
        pause_image: "registry.k8s.io/pause:3.10.2".into(),
        coredns_image: "registry.k8s.io/coredns/coredns:v1.15.0".into(),
        coredns_version: "v1.15.0".into(),
        ..Default::default()
    };
    for p in [
        "containerd",
        "containerd-shim-runc-v2",
        "ctr",
        "runc",
        "crictl",
        "kubelet",
        "kube-proxy",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kubectl",
        "k8sup-datastore",
        "k8sup-apiserver-proxy",
        "bridge",
        "host-local",
        "loopback",
        "portmap",
    ] {
        n.programs.insert(p.into(), f.clone());
        n.program_sha256
            .insert(p.into(), format!("{:064x}", p.len()));
    }
    n.images
        .push(("registry.k8s.io/pause:3.10.2".into(), f.clone()));
    n
}

pub fn facts(hosts: &[String], cgroup: &str) -> BTreeMap<String, Facts> {
    hosts
        .iter()
        .map(|h| (h.clone(), Facts::default().with("cgroup", cgroup)))
        .collect()
}

pub fn ids(r: &ResolvedRollout, host: &str) -> Vec<String> {
    r.states_of(host)
        .iter()
        .flat_map(|s| s.resources.iter().map(|x| x.id.to_string()))
        .collect()
}

pub fn tmp(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("k8sup-cluster-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The text of the resource whose id ends with `suffix` on `host`.
pub fn text(r: &ResolvedRollout, host: &str, suffix: &str) -> Option<String> {
    r.states_of(host)
        .iter()
        .flat_map(|s| s.resources.iter())
        .find(|x| x.id.to_string().ends_with(suffix))
        .and_then(|x| x.body.as_ref().and_then(|b| b.text()).map(str::to_string))
}

/// The add-ons phase's API, for tests that never reach that phase's
/// service (`Phases::desired` lists host steps only): any call is refused.
pub struct NoApi;

impl k8sup_cluster::ClusterApi for NoApi {
    fn plan<'a>(
        &'a self,
        _: &'a k8sup_cluster::AddonsRequest,
    ) -> futures::future::BoxFuture<'a, Result<k8sup_engine::HostPlan, k8sup_engine::EngineError>>
    {
        Box::pin(async {
            Err(k8sup_engine::EngineError::Invalid {
                host: "kubernetes-api".into(),
                reason: "these tests have no API".into(),
            })
        })
    }

    fn apply<'a>(
        &'a self,
        _: &'a k8sup_cluster::AddonsRequest,
        plan: &'a k8sup_engine::HostPlan,
        _: &'a dyn k8sup_engine::Progress,
    ) -> futures::future::BoxFuture<'a, k8sup_engine::HostReport> {
        Box::pin(async move {
            k8sup_engine::HostReport {
                host: plan.host.clone(),
                failed: 1,
                error: Some("these tests have no API".into()),
                ..Default::default()
            }
        })
    }
}

pub fn no_api() -> std::sync::Arc<dyn k8sup_cluster::ClusterApi> {
    std::sync::Arc::new(NoApi)
}
