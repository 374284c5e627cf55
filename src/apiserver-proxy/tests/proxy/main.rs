//! The proxy on real loopback sockets: forwarding, failover, the HTTPS
//! health check against a CA from `k8sup-pki`, reload, no upstream, the
//! binary itself, and the templates k8sup renders for it.

mod binary;
mod common;
mod forwarding;
mod health;
mod reload;
mod templates;
