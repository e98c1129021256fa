//! Mapping benchmarks: each shmio operation against its baseline, measured
//! in the same run. Criterion reports each function; the table at the end
//! comes from a paired run that alternates shmio and baseline batches.
//!
//! Run: `cargo bench --bench mapping`

use std::hint::black_box;
use std::io::{Cursor, Write};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use shmio::Mapping;

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
    let map = Mapping::anonymous(CHUNK as u64).unwrap();
    let chunk = vec![0x5au8; CHUNK];
    map.write_at(0, &chunk).unwrap(); // fault every page in before measuring
    group.bench_function("shmio", |b| {
        b.iter(|| map.write_at(0, black_box(&chunk)).unwrap())
    });
    let mut view = map.view(0, CHUNK as u64).unwrap();
    group.bench_function("raw_copy", |b| {
        b.iter(|| {
            // SAFETY: nothing else reads or writes this private benchmark mapping.
            let target = unsafe { view.as_mut_slice() };
            target.copy_from_slice(black_box(&chunk));
        })
    });
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

/// The least a named mapping takes: shm_open, size, map, unmap, unlink.
#[cfg(unix)]
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

/// Times `shmio` and `baseline` in alternating batches, so that drift in a
/// shared, noisy machine hits both alike. Returns the median time per call
/// of each and the median of the per-round ratios.
fn paired(mut shmio: impl FnMut(), mut baseline: impl FnMut(), batch: u32) -> (f64, f64, f64) {
    const ROUNDS: usize = 41;
    let time = |f: &mut dyn FnMut()| {
        let start = Instant::now();
        for _ in 0..batch {
            f();
        }
        start.elapsed().as_secs_f64() * 1e9 / f64::from(batch)
    };
    for _ in 0..3 {
        time(&mut shmio);
        time(&mut baseline);
    }
    let (mut ours, mut theirs, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let (a, b) = if round % 2 == 0 {
            let a = time(&mut shmio);
            (a, time(&mut baseline))
        } else {
            let b = time(&mut baseline);
            (time(&mut shmio), b)
        };
        ours.push(a);
        theirs.push(b);
        ratios.push(a / b);
    }
    (median(ours), median(theirs), median(ratios))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
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
    if std::env::args().any(|arg| arg == "--list" || arg == "--test") {
        return;
    }

    println!("\nPaired run (alternating batches, medians of 41 rounds):\n");
    println!("| operation | shmio | baseline | baseline time | ratio | target |");
    println!("|---|---|---|---|---|---|");
    let row = |operation: &str,
               (ours, theirs, ratio): (f64, f64, f64),
               baseline: &str,
               bandwidth: bool,
               target: &str| {
        let (what, ratio) = if bandwidth {
            ("bandwidth", 1.0 / ratio)
        } else {
            ("time", ratio)
        };
        println!(
            "| {operation} | {:.2} µs | {baseline} | {:.2} µs | {what} {ratio:.2}x | {target} |",
            ours / 1000.0,
            theirs / 1000.0
        );
    };

    let mut map = Mapping::anonymous(1 << 20).unwrap();
    let mut vec = vec![0u8; 1 << 20];
    let cursor = paired(
        || write_values_shmio(&mut map),
        || write_values_io_cursor(&mut vec),
        2000,
    );
    row(
        "write 512 u64 through the cursor",
        cursor,
        "std::io::Cursor<&mut [u8]> over a Vec",
        false,
        "time <= 1.5x",
    );

    let chunk_map = Mapping::anonymous(CHUNK as u64).unwrap();
    let chunk = vec![0x5au8; CHUNK];
    chunk_map.write_at(0, &chunk).unwrap();
    let mut view = chunk_map.view(0, CHUNK as u64).unwrap();
    let chunks = paired(
        || chunk_map.write_at(0, black_box(&chunk)).unwrap(),
        || {
            // SAFETY: nothing else reads or writes this private benchmark mapping.
            unsafe { view.as_mut_slice() }.copy_from_slice(black_box(&chunk))
        },
        100,
    );
    row(
        "write 1 MiB chunks",
        chunks,
        "copy_from_slice into the same mapping",
        true,
        "bandwidth >= 0.9x",
    );

    let name = format!("shmio-bench-paired-{}", std::process::id());
    let os_name = format!("/{name}-raw");
    let create = paired(
        || drop(Mapping::create_or_open(&name, SMALL_MAPPING).unwrap()),
        || raw_shm_cycle(&os_name),
        100,
    );
    row(
        "create_or_open + drop (64 KiB)",
        create,
        "shm_open+ftruncate+mmap+munmap+shm_unlink",
        false,
        "time <= 1.5x",
    );
}
