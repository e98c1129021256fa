//! `shmio rm NAME`: removes a name (only a shared-memory object or link,
//! and another user's only with `--allow-owner`).

use std::process::ExitCode;

use super::trusting_options;
use crate::cli::Rm;
use crate::error::Result;

pub fn run(args: Rm) -> Result {
    trusting_options(&args.trusting).remove(&args.name)?;
    Ok(ExitCode::SUCCESS)
}
