//! `shmio`: named shared memory from the command line.
//!
//! Every command is a thin layer over the `shmio` library: `create`, `ls`,
//! `stat`, `write`, `read`, `dump`, `rm` and `gc` for named mappings; `lock`
//! runs a command under a named mutex; `send` and `recv` use a channel;
//! `bench` measures shmio against its peers and `demo` shows the library's
//! main job with real worker processes. Errors are one line on stderr
//! (`shmio: error: ...`) and exit 1; usage errors exit 2.

mod bench;
mod commands;
mod demo;
mod hexdump;
mod owners;
mod proc;
mod signals;
mod supervise;
mod units;
mod worker;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "shmio",
    version,
    about = "Named shared memory between processes: mappings, locks, channels",
    after_help = "SIZE: 4096, 64K, 64KiB, 1M, 1MiB, 1G, 1GiB (K, M, G are powers of 1024).\n\
                  DURATION: 250us, 500ms, 2s."
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

/// Whose existing objects a command may open, besides the caller's own.
#[derive(Args, Clone, Default)]
pub struct Trusting {
    /// Also open an existing object owned by USER (a user name, a uid, a
    /// Windows SID, or `any`); another user's object is refused otherwise.
    /// Repeatable
    #[arg(long = "allow-owner", value_name = "USER", value_parser = owners::parse)]
    pub allow_owner: Vec<owners::Allowed>,
}

/// Who may use an object a command creates, and whose it may open.
#[derive(Args, Clone, Default)]
pub struct Sharing {
    /// Permission bits of an object this command creates, in octal, exactly
    /// (e.g. 660 for the group, 666 for every user) [default: 600, only you]
    #[arg(long, value_name = "MODE", value_parser = units::parse_mode)]
    pub permissions: Option<u32>,
    #[command(flatten)]
    pub trusting: Trusting,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a named mapping that stays until `shmio rm` (on Windows, held
    /// open until Ctrl-C or the end of input: a section cannot outlive its handles)
    Create {
        /// The name to create
        name: String,
        /// The size [default: 64 MiB, or the backing file's size]
        #[arg(long, value_name = "SIZE", value_parser = units::parse_size)]
        size: Option<u64>,
        /// Back the mapping with this file
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
        /// Permission bits, in octal, exactly (e.g. 660 for the group, 666
        /// for every user) [default: 600, only you]
        #[arg(long, value_name = "MODE", value_parser = units::parse_mode)]
        permissions: Option<u32>,
    },
    /// List named objects: name, OS name, kind, size, holders, stale (Linux)
    Ls {
        /// Print a JSON array
        #[arg(long)]
        json: bool,
    },
    /// Show one named object in detail (Linux)
    Stat {
        /// The name of a mapping, channel or mutex
        name: String,
        /// Print a JSON object
        #[arg(long)]
        json: bool,
    },
    /// Write a file (or stdin) into a mapping; nothing is written if it does not fit
    Write {
        /// The mapping
        name: String,
        /// Where to start writing
        #[arg(long, value_name = "N", default_value = "0", value_parser = units::parse_bytes)]
        offset: u64,
        /// What to write [default: stdin; `-` is stdin too]
        file: Option<PathBuf>,
        #[command(flatten)]
        trusting: Trusting,
    },
    /// Copy bytes of a mapping to stdout
    Read {
        /// The mapping
        name: String,
        /// Where to start reading
        #[arg(long, value_name = "N", default_value = "0", value_parser = units::parse_bytes)]
        offset: u64,
        /// How many bytes [default: to the end]
        #[arg(long, value_name = "N", value_parser = units::parse_bytes)]
        len: Option<u64>,
        #[command(flatten)]
        trusting: Trusting,
    },
    /// Show bytes of a mapping in hex and ASCII, as `hexdump -C` does
    Dump {
        /// The mapping
        name: String,
        /// Where to start
        #[arg(long, value_name = "N", default_value = "0", value_parser = units::parse_bytes)]
        offset: u64,
        /// How many bytes [default: to the end]
        #[arg(long, value_name = "N", value_parser = units::parse_bytes)]
        len: Option<u64>,
        #[command(flatten)]
        trusting: Trusting,
    },
    /// Remove a name (processes holding the mapping keep their memory)
    Rm {
        /// The name to remove
        name: String,
        #[command(flatten)]
        trusting: Trusting,
    },
    /// Remove your stale names: shmio's objects whose holders all died, but
    /// for the mutex a dead lock holder left to a mapping still held (Linux).
    /// Nothing else is removed: not other users' entries, not other
    /// programs' files or links, not persistent names
    Gc {
        /// Only list what would be removed (every check is made)
        #[arg(long)]
        dry_run: bool,
        /// Also list every entry kept, and why
        #[arg(long, short)]
        verbose: bool,
        /// Also remove USER's stale objects (a user name, a uid, or `any`:
        /// for an administrator); repeatable
        #[arg(long = "allow-owner", value_name = "USER", value_parser = owners::parse)]
        allow_owner: Vec<owners::Allowed>,
    },
    /// Run a command while holding the mutex of the mapping NAME (the one
    /// `map.lock()` takes, whether or not the mapping exists); exit with its
    /// exit code. The command never outlives the lock
    Lock {
        /// The mapping whose mutex to hold
        name: String,
        #[command(flatten)]
        sharing: Sharing,
        /// The command and its arguments, after `--`
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<OsString>,
    },
    /// Send a message on a channel (created if there is none), or each line of stdin
    Send {
        /// The channel
        channel: String,
        /// The message [default: one message per line of stdin]
        message: Option<OsString>,
        /// Give up if the channel stays full this long
        #[arg(long, value_name = "DURATION", value_parser = units::parse_duration)]
        timeout: Option<Duration>,
        #[command(flatten)]
        sharing: Sharing,
    },
    /// Receive messages from a channel (created if there is none), one line each
    Recv {
        /// The channel
        channel: String,
        /// How many messages to wait for (0: until interrupted, or the --timeout)
        #[arg(long, value_name = "N", default_value_t = 1)]
        count: u64,
        /// Give up (exit 1) if they have not all come in this time (with --count 0:
        /// stop then, exit 1 only if nothing came)
        #[arg(long, value_name = "DURATION", value_parser = units::parse_duration)]
        timeout: Option<Duration>,
        #[command(flatten)]
        sharing: Sharing,
    },
    /// Measure shmio against its peers: round trips and copy bandwidth
    Bench {
        /// About a second instead of about ten (noisier)
        #[arg(long)]
        quick: bool,
    },
    /// Show the library's main job with real worker processes, step by step
    Demo,
    /// A worker process of `bench`, `demo` or the tests
    #[command(name = "__worker", hide = true)]
    Worker {
        role: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

/// What went wrong, and the exit code it gives.
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub code: u8,
}

impl Failure {
    pub fn new(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            code: 1,
        }
    }
}

impl From<shmio::Error> for Failure {
    fn from(error: shmio::Error) -> Failure {
        Failure::new(error.to_string())
    }
}

impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure::new(message)
    }
}

pub type CliResult<T = ExitCode> = Result<T, Failure>;

fn main() -> ExitCode {
    // `shmio __guard`, hidden: the guard every `shmio lock` starts (see
    // `supervise`), which need not wait for the parser.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|arg| arg == "__guard")
    {
        return supervise::guard().unwrap_or(ExitCode::FAILURE);
    }
    let cli = Cli::parse();
    // Commands that wait end cleanly on SIGTERM, SIGINT or SIGHUP, dropping
    // what they hold (see `signals`).
    if matches!(
        cli.command,
        Cmd::Lock { .. } | Cmd::Send { .. } | Cmd::Recv { .. }
    ) {
        if let Err(failure) = signals::install() {
            eprintln!("shmio: error: {}", failure.message);
            return ExitCode::from(failure.code);
        }
    }
    let outcome = match cli.command {
        Cmd::Create {
            name,
            size,
            file,
            permissions,
        } => commands::create(&name, size, file, permissions),
        Cmd::Ls { json } => commands::ls(json),
        Cmd::Stat { name, json } => commands::stat(&name, json),
        Cmd::Write {
            name,
            offset,
            file,
            trusting,
        } => commands::write(&name, offset, file, &trusting),
        Cmd::Read {
            name,
            offset,
            len,
            trusting,
        } => commands::read(&name, offset, len, &trusting),
        Cmd::Dump {
            name,
            offset,
            len,
            trusting,
        } => commands::dump(&name, offset, len, &trusting),
        Cmd::Rm { name, trusting } => commands::rm(&name, &trusting),
        Cmd::Gc {
            dry_run,
            verbose,
            allow_owner,
        } => commands::gc(dry_run, verbose, &allow_owner),
        Cmd::Lock {
            name,
            sharing,
            command,
        } => commands::lock(&name, &sharing, &command),
        Cmd::Send {
            channel,
            message,
            timeout,
            sharing,
        } => commands::send(&channel, message, timeout, &sharing),
        Cmd::Recv {
            channel,
            count,
            timeout,
            sharing,
        } => commands::recv(&channel, count, timeout, &sharing),
        Cmd::Bench { quick } => bench::run(quick),
        Cmd::Demo => demo::run(),
        Cmd::Worker { role, args } => worker::run(&role, &args),
    };
    match outcome {
        Ok(code) => code,
        Err(failure) => {
            eprintln!("shmio: error: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}
