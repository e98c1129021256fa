//! The raw limits, written straight against the OS: a shared mapping with
//! two busy-polled words ("the limit" for a round trip), the same with
//! futex sleeps, and `memcpy` into a mapping (the limit for bulk data).

use std::hint::spin_loop;
use std::process::Stdio;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use rustix::fs::Mode;
use rustix::mm::{MapFlags, ProtFlags};
use rustix::shm;
use rustix::thread::futex;
use rustix::time::Timespec;

use super::harness::{timed, Side};
use super::proc::{self, watchdog, Commands, Kid};
use super::{Result, STOP, WARMUP};

/// The parent's word, then the child's, 128 bytes apart (separate cache
/// lines, and not a pair the adjacent-line prefetcher fetches together).
const PING: usize = 0;
const PONG: usize = 128;
const WORDS_LEN: usize = 4096;
/// What ends a futex echo child.
const STOP32: u32 = u32::MAX;

/// A shared mapping: a named POSIX shm object (unlinked by its creator
/// when dropped) or anonymous memory.
pub struct Region {
    ptr: NonNull<u8>,
    len: usize,
    /// The name this process created, to unlink.
    created: Option<(String, u64)>,
}

impl Region {
    /// Creates `/NAME` (exclusive, 0600) of `len` bytes.
    pub fn create(name: &str, len: usize) -> Result<Region> {
        let os_name = format!("/{name}");
        let fd = shm::open(
            &os_name,
            shm::OFlags::CREATE | shm::OFlags::EXCL | shm::OFlags::RDWR,
            Mode::from(0o600),
        )?;
        let key = {
            let os_name = os_name.clone();
            watchdog::on_stall(move || {
                let _ = shm::unlink(&os_name);
            })
        };
        match rustix::fs::ftruncate(&fd, len as u64)
            .map_err(Into::into)
            .and_then(|()| Region::map(&fd, len))
        {
            Ok(mut region) => {
                region.created = Some((os_name, key));
                Ok(region)
            }
            Err(e) => {
                let _ = shm::unlink(&os_name);
                watchdog::forget(key);
                Err(e)
            }
        }
    }

    /// Opens `/NAME`, made by [`create`](Self::create) with `len` bytes.
    pub fn open(name: &str, len: usize) -> Result<Region> {
        let fd = shm::open(format!("/{name}"), shm::OFlags::RDWR, Mode::empty())?;
        Region::map(&fd, len)
    }

    fn map(fd: &std::os::fd::OwnedFd, len: usize) -> Result<Region> {
        // SAFETY: a fresh mapping chosen by the kernel; nothing else is there.
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                fd,
                0,
            )?
        };
        Ok(Region {
            ptr: NonNull::new(ptr.cast()).ok_or("mmap returned null")?,
            len,
            created: None,
        })
    }

    /// Anonymous shared memory of `len` bytes, for this process alone.
    pub fn anonymous(len: usize) -> Result<Region> {
        // SAFETY: a fresh mapping chosen by the kernel; nothing else is there.
        let ptr = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
            )?
        };
        Ok(Region {
            ptr: NonNull::new(ptr.cast()).ok_or("mmap returned null")?,
            len,
            created: None,
        })
    }

    fn u64_at(&self, offset: usize) -> &AtomicU64 {
        assert!(offset.is_multiple_of(8) && offset + 8 <= self.len);
        // SAFETY: in bounds and aligned (checked above; the mapping is
        // page-aligned); shared memory is only ever accessed atomically here.
        unsafe { AtomicU64::from_ptr(self.ptr.as_ptr().add(offset).cast()) }
    }

    fn u32_at(&self, offset: usize) -> &AtomicU32 {
        assert!(offset.is_multiple_of(4) && offset + 4 <= self.len);
        // SAFETY: as in `u64_at`.
        unsafe { AtomicU32::from_ptr(self.ptr.as_ptr().add(offset).cast()) }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`/`anonymous`; nothing borrows it past `self`.
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
        if let Some((name, key)) = self.created.take() {
            let _ = shm::unlink(&name);
            watchdog::forget(key);
        }
    }
}

/// Raw spin ping-pong: both sides busy-poll a word in a shared mapping.
pub struct SpinRoundTrip {
    region: Region,
    kid: Kid,
    seq: u64,
}

impl SpinRoundTrip {
    pub fn start(name: &str) -> Result<SpinRoundTrip> {
        let region = Region::create(name, WORDS_LEN)?;
        let mut kid = proc::spawn(
            "rt-spin",
            &[(proc::NAME, name.to_owned())],
            Stdio::piped(),
            Stdio::piped(),
        )?;
        kid.ready()?;
        Ok(SpinRoundTrip {
            region,
            kid,
            seq: 0,
        })
    }
}

fn spin_round_trip(ping: &AtomicU64, pong: &AtomicU64, seq: u64) {
    ping.store(seq, Ordering::Release);
    while pong.load(Ordering::Acquire) != seq {
        spin_loop();
    }
}

impl Side for SpinRoundTrip {
    fn batch(&mut self, n: u64) -> Result<f64> {
        self.kid.command("go")?;
        let (ping, pong) = (self.region.u64_at(PING), self.region.u64_at(PONG));
        for _ in 0..WARMUP {
            self.seq += 1;
            spin_round_trip(ping, pong, self.seq);
        }
        let seq = &mut self.seq;
        let ns = timed(n, || {
            *seq += 1;
            spin_round_trip(ping, pong, *seq);
            Ok(())
        })?;
        spin_round_trip(ping, pong, STOP);
        Ok(ns)
    }

    fn keepalive(&mut self) -> Result<()> {
        self.kid.alive()
    }
}

/// The spin echo child: on each `go`, echoes until [`STOP`].
pub fn spin_child() -> Result<()> {
    let region = Region::open(&proc::var(proc::NAME)?, WORDS_LEN)?;
    let (ping, pong) = (region.u64_at(PING), region.u64_at(PONG));
    let mut commands = Commands::new()?;
    proc::say_ready()?;
    let mut last = ping.load(Ordering::Acquire);
    while commands.next()?.is_some() {
        loop {
            let value = loop {
                let value = ping.load(Ordering::Acquire);
                if value != last {
                    break value;
                }
                spin_loop();
            };
            last = value;
            pong.store(value, Ordering::Release);
            watchdog::progress();
            if value == STOP {
                break;
            }
        }
    }
    Ok(())
}

/// Raw futex ping-pong: each side stores its word, `FUTEX_WAKE`s it, and
/// `FUTEX_WAIT`s on the other's until it changes. No spinning at all.
pub struct FutexRoundTrip {
    region: Region,
    _kid: Kid,
    seq: u32,
}

impl FutexRoundTrip {
    pub fn start(name: &str) -> Result<FutexRoundTrip> {
        let region = Region::create(name, WORDS_LEN)?;
        let kid = proc::spawn(
            "rt-futex",
            &[(proc::NAME, name.to_owned())],
            Stdio::null(),
            Stdio::null(),
        )?;
        Ok(FutexRoundTrip {
            region,
            _kid: kid,
            seq: 0,
        })
    }
}

/// A bounded futex wait: `word` still `value`, at most a second (the loops
/// around it look again; the watchdog bounds the whole).
fn futex_wait(word: &AtomicU32, value: u32) {
    let second = Timespec {
        tv_sec: 1,
        tv_nsec: 0,
    };
    // EAGAIN (the word changed), ETIMEDOUT and EINTR all mean: look again.
    let _ = futex::wait(word, futex::Flags::empty(), value, Some(&second));
}

fn futex_round_trip(ping: &AtomicU32, pong: &AtomicU32, seq: u32) -> Result<()> {
    ping.store(seq, Ordering::Release);
    futex::wake(ping, futex::Flags::empty(), 1)?;
    loop {
        let value = pong.load(Ordering::Acquire);
        if value == seq {
            return Ok(());
        }
        futex_wait(pong, value);
    }
}

impl FutexRoundTrip {
    fn next(seq: &mut u32) -> u32 {
        *seq = seq.wrapping_add(1);
        if *seq == 0 || *seq == STOP32 {
            *seq = 1;
        }
        *seq
    }
}

impl Side for FutexRoundTrip {
    fn batch(&mut self, n: u64) -> Result<f64> {
        let (ping, pong) = (self.region.u32_at(PING), self.region.u32_at(PONG));
        let seq = &mut self.seq;
        for _ in 0..WARMUP {
            futex_round_trip(ping, pong, Self::next(seq))?;
        }
        timed(n, || futex_round_trip(ping, pong, Self::next(seq)))
    }

    fn keepalive(&mut self) -> Result<()> {
        let (ping, pong) = (self.region.u32_at(PING), self.region.u32_at(PONG));
        futex_round_trip(ping, pong, Self::next(&mut self.seq))
    }
}

impl Drop for FutexRoundTrip {
    fn drop(&mut self) {
        let ping = self.region.u32_at(PING);
        ping.store(STOP32, Ordering::Release);
        let _ = futex::wake(ping, futex::Flags::empty(), 1);
    }
}

/// The futex echo child: echoes every new value until `STOP32`.
pub fn futex_child() -> Result<()> {
    let region = Region::open(&proc::var(proc::NAME)?, WORDS_LEN)?;
    let (ping, pong) = (region.u32_at(PING), region.u32_at(PONG));
    let mut last = 0;
    loop {
        let value = ping.load(Ordering::Acquire);
        if value == last {
            futex_wait(ping, value);
            continue;
        }
        last = value;
        pong.store(value, Ordering::Release);
        futex::wake(pong, futex::Flags::empty(), 1)?;
        watchdog::progress();
        if value == STOP32 {
            return Ok(());
        }
    }
}

/// `copy_from_slice` of one message into the next slot of a mapping the
/// size of the channel's ring: the bandwidth limit, in one process.
pub struct Memcpy {
    region: Region,
    source: Vec<u8>,
    size: usize,
    slots: usize,
    next: usize,
}

impl Memcpy {
    pub fn new(size: usize, slots: usize) -> Result<Memcpy> {
        let region = Region::anonymous(size * slots)?;
        Ok(Memcpy {
            region,
            source: vec![0xA5; size],
            size,
            slots,
            next: 0,
        })
    }
}

impl Side for Memcpy {
    fn batch(&mut self, n: u64) -> Result<f64> {
        // SAFETY: anonymous memory of this process alone, `size * slots`
        // bytes, borrowed only for this batch.
        let memory =
            unsafe { std::slice::from_raw_parts_mut(self.region.ptr.as_ptr(), self.region.len) };
        let (source, size, slots, next) = (&self.source, self.size, self.slots, &mut self.next);
        timed(n, || {
            let slot = &mut memory[*next * size..][..size];
            slot.copy_from_slice(std::hint::black_box(source));
            std::hint::black_box(slot);
            *next = (*next + 1) % slots;
            Ok(())
        })
    }

    fn keepalive(&mut self) -> Result<()> {
        Ok(())
    }
}
