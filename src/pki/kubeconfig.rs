//! Kubeconfigs: a client certificate, its key and the CA, embedded as
//! base64 next to the server's URL, in one file a component (or a person)
//! points `--kubeconfig` at.
//!
//! The file is rendered from `templates/kubeconfig.yaml` (every file k8sup
//! writes on a host is a template there). Each value goes through `tojson`,
//! and a JSON string is a YAML string, so a user name such as
//! `system:node:w-1` can never be read as something else. Rendering is
//! deterministic: the same inputs give the same bytes, which is how the plan
//! tells a kubeconfig that only needs its server changed from one that is
//! already right.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use minijinja::syntax::SyntaxConfig;
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::Deserialize;

use crate::error::PkiError;

const TEMPLATE: &str = include_str!("../../templates/kubeconfig.yaml");

/// What a kubeconfig says. `ca_pem`, `cert_pem` and `key_pem` are PEM text;
/// rendering base64-encodes them. `Debug` leaves the key out.
#[derive(Clone, PartialEq, Eq)]
pub struct Kubeconfig {
    /// The cluster's name (and the kubeconfig's cluster entry).
    pub cluster: String,
    /// The apiserver's URL, e.g. `https://127.0.0.1:6443`.
    pub server: String,
    /// The user entry's name: the certificate's common name.
    pub user: String,
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for Kubeconfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kubeconfig")
            .field("cluster", &self.cluster)
            .field("server", &self.server)
            .field("user", &self.user)
            .field("ca_pem", &self.ca_pem)
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

impl Kubeconfig {
    /// The file's text. The context is named `USER@CLUSTER` and is current.
    pub fn render(&self) -> Result<String, PkiError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env.set_syntax(
            SyntaxConfig::builder()
                .keep_trailing_newline(true)
                .trim_blocks(true)
                .build()
                .expect("the default delimiters are valid"),
        );
        let ctx = minijinja::context! {
            cluster => &self.cluster,
            server => &self.server,
            user => &self.user,
            context => format!("{}@{}", self.user, self.cluster),
            ca_data => STANDARD.encode(&self.ca_pem),
            cert_data => STANDARD.encode(&self.cert_pem),
            key_data => STANDARD.encode(&self.key_pem),
        };
        env.render_named_str("templates/kubeconfig.yaml", TEMPLATE, ctx)
            .map_err(|e| PkiError::Kubeconfig {
                kubeconfig: self.user.clone(),
                reason: format!("templates/kubeconfig.yaml: {e}"),
            })
    }

    /// Reads back a kubeconfig k8sup wrote (its current context's cluster
    /// and user, with embedded data). `path` names it in errors.
    pub fn parse(path: &str, text: &[u8]) -> Result<Kubeconfig, PkiError> {
        let fail = |reason: String| PkiError::Kubeconfig {
            kubeconfig: path.to_string(),
            reason,
        };
        let text = std::str::from_utf8(text).map_err(|e| fail(format!("not UTF-8: {e}")))?;
        let file: File = serde_saphyr::from_str(text).map_err(|e| fail(e.to_string()))?;
        let context = file
            .contexts
            .iter()
            .find(|c| c.name == file.current_context)
            .ok_or_else(|| fail(format!("no context {:?}", file.current_context)))?;
        let cluster = file
            .clusters
            .iter()
            .find(|c| c.name == context.context.cluster)
            .ok_or_else(|| fail(format!("no cluster {:?}", context.context.cluster)))?;
        let user = file
            .users
            .iter()
            .find(|u| u.name == context.context.user)
            .ok_or_else(|| fail(format!("no user {:?}", context.context.user)))?;
        let decode = |what: &str, b64: &str| {
            let bytes = STANDARD
                .decode(b64.trim())
                .map_err(|e| fail(format!("{what} is not base64: {e}")))?;
            String::from_utf8(bytes).map_err(|_| fail(format!("{what} is not PEM text")))
        };
        Ok(Kubeconfig {
            cluster: cluster.name.clone(),
            server: cluster.cluster.server.clone(),
            user: user.name.clone(),
            ca_pem: decode(
                "certificate-authority-data",
                &cluster.cluster.certificate_authority_data,
            )?,
            cert_pem: decode(
                "client-certificate-data",
                &user.user.client_certificate_data,
            )?,
            key_pem: decode("client-key-data", &user.user.client_key_data)?,
        })
    }
}

/// The part of the kubeconfig format that k8sup writes (other keys are ignored).
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct File {
    clusters: Vec<NamedCluster>,
    users: Vec<NamedUser>,
    contexts: Vec<NamedContext>,
    current_context: String,
}

#[derive(Deserialize)]
struct NamedCluster {
    name: String,
    cluster: ClusterFields,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct ClusterFields {
    server: String,
    certificate_authority_data: String,
}

#[derive(Deserialize)]
struct NamedUser {
    name: String,
    user: UserFields,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct UserFields {
    client_certificate_data: String,
    client_key_data: String,
}

#[derive(Deserialize)]
struct NamedContext {
    name: String,
    context: ContextFields,
}

#[derive(Deserialize)]
struct ContextFields {
    cluster: String,
    user: String,
}
