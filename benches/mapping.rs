//! Mapping benchmarks: each shmio operation against its baseline, measured
//! in the same run. Criterion reports each function; the table at the end
//! comes from a paired run of the benchmark harness (`shmio-bench`'s
//! library), which alternates shmio and baseline batches.
//!
//! Run: `cargo bench --bench mapping` (`-- --test`: each function once,
//! and a short paired run).

use std::hint::black_box;
use std::io::{Cursor, Write};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};
use shmio::Mapping;
use shmio_bench::harness::{self, Calls, Settings};
use shmio_bench::report::{pair_header, pair_row, Compare};
use shmio_bench::sides::copy::Target;

const VALUES: usize = 512; // u64 values per iteration: one 4 KiB page
const CHUNK: usize = 1 << 20;
const SMALL_MAPPING: u64 = 64 * 1024;

fn cursor_u64(c: &mut Criterion) {
    let mut group = c.benchmark_group("cursor_u64");
    group.throughput(Throughput::Bytes((VALUES * 8) as u64));
    let mut map = Mapping::anonymous(1 << 20).unwrap();
    group.bench_function("shmio", |b| b.iter(|| write_values_shmio(&mut map)));
    let mut vec = vec![0u8; 1 << 20];
    group.bench_function("io_cursor_vec", |b| {
        b.iter(|| write_values_io_cursor(&mut vec))
    });
    group.finish();
}

/// Compiled once (never inlined), like its baseline, so both harnesses
/// measure the same code.
#[inline(never)]
fn write_values_shmio(map: &mut Mapping) {
    map.set_position(0);
    for value in 0..VALUES as u64 {
        map.write_value(&black_box(value)).unwrap();
    }
}

#[inline(never)]
fn write_values_io_cursor(vec: &mut [u8]) {
    let mut cursor = Cursor::new(vec);
    for value in 0..VALUES as u64 {
        cursor.write_all(&black_box(value).to_le_bytes()).unwrap();
    }
    black_box(cursor.position());
}

fn chunk_1mib(c: &mut Criterion) {
    let mut group = c.benchmark_group("chunk_1mib");
    group.throughput(Throughput::Bytes(CHUNK as u64));
    // One anonymous mapping, every page faulted in, for both.
    let target = Target::anonymous(CHUNK, 1).unwrap();
    let mut write_at = target.write_at();
    group.bench_function("shmio", |b| b.iter(|| write_at.copy().unwrap()));
    let mut memcpy = target.memcpy().unwrap();
    group.bench_function("raw_copy", |b| b.iter(|| memcpy.copy()));
    group.finish();
}

fn create_drop(c: &mut Criterion) {
    let mut group = c.benchmark_group("create_drop");
    let name = format!("shmio-bench-{}", std::process::id());
    group.bench_function("shmio", |b| {
        b.iter(|| drop(Mapping::create_or_open(&name, SMALL_MAPPING).unwrap()))
    });
    let os_name = format!("/{name}-raw");
    group.bench_function(BenchmarkId::from_parameter("raw_shm"), |b| {
        b.iter(|| raw_shm_cycle(&os_name))
    });
    group.finish();
}

#[cfg(unix)]
/// The least a named mapping takes that makes shmio's promise (a created
/// mapping can be written in full): shm_open, size, reserve (Linux), map,
/// unmap, unlink.
fn raw_shm_cycle(os_name: &str) {
    use rustix::mm::{MapFlags, ProtFlags};
    use rustix::shm;
    let fd = shm::open(
        os_name,
        shm::OFlags::CREATE | shm::OFlags::EXCL | shm::OFlags::RDWR,
        0o600.into(),
    )
    .unwrap();
    rustix::fs::ftruncate(&fd, SMALL_MAPPING).unwrap();
    #[cfg(target_os = "linux")]
    rustix::fs::fallocate(&fd, rustix::fs::FallocateFlags::empty(), 0, SMALL_MAPPING).unwrap();
    let len = SMALL_MAPPING as usize;
    // SAFETY: a fresh mapping at a kernel-chosen address, unmapped right after.
    unsafe {
        let ptr = rustix::mm::mmap(
            std::ptr::null_mut(),
            len,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::SHARED,
            &fd,
            0,
        )
        .unwrap();
        black_box(ptr);
        rustix::mm::munmap(ptr, len).unwrap();
    }
    shm::unlink(os_name).unwrap();
}

/// The least a named section takes: create, map, unmap, close.
#[cfg(windows)]
fn raw_shm_cycle(os_name: &str) {
    use windows_sys::Win32::Foundation::{CloseHandle, INVALID_HANDLE_VALUE};
    use windows_sys::Win32::System::Memory::{
        CreateFileMappingW, MapViewOfFile, UnmapViewOfFile, FILE_MAP_WRITE, PAGE_READWRITE,
    };
    let wide: Vec<u16> = os_name
        .trim_start_matches('/')
        .encode_utf16()
        .chain(Some(0))
        .collect();
    // SAFETY: a paging-file section with a NUL-terminated name, mapped,
    // unmapped and closed right here.
    unsafe {
        let section = CreateFileMappingW(
            INVALID_HANDLE_VALUE,
            std::ptr::null(),
            PAGE_READWRITE,
            0,
            SMALL_MAPPING as u32,
            wide.as_ptr(),
        );
        assert!(!section.is_null());
        let view = MapViewOfFile(section, FILE_MAP_WRITE, 0, 0, SMALL_MAPPING as usize);
        black_box(view.Value);
        UnmapViewOfFile(view);
        CloseHandle(section);
    }
}

fn main() {
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    cursor_u64(&mut criterion);
    chunk_1mib(&mut criterion);
    create_drop(&mut criterion);
    criterion.final_summary();
    if std::env::args().any(|arg| arg == "--list") {
        return;
    }
    let smoke = std::env::args().any(|arg| arg == "--test");
    paired(smoke);
}

/// Rounds of each pair; the medians are taken over these.
const ROUNDS: usize = 41;

/// Settings with batches of about `batch_time` (the same number of calls
/// as the earlier fixed batches: short batches are the ones a busy
/// machine interrupts least), or a quick smoke run's.
fn settings(smoke: bool, batch_time: Duration) -> Settings {
    if smoke {
        Settings {
            rounds: 3,
            batch_time: Duration::from_millis(1),
        }
    } else {
        Settings {
            rounds: ROUNDS,
            batch_time,
        }
    }
}

/// The table: each operation against its baseline in alternating batches.
fn paired(smoke: bool) {
    print!("{}", pair_header(settings(smoke, Duration::ZERO).rounds));
    let mut map = Mapping::anonymous(1 << 20).unwrap();
    let mut vec = vec![0u8; 1 << 20];
    let cursor = harness::pair(
        "cursor",
        Calls(|| write_values_shmio(&mut map)),
        Calls(|| write_values_io_cursor(&mut vec)),
        settings(smoke, Duration::from_millis(1)),
    )
    .unwrap();
    print!(
        "{}",
        pair_row(
            "write 512 u64 through the cursor",
            cursor,
            "std::io::Cursor<&mut [u8]> over a Vec",
            Compare::Time,
            "time <= 1.5x",
        )
    );

    let target = Target::anonymous(CHUNK, 1).unwrap();
    let chunks = harness::pair(
        "1 MiB chunks",
        target.write_at(),
        target.memcpy().unwrap(),
        settings(smoke, Duration::from_millis(2)),
    )
    .unwrap();
    assert!(target.landed().unwrap(), "the copies landed in the mapping");
    print!(
        "{}",
        pair_row(
            "write 1 MiB chunks",
            chunks,
            "copy_from_slice into the same mapping",
            Compare::Bandwidth,
            "bandwidth >= 0.9x",
        )
    );

    let name = format!("shmio-bench-paired-{}", std::process::id());
    let os_name = format!("/{name}-raw");
    let create = harness::pair(
        "create_or_open",
        Calls(|| drop(Mapping::create_or_open(&name, SMALL_MAPPING).unwrap())),
        Calls(|| raw_shm_cycle(&os_name)),
        settings(smoke, Duration::from_millis(4)),
    )
    .unwrap();
    print!(
        "{}",
        pair_row(
            "create_or_open + drop (64 KiB)",
            create,
            "shm_open+ftruncate+fallocate+mmap+munmap+shm_unlink",
            Compare::Time,
            "time <= 1.3x",
        )
    );
}
