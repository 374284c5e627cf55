//! `k8sup init`: write a commented example inventory.
//!
//! The example is `k8sup_inventory::EXAMPLE_INVENTORY`, which documents every
//! key in place and is tested to pass `k8sup inventory check`.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

/// Arguments of `k8sup init`. Its one-line description is the `Init`
/// variant's doc in `app.rs` (which clap lets override a long description);
/// the explanation and examples are attached here as `after_help`.
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
#[command(
    after_help = "The example describes one control-plane host and two workers and shows every \
    setting with its default and a comment. Edit the names and addresses, then check it.\n\n\
    Examples:\n  \
    k8sup init > inventory.yaml\n  \
    k8sup init --out inventory.yaml && $EDITOR inventory.yaml\n  \
    k8sup inventory check -i inventory.yaml"
)]
pub struct InitArgs {
    /// Write to FILE instead of stdout. An existing file is left alone
    /// unless --force is given.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,

    /// Overwrite FILE if it exists.
    #[arg(long, requires = "out")]
    pub force: bool,
}

pub fn execute(args: InitArgs) -> anyhow::Result<ExitCode> {
    let text = k8sup_inventory::EXAMPLE_INVENTORY;
    let Some(path) = args.out else {
        std::io::stdout()
            .write_all(text.as_bytes())
            .context("writing to stdout")?;
        return Ok(ExitCode::SUCCESS);
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if args.force {
        options.create(true).truncate(true);
    } else {
        // create_new: refusing to overwrite is decided atomically by the OS.
        options.create_new(true);
    }
    let mut file = match options.open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            anyhow::bail!(
                "{} already exists; not overwriting it (use --force to replace it, or choose another --out)",
                path.display()
            )
        }
        Err(e) => return Err(e).with_context(|| format!("cannot create {}", path.display())),
    };
    file.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    eprintln!(
        "wrote {p}: edit the hosts, then run `k8sup inventory check -i {p}`",
        p = path.display()
    );
    Ok(ExitCode::SUCCESS)
}
