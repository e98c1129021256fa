//! `shmio listen`, `call`, `post` and `listeners`: the library's command bus
//! (`shmio::Bus`) from the shell. Arguments and replies are JSON values
//! (`serde_json::Value`), so any listener answers any caller, whatever
//! language either is written in.
//!
//! `listen GROUP COMMAND -- CMD` runs CMD once per request, on the bus's
//! dispatch thread (so one at a time): the arguments go to its stdin as
//! one JSON document, its stdout is the reply. CMD never outlives its
//! request: it runs in a process group of its own (Unix), which is killed
//! when CMD exits, when it runs past `--handler-timeout`, or when `listen`
//! is asked to stop.

use std::ffi::OsString;
use std::io::{self, Write};
use std::process::{ExitCode, ExitStatus};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use shmio::{Bus, BusOptions, Error as ShmioError, ListenerInfo};
use shmio_cli::process::{Child, Output, Spawn};

use super::exactly;
use crate::cli::{Call, Listen, Listeners, Post, Trusting};
use crate::error::{Error, Result};
use crate::output::{escape, ignore_broken_pipe, print};
use crate::{owners, signals, supervise};

/// How long a handler's output may stay open after it exited and what it
/// left was killed (a process that left its process group may hold it).
const OUTPUT_GRACE: Duration = Duration::from_secs(1);

/// How much of a handler's output that is not JSON an error quotes.
const QUOTED: usize = 80;

/// The CLI's bus options: the library's inbox (larger messages are
/// spilled to mappings of their own), `--permissions` for a group this
/// command creates, the owners trusted.
fn options(permissions: Option<u32>, trusting: &Trusting) -> BusOptions {
    let mut options = Bus::options();
    if let Some(permissions) = permissions {
        options.permissions(exactly(permissions));
    }
    owners::trust(
        &mut options,
        &trusting.allow_owner,
        BusOptions::allow_owner,
        BusOptions::allow_any_owner,
    );
    options
}

/// Joins `group` only if it exists: joining creates a group, and `call`,
/// `post` and `listeners` should say that there is none rather than make
/// one. The library has no join that does not create, so the group's
/// registry (the object named after it) is first opened as a plain
/// mapping, which never creates. A group whose last member leaves between
/// that and the join is made afresh and, with no listener in it, goes
/// again when this command leaves it.
fn join_existing(group: &str, trusting: &Trusting) -> Result<Bus> {
    // A view opens the group's registry by name and creates nothing.
    match options(None, trusting).view(group) {
        Ok(view) => drop(view),
        Err(ShmioError::NotFound { .. }) => {
            return Err(Error::NoSuchGroup {
                group: group.to_owned(),
            })
        }
        Err(error) => return Err(error.into()),
    }
    Ok(options(None, trusting).join(group)?)
}

/// What the dispatch thread tells `listen`'s main thread.
enum Event {
    /// The `--count`th request was served.
    Counted,
    /// Printing a request failed: nothing more can be printed (a reader
    /// that went away, as `| head -1` does, is the normal end).
    OutputFailed(io::Error),
}

pub fn listen(args: Listen) -> Result {
    let Listen {
        group,
        command,
        count,
        handler_timeout,
        sharing,
        handler,
    } = args;
    let bus = options(sharing.permissions, &sharing.trusting).join(&group)?;
    let (events, event) = mpsc::channel();
    let served = AtomicU64::new(0);
    let handler = handler.split_first().map(|(program, args)| Handler {
        program: program.clone(),
        args: args.to_vec(),
        timeout: handler_timeout,
        group: group.clone(),
        command: command.clone(),
    });
    let listener = bus.listen(&command, move |request: Value| {
        let number = served.fetch_add(1, Ordering::Relaxed) + 1;
        // Requests that come between the last counted one and the
        // listener's going are passed on, not run.
        if count.is_some_and(|count| number > count) {
            return Ok(None);
        }
        let outcome = match &handler {
            Some(handler) => handler.run(&request),
            None => {
                if let Err(error) = print_request(&request) {
                    let _ = events.send(Event::OutputFailed(error));
                }
                Ok(None)
            }
        };
        if let Err(message) = &outcome {
            eprintln!("shmio: the handler failed: {message}");
        }
        if count == Some(number) {
            // The reply is sent once this returns: `Bus`'s drop waits for
            // the dispatch thread, and this member lives until then.
            let _ = events.send(Event::Counted);
        }
        outcome
    })?;
    eprintln!(
        "shmio: listening on {} {} (process {})",
        escape(&group),
        escape(&command),
        std::process::id()
    );
    let ended = loop {
        if let Some(signal) = signals::received() {
            break Err(Error::Stopped(signal));
        }
        match event.recv_timeout(signals::POLL) {
            Ok(Event::Counted) => break Ok(ExitCode::SUCCESS),
            Ok(Event::OutputFailed(error)) => {
                break ignore_broken_pipe(error)
                    .map(|()| ExitCode::SUCCESS)
                    .map_err(|e| Error::io("writing to stdout", e))
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break Ok(ExitCode::SUCCESS),
        }
    };
    // Unregistered first, so that no request comes in as the member leaves.
    drop(listener);
    drop(bus);
    ended
}

/// Prints a request as one JSON line, at once.
fn print_request(request: &Value) -> io::Result<()> {
    let mut out = io::stdout().lock();
    let line = serde_json::to_string(request).expect("a JSON value serializes");
    writeln!(out, "{line}").and_then(|()| out.flush())
}

/// `listen`'s CMD and how to run it.
struct Handler {
    program: OsString,
    args: Vec<OsString>,
    timeout: Duration,
    group: String,
    command: String,
}

impl Handler {
    fn name(&self) -> String {
        self.program.to_string_lossy().into_owned()
    }

    /// Runs CMD for one request: its stdout, as JSON, is the reply (none
    /// if it printed nothing); an error if it failed, printed what is not
    /// JSON, or ran too long.
    fn run(&self, request: &Value) -> std::result::Result<Option<Value>, String> {
        let name = self.name();
        let mut input = serde_json::to_vec(request).expect("a JSON value serializes");
        input.push(b'\n');
        let child = Spawn::program(&self.program)
            .args(&self.args)
            .input(input)
            .stdout(Output::Collect)
            .stderr(Output::Collect)
            .env("SHMIO_BUS_GROUP", &self.group)
            .env("SHMIO_BUS_COMMAND", &self.command)
            // It is bounded here, not by the kit's lifetime.
            .dies_with_parent(false)
            .no_lifetime()
            .limit(OUTPUT_GRACE)
            .describe(name.clone())
            .configure(supervise::handler_command)
            .try_start()
            .map_err(|error| format!("cannot run {name}: {error}"))?;
        let (status, stdout, stderr) = self.finish(child, &name)?;
        // Its stderr is for whoever runs `listen`, as if CMD ran there.
        let _ = io::stderr().write_all(&stderr);
        if !status.success() {
            let said = String::from_utf8_lossy(&stderr);
            return Err(
                match said.lines().rev().find(|line| !line.trim().is_empty()) {
                    Some(last) => format!("{name} failed ({status}): {}", last.trim()),
                    None => format!("{name} failed ({status})"),
                },
            );
        }
        if stdout.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        serde_json::from_slice(&stdout).map(Some).map_err(|error| {
            let text = String::from_utf8_lossy(&stdout);
            let quoted: String = text.trim().chars().take(QUOTED).collect();
            format!("{name} printed what is not JSON ({error}): {quoted:?}")
        })
    }

    /// Waits for CMD within the timeout (killing its group after it, or on
    /// a request to stop), then kills what it left in its group, and
    /// collects its output.
    fn finish(
        &self,
        mut child: Child,
        name: &str,
    ) -> std::result::Result<(ExitStatus, Vec<u8>, Vec<u8>), String> {
        let deadline = Instant::now() + self.timeout;
        let status = loop {
            if let Some(signal) = signals::received() {
                supervise::kill_group(&mut child);
                return Err(format!(
                    "the listener was stopped (signal {signal}) while {name} ran: killed it"
                ));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                supervise::kill_group(&mut child);
                return Err(format!(
                    "{name} ran longer than the handler timeout of {:?}: killed it",
                    self.timeout
                ));
            }
            match child.wait_within(left.min(signals::POLL)) {
                Ok(Some(status)) => break status,
                Ok(None) => {}
                Err(failure) => {
                    supervise::kill_group(&mut child);
                    return Err(failure.to_string());
                }
            }
        };
        // What it started goes with it: a handler does not outlive its
        // request (and what is left may hold its output open).
        supervise::kill_group(&mut child);
        let finished = child
            .checked_finish()
            .map_err(|failure| failure.to_string())?;
        Ok((status, finished.stdout, finished.stderr))
    }
}

pub fn call(args: Call) -> Result {
    let Call {
        group,
        command,
        args,
        timeout,
        pid,
        all,
        trusting,
    } = args;
    let bus = join_existing(&group, &trusting)?;
    let listening = bus.listeners(&command)?;
    if all {
        return broadcast(&bus, &command, &args, timeout, listening.len());
    }
    let asked = match pid {
        Some(pid) => listening.iter().filter(|l| l.pid == pid).count(),
        None => listening.len(),
    };
    let reply: Option<Value> = match pid {
        Some(pid) => bus.call_pid(pid, &command, &args, timeout),
        None => bus.call(&command, &args, timeout),
    }
    .map_err(|error| match error {
        ShmioError::TimedOut { .. } => Error::NoAnswerInTime {
            command: command.clone(),
            group: group.clone(),
            timeout,
        },
        ShmioError::NoListener { pid, .. } => Error::NobodyAnswered {
            command: command.clone(),
            group: group.clone(),
            why: match pid {
                None => "no process listens to it".to_owned(),
                Some(pid) => format!("process {pid} does not listen to it"),
            },
        },
        other => other.into(),
    })?;
    match reply {
        Some(reply) => print(&json_line(&reply)),
        None => Err(Error::NobodyAnswered {
            command,
            group,
            why: match asked {
                1 => "its listener passed".to_owned(),
                n => format!("its {n} listeners passed"),
            },
        }),
    }
}

/// One listener's answer to `call --all`, as a JSON line.
#[derive(Serialize)]
struct Answered<'a> {
    pid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    passed: bool,
}

fn broadcast(
    bus: &Bus,
    command: &str,
    args: &Value,
    timeout: Duration,
    listening: usize,
) -> Result {
    let replies = bus.broadcast::<_, Value>(command, args, timeout)?;
    let mut text = String::new();
    for answer in &replies.answers {
        let line = match &answer.outcome {
            Ok(reply) => Answered {
                pid: answer.pid,
                reply: reply.as_ref(),
                error: None,
                passed: reply.is_none(),
            },
            Err(error) => Answered {
                pid: answer.pid,
                reply: None,
                error: Some(error.to_string()),
                passed: false,
            },
        };
        text.push_str(&serde_json::to_string(&line).expect("plain data serializes"));
        text.push('\n');
    }
    print(&text)?;
    if replies.replies().next().is_some() {
        return Ok(ExitCode::SUCCESS);
    }
    Err(Error::NobodyAnswered {
        command: command.to_owned(),
        group: bus.group().to_owned(),
        why: match listening {
            0 => "no process listens to it".to_owned(),
            n => format!("none of its {n} listeners replied"),
        },
    })
}

fn json_line(value: &Value) -> String {
    serde_json::to_string(value).expect("a JSON value serializes") + "\n"
}

pub fn post(args: Post) -> Result {
    let Post {
        group,
        command,
        args,
        trusting,
    } = args;
    let bus = join_existing(&group, &trusting)?;
    match bus.post(&command, &args)? {
        0 => Err(Error::NobodyListens { command, group }),
        1 => print("queued for 1 listener\n"),
        n => print(&format!("queued for {n} listeners\n")),
    }
}

/// One listener as `listeners --json` prints it.
#[derive(Serialize)]
struct Listed<'a> {
    command: &'a str,
    /// Its place among the command's listeners: 1 is asked first.
    order: usize,
    pid: u32,
}

pub fn listeners(args: Listeners) -> Result {
    let Listeners {
        group,
        json,
        trusting,
    } = args;
    // A view: reading who listens joins nothing and creates nothing.
    let view = match options(None, &trusting).view(&group) {
        Ok(view) => view,
        Err(ShmioError::NotFound { .. }) => return Err(Error::NoSuchGroup { group }),
        Err(error) => return Err(error.into()),
    };
    let all = view.commands()?;
    drop(view);
    let listed = in_order(&all);
    let text = if json {
        serde_json::to_string(&listed).expect("plain data serializes") + "\n"
    } else if listed.is_empty() {
        format!("no listeners in {}\n", escape(&group))
    } else {
        table(&listed)
    };
    print(&text)
}

/// Each listener with its place among its command's (`commands()` gives
/// them command by command, each command's in the order asked).
fn in_order(all: &[ListenerInfo]) -> Vec<Listed<'_>> {
    let mut listed: Vec<Listed> = Vec::with_capacity(all.len());
    for info in all {
        let order = match listed.last() {
            Some(last) if last.command == info.command => last.order + 1,
            _ => 1,
        };
        listed.push(Listed {
            command: &info.command,
            order,
            pid: info.pid,
        });
    }
    listed
}

fn table(listed: &[Listed]) -> String {
    let commands: Vec<String> = listed.iter().map(|l| escape(l.command)).collect();
    let width = commands
        .iter()
        .map(|c| c.chars().count())
        .chain(["COMMAND".len()])
        .max()
        .unwrap_or(0);
    let mut text = format!("{:<width$}  ORDER  PID\n", "COMMAND");
    for (listener, command) in listed.iter().zip(&commands) {
        text.push_str(&format!(
            "{command:<width$}  {:>5}  {}\n",
            listener.order, listener.pid
        ));
    }
    text
}
