//! D-Bus (Linux, feature `dbus`): a method call with a reply through a
//! private `dbus-daemon`, the bus Linux users reach for, over zbus's
//! blocking API (zbus runs its own threads underneath; the harness sees
//! plain blocking calls).
//!
//! [`Bus`] starts a `dbus-daemon` of the run's own (a minimal session
//! configuration and its socket in a private temporary directory), and
//! kills it and removes the directory when dropped, or when the watchdog
//! gives up; the daemon also dies with the thread that started it (the
//! kit's parent-death signal, set before it runs). Without the
//! `dbus-daemon` binary, [`Bus::start`] says so with `None` ([`MISSING`]).
//!
//! [`EchoCall`] is the round trip: a child ([`Role::DbusEcho`]) requests a
//! well-known name on the bus and serves `Echo` (`ay` in, the same `ay`
//! out); the parent calls it with [`call_argument`] and checks what comes
//! back, one call an operation. Pair it with another side in
//! [`harness::run`], or measure it alone ([`time_per_call`]).

use std::cell::Cell;
use std::io::ErrorKind;
use std::marker::PhantomData;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use shmio_cli::process::{Child, Output, Spawn};
use zbus::blocking::connection::Builder;
use zbus::blocking::Connection;

use super::{call_argument, warmed_up, Role};
use crate::child::{self, Kid};
use crate::harness::{self, Settings, Side};
use crate::watchdog::{self, OnStall};
use crate::Result;

/// The daemon's program, looked up on `PATH`.
pub const DAEMON: &str = "dbus-daemon";

/// What a run says when there is no [`DAEMON`] to start.
pub const MISSING: &str = "no `dbus-daemon` on PATH: the D-Bus rows are skipped \
    (Debian's and Ubuntu's package `dbus-daemon`, which `dbus` brings: `apt install dbus-daemon`)";

/// The object the echo child serves, and its interface.
const PATH: &str = "/org/shmio/Bench";
/// The interface of `Echo` (the `interface` attribute below spells it again).
const INTERFACE: &str = "org.shmio.Bench1";
/// The method.
const METHOD: &str = "Echo";

/// How long the daemon may take to say its address.
const START_WITHIN: Duration = Duration::from_secs(10);
/// How long one call may take before it fails (within the watchdog's limit).
const CALL_WITHIN: Duration = Duration::from_secs(5);

/// The longest path of a Unix socket (`sun_path`, with its NUL).
const SOCKET_PATH_MAX: usize = 107;

/// A private `dbus-daemon`: its own configuration and socket in a private
/// directory. Dropped, the daemon is killed and the directory removed.
pub struct Bus {
    daemon: Child,
    /// Removed after the daemon is killed (fields drop in order).
    dir: PrivateDir,
    address: String,
    /// Where the next echo child's well-known name is numbered from.
    names: Cell<u32>,
}

impl Bus {
    /// Starts [`DAEMON`]: `None` if there is none on `PATH`.
    pub fn start() -> Result<Option<Bus>> {
        Bus::start_program(DAEMON)
    }

    /// Starts `program` as the daemon (a path, or a name looked up on
    /// `PATH`): `None` if there is no such program.
    ///
    /// The daemon dies with the thread that calls this (Linux's
    /// parent-death signal): call it from the thread that runs the bench.
    pub fn start_program(program: impl Into<PathBuf>) -> Result<Option<Bus>> {
        let dir = PrivateDir::create()?;
        let socket = dir.path.join("bus");
        if socket.as_os_str().len() > SOCKET_PATH_MAX {
            return Err(format!(
                "{} is too long a path for a Unix socket: set TMPDIR to a shorter directory",
                socket.display()
            )
            .into());
        }
        let config = dir.path.join("bus.conf");
        std::fs::write(&config, configuration(&socket)?)
            .map_err(|e| format!("writing {}: {e}", config.display()))?;
        let parent = std::process::id();
        let spawn = Spawn::program(program)
            .arg(format!("--config-file={}", config.display()))
            // In the foreground, our child; no pid file, nothing to the
            // system log; its address on stdout once it listens.
            .args(["--nofork", "--nopidfile", "--nosyslog", "--print-address=1"])
            .stdout(Output::Collect)
            .stderr(Output::Collect)
            .limit(START_WITHIN)
            .describe("the private dbus-daemon")
            .configure(move |command| {
                // SAFETY: the hook runs in the forked child before `exec`;
                // `die_with_parent` allocates nothing and makes only
                // async-signal-safe calls (`prctl`, `getppid`), as the kit
                // documents it for this use.
                unsafe {
                    command.pre_exec(move || shmio_cli::process::die_with_parent(Some(parent)));
                }
            });
        let mut daemon = match spawn.try_start() {
            Ok(daemon) => daemon,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("starting {DAEMON}: {e}").into()),
        };
        watchdog::add_child(daemon.id());
        watchdog::stage(format!("waiting for {} to listen", daemon.what()));
        let address = match daemon.checked_next_line() {
            Ok(Some(address)) => address,
            Ok(None) => {
                watchdog::remove_child(daemon.id());
                let what = daemon.what().to_owned();
                let finished = daemon.checked_finish()?;
                return Err(format!(
                    "{what} exited before it said its address: {}; it said: {}",
                    finished.status,
                    finished.stderr_text().trim()
                )
                .into());
            }
            Err(failure) => {
                watchdog::remove_child(daemon.id());
                return Err(failure.into());
            }
        };
        Ok(Some(Bus {
            daemon,
            dir,
            address,
            names: Cell::new(0),
        }))
    }

    /// The address to connect to (`unix:path=…,guid=…`).
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.daemon.id()
    }

    /// The private directory (configuration and socket), removed on drop.
    pub fn dir(&self) -> &Path {
        &self.dir.path
    }

    /// A well-known name no other echo child on this bus has.
    fn next_name(&self) -> String {
        let n = self.names.get();
        self.names.set(n + 1);
        format!("org.shmio.Bench.Echo{n}")
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        if let Err(failure) = self.daemon.checked_kill() {
            eprintln!("{failure}");
        }
        watchdog::remove_child(self.daemon.id());
        // Then `dir` is removed.
    }
}

/// The minimal session configuration: listen on `socket` only, the
/// `EXTERNAL` (uid) authentication, and let every connection own names,
/// send to any of them and receive from any (a policy with no rule for
/// receiving rejects even the bus's replies).
fn configuration(socket: &Path) -> Result<String> {
    let path = socket
        .to_str()
        .ok_or_else(|| format!("{} is not UTF-8", socket.display()))?;
    Ok(format!(
        r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
        escape_address_value(path)
    ))
}

/// A D-Bus address value: bytes other than `[-0-9A-Za-z_/.*]` as `%XX`
/// (escaping any byte is allowed; what is left needs no XML escape).
fn escape_address_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_/.*".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02x}"));
        }
    }
    out
}

/// What the private directories' names start with: then the pid of the
/// process that made them.
const DIR_PREFIX: &str = "shmio-bench-dbus-";

/// A directory of this process's own (mode 0700) in the temporary
/// directory, removed when dropped or when the watchdog gives up. One left
/// by a bench killed outright (its daemon died with it) is removed by the
/// next ([`remove_stale_dirs`]).
struct PrivateDir {
    path: PathBuf,
    _stall: OnStall,
}

impl PrivateDir {
    fn create() -> Result<PrivateDir> {
        let base = std::env::temp_dir();
        remove_stale_dirs(&base);
        for attempt in 0..1000 {
            let path = base.join(format!("{DIR_PREFIX}{}-{attempt}", std::process::id()));
            match std::fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => {
                    let stall = {
                        let path = path.clone();
                        OnStall::new(move || {
                            let _ = std::fs::remove_dir_all(&path);
                        })
                    };
                    return Ok(PrivateDir {
                        path,
                        _stall: stall,
                    });
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(format!("creating {}: {e}", path.display()).into()),
            }
        }
        Err(format!("no free directory name in {}", base.display()).into())
    }
}

/// Removes the private directories in `base` whose process is gone (no
/// `/proc/PID`): those of benches killed outright. Only real directories
/// (a link is left alone), and only what this user may remove; quietly.
fn remove_stale_dirs(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|name| name.strip_prefix(DIR_PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        let is_dir = entry.file_type().is_ok_and(|kind| kind.is_dir());
        if is_dir && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        match std::fs::remove_dir_all(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => eprintln!("removing {}: {e}", self.path.display()),
        }
    }
}

/// Calls of `Echo` on a child's well-known name, through the bus: one call
/// (argument out, reply back, checked) an operation. The bus must outlive
/// it.
pub struct EchoCall<'bus> {
    connection: Connection,
    name: String,
    _kid: Kid,
    seq: u64,
    _bus: PhantomData<&'bus Bus>,
}

impl<'bus> EchoCall<'bus> {
    /// Starts the echo child on `bus` (ready once it owns its name), and
    /// connects to the bus.
    pub fn start(bus: &'bus Bus) -> Result<EchoCall<'bus>> {
        let name = bus.next_name();
        let kid = child::spawn_commanded(
            Role::DbusEcho,
            &[
                (child::DBUS, bus.address().to_owned()),
                (child::NAME, name.clone()),
            ],
        )?;
        watchdog::stage(format!(
            "connecting to the private bus at {}",
            bus.address()
        ));
        let connection = Builder::address(bus.address())?
            .method_timeout(CALL_WITHIN)
            .build()?;
        Ok(EchoCall {
            connection,
            name,
            _kid: kid,
            seq: 0,
            _bus: PhantomData,
        })
    }

    /// One call: [`call_argument`]`(seq)` out, the same bytes back.
    pub fn call(&self, seq: u64) -> Result<()> {
        let argument = call_argument(seq);
        let reply = self.connection.call_method(
            Some(self.name.as_str()),
            PATH,
            Some(INTERFACE),
            METHOD,
            &argument.as_slice(),
        )?;
        let echoed: Vec<u8> = reply.body().deserialize()?;
        if echoed != argument {
            return Err(format!("call {seq}: {echoed:02x?} came back for {argument:02x?}").into());
        }
        Ok(())
    }
}

impl Side for EchoCall<'_> {
    fn batch(&mut self, n: u64) -> Result<f64> {
        warmed_up(n, None, || {
            self.seq += 1;
            self.call(self.seq)
        })
    }

    /// A call: the child counts its progress in `Echo`.
    fn keepalive(&mut self) -> Result<()> {
        self.seq += 1;
        self.call(self.seq)
    }
}

/// The call alone: nanoseconds per call on `bus`, the median over
/// `settings.rounds` batches (after the harness's sizing and warm-up).
pub fn time_per_call(bus: &Bus, settings: Settings) -> Result<f64> {
    let side = EchoCall::start(bus)?;
    let results = harness::run("D-Bus call", vec![(Alone::Dbus, Box::new(side))], settings)?;
    Ok(results.ns_per_op(Alone::Dbus))
}

/// The one side of [`time_per_call`]'s run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Alone {
    Dbus,
}

impl std::fmt::Display for Alone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Alone::Dbus => "dbus",
        })
    }
}

/// What the echo child serves at [`PATH`].
struct Echo;

#[zbus::interface(name = "org.shmio.Bench1")]
impl Echo {
    /// Returns its argument. Run on zbus's executor thread, the only one
    /// of the child's threads that counts progress once it serves.
    fn echo(&self, argument: Vec<u8>) -> Vec<u8> {
        watchdog::progress();
        argument
    }
}

/// The echo child: connects to the bus, serves `Echo` at
/// `/org/shmio/Bench` under its well-known name, says it is ready, and
/// serves until its stdin ends (the parent is done, or gone).
pub fn echo_child() -> Result<()> {
    let address = child::var(child::DBUS)?;
    let name = child::var(child::NAME)?;
    let _connection = Builder::address(address.as_str())?
        .serve_at(PATH, Echo)?
        .name(name.as_str())?
        .build()?;
    shmio_cli::process::try_ready()?;
    std::io::copy(&mut child::stdin_file()?, &mut std::io::sink())?;
    Ok(())
}
