//! The inventories shipped with k8sup (inventories/*.yaml and the `k8sup
//! init` example) must always pass validation without warnings.

use std::path::{Path, PathBuf};

use k8sup_inventory::{EXAMPLE_INVENTORY, Role, load, parse_str};

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../inventories")
}

#[test]
fn every_shipped_inventory_is_valid() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(examples_dir())
        .expect("inventories/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 3,
        "minimal, ha and bastion at least: {files:?}"
    );
    for f in &files {
        match load(f) {
            Ok(l) => assert!(l.warnings.is_empty(), "{}: {:?}", f.display(), l.warnings),
            Err(r) => panic!("{r}"),
        }
    }
}

#[test]
fn shipped_inventories_have_the_documented_shapes() {
    let count = |name: &str| {
        let inv = load(&examples_dir().join(name)).unwrap().inventory;
        (inv.control_planes().count(), inv.workers().count())
    };
    assert_eq!(count("minimal.yaml").0, 1);
    assert_eq!(count("ha.yaml"), (3, 2));
    let bastion = load(&examples_dir().join("bastion.yaml"))
        .unwrap()
        .inventory;
    let cp = bastion
        .hosts
        .iter()
        .find(|h| h.role == Role::ControlPlane)
        .unwrap();
    let e = bastion.effective_ssh(cp);
    assert!(e.proxy_jump.is_some(), "reached through the bastion");
    assert!(e.sudo && e.user != "root", "non-root with sudo");
}

#[test]
fn init_example_is_valid() {
    let l = parse_str(EXAMPLE_INVENTORY, Path::new("inventory.yaml"), &|_| None)
        .unwrap_or_else(|r| panic!("{r}"));
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    assert_eq!(l.inventory.hosts.len(), 3);
}
