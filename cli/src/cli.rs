//! The command line, as clap reads it: every command and its flags, and
//! the hidden worker roles. Definitions only: what a command does is in
//! `commands/<name>.rs`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::{owners, units};

#[derive(Parser)]
#[command(
    name = "shmio",
    version,
    about = "Named shared memory between processes: mappings, locks, channels, topics",
    after_help = "SIZE: 4096, 64K, 64KiB, 1M, 1MiB, 1G, 1GiB (K, M, G are powers of 1024).\n\
                  DURATION: 250us, 500ms, 2s."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Create a named mapping that stays until `shmio rm` (on Windows, held
    /// open until Ctrl-C or the end of input: a section cannot outlive its handles)
    Create(Create),
    /// List named objects: name, OS name, kind, size, holders, stale (Linux)
    Ls(Ls),
    /// Show one named object in detail (Linux)
    Stat(Stat),
    /// Write a file (or stdin) into a mapping; nothing is written if it does not fit
    Write(Write),
    /// Copy bytes of a mapping to stdout
    Read(Read),
    /// Show bytes of a mapping in hex and ASCII, as `hexdump -C` does
    Dump(Dump),
    /// Remove a name (processes holding the mapping keep their memory)
    Rm(Rm),
    /// Remove your stale names: shmio's objects whose holders all died, but
    /// for the mutex a dead lock holder left to a mapping still held (Linux).
    /// Nothing else is removed: not other users' entries, not other
    /// programs' files or links, not persistent names
    Gc(Gc),
    /// Run a command while holding the mutex of the mapping NAME (the one
    /// `map.lock()` takes, whether or not the mapping exists); exit with its
    /// exit code. The command never outlives the lock
    Lock(Lock),
    /// Send a message on a channel (created if there is none), or each line of stdin
    Send(Send),
    /// Receive messages from a channel (created if there is none), one line each
    Recv(Recv),
    /// Publish a message to a topic (created if there is none), or each line of stdin
    Publish(Publish),
    /// Subscribe to a topic (created if there is none) and print each message
    /// as a line, its history first
    Subscribe(Subscribe),
    /// Listen to COMMAND in the bus group GROUP: run CMD for each request
    /// (the arguments as JSON on its stdin, its stdout as JSON the reply),
    /// or print each request as a JSON line
    Listen(Listen),
    /// Call COMMAND in the bus group GROUP and print the reply as JSON
    /// (with --all: every listener's answer, one line each)
    Call(Call),
    /// Queue COMMAND for every listener in the bus group GROUP, without
    /// waiting for replies
    Post(Post),
    /// List the listeners of the bus group GROUP: command, order, pid
    Listeners(Listeners),
    /// Measure shmio against its peers: round trips and copy bandwidth
    Bench(Bench),
    /// Show the library's main job with real worker processes, step by step
    Demo,
    /// A worker process of `bench`, `demo`, `lock` or the tests
    #[command(name = "__worker", hide = true)]
    Worker {
        #[command(subcommand)]
        role: Worker,
    },
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

#[derive(Args)]
pub struct Create {
    /// The name to create
    pub name: String,
    /// The size [default: 64 MiB, or the backing file's size]
    #[arg(long, value_name = "SIZE", value_parser = units::parse_size)]
    pub size: Option<u64>,
    /// Back the mapping with this file
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Permission bits, in octal, exactly (e.g. 660 for the group, 666
    /// for every user) [default: 600, only you]
    #[arg(long, value_name = "MODE", value_parser = units::parse_mode)]
    pub permissions: Option<u32>,
}

#[derive(Args)]
pub struct Ls {
    /// Print a JSON array
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct Stat {
    /// The name of a mapping, channel, topic or mutex
    pub name: String,
    /// Print a JSON object
    #[arg(long)]
    pub json: bool,
    /// Whose topic `stat` may open to read its settings, besides the
    /// caller's own
    #[command(flatten)]
    pub trusting: Trusting,
}

#[derive(Args)]
pub struct Write {
    /// The mapping
    pub name: String,
    /// Where to start writing
    #[arg(long, value_name = "N", default_value = "0", value_parser = units::parse_bytes)]
    pub offset: u64,
    /// What to write [default: stdin; `-` is stdin too]
    pub file: Option<PathBuf>,
    /// The input is one JSON value, written as a record (a u32 length, then
    /// the JSON), as `Mapping::write_record_at` writes it and Rust's and
    /// Python's `read_record` read it
    #[arg(long)]
    pub record: bool,
    #[command(flatten)]
    pub trusting: Trusting,
}

#[derive(Args)]
pub struct Read {
    /// The mapping
    pub name: String,
    /// Where to start reading
    #[arg(long, value_name = "N", default_value = "0", value_parser = units::parse_bytes)]
    pub offset: u64,
    /// How many bytes [default: to the end]
    #[arg(long, value_name = "N", value_parser = units::parse_bytes, conflicts_with = "record")]
    pub len: Option<u64>,
    /// Read the record at the offset (as `Mapping::read_record_at` does) and
    /// print its JSON on one line
    #[arg(long)]
    pub record: bool,
    #[command(flatten)]
    pub trusting: Trusting,
}

#[derive(Args)]
pub struct Dump {
    /// The mapping
    pub name: String,
    /// Where to start
    #[arg(long, value_name = "N", default_value = "0", value_parser = units::parse_bytes)]
    pub offset: u64,
    /// How many bytes [default: to the end]
    #[arg(long, value_name = "N", value_parser = units::parse_bytes)]
    pub len: Option<u64>,
    #[command(flatten)]
    pub trusting: Trusting,
}

#[derive(Args)]
pub struct Rm {
    /// The name to remove
    pub name: String,
    #[command(flatten)]
    pub trusting: Trusting,
}

#[derive(Args)]
pub struct Gc {
    /// Only list what would be removed (every check is made)
    #[arg(long)]
    pub dry_run: bool,
    /// Also list every entry kept, and why
    #[arg(long, short)]
    pub verbose: bool,
    /// Also remove USER's stale objects (a user name, a uid, or `any`:
    /// for an administrator); repeatable
    #[arg(long = "allow-owner", value_name = "USER", value_parser = owners::parse)]
    pub allow_owner: Vec<owners::Allowed>,
}

#[derive(Args)]
pub struct Lock {
    /// The mapping whose mutex to hold
    pub name: String,
    #[command(flatten)]
    pub sharing: Sharing,
    /// The command and its arguments, after `--`
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

#[derive(Args)]
pub struct Send {
    /// The channel
    pub channel: String,
    /// The message [default: one message per line of stdin]
    pub message: Option<OsString>,
    /// Give up if the channel stays full this long
    #[arg(long, value_name = "DURATION", value_parser = units::parse_duration)]
    pub timeout: Option<Duration>,
    #[command(flatten)]
    pub sharing: Sharing,
}

#[derive(Args)]
pub struct Recv {
    /// The channel
    pub channel: String,
    /// How many messages to wait for (0: until interrupted, or the --timeout)
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub count: u64,
    /// Give up (exit 1) if they have not all come in this time (with --count 0:
    /// stop then, exit 1 only if nothing came)
    #[arg(long, value_name = "DURATION", value_parser = units::parse_duration)]
    pub timeout: Option<Duration>,
    #[command(flatten)]
    pub sharing: Sharing,
}

/// What a topic is made with, when a command makes it. Only the settings
/// given are checked against an existing topic: the rest are whatever it has.
#[derive(Args, Clone, Default)]
pub struct TopicSettings {
    /// How many messages the topic holds [default: 1024]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub capacity: Option<u32>,
    /// The largest message [default: 4 KiB]
    #[arg(long, value_name = "SIZE", value_parser = units::parse_message_size)]
    pub max_message_size: Option<u32>,
    /// How many of the last messages a new subscriber gets first (less than
    /// the capacity) [default: 0]
    #[arg(long, value_name = "N")]
    pub history: Option<u32>,
    /// What a subscriber that falls behind costs: `overwrite` (publishers
    /// never wait; it is told how many it missed) or `block` (publishers
    /// wait for it) [default: overwrite]
    #[arg(long, value_name = "POLICY")]
    pub overflow: Option<OverflowPolicy>,
}

/// `--overflow`: the library's `Overflow`, as the command line spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OverflowPolicy {
    Overwrite,
    Block,
}

#[derive(Args)]
pub struct Publish {
    /// The topic
    pub topic: String,
    /// The messages, one each [default: one message per line of stdin]
    pub messages: Vec<OsString>,
    /// Give up if a subscriber holds a message back this long (`--overflow block`)
    #[arg(long, value_name = "DURATION", value_parser = units::parse_duration)]
    pub timeout: Option<Duration>,
    #[command(flatten)]
    pub settings: TopicSettings,
    #[command(flatten)]
    pub sharing: Sharing,
}

#[derive(Args)]
pub struct Subscribe {
    /// The topic
    pub topic: String,
    /// Stop after this many messages (0: until interrupted, or the --timeout)
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub count: u64,
    /// Give up (exit 1) if they have not all come in this time (with --count 0:
    /// stop then, exit 1 only if nothing came)
    #[arg(long, value_name = "DURATION", value_parser = units::parse_duration)]
    pub timeout: Option<Duration>,
    /// Only open an existing topic: an error if there is none
    #[arg(long)]
    pub no_create: bool,
    #[command(flatten)]
    pub settings: TopicSettings,
    #[command(flatten)]
    pub sharing: Sharing,
}

#[derive(Args)]
pub struct Listen {
    /// The bus group (joined, and created if it does not exist)
    pub group: String,
    /// The command to listen to
    pub command: String,
    /// Stop after this many requests [default: until interrupted]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Kill CMD (its whole process group) if it runs longer than this; the
    /// caller gets a handler error
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = units::parse_duration)]
    pub handler_timeout: Duration,
    #[command(flatten)]
    pub sharing: Sharing,
    /// The handler and its arguments, after `--` [default: print each
    /// request as a JSON line, and pass it on]
    #[arg(last = true, value_name = "CMD")]
    pub handler: Vec<OsString>,
}

#[derive(Args)]
pub struct Call {
    /// The bus group (it must exist)
    pub group: String,
    /// The command to call
    pub command: String,
    /// The arguments, as one JSON document
    #[arg(value_name = "JSON", default_value = "null", value_parser = units::parse_json, allow_hyphen_values = true)]
    pub args: serde_json::Value,
    /// Give up (exit 1) if no answer has come in this time
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = units::parse_duration)]
    pub timeout: Duration,
    /// Ask only the listeners in the process PID
    #[arg(long, value_name = "PID", conflicts_with = "all")]
    pub pid: Option<u32>,
    /// Ask every listener at once and print every answer, one JSON line each
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub trusting: Trusting,
}

#[derive(Args)]
pub struct Post {
    /// The bus group (it must exist)
    pub group: String,
    /// The command to post
    pub command: String,
    /// The arguments, as one JSON document
    #[arg(value_name = "JSON", default_value = "null", value_parser = units::parse_json, allow_hyphen_values = true)]
    pub args: serde_json::Value,
    #[command(flatten)]
    pub trusting: Trusting,
}

#[derive(Args)]
pub struct Listeners {
    /// The bus group (it must exist)
    pub group: String,
    /// Print a JSON array
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub trusting: Trusting,
}

#[derive(Args)]
pub struct Bench {
    /// About a second instead of about ten (noisier)
    #[arg(long)]
    pub quick: bool,
}

/// The hidden worker roles (`shmio __worker ROLE ARGS`): the child
/// processes of `bench`, `demo` and `lock`, and stand-ins the tests run.
#[derive(Subcommand)]
pub enum Worker {
    /// Says `ready`, then waits for the end of its input
    Wait,
    /// Holds `Mapping::create_or_open(NAME, SIZE)`, says `ready
    /// existed=BOOL`, and keeps it until its input ends (or it is killed)
    Hold {
        name: String,
        #[arg(value_parser = units::parse_size)]
        size: u64,
    },
    /// Takes the lock of the 4 KiB mapping NAME (`map.lock()`), says
    /// `locked`, and keeps it until its input ends (or it is killed)
    HoldLock { name: String },
    /// Stands for any command `shmio lock` runs: holds the 4 KiB mapping
    /// NAME, says `ready`, reports signals, exits with CODE at the end of
    /// its input; does not die with its parent
    Linger {
        name: String,
        #[arg(allow_hyphen_values = true)]
        code: i32,
    },
    /// A child of the bench library's harness (its role is in its environment)
    Bench,
    /// The guard of `shmio lock`'s command (see `supervise`): kills the
    /// command's process group if `shmio lock` dies first (Unix; on
    /// Windows a job object does this)
    #[cfg(unix)]
    Guard,
    #[command(flatten)]
    Demo(DemoWorker),
}

/// The demo's workers, each on the demo's mapping (or channels) NAME.
#[derive(Subcommand)]
pub enum DemoWorker {
    /// Opens the mapping by name and reports what it found
    #[command(name = "demo-open")]
    Open { name: String },
    /// Reads the struct and the record, and answers with changed ones
    #[command(name = "demo-exchange")]
    Exchange { name: String },
    /// Raises the counter under the lock INCREMENTS times
    #[command(name = "demo-count")]
    Count { name: String, increments: u64 },
    /// Takes the lock, starts a change, and waits to be killed
    #[command(name = "demo-hold")]
    Hold { name: String },
    /// Waits for the lock a killed holder left, and repairs the change
    #[command(name = "demo-survivor")]
    Survivor { name: String },
    /// Echoes messages from NAME-ping to NAME-pong until `stop`
    #[command(name = "demo-echo")]
    Echo { name: String },
    /// Joins the bus group NAME and answers `sum` as worker NUMBER until
    /// its input ends (or it is killed)
    #[command(name = "demo-bus")]
    Bus { name: String, number: u32 },
}
