//! openraft glue: type configuration, the RocksDB log store, the state
//! machine over [`crate::mvcc`], and the peer network client.

pub mod log_store;
pub mod log_tail;
pub mod network;
pub mod proposer;
pub mod state_machine;
pub mod types;

#[cfg(test)]
mod compat_tests;
#[cfg(test)]
mod log_store_tests;

pub use types::*;
