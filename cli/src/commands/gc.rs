//! `shmio gc`: removes the caller's stale names (and, with `--allow-owner`,
//! those users'), listing each; `--verbose` lists what was kept and why.

use shmio::inventory;

use crate::cli::Gc;
use crate::error::Result;
use crate::output::{escape, print};
use crate::owners;
use crate::units::human_size;

pub fn run(args: Gc) -> Result {
    let Gc {
        dry_run,
        verbose,
        allow_owner,
    } = args;
    let mut gc = inventory::Gc::new();
    gc.dry_run(dry_run);
    owners::trust(
        &mut gc,
        &allow_owner,
        inventory::Gc::allow_owner,
        inventory::Gc::allow_any_owner,
    );
    let report = gc.run()?;
    let verb = if dry_run { "would remove" } else { "removed" };
    let mut text = String::new();
    for info in &report.removed {
        text.push_str(&format!(
            "{verb} {} ({}, {}, {})\n",
            escape(&info.name),
            info.kind.as_str(),
            human_size(info.size),
            escape(&info.os_name)
        ));
    }
    if report.removed.is_empty() {
        text.push_str("no stale names\n");
    }
    if verbose {
        for skipped in &report.skipped {
            text.push_str(&format!(
                "kept {}: {}\n",
                escape(&skipped.os_name),
                skipped.reason
            ));
        }
    }
    print(&text)
}
