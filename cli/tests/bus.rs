//! `shmio listen`, `call`, `post` and `listeners`, black-box: real `shmio`
//! processes on a bus group of their own per test. A listener is known to
//! be registered when `shmio listeners` shows it; every wait is bounded; every listener is stopped as a user
//! would stop it (SIGTERM on Unix, `--count` or TerminateProcess on
//! Windows), and on Linux nothing of a group is left in `/dev/shm`.
//!
//! The tests whose handler is a shell command (`sh -c ..`) are Unix-only;
//! the rest also run under Wine.

mod common;

use common::{command, poll_until, shmio, unique, Child, Run, LIMIT, POLL};
use serde_json::{json, Value};

/// A bus group no other test uses.
fn group() -> String {
    unique("bus")
}

/// Checks, when dropped (after every listener of the test, declared after
/// it), that nothing of the group is left (Linux): its registry, lock and
/// inboxes go with their last holder.
struct LeavesNothing<'a>(&'a str);

impl Drop for LeavesNothing<'_> {
    fn drop(&mut self) {
        let group = self.0;
        #[cfg(target_os = "linux")]
        if !std::thread::panicking() {
            assert_nothing_left(group);
        }
        // Elsewhere names go with their handles, and cannot be listed.
        #[cfg(not(target_os = "linux"))]
        let _ = group;
    }
}

/// A running `shmio listen`, stopped when dropped.
struct Listening {
    child: Option<Child>,
}

impl Listening {
    /// `shmio listen GROUP COMMAND [EXTRA..]`, once it is registered (its
    /// stdout collected, to read what it prints).
    fn start(group: &str, name: &str, extra: &[&str]) -> Listening {
        let before = listener_pids(group, name).len();
        let mut args = vec!["listen", group, name];
        args.extend_from_slice(extra);
        let child = command(&args).start();
        let pid = child.id();
        let mut listening = Listening { child: Some(child) };
        poll_until("the listener to register", LIMIT, POLL, || {
            // One that failed to start says why.
            listening.child().assert_running();
            let pids = listener_pids(group, name);
            pids.len() > before && pids.contains(&pid)
        });
        listening
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("running")
    }

    /// Asks it to stop (SIGTERM; on Windows, where nothing is left behind
    /// by a killed process, TerminateProcess) and waits for it: what it
    /// printed.
    fn stop(mut self) -> Run {
        let mut child = self.child.take().expect("running");
        #[cfg(unix)]
        {
            child.signal(libc::SIGTERM);
            let status = child.wait();
            assert_eq!(status.code(), Some(128 + libc::SIGTERM), "listen's exit");
        }
        #[cfg(not(unix))]
        child.kill();
        child.finish().into()
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            #[cfg(unix)]
            if child.exited().is_none() {
                child.signal(libc::SIGTERM);
            }
            let _ = child.checked_wait();
        }
    }
}

/// The pids of the listeners of `name` in `group`, as `shmio listeners`
/// shows them (none if there is no such group yet). Not by joining the
/// group here: joining a group that does not exist creates it, and a
/// member whose leaving ends the group races a listener that starts it
/// afresh: the new group's first member gets the token whose inbox name
/// the leaving member may still hold, in another geometry (the library
/// closes a member's inbox after its seat).
fn listener_pids(group: &str, name: &str) -> Vec<u32> {
    let run = shmio(&["listeners", group, "--json"]);
    if run.code() == Some(1) && run.stderr.contains("no bus group") {
        return Vec::new();
    }
    let listed: Value = serde_json::from_str(&run.ok().text()).expect("listeners --json");
    listed
        .as_array()
        .expect("an array")
        .iter()
        .filter(|listener| listener["command"] == name)
        .map(|listener| listener["pid"].as_u64().expect("a pid") as u32)
        .collect()
}

/// Nothing of `group` is left: its registry, lock and inboxes go with
/// their last holder.
#[cfg(target_os = "linux")]
#[track_caller]
fn assert_nothing_left(group: &str) {
    let left: Vec<String> = shmio_testkit::shm_entries_with_prefix(group)
        .into_iter()
        .filter(|entry| entry == group || entry.starts_with(&format!("{group}@")))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// What `run` printed, one JSON value a line.
#[track_caller]
fn json_lines(run: &Run) -> Vec<Value> {
    run.text()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}")))
        .collect()
}

#[test]
fn without_a_handler_requests_are_printed_and_passed_on() {
    let group = group();
    let _check = LeavesNothing(&group);
    let mut listening = Listening::start(&group, "note", &[]);
    let call = shmio(&["call", &group, "note", r#"{"a":[1,2]}"#, "--timeout", "20s"])
        .error("nobody answered");
    assert!(
        call.stderr.contains("its listener passed"),
        "{}",
        call.stderr
    );
    assert_eq!(
        listening.child().next_line().as_deref(),
        Some(r#"{"a":[1,2]}"#)
    );
    let posted = shmio(&["post", &group, "note", "7"]).ok();
    assert_eq!(posted.text(), "queued for 1 listener\n");
    assert_eq!(listening.child().next_line().as_deref(), Some("7"));
    // No JSON argument: `null`.
    shmio(&["post", &group, "note"]).ok();
    assert_eq!(listening.child().next_line().as_deref(), Some("null"));
    listening.stop();
}

#[test]
fn count_ends_the_listener_after_that_many_requests() {
    let group = group();
    let _check = LeavesNothing(&group);
    let mut listening = Listening::start(&group, "tick", &["--count", "2"]);
    shmio(&["post", &group, "tick", "1"]).ok();
    shmio(&["post", &group, "tick", "2"]).ok();
    let mut child = listening.child.take().expect("running");
    assert!(child.wait().success(), "listen --count 2 exits 0");
    let run: Run = child.finish().into();
    assert_eq!(run.text(), "1\n2\n");
    assert!(run.stderr.contains("listening on"), "{}", run.stderr);
    drop(listening);
    // The last member left: the group is gone.
    shmio(&["listeners", &group]).error("no bus group");
}

#[test]
fn listeners_shows_every_listener_in_order() {
    let group = group();
    let _check = LeavesNothing(&group);
    let first = Listening::start(&group, "add", &[]);
    let second = Listening::start(&group, "add", &[]);
    let other = Listening::start(&group, "log", &[]);
    let listed: Value =
        serde_json::from_str(&shmio(&["listeners", &group, "--json"]).ok().text()).unwrap();
    assert_eq!(
        listed,
        json!([
            {"command": "add", "order": 1, "pid": first.pid()},
            {"command": "add", "order": 2, "pid": second.pid()},
            {"command": "log", "order": 1, "pid": other.pid()},
        ])
    );
    let table = shmio(&["listeners", &group]).ok().text();
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|line| line.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], ["COMMAND", "ORDER", "PID"], "{table}");
    assert_eq!(rows[1], ["add", "1", &first.pid().to_string()], "{table}");
    assert_eq!(rows[3], ["log", "1", &other.pid().to_string()], "{table}");
    for listening in [first, second, other] {
        listening.stop();
    }
}

#[test]
fn call_all_prints_one_line_per_listener() {
    let group = group();
    let _check = LeavesNothing(&group);
    let first = Listening::start(&group, "ping", &[]);
    let second = Listening::start(&group, "ping", &[]);
    let run =
        shmio(&["call", &group, "ping", "--all", "--timeout", "20s"]).error("nobody answered");
    assert_eq!(
        json_lines(&run),
        [
            json!({"pid": first.pid(), "passed": true}),
            json!({"pid": second.pid(), "passed": true}),
        ]
    );
    first.stop();
    second.stop();
}

#[test]
fn nobody_to_answer_or_no_group_is_exit_1() {
    let group = group();
    let _check = LeavesNothing(&group);
    shmio(&["call", &group, "add"]).error("no bus group");
    shmio(&["post", &group, "add"]).error("no bus group");
    shmio(&["listeners", &group]).error("no bus group");
    let listening = Listening::start(&group, "other", &[]);
    let run = shmio(&["call", &group, "add", "[1,2]"]).error("nobody answered");
    assert!(run.stderr.contains("no process listens"), "{}", run.stderr);
    shmio(&["call", &group, "add", "--all"]).error("nobody answered");
    shmio(&["post", &group, "add"]).error("nobody listens");
    let run = shmio(&["call", &group, "other", "--pid", "1"]).error("nobody answered");
    assert!(
        run.stderr.contains("process 1 does not listen"),
        "{}",
        run.stderr
    );
    assert_eq!(
        shmio(&["listeners", &group]).ok().text().lines().count(),
        2,
        "a header and one listener"
    );
    listening.stop();
}

#[test]
fn bad_json_is_a_usage_error() {
    for args in [["call", "g", "add", "{nope"], ["post", "g", "add", "[1,"]] {
        let run = shmio(&args);
        assert_eq!(run.code(), Some(2), "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains("not JSON"), "{}", run.stderr);
    }
    let run = shmio(&["call", "g", "add", "--pid", "1", "--all"]);
    assert_eq!(run.code(), Some(2), "--pid with --all: {}", run.stderr);
}

/// A handler that prints its input back: the arguments are the reply.
#[cfg(unix)]
const ECHO: &[&str] = &["--", "cat"];
#[cfg(windows)]
const ECHO: &[&str] = &["--", "cmd", "/c", "more"];

/// A handler that fails with exit code 3.
#[cfg(unix)]
const EXIT_3: &[&str] = &["--", "sh", "-c", "exit 3"];
#[cfg(windows)]
const EXIT_3: &[&str] = &["--", "cmd", "/c", "exit 3"];

#[test]
fn a_command_answers_with_its_stdout_or_fails() {
    let group = group();
    let _check = LeavesNothing(&group);
    let echo = Listening::start(&group, "echo", ECHO);
    let run = shmio(&[
        "call",
        &group,
        "echo",
        r#"{"a": [1, 2]}"#,
        "--timeout",
        "60s",
    ])
    .ok();
    assert_eq!(run.text(), "{\"a\":[1,2]}\n");
    let failing = Listening::start(&group, "fail", EXIT_3);
    let run = shmio(&["call", &group, "fail", "--timeout", "60s"]).error("handler");
    assert!(run.stderr.contains("exit"), "{}", run.stderr);
    assert!(run.stderr.contains('3'), "{}", run.stderr);
    echo.stop();
    failing.stop();
}

/// The handler tests: CMD is a shell command.
#[cfg(unix)]
mod handlers {
    use std::time::Duration;

    use super::*;

    /// A handler that answers `{"n": N, "args": ARGS}`.
    fn answering(n: u32) -> String {
        format!(r#"read -r args; printf '{{"n":{n},"args":%s}}\n' "$args""#)
    }

    #[test]
    fn the_command_answers_with_its_stdout() {
        let group = group();
        let _check = LeavesNothing(&group);
        let _check = LeavesNothing(&group);
        let listening = Listening::start(&group, "add", &["--", "sh", "-c", &answering(1)]);
        let run = shmio(&[
            "call",
            &group,
            "add",
            r#"{"a": [1, 2]}"#,
            "--timeout",
            "20s",
        ])
        .ok();
        assert_eq!(run.text(), "{\"args\":{\"a\":[1,2]},\"n\":1}\n");
        // The spec's own example: stdin read to its end, a fixed reply.
        let listening2 = Listening::start(
            &group,
            "ok",
            &["--", "sh", "-c", r#"cat >/dev/null; echo "{\"ok\":1}""#],
        );
        let run = shmio(&["call", &group, "ok", "--timeout", "20s"]).ok();
        assert_eq!(run.text(), "{\"ok\":1}\n");
        listening.stop();
        listening2.stop();
    }

    #[test]
    fn a_failing_command_is_a_handler_error() {
        let group = group();
        let _check = LeavesNothing(&group);
        let _check = LeavesNothing(&group);
        let listening = Listening::start(
            &group,
            "fail",
            &[
                "--",
                "sh",
                "-c",
                "cat >/dev/null; echo it broke >&2; exit 3",
            ],
        );
        let run = shmio(&["call", &group, "fail", "--timeout", "20s"]).error("handler");
        assert!(run.stderr.contains("exit status: 3"), "{}", run.stderr);
        assert!(run.stderr.contains("it broke"), "{}", run.stderr);
        let run =
            shmio(&["call", &group, "fail", "--all", "--timeout", "20s"]).error("nobody answered");
        let lines = json_lines(&run);
        assert_eq!(lines.len(), 1);
        assert!(
            lines[0]["error"]
                .as_str()
                .unwrap()
                .contains("exit status: 3"),
            "{lines:?}"
        );
        let stopped = listening.stop();
        assert!(
            stopped.stderr.contains("it broke"),
            "CMD's stderr is listen's"
        );
    }

    #[test]
    fn a_command_that_prints_nothing_passes_and_one_that_prints_junk_fails() {
        let group = group();
        let _check = LeavesNothing(&group);
        let _check = LeavesNothing(&group);
        let silent = Listening::start(&group, "maybe", &["--", "sh", "-c", "cat >/dev/null"]);
        let run = shmio(&["call", &group, "maybe", "--timeout", "20s"]).error("nobody answered");
        assert!(run.stderr.contains("passed"), "{}", run.stderr);
        let junk = Listening::start(&group, "junk", &["--", "sh", "-c", "echo not json"]);
        shmio(&["call", &group, "junk", "--timeout", "20s"]).error("not JSON");
        silent.stop();
        junk.stop();
    }

    #[test]
    fn a_command_that_runs_too_long_is_killed() {
        let group = group();
        let _check = LeavesNothing(&group);
        let _check = LeavesNothing(&group);
        let marker = unique("bus-late");
        // The background `sleep` is in CMD's process group: killed with it.
        let script = format!("sleep 30 & sleep 30; echo {marker}");
        let listening = Listening::start(
            &group,
            "slow",
            &["--handler-timeout", "200ms", "--", "sh", "-c", &script],
        );
        let started = std::time::Instant::now();
        shmio(&["call", &group, "slow", "--timeout", "20s"]).error("handler timeout");
        assert!(started.elapsed() < Duration::from_secs(15));
        let stopped = listening.stop();
        assert!(!stopped.text().contains(&marker));
    }

    #[test]
    fn the_first_listener_answers_and_pid_picks_one() {
        let group = group();
        let _check = LeavesNothing(&group);
        let _check = LeavesNothing(&group);
        let first = Listening::start(&group, "who", &["--", "sh", "-c", &answering(1)]);
        let second = Listening::start(&group, "who", &["--", "sh", "-c", &answering(2)]);
        let n = |run: Run| json_lines(&run)[0]["n"].clone();
        assert_eq!(
            n(shmio(&["call", &group, "who", "--timeout", "20s"]).ok()),
            1
        );
        let pid = second.pid().to_string();
        assert_eq!(
            n(shmio(&["call", &group, "who", "--pid", &pid, "--timeout", "20s"]).ok()),
            2
        );
        let all = shmio(&["call", &group, "who", "[]", "--all", "--timeout", "20s"]).ok();
        assert_eq!(
            json_lines(&all),
            [
                json!({"pid": first.pid(), "reply": {"n": 1, "args": []}}),
                json!({"pid": second.pid(), "reply": {"n": 2, "args": []}}),
            ]
        );
        first.stop();
        second.stop();
    }

    /// The sequence of a user's report: two listeners; a call; the first
    /// killed while idle; each later `shmio call` (a new member, which may
    /// take the dead one's seat) is answered by the second, and
    /// `listeners` names the right pid; once the second stops, nothing of
    /// the group is left, not even the callers' inboxes.
    #[test]
    fn a_call_goes_on_past_a_listener_killed_while_idle() {
        let group = group();
        let _check = LeavesNothing(&group);
        let mut first = Listening::start(&group, "who", &["--", "sh", "-c", &answering(1)]);
        let second = Listening::start(&group, "who", &["--", "sh", "-c", &answering(2)]);
        let n = |run: Run| json_lines(&run)[0]["n"].clone();
        assert_eq!(
            n(shmio(&["call", &group, "who", "--timeout", "10s"]).ok()),
            1
        );
        assert_eq!(listener_pids(&group, "who"), [first.pid(), second.pid()]);
        first.child().kill();
        for _ in 0..2 {
            assert_eq!(
                n(shmio(&["call", &group, "who", "--timeout", "10s"]).ok()),
                2
            );
        }
        assert_eq!(listener_pids(&group, "who"), [second.pid()]);
        second.stop();
    }

    #[test]
    fn sigterm_ends_listen_and_unregisters_it() {
        let group = group();
        let _check = LeavesNothing(&group);
        let _check = LeavesNothing(&group);
        let staying = Listening::start(&group, "job", &[]);
        let leaving = Listening::start(&group, "job", &["--", "sh", "-c", &answering(1)]);
        let leaving_pid = leaving.pid();
        let run = leaving.stop();
        assert!(run.stderr.contains("stopped by signal"), "{}", run.stderr);
        let listed: Value =
            serde_json::from_str(&shmio(&["listeners", &group, "--json"]).ok().text()).unwrap();
        assert_eq!(
            listed,
            json!([{"command": "job", "order": 1, "pid": staying.pid()}]),
            "{leaving_pid} is gone"
        );
        staying.stop();
        shmio(&["listeners", &group]).error("no bus group");
    }
}
