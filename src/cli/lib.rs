//! k8sup: agentless Kubernetes lifecycle over SSH — the command line.
//!
//! This crate is the top layer: argument parsing (`app`, `cmd/`), output
//! (text and `--output json`) and the commands that join the library crates
//! together. It is the only crate that prints or serializes for users. The
//! work lives in narrow crates under `src/` (see ARCHITECTURE.md):
//! - `k8sup_inventory`: the inventory file, its schema and validation;
//! - `k8sup_ssh`: the SSH transport (russh);
//! - `k8sup_facts`: what a host is, in one round trip;
//! - `k8sup_cluster`: what every host must look like;
//! - `k8sup_engine`: observe, plan and apply resources on hosts;
//! - `k8sup_lab`: local systemd-nspawn machines that behave like VMs.

pub mod app;
pub mod cmd;
pub mod connect;
pub mod fleet;
pub mod hints;
pub mod load;
pub mod node_files;
pub mod output;
pub mod progress;
