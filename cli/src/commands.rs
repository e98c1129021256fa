//! The commands that work on names: create, ls, stat, write, read, dump,
//! rm, gc, lock, send, recv.

use std::ffi::OsString;
use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use shmio::registry::{self, NameInfo};
use shmio::{Channel, ChannelGeometry, Error, LockError, Mapping, NamedMutex};

use crate::hexdump::Hexdump;
use crate::units::{describe_size, human_size};
use crate::{CliResult, Failure};

/// Reads and writes larger than this show a progress bar (on a terminal).
const PROGRESS_ABOVE: u64 = 64 << 20;
/// How much is copied at a time.
const CHUNK: usize = 1 << 20;

pub fn create(name: &str, size: Option<u64>, file: Option<PathBuf>) -> CliResult {
    let mut options = Mapping::options();
    if let Some(size) = size {
        options.size(size);
    }
    if let Some(file) = &file {
        options.file(file);
    }
    match options.clone().persistent(true).create(name) {
        Ok(map) => {
            print_created(&map, file.as_deref())?;
            Ok(ExitCode::SUCCESS)
        }
        // Windows (a section lives while a handle does), and a file-backed
        // name on Linux: the name cannot outlive its holders, so hold it.
        Err(Error::Unsupported { what }) => {
            let map = options.create(name)?;
            print_created(&map, file.as_deref())?;
            eprintln!(
                "shmio: {what} is unsupported, so this command holds {name:?} open \
                 until Ctrl-C or the end of its input"
            );
            let mut sink = Vec::new();
            let _ = io::stdin().lock().read_to_end(&mut sink);
            drop(map);
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => Err(error.into()),
    }
}

fn print_created(map: &Mapping, file: Option<&Path>) -> CliResult<()> {
    let mut out = io::stdout().lock();
    let mut text = format!(
        "name:    {}\nos name: {}\nsize:    {}\n",
        map.name().unwrap_or_default(),
        map.os_name().unwrap_or_default(),
        describe_size(map.len())
    );
    if let Some(file) = file {
        text.push_str(&format!("file:    {}\n", file.display()));
    }
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .or_else(ignore_broken_pipe)
        .map_err(|e| Failure::new(format!("writing to stdout: {e}")))
}

/// A named object as `ls --json` and `stat --json` print it.
#[derive(Serialize)]
struct Listed<'a> {
    name: &'a str,
    os_name: &'a str,
    kind: &'static str,
    size: u64,
    holders: Option<u32>,
    follows_holders: bool,
    stale: bool,
}

impl<'a> From<&'a NameInfo> for Listed<'a> {
    fn from(info: &'a NameInfo) -> Self {
        Listed {
            name: &info.name,
            os_name: &info.os_name,
            kind: info.kind.as_str(),
            size: info.size,
            holders: info.holders,
            follows_holders: info.follows_holders,
            stale: info.stale,
        }
    }
}

pub fn ls(json: bool) -> CliResult {
    let all = registry::list()?;
    let text = if json {
        let listed: Vec<Listed> = all.iter().map(Listed::from).collect();
        serde_json::to_string_pretty(&listed).expect("plain data serializes") + "\n"
    } else if all.is_empty() {
        "no named objects\n".to_owned()
    } else {
        table(&all)
    };
    print(&text)
}

fn table(all: &[NameInfo]) -> String {
    let header = ["NAME", "OS NAME", "KIND", "SIZE", "HOLDERS", "STALE"];
    let rows: Vec<[String; 6]> = all
        .iter()
        .map(|info| {
            [
                info.name.clone(),
                info.os_name.clone(),
                info.kind.as_str().to_owned(),
                human_size(info.size),
                info.holders.map_or("?".to_owned(), |h| h.to_string()),
                if info.stale { "yes" } else { "no" }.to_owned(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    let mut line = |cells: &[&str]| {
        let mut out = String::new();
        for (index, (cell, width)) in cells.iter().zip(widths).enumerate() {
            // Numbers right-aligned, words left-aligned; no trailing blanks.
            let right = matches!(index, 3 | 4);
            let last = index + 1 == cells.len();
            let pad = width.saturating_sub(cell.chars().count());
            if right {
                out.push_str(&" ".repeat(pad));
                out.push_str(cell);
            } else {
                out.push_str(cell);
                if !last {
                    out.push_str(&" ".repeat(pad));
                }
            }
            if !last {
                out.push_str("  ");
            }
        }
        text.push_str(out.trim_end());
        text.push('\n');
    };
    line(&header);
    for row in &rows {
        line(&row.each_ref().map(String::as_str));
    }
    text
}

pub fn stat(name: &str, json: bool) -> CliResult {
    let info = registry::stat(name)?;
    let text = if json {
        serde_json::to_string_pretty(&Listed::from(&info)).expect("plain data serializes") + "\n"
    } else {
        format!(
            "name:     {}\nos name:  {}\nkind:     {}\nsize:     {}\nholders:  {}\nlifetime: {}\nstale:    {}\n",
            info.name,
            info.os_name,
            info.kind.as_str(),
            describe_size(info.size),
            info.holders.map_or("unknown".to_owned(), |h| h.to_string()),
            if info.follows_holders {
                "removed with its last holder"
            } else {
                "persistent (until `shmio rm`)"
            },
            if info.stale {
                "yes: every holder died; `shmio gc` or the next open removes it"
            } else {
                "no"
            },
        )
    };
    print(&text)
}

pub fn write(name: &str, offset: u64, file: Option<PathBuf>) -> CliResult {
    let map = Mapping::open(name)?;
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
                .map_err(|e| Failure::new(format!("cannot open {}: {e}", path.display())))?;
            read_input(input, &path.display().to_string())?
        }
        _ => read_input(io::stdin().lock(), "stdin")?,
    };
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

fn read_input(mut input: impl Read, what: &str) -> CliResult<Vec<u8>> {
    let mut data = Vec::new();
    input
        .read_to_end(&mut data)
        .map_err(|e| Failure::new(format!("reading {what}: {e}")))?;
    Ok(data)
}

/// The bytes from `offset` to the end; an error if `offset` is past it.
fn room_at(map: &Mapping, name: &str, offset: u64) -> CliResult<u64> {
    map.len().checked_sub(offset).ok_or_else(|| {
        Failure::new(format!(
            "offset {offset} is past the end of {name:?} ({})",
            describe_size(map.len())
        ))
    })
}

fn does_not_fit(name: &str, offset: u64, len: u64, size: u64) -> Failure {
    Failure::new(format!(
        "{name:?}: {}; nothing was written",
        Error::OutOfBounds { offset, len, size }
    ))
}

/// The span a read or dump covers, checked against the mapping.
fn span(map: &Mapping, name: &str, offset: u64, len: Option<u64>) -> CliResult<u64> {
    let room = room_at(map, name, offset)?;
    match len {
        None => Ok(room),
        Some(len) if len <= room => Ok(len),
        Some(len) => Err(Failure::new(format!(
            "{name:?}: {}",
            Error::UnexpectedEof {
                offset,
                len,
                size: map.len()
            }
        ))),
    }
}

pub fn read(name: &str, offset: u64, len: Option<u64>) -> CliResult {
    let mut out = io::stdout().lock();
    if let Err(e) = copy_out(name, offset, len, "reading", |chunk| out.write_all(chunk))? {
        return stdout_failed(e);
    }
    match out.flush() {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => stdout_failed(e),
    }
}

pub fn dump(name: &str, offset: u64, len: Option<u64>) -> CliResult {
    let mut hexdump = Hexdump::new(io::BufWriter::new(io::stdout().lock()), offset);
    if let Err(e) = copy_out(name, offset, len, "dumping", |chunk| hexdump.feed(chunk))? {
        return stdout_failed(e);
    }
    match hexdump.finish() {
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(e) => stdout_failed(e),
    }
}

/// Hands the bytes of the mapping `name` from `offset` (`len` of them, or
/// to the end) to `sink` in chunks, with a progress bar saying `verb` for
/// long runs. The outer error is the mapping's; the inner one, `sink`'s
/// (writing standard output), which stops the copy.
fn copy_out(
    name: &str,
    offset: u64,
    len: Option<u64>,
    verb: &str,
    mut sink: impl FnMut(&[u8]) -> io::Result<()>,
) -> CliResult<io::Result<()>> {
    let map = Mapping::options().read_only(true).open(name)?;
    let len = span(&map, name, offset, len)?;
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

pub fn rm(name: &str) -> CliResult {
    Mapping::remove(name)?;
    Ok(ExitCode::SUCCESS)
}

pub fn gc(dry_run: bool) -> CliResult {
    let report = registry::gc(dry_run)?;
    let removed = report.removed;
    let verb = if dry_run { "would remove" } else { "removed" };
    let mut text = String::new();
    for info in &removed {
        text.push_str(&format!(
            "{verb} {} ({}, {}, {})\n",
            info.name,
            info.kind.as_str(),
            human_size(info.size),
            info.os_name
        ));
    }
    if removed.is_empty() {
        text.push_str("no stale names\n");
    }
    print(&text)
}

pub fn lock(name: &str, command: &[OsString]) -> CliResult {
    let (program, args) = command
        .split_first()
        .ok_or_else(|| Failure::new("no command to run"))?;
    // The very mutex `Mapping::open(name)?.lock()` takes.
    let mutex = NamedMutex::options().create_or_open_for_mapping(name)?;
    let guard = match mutex.lock() {
        Ok(guard) => guard,
        Err(LockError::OwnerDied(guard)) => {
            eprintln!("shmio: the previous owner of {name} died holding it");
            guard
        }
        Err(LockError::Failed(error)) => return Err(error.into()),
    };
    let mut child = match std::process::Command::new(program).args(args).spawn() {
        Ok(child) => child,
        Err(error) => {
            let code = if error.kind() == io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            return Err(Failure {
                message: format!("cannot run {}: {error}", program.to_string_lossy()),
                code,
            });
        }
    };
    let status = {
        let _shielded = Interrupts::ignore();
        child.wait()
    }
    .map_err(|e| Failure::new(format!("waiting for {}: {e}", program.to_string_lossy())))?;
    drop(guard);
    drop(mutex);
    std::process::exit(exit_code(status));
}

/// The exit code a shell would give: the command's, or 128 + its signal.
fn exit_code(status: std::process::ExitStatus) -> i32 {
    if let Some(code) = status.code() {
        return code;
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return 128 + signal;
        }
    }
    1
}

/// While it lives, Ctrl-C and Ctrl-\ reach only the child (which gets them
/// from the terminal anyway), so this process outlives it and unlocks.
struct Interrupts {
    #[cfg(unix)]
    previous: [libc::sighandler_t; 2],
}

#[cfg(unix)]
const SHIELDED: [libc::c_int; 2] = [libc::SIGINT, libc::SIGQUIT];

impl Interrupts {
    fn ignore() -> Interrupts {
        #[cfg(unix)]
        {
            // SAFETY: SIG_IGN is a valid disposition for these signals, and
            // nothing else in this process installs handlers for them.
            let previous = SHIELDED.map(|signal| unsafe { libc::signal(signal, libc::SIG_IGN) });
            Interrupts { previous }
        }
        #[cfg(not(unix))]
        Interrupts {}
    }
}

impl Drop for Interrupts {
    fn drop(&mut self) {
        #[cfg(unix)]
        for (signal, previous) in SHIELDED.into_iter().zip(self.previous) {
            if previous != libc::SIG_ERR {
                // SAFETY: restores the disposition `signal` returned above.
                unsafe { libc::signal(signal, previous) };
            }
        }
    }
}

/// Opens the channel, creating it with the default geometry if there is none.
fn open_channel(name: &str) -> shmio::Result<Channel> {
    match Channel::open(name) {
        Err(Error::NotFound { .. }) => Channel::create_or_open(name, ChannelGeometry::default()),
        other => other,
    }
}

pub fn send(name: &str, message: Option<OsString>, timeout: Option<Duration>) -> CliResult {
    let channel = open_channel(name)?;
    warn_if_alone(&channel);
    let deadline = timeout.map(|timeout| Instant::now() + timeout);
    let send_one = |message: &[u8]| -> CliResult<()> {
        match deadline {
            None => channel.send(message)?,
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                channel
                    .send_timeout(message, left)
                    .map_err(|e| Failure::new(format!("{e} (full for {:?})", timeout.unwrap())))?
            }
        }
        Ok(())
    };
    match message {
        Some(message) => send_one(&os_bytes(message))?,
        None => {
            for line in io::stdin().lock().split(b'\n') {
                let mut line = line.map_err(|e| Failure::new(format!("reading stdin: {e}")))?;
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                send_one(&line)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A channel lasts only while a process holds it: say so when this one is
/// the only holder as it starts, since what it sends may go when it exits.
fn warn_if_alone(channel: &Channel) {
    let alone = match registry::stat(channel.name()) {
        Ok(info) => info.holders == Some(1) && info.follows_holders,
        // No registry here (Windows, macOS): only the creator can tell.
        Err(Error::Unsupported { .. }) => !channel.existed(),
        Err(_) => false,
    };
    if alone {
        eprintln!(
            "shmio: warning: no other process holds the channel {name}: unless one opens it \
             before this command exits, what is sent goes away with it (start `shmio recv \
             {name}` first)",
            name = channel.name()
        );
    }
}

fn os_bytes(text: OsString) -> Vec<u8> {
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

pub fn recv(name: &str, count: u64, timeout: Option<Duration>) -> CliResult {
    let channel = open_channel(name)?;
    let deadline = timeout.map(|timeout| Instant::now() + timeout);
    let mut out = io::stdout().lock();
    let mut received = 0u64;
    while count == 0 || received < count {
        let message = match deadline {
            None => channel.recv()?,
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                match channel.recv_timeout(left) {
                    Ok(message) => message,
                    // With no count, the time being up is the end.
                    Err(Error::TimedOut { .. }) if count == 0 && received > 0 => break,
                    Err(error @ Error::TimedOut { .. }) => {
                        let wanted = if count == 0 {
                            String::new()
                        } else {
                            format!(" of {count}")
                        };
                        return Err(Failure::new(format!(
                            "{error}: {received}{wanted} message(s) came in {:?}",
                            timeout.unwrap()
                        )));
                    }
                    Err(error) => return Err(error.into()),
                }
            }
        };
        let written = out
            .write_all(&message)
            .and_then(|()| out.write_all(b"\n"))
            .and_then(|()| out.flush());
        if let Err(e) = written {
            return stdout_failed(e);
        }
        received += 1;
    }
    Ok(ExitCode::SUCCESS)
}

fn print(text: &str) -> CliResult {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => stdout_failed(e),
    }
}

/// A reader that went away (`| head`) is not an error; anything else is.
fn stdout_failed(error: io::Error) -> CliResult {
    ignore_broken_pipe(error)
        .map(|()| ExitCode::SUCCESS)
        .map_err(|e| Failure::new(format!("writing to stdout: {e}")))
}

fn ignore_broken_pipe(error: io::Error) -> io::Result<()> {
    if error.kind() == io::ErrorKind::BrokenPipe {
        Ok(())
    } else {
        Err(error)
    }
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
