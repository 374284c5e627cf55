//! Errors a user can act on. Each message says what is wrong and what would
//! fix it; callers match on the variant to add how to ask for that fix (the
//! CLI names its own commands and flags; this crate names none).
//! Failures of individual host commands are reported as `anyhow` errors with
//! the command line and its stderr instead.

use std::path::PathBuf;

use ipnet::Ipv4Net;

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error(
        "k8sup lab needs root: it creates network namespaces, a bridge, overlay mounts and \
         systemd-nspawn machines. Run it again with sudo"
    )]
    NotRoot,

    #[error("`{tool}` was not found in PATH; install it with `apt-get install {package}`")]
    MissingTool {
        tool: &'static str,
        package: &'static str,
    },

    #[error(
        "invalid lab name {name:?}: use 1 to {max} lowercase letters, digits and inner dashes \
         (it becomes part of the machines' hostnames)"
    )]
    InvalidName { name: String, max: usize },

    #[error("lab {lab:?} does not exist (no {}); create it first", state.display())]
    NoSuchLab { lab: String, state: PathBuf },

    #[error("lab {lab:?} has no machine {node:?}; its machines are {known}")]
    NoSuchMachine {
        lab: String,
        node: String,
        known: String,
    },

    #[error(
        "address range {subnet} is taken on this host: {by}. Choose a free /24{}",
        suggestion.map(|s| format!(", e.g. {s} (free now)")).unwrap_or_default()
    )]
    SubnetTaken {
        subnet: Ipv4Net,
        by: String,
        suggestion: Option<Ipv4Net>,
    },

    #[error("subnet {subnet}: a lab needs an IPv4 /24 network address such as 10.213.7.0/24")]
    BadSubnet { subnet: Ipv4Net },

    #[error(
        "lab {lab:?} already uses {current}; the subnet {requested} would renumber its machines. \
         Take the lab down first"
    )]
    SubnetChanged {
        lab: String,
        current: Ipv4Net,
        requested: Ipv4Net,
    },

    #[error("a lab needs 1 to {max} machines, not {nodes}")]
    BadNodeCount { nodes: usize, max: usize },

    #[error(
        "the number of control planes must be between 1 and the number of machines ({nodes}), not {control_planes}"
    )]
    BadControlPlanes { control_planes: usize, nodes: usize },

    #[error(
        "lab {lab:?} has {existing} machines with {existing_cp} control planes; `up` only adds \
         machines, it does not remove or re-role them. Ask for at least {existing} machines and \
         {existing_cp} control planes, or take the lab down first"
    )]
    ShapeConflict {
        lab: String,
        existing: usize,
        existing_cp: usize,
    },

    #[error("no free /24 left in {block} for a new lab; choose a free range")]
    NoFreeSubnet { block: Ipv4Net },
}
