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
mod proc;
mod units;
mod worker;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

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
    },
    /// Remove a name (processes holding the mapping keep their memory)
    Rm {
        /// The name to remove
        name: String,
    },
    /// Remove stale names: those whose holders all died, but for the mutex a dead lock holder left to a mapping still held (Linux)
    Gc {
        /// Only list what would be removed
        #[arg(long)]
        dry_run: bool,
    },
    /// Run a command while holding a named mutex; exit with its exit code
    Lock {
        /// The mutex
        name: String,
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
    let cli = Cli::parse();
    let outcome = match cli.command {
        Cmd::Create { name, size, file } => commands::create(&name, size, file),
        Cmd::Ls { json } => commands::ls(json),
        Cmd::Stat { name, json } => commands::stat(&name, json),
        Cmd::Write { name, offset, file } => commands::write(&name, offset, file),
        Cmd::Read { name, offset, len } => commands::read(&name, offset, len),
        Cmd::Dump { name, offset, len } => commands::dump(&name, offset, len),
        Cmd::Rm { name } => commands::rm(&name),
        Cmd::Gc { dry_run } => commands::gc(dry_run),
        Cmd::Lock { name, command } => commands::lock(&name, &command),
        Cmd::Send {
            channel,
            message,
            timeout,
        } => commands::send(&channel, message, timeout),
        Cmd::Recv {
            channel,
            count,
            timeout,
        } => commands::recv(&channel, count, timeout),
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
