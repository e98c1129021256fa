//! iceoryx2 (publish-subscribe, `ipc::Service`): round trips over two
//! services (ping, pong), and throughput (loan, write, send; receive).
//! Receivers busy-poll `receive()`: iceoryx2 has no blocking receive of
//! its own (that takes an event service and a `WaitSet`).
//!
//! Each run gets a private iceoryx2 domain (its own file prefix and root
//! directory), so what iceoryx2 leaves behind can be found and removed.

use std::hint::spin_loop;
use std::time::{Duration, Instant};

use iceoryx2::config::Config;
use iceoryx2::port::publisher::Publisher;
use iceoryx2::port::subscriber::Subscriber;
use iceoryx2::prelude::*;
use iceoryx2::service::port_factory::publish_subscribe::PortFactory;

use super::{check_message, stamp, warmed_up, Role, STOP};
use crate::child::{self, Commands, Kid};
use crate::harness::Side;
use crate::watchdog::{self, OnStall};
use crate::Result;

/// The run's private domain: a file prefix and a root directory.
pub struct Domain {
    /// What tells this domain from another run's (the parent's pid).
    pub tag: String,
    config: Config,
    _stall: OnStall,
}

fn prefix(tag: &str) -> String {
    format!("iox2_shmio_bench_{tag}_")
}

fn root(tag: &str) -> String {
    format!("/tmp/shmio-bench-iox2-{tag}/")
}

fn config(tag: &str) -> Result<Config> {
    let mut config = Config::default();
    config.global.prefix = FileName::new(prefix(tag).as_bytes())?;
    config
        .global
        .set_root_path(&Path::new(root(tag).as_bytes())?);
    Ok(config)
}

/// Quiet: iceoryx2 logs warnings to the console otherwise.
pub fn quiet() {
    set_log_level(LogLevel::Error);
}

impl Domain {
    /// A domain tagged `tag`; removed if the process gives up.
    pub fn new(tag: String) -> Result<Domain> {
        quiet();
        let config = config(&tag)?;
        let stall = {
            let tag = tag.clone();
            OnStall::new(move || {
                let _ = remove_domain(&tag);
            })
        };
        Ok(Domain {
            tag,
            config,
            _stall: stall,
        })
    }

    fn node(&self) -> Result<Node<ipc::Service>> {
        Ok(NodeBuilder::new()
            .config(&self.config)
            .create::<ipc::Service>()?)
    }

    /// Removes what iceoryx2 left of the domain; returns the files there
    /// were (its global management segment, at least).
    pub fn remove(self) -> Result<Vec<String>> {
        remove_domain(&self.tag)
    }
}

fn remove_domain(tag: &str) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    let prefix = prefix(tag);
    for entry in std::fs::read_dir("/dev/shm")? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            std::fs::remove_file(entry.path())?;
            removed.push(entry.path().display().to_string());
        }
    }
    let root = root(tag);
    if std::path::Path::new(&root).exists() {
        for entry in walk(std::path::Path::new(&root))? {
            if !entry.is_dir() {
                removed.push(entry.display().to_string());
            }
        }
        std::fs::remove_dir_all(&root)?;
    }
    Ok(removed)
}

fn walk(dir: &std::path::Path) -> Result<Vec<std::path::PathBuf>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            found.extend(walk(&path)?);
        }
        found.push(path);
    }
    Ok(found)
}

fn child_domain() -> Result<Node<ipc::Service>> {
    quiet();
    let config = config(&child::var(child::IOX)?)?;
    Ok(NodeBuilder::new()
        .config(&config)
        .create::<ipc::Service>()?)
}

type Factory<T> = PortFactory<ipc::Service, T, ()>;

fn word_service(node: &Node<ipc::Service>, name: &str) -> Result<Factory<u64>> {
    Ok(node
        .service_builder(&ServiceName::new(name)?)
        .publish_subscribe::<u64>()
        .open_or_create()?)
}

fn send_word(publisher: &Publisher<ipc::Service, u64, ()>, value: u64) -> Result<()> {
    publisher.loan_uninit()?.write_payload(value).send()?;
    Ok(())
}

/// Busy-polls `subscriber` for a word; with `resend`, sends `value` again
/// whenever that long passes without it (only while connecting).
fn wait_word(
    subscriber: &Subscriber<ipc::Service, u64, ()>,
    value: u64,
    resend: Option<(&Publisher<ipc::Service, u64, ()>, Duration)>,
) -> Result<()> {
    let mut since = resend.map(|_| Instant::now());
    loop {
        match subscriber.receive()? {
            Some(sample) if *sample.payload() == value => return Ok(()),
            Some(_) => {}
            None => spin_loop(),
        }
        if let (Some((publisher, every)), Some(since)) = (resend, since.as_mut()) {
            if since.elapsed() > every {
                send_word(publisher, value)?;
                *since = Instant::now();
            }
        }
    }
}

/// Round trips: publish on ping, busy-poll pong; the child the reverse.
pub struct RoundTrip {
    kid: Kid,
    publisher: Publisher<ipc::Service, u64, ()>,
    subscriber: Subscriber<ipc::Service, u64, ()>,
    _services: (Factory<u64>, Factory<u64>),
    _node: Node<ipc::Service>,
    seq: u64,
    connected: bool,
}

impl RoundTrip {
    pub fn start(domain: &Domain, name: &str) -> Result<RoundTrip> {
        let node = domain.node()?;
        let ping = word_service(&node, &format!("{name}/ping"))?;
        let pong = word_service(&node, &format!("{name}/pong"))?;
        let publisher = ping.publisher_builder().create()?;
        let subscriber = pong.subscriber_builder().create()?;
        let kid = child::spawn_commanded(
            Role::Iceoryx2Echo,
            &[
                (child::NAME, name.to_owned()),
                (child::IOX, domain.tag.clone()),
            ],
        )?;
        Ok(RoundTrip {
            kid,
            publisher,
            subscriber,
            _services: (ping, pong),
            _node: node,
            seq: 0,
            connected: false,
        })
    }

    fn round_trip(&mut self, seq: u64) -> Result<()> {
        send_word(&self.publisher, seq)?;
        wait_word(&self.subscriber, seq, None)
    }
}

impl Side for RoundTrip {
    fn batch(&mut self, n: u64) -> Result<f64> {
        self.kid.command("go")?;
        if !self.connected {
            // The first message may go out before the ports see each other.
            self.seq += 1;
            send_word(&self.publisher, self.seq)?;
            wait_word(
                &self.subscriber,
                self.seq,
                Some((&self.publisher, Duration::from_millis(20))),
            )?;
            self.connected = true;
        }
        let ns = warmed_up(n, None, || {
            self.seq += 1;
            self.round_trip(self.seq)
        })?;
        self.round_trip(STOP)?;
        Ok(ns)
    }

    fn keepalive(&mut self) -> Result<()> {
        self.kid.alive()
    }
}

/// The echo child: on each `go`, echoes until [`STOP`].
pub fn round_trip_child() -> Result<()> {
    let name = child::var(child::NAME)?;
    let node = child_domain()?;
    let ping = word_service(&node, &format!("{name}/ping"))?;
    let pong = word_service(&node, &format!("{name}/pong"))?;
    let subscriber = ping.subscriber_builder().create()?;
    let publisher = pong.publisher_builder().create()?;
    let mut commands = Commands::new()?;
    shmio_cli::process::try_ready()?;
    while commands.next_command()?.is_some() {
        loop {
            let Some(sample) = subscriber.receive()? else {
                spin_loop();
                continue;
            };
            let value = *sample.payload();
            drop(sample);
            send_word(&publisher, value)?;
            watchdog::progress();
            if value == STOP {
                break;
            }
        }
    }
    Ok(())
}

fn bytes_service(node: &Node<ipc::Service>, name: &str, capacity: usize) -> Result<Factory<[u8]>> {
    Ok(node
        .service_builder(&ServiceName::new(name)?)
        .publish_subscribe::<[u8]>()
        .max_publishers(1)
        .max_subscribers(1)
        .history_size(0)
        .subscriber_max_buffer_size(capacity)
        .enable_safe_overflow(false)
        .open_or_create()?)
}

/// Throughput: the child loans, writes and sends; the parent busy-polls
/// `receive()` and reads each sample in place.
pub struct Throughput {
    kid: Kid,
    subscriber: Subscriber<ipc::Service, [u8], ()>,
    _service: Factory<[u8]>,
    _node: Node<ipc::Service>,
    size: usize,
    expected: u64,
}

impl Throughput {
    pub fn start(domain: &Domain, name: &str, size: usize, capacity: usize) -> Result<Throughput> {
        let node = domain.node()?;
        let service = bytes_service(&node, name, capacity)?;
        let subscriber = service
            .subscriber_builder()
            .buffer_size(capacity)
            .create()?;
        let kid = child::spawn_commanded(
            Role::Iceoryx2Producer,
            &[
                (child::NAME, name.to_owned()),
                (child::IOX, domain.tag.clone()),
                (child::SIZE, size.to_string()),
                (child::CAPACITY, capacity.to_string()),
            ],
        )?;
        Ok(Throughput {
            kid,
            subscriber,
            _service: service,
            _node: node,
            size,
            expected: 0,
        })
    }
}

impl Side for Throughput {
    fn batch(&mut self, n: u64) -> Result<f64> {
        let start = Instant::now();
        self.kid.command(&format!("go {n}"))?;
        for _ in 0..n {
            let sample = loop {
                if let Some(sample) = self.subscriber.receive()? {
                    break sample;
                }
                spin_loop();
            };
            check_message(sample.payload(), self.size, self.expected)?;
            self.expected += 1;
        }
        Ok(start.elapsed().as_secs_f64() * 1e9 / n as f64)
    }

    fn keepalive(&mut self) -> Result<()> {
        self.kid.alive()
    }
}

/// The producer child: on each `go N`, sends N messages; a full subscriber
/// queue makes `send` wait (`RetryUntilDelivered`), so nothing is dropped.
pub fn producer_child() -> Result<()> {
    let name = child::var(child::NAME)?;
    let size = child::number(child::SIZE)?;
    let capacity = child::number(child::CAPACITY)?;
    let node = child_domain()?;
    let service = bytes_service(&node, &name, capacity)?;
    let publisher = service
        .publisher_builder()
        .initial_max_slice_len(size)
        .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
        .create()?;
    let mut commands = Commands::new()?;
    shmio_cli::process::try_ready()?;
    let mut message = super::message(size);
    let mut seq = 0u64;
    while let Some(n) = commands.next_count()? {
        for _ in 0..n {
            stamp(&mut message, seq);
            publisher
                .loan_slice_uninit(size)?
                .write_from_slice(&message)
                .send()?;
            seq += 1;
            watchdog::progress();
        }
    }
    Ok(())
}

/// Slots of each service of a sized round trip: one message is in flight
/// at a time, a few more while the ports connect.
const ROUND_TRIP_SLOTS: usize = 4;

type SlicePublisher = Publisher<ipc::Service, [u8], ()>;
type SliceSubscriber = Subscriber<ipc::Service, [u8], ()>;

fn slice_publisher(service: &Factory<[u8]>, size: usize) -> Result<SlicePublisher> {
    Ok(service
        .publisher_builder()
        .initial_max_slice_len(size)
        .create()?)
}

fn send_slice(publisher: &SlicePublisher, message: &[u8]) -> Result<()> {
    publisher
        .loan_slice_uninit(message.len())?
        .write_from_slice(message)
        .send()?;
    Ok(())
}

/// Round trips of `size`-byte slices: the parent loans, writes and sends
/// on ping and busy-polls pong, the child copies each sample it receives
/// into a loan on pong; the parent checks each one that comes back
/// (length, sequence, last byte).
pub struct SizedRoundTrip {
    kid: Kid,
    publisher: SlicePublisher,
    subscriber: SliceSubscriber,
    _services: (Factory<[u8]>, Factory<[u8]>),
    _node: Node<ipc::Service>,
    message: Vec<u8>,
    seq: u64,
    connected: bool,
}

impl SizedRoundTrip {
    pub fn start(domain: &Domain, name: &str, size: usize) -> Result<SizedRoundTrip> {
        let size = size.max(8);
        let node = domain.node()?;
        let ping = bytes_service(&node, &format!("{name}/ping"), ROUND_TRIP_SLOTS)?;
        let pong = bytes_service(&node, &format!("{name}/pong"), ROUND_TRIP_SLOTS)?;
        let publisher = slice_publisher(&ping, size)?;
        let subscriber = pong
            .subscriber_builder()
            .buffer_size(ROUND_TRIP_SLOTS)
            .create()?;
        let kid = child::spawn_commanded(
            Role::Iceoryx2SizedEcho,
            &[
                (child::NAME, name.to_owned()),
                (child::IOX, domain.tag.clone()),
                (child::SIZE, size.to_string()),
            ],
        )?;
        Ok(SizedRoundTrip {
            kid,
            publisher,
            subscriber,
            _services: (ping, pong),
            _node: node,
            message: super::message(size),
            seq: 0,
            connected: false,
        })
    }

    /// Sends `seq` and waits for it, skipping the echoes of earlier
    /// messages (resent while connecting); while connecting, resends it
    /// every 20 ms.
    fn round_trip(&mut self, seq: u64, connecting: bool) -> Result<()> {
        stamp(&mut self.message, seq);
        send_slice(&self.publisher, &self.message)?;
        let mut since = Instant::now();
        loop {
            match self.subscriber.receive()? {
                Some(sample) => {
                    // An earlier copy, resent while connecting: skipped.
                    let earlier = sample
                        .payload()
                        .get(..8)
                        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
                        .is_some_and(|got| got < seq);
                    if !earlier {
                        return check_message(sample.payload(), self.message.len(), seq);
                    }
                }
                None => spin_loop(),
            }
            if connecting && since.elapsed() > Duration::from_millis(20) {
                send_slice(&self.publisher, &self.message)?;
                since = Instant::now();
            }
        }
    }
}

impl Side for SizedRoundTrip {
    fn batch(&mut self, n: u64) -> Result<f64> {
        self.kid.command("go")?;
        if !self.connected {
            // The first message may go out before the ports see each other.
            self.seq += 1;
            self.round_trip(self.seq, true)?;
            self.connected = true;
        }
        let ns = warmed_up(n, None, || {
            self.seq += 1;
            self.round_trip(self.seq, false)
        })?;
        self.round_trip(STOP, false)?;
        Ok(ns)
    }

    fn keepalive(&mut self) -> Result<()> {
        self.kid.alive()
    }
}

/// The sized echo child: on each `go`, echoes until [`STOP`], copying
/// each sample into a loan.
pub fn sized_round_trip_child() -> Result<()> {
    let name = child::var(child::NAME)?;
    let size = child::number(child::SIZE)?;
    let node = child_domain()?;
    let ping = bytes_service(&node, &format!("{name}/ping"), ROUND_TRIP_SLOTS)?;
    let pong = bytes_service(&node, &format!("{name}/pong"), ROUND_TRIP_SLOTS)?;
    let subscriber = ping
        .subscriber_builder()
        .buffer_size(ROUND_TRIP_SLOTS)
        .create()?;
    let publisher = slice_publisher(&pong, size)?;
    let mut commands = Commands::new()?;
    shmio_cli::process::try_ready()?;
    while commands.next_command()?.is_some() {
        loop {
            let Some(sample) = subscriber.receive()? else {
                spin_loop();
                continue;
            };
            send_slice(&publisher, sample.payload())?;
            let seq = sample
                .payload()
                .get(..8)
                .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
            drop(sample);
            watchdog::progress();
            if seq == Some(STOP) {
                break;
            }
        }
    }
    Ok(())
}

/// How many subscribers a fan-out service has room for (a child's
/// environment).
const SUBSCRIBERS: &str = "SHMIO_BENCH_SUBSCRIBERS";

/// A fan-out service: one publisher, `subscribers` subscribers, each with
/// a buffer of `capacity` samples; no sample dropped (the publisher waits
/// for a full buffer), none kept for late joiners.
fn fan_out_service(
    node: &Node<ipc::Service>,
    name: &str,
    subscribers: usize,
    capacity: usize,
) -> Result<Factory<[u8]>> {
    Ok(node
        .service_builder(&ServiceName::new(name)?)
        .publish_subscribe::<[u8]>()
        .max_publishers(1)
        .max_subscribers(subscribers)
        .history_size(0)
        .subscriber_max_buffer_size(capacity)
        .enable_safe_overflow(false)
        .open_or_create()?)
}

/// Fan-out, as `topic::FanOut` measures it: the parent loans, writes and
/// sends each `size`-byte sample; `subscribers` child processes each
/// receive every sample and read it in place (its sequence number and
/// last byte); a batch ends when every child says it has all of them.
pub struct FanOut {
    kids: Vec<(Kid, std::io::BufReader<std::process::ChildStdout>)>,
    publisher: SlicePublisher,
    _service: Factory<[u8]>,
    _node: Node<ipc::Service>,
    message: Vec<u8>,
}

impl FanOut {
    /// Creates the service under `name`, starts its subscribers (each
    /// says when its port exists), then the publisher.
    pub fn start(
        domain: &Domain,
        name: &str,
        subscribers: usize,
        size: usize,
        capacity: usize,
    ) -> Result<FanOut> {
        use std::io::BufRead;
        let size = size.max(8);
        let node = domain.node()?;
        let service = fan_out_service(&node, name, subscribers, capacity)?;
        let mut kids = Vec::with_capacity(subscribers);
        let env = [
            (child::NAME, name.to_owned()),
            (child::IOX, domain.tag.clone()),
            (child::SIZE, size.to_string()),
            (child::CAPACITY, capacity.to_string()),
            (SUBSCRIBERS, subscribers.to_string()),
        ];
        for _ in 0..subscribers {
            let mut kid = child::spawn(
                Role::Iceoryx2FanOutSubscriber,
                &env,
                shmio_cli::process::Input::Pipe,
                shmio_cli::process::Output::Pipe,
            )?;
            let mut out = std::io::BufReader::new(kid.stdout.take().ok_or("no stdout")?);
            let mut line = String::new();
            out.read_line(&mut line)?;
            if line.trim() != "subscribed" {
                return Err(format!("an iceoryx2 subscriber said {line:?}").into());
            }
            kids.push((kid, out));
        }
        let publisher = service
            .publisher_builder()
            .initial_max_slice_len(size)
            .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
            .create()?;
        Ok(FanOut {
            kids,
            publisher,
            _service: service,
            _node: node,
            message: super::message(size),
        })
    }
}

impl Side for FanOut {
    fn batch(&mut self, n: u64) -> Result<f64> {
        use std::io::BufRead;
        for (kid, _) in &mut self.kids {
            kid.command(&format!("go {n}"))?;
        }
        let start = Instant::now();
        for seq in 0..n {
            stamp(&mut self.message, seq);
            send_slice(&self.publisher, &self.message)?;
        }
        for (_, out) in &mut self.kids {
            let mut line = String::new();
            out.read_line(&mut line)?;
            if line.trim() != "done" {
                return Err(format!("an iceoryx2 subscriber said {line:?}").into());
            }
        }
        Ok(start.elapsed().as_secs_f64() * 1e9 / n as f64)
    }

    fn keepalive(&mut self) -> Result<()> {
        for (kid, _) in &mut self.kids {
            kid.alive()?;
        }
        Ok(())
    }
}

/// A fan-out subscriber: creates its port, says `subscribed`, then on
/// each `go N` busy-polls (yielding the CPU between polls, as the
/// subscribers may outnumber the CPUs) for N samples, checks each in
/// place, and says `done`.
pub fn fan_out_subscriber_child() -> Result<()> {
    use std::io::Write;
    let name = child::var(child::NAME)?;
    let size = child::number(child::SIZE)?;
    let capacity = child::number(child::CAPACITY)?;
    let subscribers = child::number(SUBSCRIBERS)?;
    let node = child_domain()?;
    let service = fan_out_service(&node, &name, subscribers, capacity)?;
    let subscriber = service
        .subscriber_builder()
        .buffer_size(capacity)
        .create()?;
    let mut commands = Commands::new()?;
    let mut out = child::stdout_file()?;
    writeln!(out, "subscribed")?;
    while let Some(n) = commands.next_count()? {
        for expected in 0..n {
            let sample = loop {
                if let Some(sample) = subscriber.receive()? {
                    break sample;
                }
                std::thread::yield_now();
            };
            check_message(sample.payload(), size, expected)?;
        }
        writeln!(out, "done")?;
        watchdog::progress();
    }
    Ok(())
}
