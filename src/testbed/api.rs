//! A small HTTPS client for the Kubernetes API, with the credentials of a
//! kubeconfig written by `k8sup-pki`: for load (many concurrent requests,
//! which kubectl's one process per request cannot give) and for timing
//! watch events.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

#[derive(Clone)]
pub struct Api {
    pub client: reqwest::Client,
    pub base: String,
}

impl Api {
    pub fn from_kubeconfig(path: &Path) -> Api {
        let text = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let kc = k8sup_pki::Kubeconfig::parse(&path.display().to_string(), &text)
            .expect("a kubeconfig k8sup-pki wrote");
        let ca = reqwest::Certificate::from_pem(kc.ca_pem.as_bytes()).unwrap();
        let identity =
            reqwest::Identity::from_pem(format!("{}\n{}", kc.cert_pem, kc.key_pem).as_bytes())
                .unwrap();
        let client = reqwest::Client::builder()
            .tls_certs_only([ca])
            .identity(identity)
            .pool_max_idle_per_host(256)
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        Api {
            client,
            base: kc.server,
        }
    }

    /// POSTs `body` to `path`: the HTTP status and the response body.
    pub async fn post(&self, path: &str, body: &Value) -> Result<(u16, Value), reqwest::Error> {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await?;
        let status = r.status().as_u16();
        let bytes = r.bytes().await?;
        Ok((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    }

    /// GETs `path`: the HTTP status and the response body.
    pub async fn get(&self, path: &str) -> Result<(u16, Value), reqwest::Error> {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await?;
        let status = r.status().as_u16();
        let bytes = r.bytes().await?;
        Ok((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    }

    /// Creates ConfigMap `name` in `ns` with one key: the HTTP status (201 when created).
    pub async fn create_configmap(
        &self,
        ns: &str,
        name: &str,
        value: &str,
    ) -> Result<u16, reqwest::Error> {
        let body = json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name},
            "data": {"v": value},
        });
        Ok(self
            .post(&format!("/api/v1/namespaces/{ns}/configmaps"), &body)
            .await?
            .0)
    }

    /// Opens a watch (`path` without `?watch=1`) from resource version `rv`
    /// ("" for now): read it with [`WatchStream::next`].
    pub async fn watch(&self, path: &str, rv: &str) -> Result<WatchStream, reqwest::Error> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let r = self
            .client
            .get(format!(
                "{}{path}{sep}watch=1&resourceVersion={rv}&allowWatchBookmarks=false",
                self.base
            ))
            .timeout(Duration::from_secs(3600))
            .send()
            .await?
            .error_for_status()?;
        Ok(WatchStream {
            resp: r,
            buf: Vec::new(),
        })
    }
}

/// A watch's events, one JSON object per line.
pub struct WatchStream {
    resp: reqwest::Response,
    buf: Vec<u8>,
}

impl WatchStream {
    /// The next event (`{"type": ..., "object": ...}`), or None when the
    /// stream ended.
    pub async fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                if let Ok(v) = serde_json::from_slice(&line) {
                    return Some(v);
                }
                continue;
            }
            match self.resp.chunk().await {
                Ok(Some(c)) => self.buf.extend_from_slice(&c),
                _ => return None,
            }
        }
    }
}
