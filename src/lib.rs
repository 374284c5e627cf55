//! k8sup: agentless Kubernetes lifecycle over SSH.
//!
//! This crate is the command-line layer. It owns argument parsing, output
//! (human and `--output json`) and the commands that join the library crates
//! together. The heavy lifting lives in narrow crates:
//! - `k8sup_inventory`: the inventory file, its schema and validation;
//! - `k8sup_ssh`: the SSH transport (russh);
//! - `k8sup_lab`: local systemd-nspawn machines that behave like VMs.

pub mod cli;
pub mod cmd;
pub mod connect;
pub mod desired;
pub mod facts;
pub mod output;
pub mod run;
