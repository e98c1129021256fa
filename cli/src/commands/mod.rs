//! The commands: one module per command or family of commands, each
//! taking its arguments as `cli` defines them; and what several share.

pub mod bench;
pub mod bus;
pub mod bytes;
pub mod channel;
pub mod create;
pub mod demo;
pub mod gc;
pub mod list;
pub mod lock;
pub mod rm;
pub mod topic;
pub mod worker;

use crate::cli::Trusting;
use crate::owners;

/// `permissions`, after clearing this process's umask so that what the
/// user asked for is what the object gets (as `install -m` does): a umask
/// of 022 would otherwise turn `--permissions 666` into 644 without a word.
pub fn exactly(permissions: u32) -> u32 {
    #[cfg(unix)]
    // SAFETY: umask only sets this process's file mode mask.
    unsafe {
        libc::umask(0);
    }
    permissions
}

/// Mapping options trusting the owners a command was told to.
pub fn trusting_options(trusting: &Trusting) -> shmio::MappingOptions {
    let mut options = shmio::Mapping::options();
    owners::trust(
        &mut options,
        &trusting.allow_owner,
        shmio::MappingOptions::allow_owner,
        shmio::MappingOptions::allow_any_owner,
    );
    options
}
