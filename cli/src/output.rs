//! Standard output as every command writes it: a reader that went away
//! (`| head`) is not an error; names shown escaped, as `ls -b` does.

use std::io::{self, Write};
use std::process::ExitCode;

use crate::error::{Error, Result};

/// Prints `text` to stdout.
pub fn print(text: &str) -> Result {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => stdout_failed(e),
    }
}

/// A reader that went away (`| head`) is not an error; anything else is.
pub fn stdout_failed(error: io::Error) -> Result {
    ignore_broken_pipe(error)
        .map(|()| ExitCode::SUCCESS)
        .map_err(|e| Error::io("writing to stdout", e))
}

/// Writes one received message as a line, as it came (no escaping: the
/// bytes are the sender's, for a pipeline to read), and flushes it so that
/// a reader sees each message as it comes. `recv` and `subscribe` print
/// this way.
pub fn message_line(out: &mut impl Write, message: &[u8]) -> io::Result<()> {
    out.write_all(message)?;
    out.write_all(b"\n")?;
    out.flush()
}

/// `Ok` for a broken pipe, the error otherwise.
pub fn ignore_broken_pipe(error: io::Error) -> io::Result<()> {
    if error.kind() == io::ErrorKind::BrokenPipe {
        Ok(())
    } else {
        Err(error)
    }
}

/// A name as `ls -b` shows it: backslash escapes for control characters,
/// spaces and backslashes, so a hostile name can neither drive the terminal
/// nor fake a line or a column.
pub fn escape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ' ' => out.push_str("\\ "),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x1b' => out.push_str("\\e"),
            c if c.is_control() => {
                let mut bytes = [0u8; 4];
                for byte in c.encode_utf8(&mut bytes).bytes() {
                    out.push_str(&format!("\\{byte:03o}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}
