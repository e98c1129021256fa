//! Mapping benchmarks: each shmio operation against its baseline, measured
//! in the same run. Criterion reports each function; the table at the end
//! comes from a paired run that alternates shmio and baseline batches.
//!
//! Run: `cargo bench --bench mapping`

use std::hint::black_box;
use std::io::{Cursor, Write};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};
use support::{paired, row};

mod support;
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
    if std::env::args().any(|arg| arg == "--list" || arg == "--test") {
        return;
    }

    support::header();
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
        "shm_open+ftruncate+fallocate+mmap+munmap+shm_unlink",
        false,
        "time <= 1.5x",
    );
}
