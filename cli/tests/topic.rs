//! `shmio publish` and `shmio subscribe` run for real: history, a
//! subscriber started first, `--count` and `--timeout`, settings that do
//! not match, a subscriber that fell behind told how much it missed, a
//! blocked publish that gives up after its `--timeout`, the
//! clean end on SIGTERM, and `stat` of a topic. A topic lasts only while a
//! process holds it, so each test keeps one `shmio` process on it (a
//! publisher reading its stdin, or a subscriber) while the others come and
//! go. Every wait is bounded.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::*;

/// `shmio publish TOPIC ARGS` reading its stdin: it holds the topic until
/// its stdin closes, and publishes each line written to it.
struct Publisher {
    child: Child,
    stdin: std::process::ChildStdin,
}

impl Publisher {
    fn start(topic: &str, args: &[&str]) -> Publisher {
        let mut all = vec!["publish", topic];
        all.extend_from_slice(args);
        let mut child = command(&all).stdin(Input::Pipe).start();
        let stdin = child.take_stdin();
        Publisher { child, stdin }
    }

    fn lines(&mut self, text: &str) {
        self.stdin.write_all(text.as_bytes()).unwrap();
        self.stdin.flush().unwrap();
    }

    fn finish(self) {
        let Publisher { mut child, stdin } = self;
        drop(stdin);
        child.wait_success();
    }
}

/// Waits until the topic exists (without making it: a subscriber that
/// may not create it finds nothing, or waits in vain).
fn wait_for_topic(topic: &str) {
    poll_until("the topic to exist", LIMIT, POLL, || {
        let run = shmio(&["subscribe", topic, "--no-create", "--timeout", "1ms"]);
        // Its history, or nothing in time: either way it opened the topic.
        run.status.success() || run.stderr.contains("timed out")
    });
}

/// Runs `subscribe` (opening only) until it prints `wanted`: the messages
/// a publisher was given may not all be out yet.
fn subscribe_until(topic: &str, args: &[&str], wanted: &str) {
    let mut all = vec!["subscribe", topic, "--no-create"];
    all.extend_from_slice(args);
    let mut last = String::new();
    let started = Instant::now();
    while started.elapsed() < LIMIT {
        let run = shmio(&all);
        last = format!("{}{}", run.text(), run.stderr);
        if run.status.success() && run.text() == wanted {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("subscribe {args:?} never printed {wanted:?}; last: {last:?}");
}

#[test]
fn topic_publish_then_subscribe_gets_the_history() {
    let topic = unique("topic-history");
    let mut publisher = Publisher::start(&topic, &["--history", "2"]);
    publisher.lines("one\ntwo\r\nthree\n");
    // The last two, as their lines (the \r of a CRLF line dropped).
    subscribe_until(
        &topic,
        &["--count", "2", "--timeout", "60s"],
        "two\nthree\n",
    );
    // --count 1: the oldest of the history only.
    subscribe_until(&topic, &["--count", "1", "--timeout", "60s"], "two\n");
    // No --count: what came until the --timeout, exit 0.
    let run = shmio(&["subscribe", &topic, "--timeout", "200ms"]).ok();
    assert_eq!(run.text(), "two\nthree\n");
    // Messages as arguments, one each, to the topic the publisher holds.
    shmio(&["publish", &topic, "four", "five six"]).ok();
    subscribe_until(
        &topic,
        &["--count", "2", "--timeout", "60s"],
        "four\nfive six\n",
    );
    publisher.finish();
    #[cfg(target_os = "linux")]
    assert_gone(&topic);
}

#[test]
fn topic_subscriber_started_first_gets_what_is_published_later() {
    let topic = unique("topic-later");
    let mut subscriber = command(&["subscribe", &topic, "--count", "3", "--timeout", "60s"])
        .stderr(Output::Inherit)
        .start();
    // Until the subscriber has made the topic, `publish` may make it and
    // take it away again: publish again until three messages came.
    let started = Instant::now();
    let mut published = 0;
    while subscriber.exited().is_none() {
        assert!(started.elapsed() < LIMIT, "the subscriber never got 3");
        shmio(&["publish", &topic, &format!("message {published}")]).ok();
        published += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    let done = subscriber.finish();
    assert!(done.status.success());
    let numbers: Vec<u32> = done
        .stdout_text()
        .lines()
        .map(|line| line.strip_prefix("message ").unwrap().parse().unwrap())
        .collect();
    assert_eq!(numbers.len(), 3, "{numbers:?}");
    assert!(
        numbers.windows(2).all(|pair| pair[1] == pair[0] + 1),
        "in the order published, none missed: {numbers:?}"
    );
    #[cfg(target_os = "linux")]
    assert_gone(&topic);
}

#[test]
fn topic_subscribe_times_out_as_recv_does() {
    let topic = unique("topic-empty");
    let run = shmio(&["subscribe", &topic, "--count", "2", "--timeout", "100ms"])
        .error("0 of 2 message(s) came in");
    assert!(run.stdout.is_empty());
    shmio(&["subscribe", &topic, "--timeout", "50ms"]).error("0 message(s) came in");
    shmio(&["subscribe", &topic, "--no-create", "--timeout", "50ms"]).error("no topic named");
    #[cfg(target_os = "linux")]
    assert_gone(&topic);
}

#[test]
fn topic_settings_that_differ_are_a_mismatch() {
    let topic = unique("topic-mismatch");
    let mut publisher = Publisher::start(
        &topic,
        &["--capacity", "8", "--overflow", "block", "--timeout", "5s"],
    );
    wait_for_topic(&topic);
    let run = shmio(&["publish", &topic, "--overflow", "overwrite", "x"]).error("exists as");
    assert!(
        run.stderr
            .contains("capacity 8, max_message_size 4096, history 0, overflow block")
            && run
                .stderr
                .contains("not a topic with overflow overwrite as asked"),
        "{}",
        run.stderr
    );
    shmio(&["subscribe", &topic, "--history", "3", "--timeout", "10ms"])
        .error("not a topic with history 3 as asked");
    // The settings given are compared, not the defaults of the rest: the
    // capacity of 8 is no mismatch when it is not asked about.
    shmio(&["publish", &topic, "--overflow", "block", "y"]).ok();
    shmio(&["publish", &topic, "z"]).ok();
    publisher.lines("last\n");
    publisher.finish();
    // Refused by clap: exit 2.
    assert_eq!(
        shmio(&["publish", &topic, "--overflow", "drop", "x"]).code(),
        Some(2)
    );
    assert_eq!(
        shmio(&["publish", &topic, "--capacity", "0", "x"]).code(),
        Some(2)
    );
}

/// Waits until `stat` of the topic says `key` is `value`.
#[cfg(target_os = "linux")]
fn wait_for_stat(topic: &str, key: &str, value: u64) {
    poll_until(&format!("{key} to be {value}"), LIMIT, POLL, || {
        let run = shmio(&["stat", topic, "--json"]);
        run.status.success()
            && serde_json::from_slice::<serde_json::Value>(&run.stdout).unwrap()["topic"][key]
                == value
    });
}

#[cfg(target_os = "linux")]
#[test]
fn topic_a_subscriber_that_fell_behind_is_told_what_it_missed() {
    let topic = unique("topic-missed");
    let mut publisher = Publisher::start(&topic, &["--capacity", "4"]);
    wait_for_topic(&topic);
    let subscriber = command(&["subscribe", &topic, "--count", "2", "--timeout", "60s"]).start();
    wait_for_stat(&topic, "subscribers", 1);
    // Stopped, it reads nothing while ten messages go into four slots.
    subscriber.signal(libc::SIGSTOP);
    publisher.lines("m0\nm1\nm2\nm3\nm4\nm5\nm6\nm7\nm8\nm9\n");
    wait_for_stat(&topic, "published", 10);
    subscriber.signal(libc::SIGCONT);
    let done = subscriber.finish();
    assert!(done.status.success(), "{}", done.stderr_text());
    assert_eq!(done.stdout_text(), "m6\nm7\n", "on from the oldest held");
    assert_eq!(
        done.stderr_text(),
        format!(
            "shmio: warning: missed 6 message(s) of the topic {topic}: they were overwritten \
             before this subscriber read them\n"
        )
    );
    publisher.finish();
    assert_gone(&topic);
}

#[cfg(target_os = "linux")]
#[test]
fn topic_a_blocked_publish_gives_up_after_its_timeout() {
    let topic = unique("topic-blocked");
    let subscriber = command(&[
        "subscribe",
        &topic,
        "--capacity",
        "2",
        "--overflow",
        "block",
        "--count",
        "3",
        "--timeout",
        "60s",
    ])
    .start();
    wait_for_stat(&topic, "subscribers", 1);
    // Stopped, it holds back the third message: two fit.
    subscriber.signal(libc::SIGSTOP);
    let started = Instant::now();
    shmio(&["publish", &topic, "a", "b", "c", "--timeout", "200ms"]).error("(full for 200ms)");
    assert!(started.elapsed() >= Duration::from_millis(200));
    subscriber.signal(libc::SIGCONT);
    // Room again once it reads on.
    shmio(&["publish", &topic, "d", "--timeout", "60s"]).ok();
    let done = subscriber.finish();
    assert!(done.status.success(), "{}", done.stderr_text());
    assert_eq!(done.stdout_text(), "a\nb\nd\n");
    assert_gone(&topic);
}

#[cfg(target_os = "linux")]
#[test]
fn topic_stat_shows_settings_and_subscribers() {
    let topic = unique("topic-stat");
    let mut publisher = Publisher::start(
        &topic,
        &[
            "--capacity",
            "16",
            "--history",
            "1",
            "--max-message-size",
            "1K",
        ],
    );
    publisher.lines("hello\n");
    wait_for_topic(&topic);
    let subscriber = command(&["subscribe", &topic, "--count", "2", "--timeout", "60s"]).start();
    wait_for_stat(&topic, "subscribers", 1);
    let stat: serde_json::Value =
        serde_json::from_slice(&shmio(&["stat", &topic, "--json"]).ok().stdout).unwrap();
    assert_eq!(stat["kind"], "topic");
    assert_eq!(stat["holders"], 2, "the publisher and the subscriber");
    assert_eq!(
        stat["topic"],
        serde_json::json!({
            "capacity": 16,
            "max_message_size": 1024,
            "history": 1,
            "overflow": "overwrite",
            "subscribers": 1,
            "published": 1,
        })
    );
    // `--allow-owner` is taken (another user's topic is read only with it).
    let trusting: serde_json::Value = serde_json::from_slice(
        &shmio(&["stat", &topic, "--json", "--allow-owner", "any"])
            .ok()
            .stdout,
    )
    .unwrap();
    assert_eq!(trusting["topic"]["capacity"], 16);
    let text = shmio(&["stat", &topic]).ok().text();
    for line in [
        "kind:        topic\n",
        "holders:     2\n",
        "capacity:    16 messages\n",
        "max message: 1024 bytes (1 KiB)\n",
        "history:     1\n",
        "subscribers: 1\n",
        "published:   1\n",
    ] {
        assert!(text.contains(line), "{line:?} in {text}");
    }
    assert!(text.contains("overflow:    overwrite"), "{text}");
    let row = shmio(&["ls"]).ok().text();
    assert!(
        row.lines()
            .any(|line| line.starts_with(&format!("{topic} ")) && line.contains(" topic ")),
        "{row}"
    );
    publisher.lines("bye\n");
    let done = subscriber.finish();
    assert_eq!(done.stdout_text(), "hello\nbye\n");
    publisher.finish();
    assert_gone(&topic);
}

#[cfg(unix)]
#[test]
fn topic_subscribe_ends_cleanly_on_sigterm() {
    let topic = unique("topic-sigterm");
    let mut subscriber = command(&["subscribe", &topic]).stdout(Output::Null).start();
    wait_for_topic(&topic);
    subscriber.signal(libc::SIGTERM);
    let status = subscriber.wait();
    assert_eq!(status.code(), Some(128 + 15), "as a shell reports SIGTERM");
    #[cfg(target_os = "linux")]
    assert_gone(&topic);
}
