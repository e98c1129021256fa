//! The `shmio` binary, run for real: every command, its output, its errors
//! and exit codes. Names are unique per test (pid + counter) and removed at
//! the end; every wait is bounded.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::*;

/// A mapping made by `shmio create`. Where the name can persist it is
/// removed with `shmio rm` on drop; where it cannot (Windows, a file-backed
/// name on Linux) the create process holds it, and exits when its stdin
/// closes, on drop.
struct Created {
    name: String,
    output: String,
    holder: Option<Child>,
}

impl Created {
    fn new(name: &str, extra: &[&str]) -> Created {
        let mut args = vec!["create", name];
        args.extend_from_slice(extra);
        let with_file = extra.contains(&"--file");
        if !cfg!(windows) && !with_file {
            let run = shmio(&args).ok();
            return Created {
                name: name.to_owned(),
                output: run.text(),
                holder: None,
            };
        }
        let mut child = command(&args).stdin(Input::Pipe).start();
        let mut output = String::new();
        let last = if with_file { "file:" } else { "size:" };
        loop {
            let line = child
                .next_line()
                .unwrap_or_else(|| panic!("shmio create ended early: {output}"));
            output.push_str(&line);
            output.push('\n');
            if line.starts_with(last) {
                break;
            }
        }
        Created {
            name: name.to_owned(),
            output,
            holder: Some(child),
        }
    }

    fn size(&self) -> u64 {
        let line = self
            .output
            .lines()
            .find(|line| line.starts_with("size:"))
            .expect("a size line");
        line["size:".len()..]
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    }
}

impl Drop for Created {
    fn drop(&mut self) {
        if let Some(mut child) = self.holder.take() {
            child.close_stdin();
            let done = child.finish();
            let stderr = done.stderr_text();
            if !std::thread::panicking() {
                assert!(done.status.success(), "{stderr}");
                assert!(stderr.contains("holds"), "it says why it holds: {stderr}");
            }
        } else {
            let run = shmio(&["rm", &self.name]);
            if !std::thread::panicking() {
                assert!(run.status.success(), "rm {}: {}", self.name, run.stderr);
            }
        }
        #[cfg(target_os = "linux")]
        if !std::thread::panicking() {
            assert_gone(&self.name);
        }
    }
}

#[test]
fn help_version_and_usage_errors() {
    let help = shmio(&["--help"]).ok().text();
    for command in [
        "create",
        "ls",
        "stat",
        "write",
        "read",
        "dump",
        "rm",
        "gc",
        "lock",
        "send",
        "recv",
        "publish",
        "subscribe",
        "listen",
        "call",
        "post",
        "listeners",
        "bench",
        "demo",
    ] {
        assert!(
            help.contains(&format!("  {command} ")),
            "{command} in {help}"
        );
    }
    assert!(!help.contains("__worker"), "the worker role is hidden");
    assert!(shmio(&["--version"]).ok().text().starts_with("shmio "));
    assert_eq!(shmio(&[]).code(), Some(2));
    assert_eq!(shmio(&["frobnicate"]).code(), Some(2));
    assert_eq!(shmio(&["read"]).code(), Some(2), "a missing NAME argument");
    assert_eq!(shmio(&["lock", "x"]).code(), Some(2), "lock needs -- CMD");
}

#[test]
fn sizes_are_parsed_and_bad_ones_refused() {
    for (text, bytes) in [
        ("4096", 4096),
        ("64K", 65536),
        ("64KiB", 65536),
        ("64kib", 65536),
        ("1M", 1 << 20),
        ("1MiB", 1 << 20),
        ("1m", 1 << 20),
        ("1G", 1 << 30),
        ("1GiB", 1 << 30),
    ] {
        let created = Created::new(&unique("size"), &["--size", text]);
        assert_eq!(created.size(), bytes, "--size {text}: {}", created.output);
    }
    for (bad, says) in [
        ("0", "cannot be empty"),
        ("12X", "unknown unit"),
        ("64KB", "powers of 1024"),
        ("1.5M", "unknown unit"),
        ("lots", "not a size"),
        ("99999999999999999999", "too large"),
        ("99999999999G", "too large"),
    ] {
        let name = unique("bad-size");
        let run = shmio(&["create", &name, "--size", bad]);
        assert_eq!(run.code(), Some(2), "--size {bad}: {}", run.stderr);
        assert!(run.stderr.contains(says), "--size {bad}: {}", run.stderr);
        assert_eq!(
            shmio(&["read", &name]).code(),
            Some(1),
            "nothing was created"
        );
    }
    let run = shmio(&["recv", &unique("chan"), "--timeout", "5"]);
    assert_eq!(run.code(), Some(2));
    assert!(run.stderr.contains("5ms"), "{}", run.stderr);
}

#[test]
fn create_prints_the_name_and_refuses_a_taken_one() {
    let name = unique("create");
    let created = Created::new(&name, &["--size", "8K"]);
    assert!(
        created.output.contains(&format!("name:    {name}\n")),
        "{}",
        created.output
    );
    assert!(created.output.contains("os name: "), "{}", created.output);
    assert!(
        created.output.contains("size:    8192 bytes (8 KiB)"),
        "{}",
        created.output
    );
    #[cfg(target_os = "linux")]
    assert!(created.output.contains(&format!("os name: /{name}\n")));
    shmio(&["create", &name, "--size", "8K"]).error("already exists");
}

#[test]
fn errors_name_what_is_missing() {
    let name = unique("missing");
    shmio(&["read", &name]).error(&name);
    shmio(&["dump", &name]).error(&name);
    shmio_with(&["write", &name], b"x", LIMIT).error(&name);
    shmio(&["rm", &name]).error("");
    shmio(&["stat", &name]).error("");
    shmio(&["create", "a/b"]).error("invalid name");
}

#[test]
fn write_then_read_round_trip() {
    let created = Created::new(&unique("rw"), &["--size", "64K"]);
    let name = created.name.as_str();
    let bytes: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
    shmio_with(&["write", name, "--offset", "100"], &bytes, LIMIT).ok();
    let back = shmio(&["read", name, "--offset", "100", "--len", "3000"]).ok();
    assert_eq!(back.stdout, bytes);
    let whole = shmio(&["read", name]).ok();
    assert_eq!(whole.stdout.len(), 65536);
    assert_eq!(&whole.stdout[100..3100], &bytes[..]);
    assert!(whole.stdout[..100].iter().all(|&b| b == 0));
    let tail = shmio(&["read", name, "--offset", "64K"]).ok();
    assert!(tail.stdout.is_empty(), "from the end to the end: nothing");
    let tail = shmio(&["read", name, "--offset", "65530"]).ok();
    assert_eq!(tail.stdout.len(), 6);

    // From a file, and `-` for stdin.
    let path = temp_file("input");
    std::fs::write(&path, b"from a file").unwrap();
    shmio(&["write", name, "--offset", "1K", path.to_str().unwrap()]).ok();
    std::fs::remove_file(&path).unwrap();
    let back = shmio(&["read", name, "--offset", "1024", "--len", "11"]).ok();
    assert_eq!(back.stdout, b"from a file");
    shmio_with(&["write", name, "-"], b"dash", LIMIT).ok();
    assert_eq!(shmio(&["read", name, "--len", "4"]).ok().stdout, b"dash");
}

/// `--record`: JSON in, written with the library's record framing, read
/// back by the library (`Mapping::read_record_at`) and printed as JSON.
#[test]
fn records_are_written_and_read_as_json() {
    let created = Created::new(&unique("rec"), &["--size", "4K"]);
    let name = created.name.as_str();
    let value = r#"{"job":"resize","args":[800,600],"ok":true,"f":0.5,"none":null}"#;
    shmio_with(
        &["write", name, "--record", "--offset", "64"],
        value.as_bytes(),
        LIMIT,
    )
    .ok();
    let raw = shmio(&["read", name, "--offset", "64", "--len", "4"]).ok();
    assert_eq!(
        raw.stdout,
        (value.len() as u32).to_le_bytes(),
        "a u32 length first"
    );
    let json = |bytes: &[u8]| serde_json::from_slice::<serde_json::Value>(bytes).unwrap();
    let back = shmio(&["read", name, "--record", "--offset", "64"]).ok();
    assert_eq!(back.stdout.last(), Some(&b'\n'), "one line");
    assert_eq!(json(&back.stdout), json(value.as_bytes()));
    shmio(&["read", name, "--record", "--offset", "2K"]).error("no record at offset 2048");
    shmio_with(&["write", name, "--record"], b"{oops", LIMIT).error("is not one JSON value");
    let big = format!("\"{}\"", "x".repeat(5000));
    shmio_with(&["write", name, "--record"], big.as_bytes(), LIMIT).error("nothing was written");
    // What was there is untouched.
    let back = shmio(&["read", name, "--record", "--offset", "64"]).ok();
    assert_eq!(json(&back.stdout), json(value.as_bytes()));
}

#[test]
fn a_write_that_does_not_fit_writes_nothing() {
    let created = Created::new(&unique("fit"), &["--size", "4096"]);
    let name = created.name.as_str();
    shmio_with(&["write", name], &[b'A'; 10], LIMIT).ok();
    shmio_with(&["write", name], &[b'B'; 5000], LIMIT).error("nothing was written");
    shmio_with(&["write", name, "--offset", "4090"], &[b'C'; 10], LIMIT)
        .error("nothing was written");
    shmio_with(&["write", name, "--offset", "5000"], b"D", LIMIT).error("past the end");
    let whole = shmio(&["read", name]).ok().stdout;
    assert_eq!(&whole[..10], &[b'A'; 10]);
    assert!(
        whole[10..].iter().all(|&b| b == 0),
        "nothing else was written"
    );
    // Exactly to the end fits.
    shmio_with(&["write", name, "--offset", "4090"], &[b'E'; 6], LIMIT).ok();
    assert_eq!(
        shmio(&["read", name, "--offset", "4090"]).ok().stdout,
        [b'E'; 6]
    );
    // A file too large is refused before it is read.
    let path = temp_file("too-large");
    std::fs::write(&path, vec![b'F'; 4097]).unwrap();
    shmio(&["write", name, path.to_str().unwrap()]).error("nothing was written");
    std::fs::remove_file(&path).unwrap();
    assert_eq!(&shmio(&["read", name, "--len", "1"]).ok().stdout, b"A");
}

/// Endless input (here: stdin that never ends) is refused once one byte
/// more than fits has come, without reading on.
#[test]
fn a_write_of_endless_input_stops_at_once() {
    let created = Created::new(&unique("endless"), &["--size", "4096"]);
    let mut child = command(&["write", &created.name])
        .stdin(Input::Pipe)
        .stdout(Output::Null)
        .start();
    let mut stdin = child.take_stdin();
    // Feeds until the pipe breaks, or 1 GiB: what `write` used to read whole.
    let feeder = std::thread::spawn(move || {
        let chunk = vec![b'Z'; 64 << 10];
        let mut fed = 0u64;
        while fed < 1 << 30 && stdin.write_all(&chunk).is_ok() {
            fed += chunk.len() as u64;
        }
        fed
    });
    let done = child.finish();
    let fed = feeder.join().unwrap();
    let stderr = done.stderr_text();
    assert_eq!(done.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("does not fit"), "{stderr}");
    assert!(fed < 16 << 20, "it read on: {fed} bytes fed");
    assert!(shmio(&["read", &created.name])
        .ok()
        .stdout
        .iter()
        .all(|&b| b == 0));
}

#[test]
fn reads_past_the_end_are_errors() {
    let created = Created::new(&unique("past"), &["--size", "4096"]);
    let name = created.name.as_str();
    shmio(&["read", name, "--offset", "4000", "--len", "200"]).error("past the end");
    shmio(&["read", name, "--offset", "4097"]).error("past the end");
    shmio(&["dump", name, "--offset", "4000", "--len", "200"]).error("past the end");
}

const DUMP: &str = "\
00000000  68 65 6c 6c 6f 0a 00 00  00 00 00 00 00 00 00 00  |hello...........|
00000010  00 00 00 00 00 00 00 00  00 00 00 00 00 00 00 00  |................|
*
00000040  00 00 61 62 63                                    |..abc|
00000045
";

#[test]
fn dump_has_the_layout_of_hexdump_c() {
    let created = Created::new(&unique("dump"), &["--size", "4096"]);
    let name = created.name.as_str();
    shmio_with(&["write", name], b"hello\n", LIMIT).ok();
    shmio_with(&["write", name, "--offset", "66"], b"abc", LIMIT).ok();
    assert_eq!(shmio(&["dump", name, "--len", "69"]).ok().text(), DUMP);
    assert_eq!(
        shmio(&["dump", name, "--offset", "2", "--len", "5"])
            .ok()
            .text(),
        "00000002  6c 6c 6f 0a 00                                    |llo..|\n00000007\n"
    );
    assert_eq!(shmio(&["dump", name, "--len", "0"]).ok().text(), "");
    let whole = shmio(&["dump", name]).ok().text();
    assert!(whole.ends_with("*\n00001000\n"), "{whole}");
}

/// The same bytes through the real `hexdump -C`, where it is installed.
#[cfg(target_os = "linux")]
#[test]
fn dump_matches_the_real_hexdump() {
    let created = Created::new(&unique("hexdump"), &["--size", "4096"]);
    let name = created.name.as_str();
    let mut bytes: Vec<u8> = b"Shared memory\x00\x01\x7f\x80\xff ~".to_vec();
    bytes.extend([0u8; 40]);
    bytes.extend((0..200u32).map(|i| (i * 7 % 256) as u8));
    shmio_with(&["write", name, "--offset", "5"], &bytes, LIMIT).ok();
    let path = format!("/dev/shm/{name}");
    for (ours, theirs) in [
        (vec![], vec![]),
        (vec!["--offset", "3"], vec!["-s", "3"]),
        (
            vec!["--offset", "7", "--len", "100"],
            vec!["-s", "7", "-n", "100"],
        ),
        (vec!["--len", "8"], vec!["-n", "8"]),
    ] {
        let real = match Spawn::program("hexdump")
            .arg("-C")
            .args(&theirs)
            .arg(&path)
            .limit(LIMIT)
            .try_start()
        {
            Ok(child) => child.finish(),
            Err(_) => {
                eprintln!("SKIPPED: hexdump is not installed");
                return;
            }
        };
        let mut args = vec!["dump", name];
        args.extend(&ours);
        assert_eq!(
            shmio(&args).ok().text(),
            String::from_utf8(real.stdout).unwrap(),
            "shmio dump {ours:?} vs hexdump -C {theirs:?}"
        );
    }
}

#[cfg(target_os = "linux")]
#[test]
fn ls_and_stat_as_a_table_and_as_json() {
    let created = Created::new(&unique("ls"), &["--size", "64K"]);
    let name = created.name.as_str();
    let table = shmio(&["ls"]).ok().text();
    let header = table.lines().next().unwrap();
    for column in [
        "NAME", "OS NAME", "KIND", "SIZE", "HOLDERS", "STALE", "OWNER",
    ] {
        assert!(header.contains(column), "{header}");
    }
    let row = table
        .lines()
        .find(|line| line.starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} in {table}"));
    assert!(row.contains("mapping") && row.contains("64 KiB"), "{row}");

    let listed: serde_json::Value =
        serde_json::from_slice(&shmio(&["ls", "--json"]).ok().stdout).expect("ls --json is JSON");
    let ours = listed
        .as_array()
        .expect("an array")
        .iter()
        .find(|entry| entry["name"] == name)
        .unwrap_or_else(|| panic!("{name} in {listed}"));
    assert_eq!(ours["os_name"], format!("/{name}"));
    assert_eq!(ours["kind"], "mapping");
    assert_eq!(ours["size"], 65536);
    assert_eq!(ours["holders"], 0);
    assert_eq!(ours["stale"], false);
    assert_eq!(ours["follows_holders"], false);

    let stat: serde_json::Value =
        serde_json::from_slice(&shmio(&["stat", name, "--json"]).ok().stdout).unwrap();
    assert_eq!(&stat, ours);
    let text = shmio(&["stat", name]).ok().text();
    assert!(text.contains(&format!("name:     {name}\n")), "{text}");
    assert!(text.contains("size:     65536 bytes (64 KiB)"), "{text}");
    assert!(text.contains("persistent"), "{text}");
    assert!(text.contains("stale:    no"), "{text}");
}

#[cfg(target_os = "linux")]
#[test]
fn stat_sees_holders_of_a_channel() {
    let name = unique("stat-channel");
    let mut sender = command(&["send", &name])
        .stdin(Input::Pipe)
        .stderr(Output::Null)
        .start();
    poll_until("the channel to exist", LIMIT, POLL, || {
        shmio(&["stat", &name]).status.success()
    });
    let stat: serde_json::Value =
        serde_json::from_slice(&shmio(&["stat", &name, "--json"]).ok().stdout).unwrap();
    assert_eq!(stat["kind"], "channel");
    assert_eq!(stat["holders"], 1);
    assert_eq!(stat["follows_holders"], true);
    sender.close_stdin();
    sender.wait_success();
    assert_gone(&name);
}

#[cfg(unix)]
#[test]
fn rm_removes_the_name() {
    let name = unique("rm");
    shmio(&["create", &name, "--size", "4K"]).ok();
    shmio(&["rm", &name]).ok();
    shmio(&["read", &name]).error(&name);
    shmio(&["rm", &name]).error(&name);
    #[cfg(target_os = "linux")]
    assert_gone(&name);
}

/// macOS cannot back a named mapping with a file.
#[cfg(not(target_os = "macos"))]
#[test]
fn create_with_a_backing_file() {
    let path = temp_file("backing");
    std::fs::write(&path, vec![b'.'; 8192]).unwrap();
    {
        let created = Created::new(&unique("file"), &["--file", path.to_str().unwrap()]);
        assert_eq!(created.size(), 8192, "the file's size");
        assert!(created.output.contains("file:"), "{}", created.output);
        shmio_with(
            &["write", &created.name, "--offset", "10"],
            b"into the file",
            LIMIT,
        )
        .ok();
        assert_eq!(
            shmio(&["read", &created.name, "--offset", "9", "--len", "15"])
                .ok()
                .stdout,
            b".into the file."
        );
    }
    let on_disk = std::fs::read(&path).unwrap();
    assert_eq!(&on_disk[10..23], b"into the file");
    std::fs::remove_file(&path).unwrap();
}

/// `gc` after a holder of a mapping was killed: the name is stale until then.
#[cfg(target_os = "linux")]
#[test]
fn gc_removes_what_a_killed_holder_left() {
    let _turn = stale_turn();
    let name = unique("gc");
    let mut holder = start_ready(&["__worker", "hold", &name, "4K"], "ready existed=false");
    let path = std::path::Path::new("/dev/shm").join(&name);
    assert!(path.exists());
    let stat: serde_json::Value =
        serde_json::from_slice(&shmio(&["stat", &name, "--json"]).ok().stdout).unwrap();
    assert_eq!(stat["holders"], 1);
    assert_eq!(stat["stale"], false);

    holder.kill(); // SIGKILL
    let stat: serde_json::Value =
        serde_json::from_slice(&shmio(&["stat", &name, "--json"]).ok().stdout).unwrap();
    assert_eq!(stat["holders"], 0);
    assert_eq!(stat["stale"], true);
    assert!(shmio(&["ls"])
        .ok()
        .text()
        .lines()
        .any(|line| line.starts_with(&name) && line.contains(" yes ")));

    let dry = shmio(&["gc", "--dry-run"]).ok().text();
    assert!(
        dry.contains(&format!("would remove {name} (mapping, 4 KiB, /{name})")),
        "{dry}"
    );
    assert!(path.exists(), "--dry-run removes nothing");
    let done = shmio(&["gc"]).ok().text();
    assert!(done.contains(&format!("removed {name} ")), "{done}");
    assert_gone(&name);
    let again = shmio(&["gc", "--dry-run"]).ok().text();
    assert!(!again.contains(&name), "{again}");
}

/// A command for `lock` to run that exits with `code`: this binary, which
/// exits 1 on an error (a name that does not exist) and 2 on a usage error.
#[test]
fn lock_passes_the_exit_code_through() {
    let mutex = unique("lock-code");
    let missing = unique("lock-missing");
    let run = shmio(&["lock", &mutex, "--", SHMIO, "read", &missing]);
    assert_eq!(run.code(), Some(1));
    assert!(run.stderr.contains(&missing), "{}", run.stderr);
    assert_eq!(
        shmio(&["lock", &mutex, "--", SHMIO, "create"]).code(),
        Some(2)
    );
    let run = shmio(&["lock", &mutex, "--", SHMIO, "--version"]).ok();
    assert!(
        run.text().starts_with("shmio "),
        "the command's output passes through"
    );
    let run = shmio(&["lock", &mutex, "--", "shmio-no-such-command"]);
    assert_eq!(run.code(), Some(127));
    assert!(
        run.stderr.starts_with("shmio: error: cannot run"),
        "{}",
        run.stderr
    );
    #[cfg(unix)]
    {
        assert_eq!(
            shmio(&["lock", &mutex, "--", "sh", "-c", "exit 7"]).code(),
            Some(7)
        );
        assert_eq!(shmio(&["lock", &mutex, "--", "false"]).code(), Some(1));
        assert_eq!(shmio(&["lock", &mutex, "--", "true"]).code(), Some(0));
        assert_eq!(
            shmio(&["lock", &mutex, "--", "sh", "-c", "kill -9 $$"]).code(),
            Some(128 + 9),
            "a command killed by a signal: 128 + the signal"
        );
        assert_eq!(
            shmio(&["lock", &mutex, "--", "sh", "-c", "echo out; echo err >&2"])
                .ok()
                .text(),
            "out\n"
        );
    }
    #[cfg(target_os = "linux")]
    assert_gone(&format!("{mutex}.mutex@mutex"));
}

#[cfg(unix)]
#[test]
fn lock_excludes_other_lockers() {
    let mutex = unique("lock-excl");
    let log = temp_file("lock-log");
    let script = format!(
        "echo start >> '{0}'; sleep 0.1; echo end >> '{0}'",
        log.display()
    );
    let children: Vec<Child> = (0..4)
        .map(|_| command(&["lock", &mutex, "--", "sh", "-c", &script]).start())
        .collect();
    for mut child in children {
        child.wait_success();
    }
    let text = std::fs::read_to_string(&log).unwrap();
    std::fs::remove_file(&log).unwrap();
    assert_eq!(text, "start\nend\n".repeat(4), "no two held it at once");
}

/// Starts `shmio lock MUTEX -- shmio __worker wait` and waits until the
/// command runs (so the lock is held). The waiting worker dies with its
/// parent (Linux) or when its stdin closes.
fn start_holder(mutex: &str) -> Child {
    start_ready(&["lock", mutex, "--", SHMIO, "__worker", "wait"], "ready")
}

/// A locker waits while the holder is killed: it is told, and runs its
/// command. This process keeps the mutex open too, so the mutex outlives
/// the holder even if the waiter (slow to start under Wine) only opens it
/// after the kill: the one after a dead owner is told either way.
#[test]
fn lock_tells_a_waiter_that_the_holder_was_killed() {
    let mutex = unique("lock-killed");
    let kept_open = shmio::NamedMutex::options()
        .create_or_open_for_mapping(&mutex)
        .unwrap();
    let mut holder = start_holder(&mutex);
    let mut waiter = command(&["lock", &mutex, "--", SHMIO, "--version"]).start();
    #[cfg(target_os = "linux")]
    poll_until("the waiter to open the mutex", LIMIT, POLL, || {
        let run = shmio(&["stat", &format!("{mutex}.mutex@mutex"), "--json"]);
        run.status.success()
            && serde_json::from_slice::<serde_json::Value>(&run.stdout).unwrap()["holders"] == 3
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(waiter.exited().is_none(), "the waiter waits");
    holder.kill(); // SIGKILL / TerminateProcess while holding the lock
    holder.close_stdin();
    let done = waiter.finish();
    let (stderr, stdout) = (done.stderr_text(), done.stdout_text());
    assert!(done.status.success(), "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        format!("shmio: the previous owner of {mutex} died holding it")
    );
    assert!(stdout.starts_with("shmio "), "the command ran: {stdout:?}");
    assert!(
        kept_open.try_lock().is_ok(),
        "the mutex is free and healthy again"
    );
    drop(kept_open);
    #[cfg(target_os = "linux")]
    assert_gone(&format!("{mutex}.mutex@mutex"));
}

/// The next `lock` after the only holder was killed: the mutex was left
/// with no live holder (stale); on Linux it is kept for its news, and the
/// next `lock` says the holder died.
#[cfg(target_os = "linux")]
#[test]
fn lock_after_the_only_holder_was_killed() {
    let _turn = stale_turn();
    let mutex = unique("lock-alone");
    let mut holder = start_holder(&mutex);
    holder.kill(); // SIGKILL
    holder.close_stdin();
    let segment = format!("{mutex}.mutex@mutex");
    let stat: serde_json::Value =
        serde_json::from_slice(&shmio(&["stat", &segment, "--json"]).ok().stdout).unwrap();
    assert_eq!(stat["kind"], "mutex");
    assert_eq!(stat["stale"], true, "{stat}");
    let run = shmio(&["lock", &mutex, "--", "true"]).ok();
    assert!(
        run.stderr
            .starts_with(&format!("shmio: the previous owner of {mutex} died")),
        "{}",
        run.stderr
    );
    let run = shmio(&["lock", &mutex, "--", "true"]).ok();
    assert_eq!(run.stderr, "", "told once");
    assert_gone(&segment);
}

#[test]
fn send_and_recv_round_trip() {
    let channel = unique("chan");
    // A sender that keeps the channel open while its stdin is open.
    let mut sender = command(&["send", &channel]).stdin(Input::Pipe).start();
    let mut to_sender = sender.take_stdin();
    to_sender.write_all(b"one\ntwo\r\n\nthree\n").unwrap();
    to_sender.flush().unwrap();
    let run = shmio(&["recv", &channel, "--count", "4", "--timeout", "60s"]).ok();
    assert_eq!(run.text(), "one\ntwo\n\nthree\n");
    // One message as an argument, while the sender above still holds the channel.
    shmio(&["send", &channel, "hello there"]).ok();
    let run = shmio(&["recv", &channel, "--timeout", "60s"]).ok();
    assert_eq!(run.text(), "hello there\n");
    drop(to_sender);
    sender.wait_success();
    #[cfg(target_os = "linux")]
    assert_gone(&channel);
}

#[test]
fn send_warns_when_nobody_holds_the_channel() {
    let channel = unique("chan-alone");
    let run = shmio(&["send", &channel, "lost"]).ok();
    assert!(
        run.stderr.starts_with(&format!(
            "shmio: warning: no other process holds the channel {channel}"
        )),
        "{}",
        run.stderr
    );
    shmio(&["recv", &channel, "--timeout", "10ms"]).error("timed out");
    #[cfg(target_os = "linux")]
    assert_gone(&channel);
}

#[test]
fn recv_waits_for_send() {
    let channel = unique("chan-wait");
    let mut receiver = command(&["recv", &channel, "--count", "2", "--timeout", "60s"])
        .stderr(Output::Inherit)
        .start();
    // Until the receiver has made the channel, `send` may make it and take
    // it away again: send again until both messages came.
    let started = Instant::now();
    let mut sent = 0;
    while receiver.exited().is_none() {
        assert!(
            started.elapsed() < LIMIT,
            "the receiver never got two messages"
        );
        shmio(&["send", &channel, &format!("message {sent}")]).ok();
        sent += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    let done = receiver.finish();
    let text = done.stdout_text();
    assert!(done.status.success());
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(
        text.lines().all(|line| line.starts_with("message ")),
        "{text}"
    );
}

#[test]
fn recv_times_out_on_an_empty_channel() {
    let channel = unique("chan-empty");
    let started = Instant::now();
    let run = shmio(&["recv", &channel, "--timeout", "100ms"]).error("timed out");
    assert!(started.elapsed() < Duration::from_secs(60));
    assert!(run.stdout.is_empty());
    shmio(&["recv", &channel, "--count", "0", "--timeout", "50ms"]).error("0 message(s)");
    #[cfg(target_os = "linux")]
    assert_gone(&channel);
}

#[test]
fn demo_checks_out() {
    let run = shmio(&["demo"]).ok();
    let text = run.text();
    assert_eq!(text.matches("   ✓ ").count(), 7, "{text}");
    assert!(!text.contains("✗"), "{text}");
    assert!(text.contains("demo: all 7 steps checked out"), "{text}");
    assert!(text.contains("existed = true"), "{text}");
    assert!(text.contains("told the owner died"), "{text}");
    #[cfg(target_os = "linux")]
    {
        let pid = text
            .split("this is process ")
            .nth(1)
            .and_then(|rest| rest.split(';').next())
            .expect("the demo's pid");
        let prefix = format!("shmio-demo-{pid}");
        let left: Vec<_> = std::fs::read_dir("/dev/shm")
            .unwrap()
            .flatten()
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .filter(|entry| entry.starts_with(&prefix))
            .collect();
        assert!(left.is_empty(), "left behind: {left:?}");
    }
}

#[test]
fn bench_quick_prints_a_table() {
    let run = shmio(&["bench", "--quick"]).ok();
    let text = run.text();
    assert!(text.contains("| round trip of an 8-byte message"), "{text}");
    assert!(text.contains("|---|---:|---:|---:|"), "{text}");
    for row in [
        "| shmio `Channel`, busy-poll",
        "| shmio `Channel`, blocking",
        "| raw shared-memory spin",
        "| futex ping-pong |",
        "| pipe |",
        "| Unix socket |",
        "| shmio `write_at` |",
        "(memcpy) |",
    ] {
        assert!(text.lines().any(|line| line.contains(row)), "{row}: {text}");
    }
    #[cfg(target_os = "linux")]
    assert!(!text.contains("not on this platform"), "{text}");
    #[cfg(windows)]
    assert!(
        text.contains("| futex ping-pong | not on this platform"),
        "{text}"
    );
    assert!(
        run.stderr.is_empty(),
        "no progress bar when stderr is not a terminal: {}",
        run.stderr
    );
}

/// CPython's `multiprocessing.shared_memory` opens what `shmio create` made.
#[cfg(unix)]
#[test]
fn cpython_and_shmio_share_a_name() {
    let created = Created::new(&unique("cpython"), &["--size", "4096"]);
    let name = created.name.as_str();
    shmio_with(&["write", name], b"from shmio", LIMIT).ok();
    let script = "
import sys
from multiprocessing import shared_memory, resource_tracker
shm = shared_memory.SharedMemory(sys.argv[1])
# Python < 3.13 tracks even attached segments and unlinks them at exit.
resource_tracker.unregister(shm._name, 'shared_memory')
assert bytes(shm.buf[:10]) == b'from shmio', bytes(shm.buf[:10])
shm.buf[100:111] = b'from python'
print(shm.size)
shm.close()
";
    let output = match Spawn::program("python3")
        .args(["-c", script, name])
        .limit(LIMIT)
        .try_start()
    {
        Ok(child) => child.finish(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("SKIPPED: python3 is not installed, so the CPython check did not run");
            return;
        }
        Err(e) => panic!("python3: {e}"),
    };
    assert!(
        output.status.success(),
        "python: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let size: u64 = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap();
    assert!(size >= 4096);
    let back = shmio(&["read", name, "--offset", "100", "--len", "11"]).ok();
    assert_eq!(back.stdout, b"from python");
}
