//! `shmio write`, `shmio read` and `shmio dump`: a mapping's bytes in and
//! out, in chunks, with a progress bar for long runs on a terminal.

use std::io::{self, IsTerminal, Read, Write as _};
use std::path::Path;
use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use shmio::{Error as ShmioError, Mapping};

use super::trusting_options;
use crate::cli::{Dump, Read as ReadArgs, Trusting, Write};
use crate::error::{Error, Result};
use crate::hexdump::Hexdump;
use crate::output::stdout_failed;

/// Reads and writes larger than this show a progress bar (on a terminal).
const PROGRESS_ABOVE: u64 = 64 << 20;
/// How much is copied at a time.
const CHUNK: usize = 1 << 20;

/// Opens the mapping `name` for a command, trusting the owners it was told to.
fn open_mapping(name: &str, read_only: bool, trusting: &Trusting) -> shmio::Result<Mapping> {
    trusting_options(trusting).read_only(read_only).open(name)
}

pub fn write(args: Write) -> Result {
    let Write {
        name,
        offset,
        file,
        record,
        trusting,
    } = args;
    let name = name.as_str();
    let map = open_mapping(name, false, &trusting)?;
    let room = room_at(&map, name, offset)?;
    // All the input first: nothing is written unless all of it fits.
    let data = match file.as_deref() {
        Some(path) if path != Path::new("-") => {
            if let Ok(meta) = std::fs::metadata(path) {
                if meta.is_file() && meta.len() > room {
                    return Err(does_not_fit(name, offset, meta.len(), map.len()));
                }
            }
            let input = std::fs::File::open(path)
                .map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
            read_input(input, room, &path.display().to_string())?
        }
        _ => read_input(io::stdin().lock(), room, "stdin")?,
    };
    if record {
        let what = match file.as_deref() {
            Some(path) if path != Path::new("-") => path.display().to_string(),
            _ => "stdin".to_owned(),
        };
        let value: serde_json::Value =
            serde_json::from_slice(&data).map_err(|source| Error::NotJson { what, source })?;
        map.write_record_at(offset, &value)
            .map_err(|source| Error::NotWritten {
                name: name.to_owned(),
                source,
            })?;
        return Ok(ExitCode::SUCCESS);
    }
    if data.len() as u64 > room {
        return Err(does_not_fit(name, offset, data.len() as u64, map.len()));
    }
    let bar = progress(data.len() as u64, "writing");
    for (index, chunk) in data.chunks(CHUNK).enumerate() {
        map.write_at(offset + (index * CHUNK) as u64, chunk)?;
        if let Some(bar) = &bar {
            bar.inc(chunk.len() as u64);
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(ExitCode::SUCCESS)
}

/// At most `room` + 1 bytes of `input`: enough to tell that it does not fit
/// (`/dev/zero` and other endless inputs included) without holding more.
fn read_input(input: impl Read, room: u64, what: &str) -> Result<Vec<u8>> {
    let mut data = Vec::new();
    input
        .take(room.saturating_add(1))
        .read_to_end(&mut data)
        .map_err(|e| Error::io(format!("reading {what}"), e))?;
    Ok(data)
}

/// The bytes from `offset` to the end; an error if `offset` is past it.
fn room_at(map: &Mapping, name: &str, offset: u64) -> Result<u64> {
    map.len()
        .checked_sub(offset)
        .ok_or_else(|| Error::PastTheEnd {
            name: name.to_owned(),
            offset,
            size: map.len(),
        })
}

fn does_not_fit(name: &str, offset: u64, len: u64, size: u64) -> Error {
    let room = size.saturating_sub(offset);
    if len > room.saturating_add(1) || len == room.saturating_add(1) {
        // Input was read only up to one byte past the room left.
        return Error::DoesNotFit {
            name: name.to_owned(),
            offset,
            room,
            size,
        };
    }
    Error::NotWritten {
        name: name.to_owned(),
        source: ShmioError::OutOfBounds { offset, len, size },
    }
}

/// The span a read or dump covers, checked against the mapping.
fn span(map: &Mapping, name: &str, offset: u64, len: Option<u64>) -> Result<u64> {
    let room = room_at(map, name, offset)?;
    match len {
        None => Ok(room),
        Some(len) if len <= room => Ok(len),
        Some(len) => Err(Error::OutOfRange {
            name: name.to_owned(),
            source: ShmioError::UnexpectedEof {
                offset,
                len,
                size: map.len(),
            },
        }),
    }
}

pub fn read(args: ReadArgs) -> Result {
    let ReadArgs {
        name,
        offset,
        len,
        record,
        trusting,
    } = args;
    let map = open_mapping(&name, true, &trusting)?;
    let mut out = io::stdout().lock();
    if record {
        let value: serde_json::Value = map
            .read_record_at(offset)
            .map_err(|source| Error::OutOfRange {
                name: name.clone(),
                source,
            })?
            .ok_or(Error::NoRecord { name, offset })?;
        return match writeln!(out, "{value}").and_then(|()| out.flush()) {
            Ok(()) => Ok(ExitCode::SUCCESS),
            Err(e) => stdout_failed(e),
        };
    }
    if let Err(e) = copy_out(&map, &name, offset, len, "reading", |chunk| {
        out.write_all(chunk)
    })? {
        return stdout_failed(e);
    }
    match out.flush() {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => stdout_failed(e),
    }
}

pub fn dump(args: Dump) -> Result {
    let Dump {
        name,
        offset,
        len,
        trusting,
    } = args;
    let map = open_mapping(&name, true, &trusting)?;
    let mut hexdump = Hexdump::new(io::BufWriter::new(io::stdout().lock()), offset);
    if let Err(e) = copy_out(&map, &name, offset, len, "dumping", |chunk| {
        hexdump.feed(chunk)
    })? {
        return stdout_failed(e);
    }
    match hexdump.finish() {
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(e) => stdout_failed(e),
    }
}

/// Hands the bytes of `map` (the mapping `name`) from `offset` (`len` of
/// them, or to the end) to `sink` in chunks, with a progress bar saying
/// `verb` for long runs. The outer error is the mapping's; the inner one,
/// `sink`'s (writing standard output), which stops the copy.
fn copy_out(
    map: &Mapping,
    name: &str,
    offset: u64,
    len: Option<u64>,
    verb: &str,
    mut sink: impl FnMut(&[u8]) -> io::Result<()>,
) -> Result<io::Result<()>> {
    let len = span(map, name, offset, len)?;
    let bar = progress(len, verb);
    let mut buf = vec![0u8; CHUNK.min(len as usize)];
    let mut done = 0u64;
    while done < len {
        let chunk = &mut buf[..(len - done).min(CHUNK as u64) as usize];
        map.read_at(offset + done, chunk)?;
        if let Err(e) = sink(chunk) {
            return Ok(Err(e));
        }
        done += chunk.len() as u64;
        if let Some(bar) = &bar {
            bar.inc(chunk.len() as u64);
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(Ok(()))
}

/// A byte progress bar on stderr, for more than [`PROGRESS_ABOVE`] bytes
/// and only when stderr is a terminal.
fn progress(total: u64, verb: &str) -> Option<ProgressBar> {
    if total <= PROGRESS_ABOVE || !io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec}, {eta} left",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    bar.set_message(verb.to_owned());
    Some(bar)
}
