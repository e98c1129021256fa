//! The kit the CLI's integration tests share: run `shmio` with bounded
//! waits, read what it printed, unique names, checks on `/dev/shm`.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const SHMIO: &str = env!("CARGO_BIN_EXE_shmio");
/// The longest any one command may take (Wine is slow to start processes).
pub const LIMIT: Duration = Duration::from_secs(120);

/// Tests that make stale names or run `gc` (which removes every stale name)
/// take turns.
#[cfg(target_os = "linux")]
pub static STALE: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[cfg(target_os = "linux")]
pub fn stale_turn() -> std::sync::MutexGuard<'static, ()> {
    STALE.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn unique(tag: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "shmio-cli-{tag}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

pub struct Run {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Run {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    #[track_caller]
    pub fn ok(self) -> Run {
        assert!(
            self.status.success(),
            "expected success, got {:?}\nstdout: {}\nstderr: {}",
            self.status,
            self.text(),
            self.stderr
        );
        self
    }

    /// Exit 1 with one `shmio: error:` line that mentions `about`.
    #[track_caller]
    pub fn error(self, about: &str) -> Run {
        assert_eq!(
            self.code(),
            Some(1),
            "expected exit 1; stdout: {}; stderr: {}",
            self.text(),
            self.stderr
        );
        assert!(
            self.stderr.starts_with("shmio: error: "),
            "stderr: {:?}",
            self.stderr
        );
        assert_eq!(
            self.stderr.trim_end().lines().count(),
            1,
            "{:?}",
            self.stderr
        );
        assert!(
            self.stderr.contains(about),
            "stderr {:?} should mention {about:?}",
            self.stderr
        );
        self
    }
}

/// Runs `shmio ARGS` with `input` on stdin, bounded by `limit`.
pub fn shmio_with(args: &[&str], input: &[u8], limit: Duration) -> Run {
    let mut child = Command::new(SHMIO)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start shmio");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let mut stdout = child.stdout.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stdout.read_to_end(&mut bytes);
        bytes
    });
    let mut stderr = child.stderr.take().unwrap();
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let status = wait_bounded(&mut child, limit, &format!("shmio {args:?}"));
    feeder.join().unwrap();
    Run {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

pub fn shmio(args: &[&str]) -> Run {
    shmio_with(args, b"", LIMIT)
}

#[track_caller]
pub fn wait_bounded(child: &mut Child, limit: Duration, what: &str) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} still running after {limit:?}: killed");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[track_caller]
pub fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "gave up after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Reads one line from a child's stdout, bounded (a thread does the read).
pub fn read_line_bounded(
    reader: BufReader<std::process::ChildStdout>,
) -> (String, BufReader<std::process::ChildStdout>) {
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = reader;
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        let _ = send.send((line, reader));
    });
    receive
        .recv_timeout(LIMIT)
        .expect("a line from the child in time")
}

/// Starts `shmio ARGS` (stdin and stdout piped) and waits, bounded, for its
/// first line, which must be `says`: the worker or command is ready. It
/// runs on until its stdin closes or it is killed.
#[track_caller]
pub fn start_ready(args: &[&str], says: &str) -> Child {
    let mut child = Command::new(SHMIO)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start shmio");
    let (line, _reader) = read_line_bounded(BufReader::new(child.stdout.take().unwrap()));
    assert_eq!(line.trim(), says, "shmio {args:?}");
    child
}

#[cfg(target_os = "linux")]
#[track_caller]
pub fn assert_gone(name: &str) {
    let path = std::path::Path::new("/dev/shm").join(name);
    assert!(!path.exists(), "{} was left behind", path.display());
}

pub fn temp_file(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(unique(tag))
}
