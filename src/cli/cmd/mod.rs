//! One module per subcommand: its clap arguments and its `execute` function.

pub mod apply;
pub mod facts;
pub mod init;
pub mod inventory;
pub mod lab;
pub mod plan;
