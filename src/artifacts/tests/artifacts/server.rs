//! A mirror served over HTTP on loopback, as the lab serves it on its
//! bridge: every request counted, and a fault that closes the connection
//! in the middle of one file's body.

use std::path::{Component, Path};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use tokio_util::io::ReaderStream;

#[derive(Clone, Default)]
pub struct Fault {
    /// Paths (relative to the root) whose body stops after `cut_after` bytes
    /// with the connection closed, although Content-Length promised more.
    pub cut: Option<(String, usize)>,
}

pub struct Server {
    pub base: String,
    log: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Requests served so far (paths, in order).
    pub fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn serve(root: &Path, fault: Fault) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/", listener.local_addr().unwrap());
    let log = Arc::new(Mutex::new(Vec::new()));
    let (root, l) = (root.to_path_buf(), log.clone());
    let app = axum::Router::new().fallback(move |uri: Uri| {
        let (root, log, fault) = (root.clone(), l.clone(), fault.clone());
        async move { answer(&root, &log, &fault, uri).await }
    });
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Server { base, log, task }
}

async fn answer(root: &Path, log: &Mutex<Vec<String>>, fault: &Fault, uri: Uri) -> Response {
    let rel = uri.path().trim_start_matches('/').to_string();
    log.lock().unwrap().push(rel.clone());
    let safe = Path::new(&rel)
        .components()
        .all(|c| matches!(c, Component::Normal(_)));
    let file = match tokio::fs::File::open(root.join(&rel)).await {
        Ok(f) if safe => f,
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    let len = file.metadata().await.unwrap().len();
    let stream = ReaderStream::new(file);
    let body = match &fault.cut {
        Some((path, n)) if *path == rel => {
            let n = *n;
            let mut sent = 0usize;
            Body::from_stream(stream.map(move |chunk| {
                let chunk = chunk?;
                if sent >= n {
                    return Err(std::io::Error::other("cut by the test"));
                }
                let keep = chunk.slice(..chunk.len().min(n - sent));
                sent += keep.len();
                Ok(keep)
            }))
        }
        _ => Body::from_stream(stream),
    };
    Response::builder()
        .header(header::CONTENT_LENGTH, len)
        .body(body)
        .unwrap()
}
