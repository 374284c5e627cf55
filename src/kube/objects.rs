//! The add-ons' objects as the API sees them: which resource each kind is,
//! how an object is named in the plan, and what of it is compared.
//!
//! Why a fixed table of kinds rather than discovery: the objects are k8sup's
//! own templates, so their kinds are known; discovery would cost a request
//! per group on every plan, and an unknown kind is a mistake in a template,
//! reported as such.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{Api, ApiResource, DynamicObject};
use serde_json::Value;

/// (apiVersion, kind) → the resource, and whether it is namespaced.
fn resource(api_version: &str, kind: &str) -> Option<(ApiResource, bool)> {
    let r = |ar: ApiResource, namespaced: bool| Some((ar, namespaced));
    match (api_version, kind) {
        ("v1", "ServiceAccount") => r(ApiResource::erase::<ServiceAccount>(&()), true),
        ("v1", "ConfigMap") => r(ApiResource::erase::<ConfigMap>(&()), true),
        ("v1", "Service") => r(ApiResource::erase::<Service>(&()), true),
        ("apps/v1", "Deployment") => r(ApiResource::erase::<Deployment>(&()), true),
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => {
            r(ApiResource::erase::<ClusterRole>(&()), false)
        }
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
            r(ApiResource::erase::<ClusterRoleBinding>(&()), false)
        }
        ("rbac.authorization.k8s.io/v1", "Role") => r(ApiResource::erase::<Role>(&()), true),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => {
            r(ApiResource::erase::<RoleBinding>(&()), true)
        }
        _ => None,
    }
}

/// One object of a template, ready to be sent.
pub struct Object {
    /// `object:KIND/NAMESPACE/NAME` (or `object:KIND/NAME`): its plan id.
    pub id: String,
    pub name: String,
    pub api: Api<DynamicObject>,
    pub body: DynamicObject,
}

impl Object {
    /// `value` (from `template`) for `client`; a kind outside the table, or
    /// an object without a name, is the template's mistake.
    pub fn new(client: &kube::Client, template: &str, value: &Value) -> Result<Object, String> {
        let s = |k: &str| value.get(k).and_then(Value::as_str).unwrap_or("");
        let (api_version, kind) = (s("apiVersion"), s("kind"));
        let meta = value.get("metadata");
        let name = meta
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .ok_or_else(|| format!("{template}: a {kind} without metadata.name"))?;
        let (ar, namespaced) = resource(api_version, kind).ok_or_else(|| {
            format!("{template}: {api_version} {kind} is not a kind k8sup applies")
        })?;
        let body: DynamicObject = serde_json::from_value(value.clone())
            .map_err(|e| format!("{template}: {kind} {name}: {e}"))?;
        let (api, id) = if namespaced {
            let ns = meta
                .and_then(|m| m.get("namespace"))
                .and_then(Value::as_str)
                .ok_or_else(|| format!("{template}: {kind} {name} has no metadata.namespace"))?;
            (
                Api::namespaced_with(client.clone(), ns, &ar),
                format!("object:{kind}/{ns}/{name}"),
            )
        } else {
            (
                Api::all_with(client.clone(), &ar),
                format!("object:{kind}/{name}"),
            )
        };
        Ok(Object {
            id,
            name: name.to_string(),
            api,
            body,
        })
    }
}

/// The plan id of `value` without a client (for a plan made while the API
/// is not up yet).
pub fn id_of(value: &Value) -> String {
    let s = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("").to_string();
    let meta = value.get("metadata");
    let kind = s(value.get("kind"));
    let name = s(meta.and_then(|m| m.get("name")));
    match meta
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str)
    {
        Some(ns) => format!("object:{kind}/{ns}/{name}"),
        None => format!("object:{kind}/{name}"),
    }
}

/// What of an object is compared and shown: its content, without what the
/// API server keeps for itself (versions, timestamps, field owners, status).
pub fn comparable(o: &DynamicObject) -> Value {
    let mut v = serde_json::to_value(o).unwrap_or(Value::Null);
    if let Some(obj) = v.as_object_mut() {
        obj.remove("status");
    }
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        for k in [
            "managedFields",
            "resourceVersion",
            "generation",
            "creationTimestamp",
            "uid",
        ] {
            meta.remove(k);
        }
        if let Some(a) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
            // Written by the Deployment controller on every rollout.
            a.remove("deployment.kubernetes.io/revision");
            if a.is_empty() {
                meta.remove("annotations");
            }
        }
    }
    v
}

/// `v` as indented JSON lines, with sorted keys, for a readable diff.
pub fn text(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
    s.push('\n');
    s
}
