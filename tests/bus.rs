//! The bus: the rules in one process, then real processes: many callers
//! and listeners, re-entrant handlers, listeners killed during calls.

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use shmio::{Bus, Error, Mapping};
use shmio_testkit::{arg, checksum, ready, unique_name, wait_until, Child, Input, Rng};

shmio_testkit::roles! {
    Serve => serve(),
    Call => call_many(),
    Reenter => reenter(),
    Polled => answer_polled(),
    Tally => slow_and_tally(),
    ServeUntilQuit => serve_until_quit(),
}

/// Listens to `echo`, and to `quit`, whose handler drops both listeners;
/// serves on its main thread (`Bus::serve`) until then, and exits.
fn serve_until_quit() {
    use std::sync::{Arc, Mutex};
    let bus = Bus::join(&arg("GROUP")).unwrap();
    let listeners = Arc::new(Mutex::new(Vec::new()));
    let slot = Arc::clone(&listeners);
    let echo = bus.listen("echo", |text: String| Some(text)).unwrap();
    let quit = bus
        .listen("quit", move |(): ()| {
            slot.lock().unwrap().clear();
            Some(true)
        })
        .unwrap();
    listeners.lock().unwrap().extend([echo, quit]);
    bus.serve().unwrap();
}

/// `Bus::serve` serves on the calling thread until the member has no
/// listener left: a listener process's main thread has somewhere to wait.
#[test]
fn serve_returns_once_the_last_listener_is_gone() {
    let group = unique_name("bus-serve");
    let bus = Bus::join(&group).unwrap();
    let mut child = Role::ServeUntilQuit
        .spawn()
        .env("GROUP", &group)
        .limit(LIMIT)
        .start();
    bus.wait_for_listener("quit", LIMIT).unwrap();
    assert_eq!(
        bus.call::<_, String>("echo", &"hi", LIMIT)
            .unwrap()
            .as_deref(),
        Some("hi")
    );
    assert_eq!(bus.call::<_, bool>("quit", &(), LIMIT).unwrap(), Some(true));
    child.wait_success();
    assert!(matches!(
        bus.call::<_, String>("echo", &"hi", LIMIT),
        Err(Error::NoListener { .. })
    ));
}

/// Listens to `slow` (sleeps SLOW_MS, saying in the mapping TALLY when it
/// starts, at offset 8) and to `tally` (counts its runs at offset 0 and
/// returns the count), on its own thread if OWN_THREAD is set; says ready
/// and serves until stdin closes.
fn slow_and_tally() {
    let bus = Bus::join(&arg("GROUP")).unwrap();
    let slow_ms: u64 = arg("SLOW_MS").parse().unwrap();
    let tally = Mapping::open(&arg("TALLY")).unwrap();
    let started = tally.clone();
    let _slow = bus
        .listen("slow", move |_: ()| {
            started
                .atomic_u32(8)
                .unwrap()
                .store(1, std::sync::atomic::Ordering::Release);
            std::thread::sleep(Duration::from_millis(slow_ms));
            Some(0u64)
        })
        .unwrap();
    let count = move |_: ()| {
        let counter = tally.atomic_u64(0).unwrap();
        Some(counter.fetch_add(1, std::sync::atomic::Ordering::AcqRel) + 1)
    };
    let _tally = if std::env::var("OWN_THREAD").is_ok() {
        bus.listen_on_own_thread("tally", count).unwrap()
    } else {
        bus.listen("tally", count).unwrap()
    };
    ready();
    let mut line = String::new();
    let _ = BufReader::new(std::io::stdin()).read_line(&mut line);
}

/// A `Tally` listener in a process of its own, and the mapping it counts in.
fn start_tally(group: &str, own_thread: bool) -> (Child, Mapping) {
    let tally_name = format!("{group}-tally");
    let tally = Mapping::create(&tally_name, 4096).unwrap();
    let mut spawn = Role::Tally
        .spawn()
        .env("GROUP", group)
        .env("SLOW_MS", "600")
        .env("TALLY", &tally_name)
        .stdin(Input::Pipe)
        .limit(LIMIT);
    if own_thread {
        spawn = spawn.env("OWN_THREAD", "1");
    }
    let mut child = spawn.start();
    child.wait_ready();
    (child, tally)
}

/// Calls `slow` from another thread of this process, and returns once its
/// handler has started in the listener.
fn keep_the_listener_busy(group: &str, tally: &Mapping) -> std::thread::JoinHandle<()> {
    let group = group.to_owned();
    let caller = std::thread::spawn(move || {
        let bus = Bus::join(&group).unwrap();
        assert_eq!(bus.call::<_, u64>("slow", &(), LIMIT).unwrap(), Some(0));
    });
    let flag = tally.atomic_u32(8).unwrap();
    wait_until("the slow handler to start", LIMIT, || {
        flag.load(std::sync::atomic::Ordering::Acquire) == 1
    });
    caller
}

/// A call whose caller gave up while it waited behind a slow handler is
/// skipped when its turn comes: its handler never runs.
#[test]
fn a_request_whose_caller_gave_up_is_skipped() {
    let group = unique_name("bus-gave-up");
    let (mut child, tally) = start_tally(&group, false);
    let bus = Bus::join(&group).unwrap();
    let busy = keep_the_listener_busy(&group, &tally);
    assert!(bus
        .call::<_, u64>("tally", &(), Duration::from_millis(50))
        .unwrap_err()
        .is_timed_out());
    busy.join().unwrap();
    assert_eq!(
        bus.call::<_, u64>("tally", &(), LIMIT).unwrap(),
        Some(1),
        "the call given up on never ran"
    );
    drop(bus);
    child.close_stdin();
    child.wait_success();
}

/// A listener on a thread of its own answers while another handler of
/// its process is busy; `wait_for_listener` finds it, and says when a
/// command has none.
#[test]
fn a_listener_on_its_own_thread_answers_past_a_slow_one() {
    let group = unique_name("bus-own-thread");
    let bus = Bus::join(&group).unwrap();
    assert!(bus
        .wait_for_listener("tally", Duration::from_millis(20))
        .unwrap_err()
        .is_timed_out());
    let (mut child, tally) = start_tally(&group, true);
    assert_eq!(
        bus.wait_for_listener("tally", LIMIT).unwrap()[0].pid,
        child.id()
    );
    let busy = keep_the_listener_busy(&group, &tally);
    assert_eq!(
        bus.call::<_, u64>("tally", &(), Duration::from_millis(400))
            .unwrap(),
        Some(1),
        "not behind the slow handler"
    );
    busy.join().unwrap();
    drop(bus);
    child.close_stdin();
    child.wait_success();
}

const SECOND: Duration = Duration::from_secs(1);
const LIMIT: Duration = Duration::from_secs(120);

/// A request the echo handler answers: its id and a checksum of it.
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq, Clone, Copy)]
struct Ping {
    caller: u32,
    id: u64,
    sum: u64,
}

/// The echo handler's reply: the request, and who answered.
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq)]
struct Pong {
    ping: Ping,
    pid: u32,
}

/// Nothing of `group` is left in `/dev/shm` (Linux; elsewhere names go
/// with their handles, and cannot be listed).
#[track_caller]
fn assert_nothing_left(group: &str) {
    #[cfg(target_os = "linux")]
    {
        let left = shmio_testkit::shm_entries_with_prefix(group);
        assert!(left.is_empty(), "left behind: {left:?}");
    }
    #[cfg(not(target_os = "linux"))]
    let _ = group;
}

fn ping(caller: u32, id: u64) -> Ping {
    Ping {
        caller,
        id,
        sum: checksum(&[u64::from(caller), id]),
    }
}

// In one process.

#[test]
fn the_first_listener_with_a_reply_answers() {
    let bus = Bus::join(&unique_name("bus-first")).unwrap();
    let _pass = bus
        .listen("who", |_: ()| Ok::<Option<String>, String>(None))
        .unwrap();
    let _first = bus
        .listen("who", |_: ()| Ok::<_, String>(Some("first")))
        .unwrap();
    let _second = bus
        .listen("who", |_: ()| Ok::<_, String>(Some("second")))
        .unwrap();
    let reply: Option<String> = bus.call("who", &(), SECOND).unwrap();
    assert_eq!(reply.as_deref(), Some("first"));
    drop(_first);
    let reply: Option<String> = bus.call("who", &(), SECOND).unwrap();
    assert_eq!(
        reply.as_deref(),
        Some("second"),
        "a dropped listener is gone"
    );
    assert_eq!(
        bus.call::<_, String>("nobody", &(), SECOND),
        Err(Error::NoListener {
            group: bus.group().to_owned(),
            command: "nobody".into(),
            pid: None,
        }),
        "a command no one listens to says so"
    );
    assert_eq!(
        bus.call_pid::<_, String>(std::process::id() + 1_000_000, "who", &(), SECOND)
            .unwrap_err()
            .kind(),
        std::io::ErrorKind::NotFound,
        "so does a process that does not listen"
    );
    let _pass = bus
        .listen("pass", |_: ()| Ok::<Option<u32>, String>(None))
        .unwrap();
    assert_eq!(
        bus.call::<_, u32>("pass", &(), SECOND),
        Ok(None),
        "every listener passed: no reply, no error"
    );
    let listeners = bus.listeners("who").unwrap();
    assert_eq!(listeners.len(), 2);
    assert!(listeners.iter().all(|l| l.pid == std::process::id()));
}

#[test]
fn handler_errors_panics_and_bad_arguments_reach_the_caller() {
    let bus = Bus::join(&unique_name("bus-fail")).unwrap();
    let _fail = bus
        .listen("fail", |_: ()| Err::<Option<()>, _>("no such thing"))
        .unwrap();
    let _panic = bus
        .listen("panic", |_: ()| -> Result<Option<()>, String> {
            panic!("boom")
        })
        .unwrap();
    let _add = bus
        .listen("add", |(a, b): (i64, i64)| Ok::<_, String>(Some(a + b)))
        .unwrap();
    for (command, wanted) in [("fail", "no such thing"), ("panic", "panicked: boom")] {
        match bus.call::<_, ()>(command, &(), SECOND) {
            Err(Error::Handler { pid, message }) => {
                assert_eq!(pid, std::process::id());
                assert!(message.contains(wanted), "{message}");
            }
            other => panic!("{command}: {other:?}"),
        }
    }
    match bus.call::<_, i64>("add", &"not two numbers", SECOND) {
        Err(Error::Handler { message, .. }) => {
            assert!(message.contains("bad arguments"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    match bus.call::<_, String>("add", &(1, 2), SECOND) {
        Err(Error::Decode { .. }) => {}
        other => panic!("a reply that is not the type asked for: {other:?}"),
    }
    let sum: Option<i64> = bus.call("add", &(2, 3), SECOND).unwrap();
    assert_eq!(sum, Some(5), "the listener goes on serving");
}

#[test]
fn bad_input_is_a_typed_error() {
    let group = unique_name("bus-input");
    let bus = Bus::options().max_message_size(256).join(&group).unwrap();
    let _echo = bus
        .listen("echo", |text: String| Ok::<_, String>(Some(text)))
        .unwrap();
    // Larger than the inbox's slots, both ways: spilled, and none of the
    // spills' names is left once taken.
    let large = "x".repeat(1000);
    assert_eq!(
        bus.call::<_, String>("echo", &large, SECOND).unwrap(),
        Some(large)
    );
    #[cfg(target_os = "linux")]
    {
        let spills = shmio_testkit::shm_entries_with_prefix(&format!("{group}@big."));
        assert!(spills.is_empty(), "{spills:?}");
    }
    for bad in ["", &"c".repeat(113)] {
        assert!(matches!(
            bus.call::<_, ()>(bad, &(), SECOND),
            Err(Error::InvalidName { .. })
        ));
        assert!(matches!(
            bus.listen(bad, |_: ()| Ok::<Option<()>, String>(None)),
            Err(Error::InvalidName { .. })
        ));
    }
    // A timeout too long for the clock waits as long as it takes: no overflow.
    assert_eq!(
        bus.call::<_, String>("echo", "forever", Duration::MAX)
            .unwrap(),
        Some("forever".to_owned())
    );
    // A group name held by another kind of object.
    let taken = unique_name("bus-taken");
    let _mapping = Mapping::create(&taken, 4096).unwrap();
    match Bus::join(&taken) {
        Err(Error::WrongKind { .. }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_handler_may_call_its_own_process() {
    let bus = std::sync::Arc::new(Bus::join(&unique_name("bus-self")).unwrap());
    let _inner = bus
        .listen("inner", |x: u32| Ok::<_, String>(Some(x * 2)))
        .unwrap();
    let weak = std::sync::Arc::downgrade(&bus);
    let _outer = bus
        .listen("outer", move |x: u32| {
            let bus = weak.upgrade().ok_or("gone")?;
            let doubled: Option<u32> = bus.call("inner", &x, SECOND).map_err(|e| e.to_string())?;
            Ok::<_, String>(doubled.map(|d| d + 1))
        })
        .unwrap();
    let reply: Option<u32> = bus.call("outer", &20, SECOND).unwrap();
    assert_eq!(reply, Some(41));
}

#[test]
fn posts_arrive_in_order() {
    let bus = Bus::join(&unique_name("bus-post")).unwrap();
    let (sender, received) = std::sync::mpsc::channel();
    let sender = std::sync::Mutex::new(sender);
    let _log = bus
        .listen("log", move |n: u32| {
            sender.lock().unwrap().send(n).unwrap();
            Ok::<Option<()>, String>(None)
        })
        .unwrap();
    for n in 0..50 {
        assert_eq!(bus.post("log", &n).unwrap(), 1);
    }
    let got: Vec<u32> = (0..50)
        .map(|_| received.recv_timeout(Duration::from_secs(10)).unwrap())
        .collect();
    assert_eq!(got, (0..50).collect::<Vec<_>>());
}

// Across processes.

/// Joins GROUP and listens: `echo` (a [`Pong`]), `slow` (after SLOW_MS),
/// `pass` (no reply), `inner` (x + 1000); says ready, and serves until its
/// stdin closes.
fn serve() {
    let bus = Bus::join(&arg("GROUP")).unwrap();
    let pid = std::process::id();
    let slow: u64 = std::env::var("SLOW_MS")
        .ok()
        .map_or(0, |ms| ms.parse().unwrap());
    let _echo = bus
        .listen("echo", move |ping: Ping| {
            Ok::<_, String>(Some(Pong { ping, pid }))
        })
        .unwrap();
    let _slow = bus
        .listen("slow", move |_: ()| {
            std::thread::sleep(Duration::from_millis(slow));
            Ok::<_, String>(Some(pid))
        })
        .unwrap();
    let _pass = bus
        .listen("pass", |_: ()| Ok::<Option<u32>, String>(None))
        .unwrap();
    let _inner = bus
        .listen("inner", |x: u32| Ok::<_, String>(Some(x + 1000)))
        .unwrap();
    let _size = bus
        .listen("size", |text: String| {
            Ok::<_, String>(Some((
                text.len(),
                checksum(&[text.bytes().map(u64::from).sum()]),
            )))
        })
        .unwrap();
    let _make = bus
        .listen("make", |len: usize| Ok::<_, String>(Some("y".repeat(len))))
        .unwrap();
    ready();
    let mut line = String::new();
    let _ = BufReader::new(std::io::stdin()).read_line(&mut line);
}

fn start_servers(group: &str, count: usize, slow_ms: u64) -> Vec<Child> {
    let mut servers: Vec<Child> = (0..count)
        .map(|_| {
            Role::Serve
                .spawn()
                .env("GROUP", group)
                .env("SLOW_MS", slow_ms.to_string())
                .stdin(Input::Pipe)
                .limit(LIMIT)
                .start()
        })
        .collect();
    for server in &mut servers {
        server.wait_ready();
    }
    servers
}

fn stop(servers: Vec<Child>) {
    for mut server in servers {
        server.close_stdin();
        server.wait_success();
    }
}

/// Joins GROUP and calls `echo` CALLS times, round robin over the
/// listeners in PIDS with `call_pid`: every reply must be its own request,
/// from the process asked.
fn call_many() {
    let bus = Bus::join(&arg("GROUP")).unwrap();
    let calls: u64 = arg("CALLS").parse().unwrap();
    let pids: Vec<u32> = arg("PIDS").split(',').map(|p| p.parse().unwrap()).collect();
    let me = std::process::id();
    for id in 0..calls {
        let pid = pids[(id % pids.len() as u64) as usize];
        let request = ping(me, id);
        let pong: Pong = bus
            .call_pid(pid, "echo", &request, Duration::from_secs(30))
            .unwrap()
            .expect("an echo");
        assert_eq!(pong, Pong { ping: request, pid }, "a reply crossed");
    }
    println!("calls done");
}

/// 8 callers × 4 listeners, each caller 10,000 calls (`SHMIO_BUS_CALLS`): every reply is its
/// own request's, none lost, none crossed.
#[test]
fn many_callers_many_listeners_every_reply_its_own() {
    let calls: u64 = std::env::var("SHMIO_BUS_CALLS").map_or(10_000, |n| n.parse().unwrap());
    let group = unique_name("bus-many");
    let _keep = Bus::join(&group).unwrap();
    let servers = start_servers(&group, 4, 0);
    let pids: Vec<String> = servers.iter().map(|s| s.id().to_string()).collect();
    let started = Instant::now();
    let mut callers: Vec<Child> = (0..8)
        .map(|_| {
            Role::Call
                .spawn()
                .env("GROUP", &group)
                .env("CALLS", calls.to_string())
                .env("PIDS", pids.join(","))
                .limit(LIMIT)
                .start()
        })
        .collect();
    for caller in &mut callers {
        caller.wait_success();
    }
    eprintln!(
        "8 callers × {calls} calls to 4 listeners in {:?}",
        started.elapsed()
    );
    stop(servers);
}

/// Listens to `outer`, whose handler calls `inner` in this process and in
/// the process OTHER, and replies with both.
fn reenter() {
    let bus = std::sync::Arc::new(Bus::join(&arg("GROUP")).unwrap());
    let other: u32 = arg("OTHER").parse().unwrap();
    let _inner = bus
        .listen("inner", |x: u32| Ok::<_, String>(Some(x + 1)))
        .unwrap();
    let weak = std::sync::Arc::downgrade(&bus);
    let _outer = bus
        .listen("outer", move |x: u32| {
            let bus = weak.upgrade().ok_or("gone")?;
            let me = std::process::id();
            let local: Option<u32> = bus
                .call_pid(me, "inner", &x, Duration::from_secs(10))
                .map_err(|e| e.to_string())?;
            let remote: Option<u32> = bus
                .call_pid(other, "inner", &x, Duration::from_secs(10))
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(Some((local, remote)))
        })
        .unwrap();
    ready();
    let mut line = String::new();
    let _ = BufReader::new(std::io::stdin()).read_line(&mut line);
}

/// A handler that calls a command of its own process and of another.
#[test]
fn a_handler_calls_its_own_process_and_another() {
    let group = unique_name("bus-reenter");
    let bus = Bus::join(&group).unwrap();
    let servers = start_servers(&group, 1, 0);
    let mut reenter = Role::Reenter
        .spawn()
        .env("GROUP", &group)
        .env("OTHER", servers[0].id().to_string())
        .stdin(Input::Pipe)
        .limit(LIMIT)
        .start();
    reenter.wait_ready();
    let reply: Option<(Option<u32>, Option<u32>)> =
        bus.call("outer", &7, Duration::from_secs(20)).unwrap();
    assert_eq!(reply, Some((Some(8), Some(1007))));
    reenter.close_stdin();
    reenter.wait_success();
    stop(servers);
}

/// `call_pid` asks only that process; `broadcast` asks everyone and says
/// who answered, who was too slow and who died.
#[test]
fn call_pid_and_broadcast_with_a_dead_and_a_slow_listener() {
    let group = unique_name("bus-broadcast");
    let bus = Bus::join(&group).unwrap();
    let mut servers = start_servers(&group, 2, 0);
    let mut slow = start_servers(&group, 1, 5_000);
    let pids: Vec<u32> = servers.iter().map(Child::id).collect();
    for &pid in &pids {
        let pong: Pong = bus
            .call_pid(pid, "echo", &ping(1, 2), Duration::from_secs(10))
            .unwrap()
            .unwrap();
        assert_eq!(pong.pid, pid);
    }
    servers[1].kill();
    let replies = bus
        .broadcast::<_, u32>("slow", &(), Duration::from_secs(2))
        .unwrap();
    assert_eq!(replies.answers.len(), 3);
    for answer in &replies.answers {
        match &answer.outcome {
            Ok(Some(pid)) => assert_eq!((*pid, answer.pid), (pids[0], pids[0])),
            Err(Error::ListenerDied { pid }) => assert_eq!(*pid, pids[1]),
            Err(Error::TimedOut { .. }) => assert_eq!(answer.pid, slow[0].id()),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(replies.replies().count(), 1);
    // The dead one was pruned.
    let listeners = bus.listeners("slow").unwrap();
    assert!(listeners.iter().all(|l| l.pid != pids[1]), "{listeners:?}");
    slow[0].kill();
    let _ = slow;
    stop(vec![servers.remove(0)]);
}

/// Listeners killed while they are called, 30 times: every call ends
/// (with a reply, `ListenerDied` or a timeout), none hangs, the group
/// works afterwards, and no name of it is left once every member left.
#[test]
fn listeners_killed_during_calls() {
    let group = unique_name("bus-storm");
    let bus = Bus::join(&group).unwrap();
    let mut survivors = start_servers(&group, 1, 0);
    let mut rng = Rng::new(Rng::fresh_seed());
    let mut outcomes = [0u32; 3];
    for round in 0..30 {
        let mut victim = start_servers(&group, 1, 20);
        let victim_pid = victim[0].id();
        // Call the slow command on the victim, and kill it during the call.
        let killer = std::thread::spawn({
            let wait = Duration::from_millis(rng.below(30));
            move || {
                std::thread::sleep(wait);
                victim[0].kill();
            }
        });
        let started = Instant::now();
        match bus.call_pid::<_, u32>(victim_pid, "slow", &(), Duration::from_secs(10)) {
            Ok(Some(pid)) => {
                assert_eq!(pid, victim_pid);
                outcomes[0] += 1
            }
            Err(Error::ListenerDied { pid }) => {
                assert_eq!(pid, victim_pid);
                outcomes[1] += 1
            }
            Err(Error::TimedOut { .. }) => outcomes[2] += 1,
            other => panic!("round {round}: {other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(11), "round {round}");
        killer.join().unwrap();
        let pong: Pong = bus
            .call("echo", &ping(9, round), Duration::from_secs(10))
            .unwrap()
            .expect("the survivor answers");
        assert_eq!(pong.pid, survivors[0].id());
    }
    eprintln!("replied, died, timed out: {outcomes:?}");
    stop(std::mem::take(&mut survivors));
    drop(bus);
    assert_nothing_left(&group);
}

/// A listener killed while a `call` waits on it: the call goes on to the
/// next listener, as aardio's loop would, and that one answers; the dead
/// one is pruned.
#[test]
fn a_call_whose_listener_dies_is_answered_by_the_next() {
    let group = unique_name("bus-next");
    let bus = Bus::join(&group).unwrap();
    // Registered first, so asked first: it sleeps 60 s in its handler.
    let mut doomed = start_servers(&group, 1, 60_000);
    let next = start_servers(&group, 1, 0);
    let doomed_pid = doomed[0].id();
    let killer = std::thread::spawn(move || {
        // Long enough for the request to be in the handler; a kill before
        // it would end the same way.
        std::thread::sleep(Duration::from_millis(50));
        doomed[0].kill();
    });
    let started = Instant::now();
    let answer: Option<u32> = bus.call("slow", &(), Duration::from_secs(20)).unwrap();
    assert_eq!(answer, Some(next[0].id()));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    killer.join().unwrap();
    let listeners = bus.listeners("slow").unwrap();
    assert!(
        listeners.iter().all(|l| l.pid != doomed_pid),
        "{listeners:?}"
    );
    stop(next);
}

/// A listener killed while idle, found dead by a member that joined after
/// (as every `shmio call` is, taking the dead one's seat): it is skipped
/// and pruned, the next listener answers, and no error names anyone.
#[test]
fn a_listener_dead_before_the_call_is_skipped() {
    let group = unique_name("bus-dead-before");
    let mut first = start_servers(&group, 1, 0);
    let next = start_servers(&group, 1, 0);
    first[0].kill();
    let caller = Bus::join(&group).unwrap();
    let answer: Option<u32> = caller.call("slow", &(), Duration::from_secs(10)).unwrap();
    assert_eq!(answer, Some(next[0].id()));
    let pids: Vec<u32> = caller
        .listeners("slow")
        .unwrap()
        .iter()
        .map(|l| l.pid)
        .collect();
    assert_eq!(
        pids,
        [next[0].id()],
        "the dead one is pruned, the pids are right"
    );
    drop(caller);
    stop(next);
    assert_nothing_left(&group);
}

/// `call_pid` to a listener that died while idle: `ListenerDied` naming it
/// (not the caller), and it is pruned.
#[test]
fn call_pid_to_a_dead_listener_names_it() {
    let group = unique_name("bus-dead-pid");
    let bus = Bus::join(&group).unwrap();
    let mut doomed = start_servers(&group, 1, 0);
    let dead = doomed[0].id();
    let pong: Pong = bus
        .call_pid(dead, "echo", &ping(1, 1), Duration::from_secs(10))
        .unwrap()
        .unwrap();
    assert_eq!(pong.pid, dead);
    doomed[0].kill();
    match bus.call_pid::<_, Pong>(dead, "echo", &ping(1, 2), Duration::from_secs(10)) {
        Err(Error::ListenerDied { pid }) => assert_eq!(pid, dead),
        other => panic!("{other:?}"),
    }
    assert!(bus.listeners("echo").unwrap().is_empty());
}

/// Members killed in every order while each holds the others' inboxes
/// (the caller called every listener, so each holds the caller's inbox and
/// the caller theirs): once the last one leaves, normally, nothing of the
/// group is left in `/dev/shm`, not the registry, not the lock, not one
/// inbox of the living or the dead.
#[test]
fn nothing_of_a_group_outlives_its_last_member_whoever_was_killed() {
    for order in [
        [0, 1, 2],
        [0, 2, 1],
        [1, 0, 2],
        [1, 2, 0],
        [2, 0, 1],
        [2, 1, 0],
    ] {
        let group = unique_name("bus-orders");
        let caller = Bus::join(&group).unwrap();
        let mut servers = start_servers(&group, 3, 0);
        for server in &servers {
            let pong: Pong = caller
                .call_pid(server.id(), "echo", &ping(1, 1), Duration::from_secs(10))
                .unwrap()
                .unwrap();
            assert_eq!(pong.pid, server.id());
        }
        servers[order[0]].kill();
        servers[order[1]].kill();
        drop(caller);
        let last = servers.remove(order[2]);
        stop(vec![last]);
        assert_nothing_left(&group);
    }
}

/// A view reads who listens without joining: it makes no group that is
/// not there, takes no seat and makes no inbox, and leaves out a listener
/// whose process died.
#[test]
fn a_view_reads_the_listeners_and_creates_nothing() {
    let group = unique_name("bus-view");
    assert!(matches!(Bus::view(&group), Err(Error::NotFound { .. })));
    let entries = || {
        #[cfg(target_os = "linux")]
        return shmio_testkit::shm_entries_with_prefix(&group);
        #[cfg(not(target_os = "linux"))]
        return Vec::<String>::new();
    };
    assert!(entries().is_empty(), "a view of no group made one");
    let mut servers = start_servers(&group, 2, 0);
    let before = entries();
    let view = Bus::view(&group).unwrap();
    let pids: Vec<u32> = view
        .listeners("echo")
        .unwrap()
        .iter()
        .map(|l| l.pid)
        .collect();
    let mut started = vec![servers[0].id(), servers[1].id()];
    started.sort_unstable();
    let mut pids = pids;
    pids.sort_unstable();
    assert_eq!(pids, started, "servers start at once: any order");
    assert_eq!(
        view.commands().unwrap().len(),
        12,
        "6 commands of 2 servers"
    );
    assert_eq!(entries(), before, "the view made something");
    servers[0].kill();
    let pids: Vec<u32> = view
        .listeners("echo")
        .unwrap()
        .iter()
        .map(|l| l.pid)
        .collect();
    assert_eq!(pids, [servers[1].id()], "a dead listener is left out");
    drop(view);
    stop(vec![servers.remove(1)]);
    assert!(entries().is_empty(), "left behind: {:?}", entries());
}

/// Arguments and replies of 1 MiB between processes: larger than any
/// inbox's slots, they travel spilled to mappings of their own; calls go
/// on as before, and nothing of the spills is left.
#[test]
fn calls_of_a_mebibyte_each_way() {
    let group = unique_name("bus-big");
    let bus = Bus::join(&group).unwrap();
    let servers = start_servers(&group, 2, 0);
    for round in 0..4u64 {
        let text: String = (0..1 << 20)
            .map(|i| char::from(b'a' + ((i + round) % 26) as u8))
            .collect();
        let sum = checksum(&[text.bytes().map(u64::from).sum()]);
        let got: Option<(usize, u64)> = bus.call("size", &text, Duration::from_secs(30)).unwrap();
        assert_eq!(got, Some((1 << 20, sum)), "round {round}");
        let made: Option<String> = bus
            .call("make", &(1usize << 20), Duration::from_secs(30))
            .unwrap();
        assert_eq!(made.map(|made| made.len()), Some(1 << 20));
    }
    stop(servers);
    drop(bus);
    assert_nothing_left(&group);
}

/// Names in the way of a spill (a FIFO, a symlink planted where the next
/// spilled message would go) are skipped, never opened, followed or
/// removed: the call goes through the next free name.
#[cfg(target_os = "linux")]
#[test]
fn a_spill_goes_past_names_planted_in_its_way() {
    let group = unique_name("bus-squat");
    let bus = Bus::join(&group).unwrap();
    let _echo = bus
        .listen("echo", |text: String| Ok::<_, String>(Some(text)))
        .unwrap();
    // The first member of a new group signs with token 0x400; its spills
    // are numbered from 1.
    let fifo = format!("/dev/shm/{group}@big.400.1");
    let link = format!("/dev/shm/{group}@big.400.2");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    std::os::unix::fs::symlink("/etc/hostname", &link).unwrap();
    let large = "x".repeat(3000);
    assert_eq!(
        bus.call::<_, String>("echo", &large, SECOND).unwrap(),
        Some(large)
    );
    for planted in [&fifo, &link] {
        assert!(
            std::fs::symlink_metadata(planted).is_ok(),
            "{planted} was removed"
        );
        std::fs::remove_file(planted).unwrap();
    }
    drop(_echo);
    drop(bus);
    assert_nothing_left(&group);
}

/// Listens to `double` with no handler and answers from its own loop
/// (`next_request`): x * 2, a failure for 13, a pass for 7 (by dropping
/// the request), and counts posts of `note`, which `notes` returns; until
/// its stdin closes.
fn answer_polled() {
    let bus = Bus::join(&arg("GROUP")).unwrap();
    let _double = bus.listen_polled("double").unwrap();
    let _note = bus.listen_polled("note").unwrap();
    let _notes = bus.listen_polled("notes").unwrap();
    let stdin_closed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    std::thread::spawn({
        let closed = std::sync::Arc::clone(&stdin_closed);
        move || {
            let _ = BufReader::new(std::io::stdin()).read_line(&mut String::new());
            closed.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    });
    ready();
    let mut notes = Vec::new();
    while !stdin_closed.load(std::sync::atomic::Ordering::SeqCst) {
        let request = match bus.next_request(Duration::from_millis(100)) {
            Ok(request) => request,
            Err(error) if error.is_timed_out() => continue,
            Err(error) => panic!("{error}"),
        };
        match request.command() {
            "double" => match request.args::<u64>() {
                Err(error) => request.fail(format!("not a number: {error}")),
                Ok(13) => request.fail("13 is unlucky"),
                Ok(7) => drop(request),
                Ok(x) => request.reply(&(x * 2)).unwrap(),
            },
            "note" => {
                assert!(request.is_post());
                notes.push(request.args::<u32>().unwrap());
            }
            "notes" => request.reply(&notes).unwrap(),
            other => panic!("{other}"),
        }
    }
}

/// A process that answers from its own loop, with no dispatch thread:
/// replies, failures, passes (on to the next listener, a handler here),
/// posts in order, and a bad argument.
#[test]
fn a_program_answers_requests_from_its_own_loop() {
    let group = unique_name("bus-polled");
    let bus = Bus::join(&group).unwrap();
    let mut child = Role::Polled
        .spawn()
        .env("GROUP", &group)
        .stdin(Input::Pipe)
        .limit(LIMIT)
        .start();
    child.wait_ready();
    let pid = child.id();
    // After the child's, so asked second.
    let _fallback = bus
        .listen("double", |_: u64| Ok::<_, String>(Some(0u64)))
        .unwrap();
    let double = |x: u64| bus.call::<_, u64>("double", &x, 5 * SECOND);
    assert_eq!(double(21).unwrap(), Some(42));
    match double(13) {
        Err(Error::Handler { pid: from, message }) => {
            assert_eq!((from, message.as_str()), (pid, "13 is unlucky"))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        double(7).unwrap(),
        Some(0),
        "passed on to the next listener"
    );
    for note in 0..50u32 {
        assert_eq!(bus.post("note", &note).unwrap(), 1);
    }
    let notes: Option<Vec<u32>> = bus.call("notes", &(), 5 * SECOND).unwrap();
    assert_eq!(notes, Some((0..50).collect()));
    match bus.call::<_, u64>("double", "seven", 5 * SECOND) {
        Err(Error::Handler { pid: from, message }) => {
            assert_eq!(from, pid);
            assert!(message.starts_with("not a number: "), "{message}");
        }
        other => panic!("{other:?}"),
    }
    child.close_stdin();
    child.wait_success();
}

/// A group gone while a process still holds one of its inboxes (another
/// member's handle on it, say), then joined afresh: the new group deals
/// the same tokens again, and its member must not take over the inbox
/// still held (with other options, or with messages in it).
#[cfg(target_os = "linux")]
#[test]
fn a_new_group_never_shares_an_inbox_still_held_from_an_old_one() {
    let group = unique_name("bus-again");
    let first = Bus::join(&group).unwrap();
    let _listening = first.listen_polled("anything").unwrap();
    let inboxes = shmio_testkit::shm_entries_with_prefix(&format!("{group}@in."));
    assert_eq!(inboxes.len(), 1, "{inboxes:?}");
    let held = shmio::Channel::open(&inboxes[0]).unwrap();
    drop(_listening);
    drop(first);
    assert!(shmio_testkit::shm_entries_with_prefix(&format!("{group}@bus")).is_empty());

    let again = Bus::options()
        .max_message_size(1 << 16)
        .join(&group)
        .expect("a fresh inbox, not the held one");
    let _echo = again
        .listen("echo", |x: u32| Ok::<_, String>(Some(x)))
        .unwrap();
    assert_eq!(
        again.call::<_, u32>("echo", &7, 5 * SECOND).unwrap(),
        Some(7)
    );
    assert!(held.try_recv().is_err(), "the old inbox got a message");
    drop(again);
    drop(held);
    assert_nothing_left(&group);
}

/// A member makes an inbox only when something can come to it: none to
/// join, post or look; one for its calls, let go once it is idle, and
/// made again (a new incarnation) for the next call, which the listener
/// answers there and not into the inbox let go.
#[cfg(target_os = "linux")]
#[test]
fn a_member_has_an_inbox_only_while_something_can_come_to_it() {
    let group = unique_name("bus-lazy");
    let servers = start_servers(&group, 1, 0);
    let inboxes = || shmio_testkit::shm_entries_with_prefix(&format!("{group}@in."));
    let listeners = inboxes();
    assert_eq!(listeners.len(), 1, "a listener's inbox: {listeners:?}");
    let mine = || -> Vec<String> {
        let mut mine = inboxes();
        mine.retain(|name| !listeners.contains(name));
        mine
    };

    let bus = Bus::join(&group).unwrap();
    assert_eq!(mine(), Vec::<String>::new(), "joining makes no inbox");
    assert_eq!(bus.post("pass", &()).unwrap(), 1);
    assert_eq!(bus.listeners("echo").unwrap().len(), 1);
    assert!(!bus.commands().unwrap().is_empty());
    assert_eq!(
        mine(),
        Vec::<String>::new(),
        "posting and looking make none"
    );

    let mut seen = Vec::new();
    for round in 0..2 {
        let pong: Option<Pong> = bus.call("echo", &ping(1, round), 5 * SECOND).unwrap();
        assert_eq!(pong.expect("a reply").ping, ping(1, round));
        let now = mine();
        assert_eq!(now.len(), 1, "a caller's inbox after its call: {now:?}");
        assert!(!seen.contains(&now[0]), "a new incarnation each time");
        seen.push(now[0].clone());
        // Let go within twice the idle time (a second) of the last call.
        let until = Instant::now() + 10 * SECOND;
        while !mine().is_empty() {
            assert!(Instant::now() < until, "still there: {:?}", mine());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    drop(bus);
    stop(servers);
    assert_nothing_left(&group);
}
