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
use crate::owners;
use crate::signals;
use crate::supervise;
use crate::units::{describe_size, human_size};
use crate::{CliResult, Failure, Sharing, Trusting};

/// Reads and writes larger than this show a progress bar (on a terminal).
const PROGRESS_ABOVE: u64 = 64 << 20;
/// How much is copied at a time.
const CHUNK: usize = 1 << 20;

pub fn create(
    name: &str,
    size: Option<u64>,
    file: Option<PathBuf>,
    permissions: Option<u32>,
) -> CliResult {
    let mut options = Mapping::options();
    if let Some(size) = size {
        options.size(size);
    }
    if let Some(permissions) = permissions {
        options.permissions(exactly(permissions));
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
    owner: String,
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
            owner: owners::describe(&info.owner),
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
    let header = [
        "NAME", "OS NAME", "KIND", "SIZE", "HOLDERS", "STALE", "OWNER",
    ];
    let rows: Vec<[String; 7]> = all
        .iter()
        .map(|info| {
            [
                escape(&info.name),
                escape(&info.os_name),
                info.kind.as_str().to_owned(),
                human_size(info.size),
                info.holders.map_or("?".to_owned(), |h| h.to_string()),
                if info.stale { "yes" } else { "no" }.to_owned(),
                escape(&owners::describe(&info.owner)),
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
            "name:     {}\nos name:  {}\nkind:     {}\nowner:    {}\nsize:     {}\nholders:  {}\nlifetime: {}\nstale:    {}\n",
            escape(&info.name),
            escape(&info.os_name),
            info.kind.as_str(),
            escape(&owners::describe(&info.owner)),
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

/// `permissions`, after clearing this process's umask so that what the
/// user asked for is what the object gets (as `install -m` does): a umask
/// of 022 would otherwise turn `--permissions 666` into 644 without a word.
fn exactly(permissions: u32) -> u32 {
    #[cfg(unix)]
    // SAFETY: umask only sets this process's file mode mask.
    unsafe {
        libc::umask(0);
    }
    permissions
}

/// Mapping options trusting the owners a command was told to.
fn trusting_options(trusting: &Trusting) -> shmio::MappingOptions {
    let mut options = Mapping::options();
    owners::trust(
        &mut options,
        &trusting.allow_owner,
        shmio::MappingOptions::allow_owner,
        shmio::MappingOptions::allow_any_owner,
    );
    options
}

/// Opens the mapping `name` for a command, trusting the owners it was told to.
fn open_mapping(name: &str, read_only: bool, trusting: &Trusting) -> shmio::Result<Mapping> {
    trusting_options(trusting).read_only(read_only).open(name)
}

pub fn write(name: &str, offset: u64, file: Option<PathBuf>, trusting: &Trusting) -> CliResult {
    let map = open_mapping(name, false, trusting)?;
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
            read_input(input, room, &path.display().to_string())?
        }
        _ => read_input(io::stdin().lock(), room, "stdin")?,
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

/// At most `room` + 1 bytes of `input`: enough to tell that it does not fit
/// (`/dev/zero` and other endless inputs included) without holding more.
fn read_input(input: impl Read, room: u64, what: &str) -> CliResult<Vec<u8>> {
    let mut data = Vec::new();
    input
        .take(room.saturating_add(1))
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
    let room = size.saturating_sub(offset);
    if len > room.saturating_add(1) || len == room.saturating_add(1) {
        // Input was read only up to one byte past the room left.
        return Failure::new(format!(
            "{name:?}: the input does not fit: more than the {} left at offset {offset} \
             ({} in all); nothing was written",
            crate::units::describe_size(room),
            crate::units::describe_size(size),
        ));
    }
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

pub fn read(name: &str, offset: u64, len: Option<u64>, trusting: &Trusting) -> CliResult {
    let map = open_mapping(name, true, trusting)?;
    let mut out = io::stdout().lock();
    if let Err(e) = copy_out(&map, name, offset, len, "reading", |chunk| {
        out.write_all(chunk)
    })? {
        return stdout_failed(e);
    }
    match out.flush() {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => stdout_failed(e),
    }
}

pub fn dump(name: &str, offset: u64, len: Option<u64>, trusting: &Trusting) -> CliResult {
    let map = open_mapping(name, true, trusting)?;
    let mut hexdump = Hexdump::new(io::BufWriter::new(io::stdout().lock()), offset);
    if let Err(e) = copy_out(&map, name, offset, len, "dumping", |chunk| {
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
) -> CliResult<io::Result<()>> {
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

pub fn rm(name: &str, trusting: &Trusting) -> CliResult {
    trusting_options(trusting).remove(name)?;
    Ok(ExitCode::SUCCESS)
}

pub fn gc(dry_run: bool, verbose: bool, allowed: &[owners::Allowed]) -> CliResult {
    let mut gc = registry::Gc::new();
    gc.dry_run(dry_run);
    owners::trust(
        &mut gc,
        allowed,
        registry::Gc::allow_owner,
        registry::Gc::allow_any_owner,
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

pub fn lock(name: &str, sharing: &Sharing, command: &[OsString]) -> CliResult {
    let (program, args) = command
        .split_first()
        .ok_or_else(|| Failure::new("no command to run"))?;
    // The very mutex `Mapping::open(name)?.lock()` takes.
    let mut options = NamedMutex::options();
    if let Some(permissions) = sharing.permissions {
        options.permissions(exactly(permissions));
    }
    owners::trust(
        &mut options,
        &sharing.trusting.allow_owner,
        shmio::MutexOptions::allow_owner,
        shmio::MutexOptions::allow_any_owner,
    );
    let mutex = options.create_or_open_for_mapping(name)?;
    let status = run_locked(&mutex, name, program, args);
    // `exit` runs no destructors: close the mutex first (its name goes
    // with its last holder).
    drop(mutex);
    std::process::exit(exit_code(status?));
}

/// Takes `mutex` (the lock of `name`), runs `program` with `args`, and
/// unlocks once it has exited.
fn run_locked(
    mutex: &NamedMutex,
    name: &str,
    program: &OsString,
    args: &[OsString],
) -> CliResult<std::process::ExitStatus> {
    // In slices, so that a signal while waiting ends the wait cleanly.
    let locked = signals::wait(None, |slice| match mutex.lock_timeout(slice) {
        Ok(guard) => Ok(guard),
        Err(LockError::OwnerDied(guard)) => {
            eprintln!("shmio: the previous owner of {name} died holding it");
            Ok(Some(guard))
        }
        Err(LockError::Failed(error)) => Err(error.into()),
    })?;
    let Some(guard) = locked else {
        return Err(Failure::new(format!(
            "gave up waiting for the lock of {name}"
        )));
    };
    // The command and what it leaves in its group have exited when this
    // returns (see `supervise`): only then is the lock given up.
    let status = supervise::run(program, args);
    drop(guard);
    status
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
        Err(Error::NotFound { .. }) => options
            .geometry(ChannelGeometry::default())
            .create_or_open(name),
        other => other,
    }
}

pub fn send(
    name: &str,
    message: Option<OsString>,
    timeout: Option<Duration>,
    sharing: &Sharing,
) -> CliResult {
    let channel = open_channel(name, sharing)?;
    warn_if_alone(&channel);
    let deadline = timeout.map(|timeout| Instant::now() + timeout);
    let send_one = |message: &[u8]| -> CliResult<()> {
        let sent = signals::wait(deadline, |slice| {
            match channel.send_timeout(message, slice) {
                Ok(()) => Ok(Some(())),
                Err(Error::TimedOut { .. }) => Ok(None),
                Err(error) => Err(error.into()),
            }
        })?;
        match sent {
            Some(()) => Ok(()),
            None => Err(Failure::new(format!(
                "{} (full for {:?})",
                Error::TimedOut {
                    name: name.to_owned()
                },
                timeout.unwrap_or_default()
            ))),
        }
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

pub fn recv(name: &str, count: u64, timeout: Option<Duration>, sharing: &Sharing) -> CliResult {
    let channel = open_channel(name, sharing)?;
    let deadline = timeout.map(|timeout| Instant::now() + timeout);
    let mut out = io::stdout().lock();
    let mut received = 0u64;
    while count == 0 || received < count {
        let next = signals::wait(deadline, |slice| match channel.recv_timeout(slice) {
            Ok(message) => Ok(Some(message)),
            Err(Error::TimedOut { .. }) => Ok(None),
            Err(error) => Err(error.into()),
        })?;
        let message = match next {
            Some(message) => message,
            // With no count, the time being up is the end.
            None if count == 0 && received > 0 => break,
            None => {
                let wanted = if count == 0 {
                    String::new()
                } else {
                    format!(" of {count}")
                };
                return Err(Failure::new(format!(
                    "{}: {received}{wanted} message(s) came in {:?}",
                    Error::TimedOut {
                        name: name.to_owned()
                    },
                    timeout.unwrap_or_default()
                )));
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
