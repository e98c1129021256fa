//! `shmio send CHANNEL` and `shmio recv CHANNEL`: messages on a channel
//! (created with the default geometry if there is none), waiting in slices
//! so that a terminating signal ends the wait cleanly.

use std::ffi::OsString;
use std::io::{self, BufRead};
use std::process::ExitCode;
use std::time::Instant;

use shmio::inventory;
use shmio::{Channel, ChannelGeometry, Error as ShmioError};

use super::exactly;
use crate::cli::{Recv, Send, Sharing};
use crate::error::{Error, Result};
use crate::output::{message_line, stdout_failed};
use crate::{owners, signals};

/// Opens the channel, creating it with the default geometry if there is none.
fn open_channel(name: &str, sharing: &Sharing) -> shmio::Result<Channel> {
    let mut options = Channel::options();
    if let Some(permissions) = sharing.permissions {
        options.permissions(exactly(permissions));
    }
    owners::trust(
        &mut options,
        &sharing.trusting.allow_owner,
        shmio::ChannelOptions::allow_owner,
        shmio::ChannelOptions::allow_any_owner,
    );
    match options.open(name) {
        Err(ShmioError::NotFound { .. }) => options
            .geometry(ChannelGeometry::default())
            .create_or_open(name),
        other => other,
    }
}

pub fn send(args: Send) -> Result {
    let Send {
        channel: name,
        message,
        timeout,
        sharing,
    } = args;
    let channel = open_channel(&name, &sharing)?;
    warn_if_alone(&channel);
    let deadline = timeout.map(|timeout| Instant::now() + timeout);
    let send_one = |message: &[u8]| -> Result<()> {
        let sent = signals::wait(deadline, |slice| {
            match channel.send_timeout(message, slice) {
                Ok(()) => Ok(Some(())),
                Err(ShmioError::TimedOut { .. }) => Ok(None),
                Err(error) => Err(error.into()),
            }
        })?;
        match sent {
            Some(()) => Ok(()),
            None => Err(Error::Full {
                source: ShmioError::TimedOut { name: name.clone() },
                waited: timeout.unwrap_or_default(),
            }),
        }
    };
    match message {
        Some(message) => send_one(&os_bytes(message))?,
        None => each_stdin_line(send_one)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Hands each line of stdin to `send`, without its line ending (`\n` or
/// `\r\n`): one message each, as `send` and `publish` take them.
pub(super) fn each_stdin_line(mut send: impl FnMut(&[u8]) -> Result<()>) -> Result<()> {
    for line in io::stdin().lock().split(b'\n') {
        let mut line = line.map_err(|e| Error::io("reading stdin", e))?;
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        send(&line)?;
    }
    Ok(())
}

/// Whether this process is the only holder of the object `name`, which
/// goes with its last holder (`existed`: whether this process opened it
/// rather than made it).
pub(super) fn is_only_holder(name: &str, existed: bool) -> bool {
    match inventory::stat(name) {
        Ok(info) => info.holders == Some(1) && info.follows_holders,
        // No registry here (Windows, macOS): only the creator can tell.
        Err(ShmioError::Unsupported { .. }) => !existed,
        Err(_) => false,
    }
}

/// A channel lasts only while a process holds it: say so when this one is
/// the only holder as it starts, since what it sends may go when it exits.
fn warn_if_alone(channel: &Channel) {
    if is_only_holder(channel.name(), channel.existed()) {
        eprintln!(
            "shmio: warning: no other process holds the channel {name}: unless one opens it \
             before this command exits, what is sent goes away with it (start `shmio recv \
             {name}` first)",
            name = channel.name()
        );
    }
}

pub(super) fn os_bytes(text: OsString) -> Vec<u8> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStringExt;
        text.into_vec()
    }
    #[cfg(not(unix))]
    {
        text.to_string_lossy().into_owned().into_bytes()
    }
}

/// `recv` or `subscribe` ran out of `timeout` with `received` of the
/// `count` messages asked for (0: any number).
pub(super) fn too_few(
    name: String,
    received: u64,
    count: u64,
    timeout: Option<std::time::Duration>,
) -> Error {
    let wanted = if count == 0 {
        String::new()
    } else {
        format!(" of {count}")
    };
    Error::TooFew {
        source: ShmioError::TimedOut { name },
        received,
        wanted,
        waited: timeout.unwrap_or_default(),
    }
}

pub fn recv(args: Recv) -> Result {
    let Recv {
        channel: name,
        count,
        timeout,
        sharing,
    } = args;
    let channel = open_channel(&name, &sharing)?;
    let deadline = timeout.map(|timeout| Instant::now() + timeout);
    let mut out = io::stdout().lock();
    let mut received = 0u64;
    // Asked for neither a count nor a time, `recv` reads the stream
    // until every sender has gone; asked for either, it waits on for
    // them (a later sender may come).
    let to_the_end = count == 0 && timeout.is_none();
    while count == 0 || received < count {
        let next = signals::wait(deadline, |slice| match channel.recv_timeout(slice) {
            Ok(message) => Ok(Some(Some(message))),
            Err(ShmioError::TimedOut { .. }) => Ok(None),
            Err(ShmioError::Disconnected { .. }) if to_the_end => Ok(Some(None)),
            Err(ShmioError::Disconnected { .. }) => Ok(None),
            Err(error) => Err(error.into()),
        })?;
        let message = match next {
            Some(Some(message)) => message,
            Some(None) => break,
            // With no count, the time being up is the end.
            None if count == 0 && received > 0 => break,
            None => return Err(too_few(name, received, count, timeout)),
        };
        if let Err(e) = message_line(&mut out, &message) {
            return stdout_failed(e);
        }
        received += 1;
    }
    Ok(ExitCode::SUCCESS)
}
