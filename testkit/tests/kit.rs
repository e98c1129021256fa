//! The kit's own promises, with real child processes: a role runs and its
//! output is collected; ready, then killed; a child that ends early or
//! outlives a wait is reported (and killed); lines, and data after the
//! ready line on a pipe; a child's lifetime, and (Linux) its parent's
//! death, end it; a dropped child is killed; a hung call is reported. And
//! the forms tools use: the checked ones, a wait that leaves the child
//! running, this binary with arguments of its own, no lifetime, a kill by
//! id, a detached child, a parent already gone.

use std::io::Read;
use std::time::Duration;

#[cfg(unix)]
use shmio_testkit::kill_by_id;
use shmio_testkit::{
    arg, checked_poll_until, checked_within, ready, until_killed, within, Output, Spawn, LIMIT,
    WATCHDOG_EXIT,
};

const SHORT: Duration = Duration::from_millis(300);

shmio_testkit::roles! {
    Echo => println!("echo: {}", arg("WORDS")),
    Hold => {
        ready();
        until_killed()
    },
    ExitEarly => std::process::exit(3),
    Stall => until_killed(),
    Lines => {
        ready();
        println!("one");
        println!("two");
    },
    ReadyThenData => {
        ready();
        println!("data after ready");
    },
    #[cfg(target_os = "linux")]
    Parent => child_parent(),
}

#[test]
fn a_role_runs_and_its_output_is_collected() {
    let done = Role::Echo.spawn().env("WORDS", "hello there").run();
    done.assert_success("echo");
    assert!(
        done.stdout_text().contains("echo: hello there\n"),
        "{}",
        done.stdout_text()
    );
}

#[test]
fn a_ready_child_is_killed_and_kept_for_its_handle() {
    let mut dead = Role::Hold.spawn().kill_when_ready();
    let status = dead.exited().expect("killed and reaped");
    assert!(!status.success(), "{status}");
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "SIGKILL");
    }
}

#[test]
fn a_child_that_exits_before_it_is_ready_is_reported() {
    let mut child = Role::ExitEarly.spawn().start();
    let failure = child.checked_wait_ready().unwrap_err().to_string();
    assert!(failure.contains("exited before it was ready"), "{failure}");
    assert_eq!(child.exited().and_then(|status| status.code()), Some(3));
}

#[test]
fn a_wait_past_the_limit_fails_and_kills_the_child() {
    let mut child = Role::Stall.spawn().limit(SHORT).start();
    let failure = child.checked_wait_ready().unwrap_err().to_string();
    assert!(failure.contains("still running after"), "{failure}");
    assert!(child.exited().is_some(), "killed and reaped");

    let mut child = Role::Stall.spawn().limit(SHORT).start();
    let failure = child.checked_wait().unwrap_err().to_string();
    assert!(failure.contains("killed"), "{failure}");
    assert!(child.exited().is_some(), "killed and reaped");
}

#[test]
fn lines_after_ready() {
    let mut child = Role::Lines.spawn().start();
    child.wait_ready();
    child.expect_line("one");
    child.expect_line("two");
    child.wait_success();
}

#[test]
fn data_after_the_ready_line_stays_on_the_pipe() {
    let mut child = Role::ReadyThenData.spawn().stdout(Output::Pipe).start();
    child.wait_ready();
    let mut rest = String::new();
    child.take_stdout().read_to_string(&mut rest).unwrap();
    assert!(rest.starts_with("data after ready\n"), "{rest:?}");
    child.wait_success();
}

#[test]
fn a_child_exits_at_the_end_of_its_lifetime() {
    let status = Role::Stall.spawn().lifetime(SHORT).start().wait();
    assert_eq!(status.code(), Some(WATCHDOG_EXIT), "{status}");
}

/// Whether process `pid` is gone (or a zombie nobody reaped yet).
#[cfg(target_os = "linux")]
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state follows the command, which is in parentheses.
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
    }
}

#[cfg(target_os = "linux")]
#[test]
fn a_dropped_child_is_killed() {
    let mut child = Role::Hold.spawn().start();
    child.wait_ready();
    let pid = child.id();
    drop(child);
    assert!(gone(pid), "dropped while running: killed and reaped");
}

/// Starts a holder, says its pid, and waits to be killed.
#[cfg(target_os = "linux")]
fn child_parent() {
    let mut holder = Role::Hold.spawn().start();
    holder.wait_ready();
    // A line of its own: libtest's "test child_entry ... " comes first.
    println!("\nholder {}", holder.id());
    ready();
    until_killed()
}

#[cfg(target_os = "linux")]
#[test]
fn a_child_dies_with_its_parent() {
    let mut parent = Role::Parent.spawn().start();
    parent.wait_ready();
    let done = {
        parent.kill();
        parent.finish()
    };
    let text = done.stdout_text();
    let holder: u32 = text
        .lines()
        .find_map(|line| line.strip_prefix("holder "))
        .unwrap_or_else(|| panic!("the holder's pid in {text:?}"))
        .parse()
        .unwrap();
    shmio_testkit::poll_until(
        "the holder to die with its parent",
        Duration::from_secs(30),
        Duration::from_millis(10),
        || gone(holder),
    );
}

#[test]
fn within_returns_the_value_or_reports_a_hang() {
    assert_eq!(within("a quick call", SHORT * 10, || 42), 42);
    let hung = std::panic::catch_unwind(|| {
        within("a slow call", SHORT, || std::thread::sleep(SHORT * 10))
    });
    let message = *hung.unwrap_err().downcast::<String>().unwrap();
    assert!(message.contains("a slow call hung"), "{message}");
}

#[test]
fn the_checked_forms_return_what_went_wrong() {
    let hung = checked_within("a slow call", SHORT, || std::thread::sleep(SHORT * 10));
    assert!(hung.unwrap_err().to_string().contains("a slow call hung"));
    assert_eq!(checked_within("a quick call", SHORT * 10, || 7).unwrap(), 7);

    let never = checked_poll_until("never", SHORT, Duration::from_millis(10), || false);
    assert!(never.unwrap_err().to_string().contains("waiting for never"));
    assert!(checked_poll_until("now", SHORT, Duration::from_millis(10), || true).is_ok());

    let mut child = Role::Stall.spawn().start();
    assert!(child.checked_exited().unwrap().is_none());
    let status = child.checked_kill().unwrap();
    assert!(!status.success(), "{status}");
    assert_eq!(
        child.checked_kill().unwrap(),
        status,
        "killed once, reaped once"
    );
}

#[test]
fn a_wait_within_leaves_a_running_child_running() {
    let mut child = Role::Hold.spawn().start();
    child.wait_ready();
    assert_eq!(child.wait_within(SHORT).unwrap(), None);
    child.assert_running();
    child.kill();

    let mut child = Role::ExitEarly.spawn().start();
    let status = child.wait_within(LIMIT).unwrap().expect("it exits at once");
    assert_eq!(status.code(), Some(3));
}

#[test]
fn this_binary_with_arguments_of_its_own() {
    // The test binary, asked to list its tests: no role, and no libtest
    // filter but the one given.
    let done = Spawn::this_binary()
        .unwrap()
        .args(["--list", "this_binary_with_arguments_of_its_own"])
        .run();
    done.assert_success("the test binary, listing");
    assert!(
        done.stdout_text()
            .contains("this_binary_with_arguments_of_its_own: test"),
        "{}",
        done.stdout_text()
    );
}

#[test]
fn a_child_with_no_lifetime_ignores_its_parents() {
    // The lifetime this process would pass on, were the child not told
    // otherwise, is far shorter than the wait.
    let mut child = Role::Hold
        .spawn()
        .env("SHMIO_CHILD_LIFETIME_MS", "1")
        .no_lifetime()
        .start();
    child.wait_ready();
    std::thread::sleep(SHORT);
    child.assert_running();
}

#[cfg(unix)]
#[test]
fn a_child_killed_by_its_id() {
    let mut child = Role::Hold.spawn().start();
    child.wait_ready();
    kill_by_id(child.id()).unwrap();
    let status = child.wait();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9), "SIGKILL");
}

#[cfg(target_os = "linux")]
#[test]
fn a_detached_child_runs_on() {
    let mut child = Role::Hold.spawn().start();
    child.wait_ready();
    let pid = child.id();
    child.detach();
    assert!(!gone(pid), "detached: left running");
    kill_by_id(pid).unwrap();
    // Reaped by nobody until this test binary exits: a zombie is gone enough.
    shmio_testkit::poll_until("the detached child to die", LIMIT, SHORT / 30, || gone(pid));
}

#[cfg(target_os = "linux")]
#[test]
fn a_parent_already_gone_is_reported() {
    if std::os::unix::process::parent_id() == 0 {
        return; // A parent outside this pid namespace: nothing to compare.
    }
    // This process is not its own parent: "the parent is gone".
    let error = shmio_testkit::die_with_parent(Some(std::process::id())).unwrap_err();
    assert_eq!(error.raw_os_error(), Some(3), "ESRCH: {error}");
    // This thread now has a parent-death signal: harmless in a test binary,
    // whose parent (cargo) outlives it.
    shmio_testkit::die_with_parent(None).unwrap();
}
