//! Single-process behaviour of `Mapping`: constructors, the cursor, values,
//! atomics, records, views, clones, threads, and bad input.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};
use shmio::zerocopy::{FromBytes, Immutable, IntoBytes};
use shmio::{Error, Mapping, DEFAULT_SIZE};
use shmio_testkit::unique_name;

#[derive(FromBytes, IntoBytes, Immutable, Debug, PartialEq, Clone, Copy)]
#[repr(C)]
struct Sample {
    id: u32,
    flags: u16,
    kind: u8,
    level: u8,
    value: f64,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Listeners {
    command: String,
    pids: Vec<u32>,
}

fn temp_path(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(unique_name(tag))
}

#[test]
fn create_or_open_reports_existed() {
    let name = unique_name("existed");
    let first = Mapping::create_or_open(&name, 4096).unwrap();
    assert!(!first.existed());
    assert_eq!(first.len(), 4096);
    assert_eq!(first.name(), Some(name.as_str()));
    let second = Mapping::create_or_open(&name, 4096).unwrap();
    assert!(second.existed());
    first.write_at(10, b"shared").unwrap();
    let mut buf = [0u8; 6];
    second.read_at(10, &mut buf).unwrap();
    assert_eq!(&buf, b"shared");
}

#[test]
fn create_refuses_an_existing_name_and_open_a_missing_one() {
    let name = unique_name("create-open");
    assert!(matches!(Mapping::open(&name), Err(Error::NotFound { .. })));
    let _map = Mapping::create(&name, 4096).unwrap();
    match Mapping::create(&name, 4096) {
        Err(e @ Error::AlreadyExists { .. }) => {
            assert!(e.to_string().contains(&name));
            assert_eq!(io::Error::from(e).kind(), io::ErrorKind::AlreadyExists);
        }
        other => panic!("{other:?}"),
    }
    let opened = Mapping::open(&name).unwrap();
    assert!(opened.existed());
    assert_eq!(opened.len(), 4096, "open takes the real size");
}

/// A size asked of an existing mapping is its size (in 4 KiB pages, as
/// Windows counts a section's): smaller or larger is a mismatch naming both.
#[test]
fn opening_asks_the_size_that_exists() {
    let name = unique_name("bigger");
    let _map = Mapping::create(&name, 4096).unwrap();
    let same_pages = Mapping::create_or_open(&name, 100).unwrap();
    assert_eq!(
        same_pages.len(),
        4096,
        "an opener maps the object's real size"
    );
    match Mapping::create_or_open(&name, 8192) {
        Err(Error::Mismatch { .. }) => {}
        other => panic!("larger than exists: {other:?}"),
    }
    let bigger = unique_name("bigger-existing");
    let _big = Mapping::create(&bigger, 65536).unwrap();
    match Mapping::create_or_open(&bigger, 4096) {
        Err(error @ Error::Mismatch { .. }) => {
            let text = error.to_string();
            assert!(
                text.contains("65536 bytes") && text.contains("4096 bytes"),
                "{text}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn default_size_is_64_mib() {
    assert_eq!(DEFAULT_SIZE, 64 << 20);
    let name = unique_name("default");
    let named = Mapping::options().create_or_open(&name).unwrap();
    assert_eq!(named.len(), DEFAULT_SIZE);
    let anonymous = Mapping::options().anonymous().unwrap();
    assert_eq!(anonymous.len(), DEFAULT_SIZE);
}

#[test]
fn anonymous_mappings_are_shared_between_clones() {
    let map = Mapping::anonymous(4096).unwrap();
    assert!(!map.existed());
    assert_eq!(map.name(), None);
    let clone = map.clone();
    map.write_value_at(0, &7u64).unwrap();
    assert_eq!(clone.read_value_at::<u64>(0).unwrap(), 7);
}

#[test]
fn cursor_reads_and_writes_like_a_file() {
    let mut map = Mapping::anonymous(64).unwrap();
    assert_eq!(map.position(), 0);
    map.write_all(b"abcdef").unwrap();
    assert_eq!(map.position(), 6);
    assert_eq!(map.seek(SeekFrom::Start(2)).unwrap(), 2);
    let mut two = [0u8; 2];
    map.read_exact(&mut two).unwrap();
    assert_eq!(&two, b"cd");
    assert_eq!(map.seek(SeekFrom::Current(-4)).unwrap(), 0);
    assert_eq!(map.seek(SeekFrom::Current(1)).unwrap(), 1);
    assert_eq!(map.seek(SeekFrom::End(-1)).unwrap(), 63);
    assert_eq!(map.seek(SeekFrom::End(0)).unwrap(), 64);
    assert_eq!(map.stream_position().unwrap(), 64);
    map.set_position(1);
    assert_eq!(map.read_bytes(3).unwrap(), b"bcd");
    assert_eq!(map.position32(), (4, 0));
}

#[test]
fn reads_at_the_end_follow_the_file_rules() {
    let mut map = Mapping::anonymous(16).unwrap();
    map.seek(SeekFrom::End(-4)).unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(map.read(&mut buf).unwrap(), 4, "a short read near the end");
    assert_eq!(map.read(&mut buf).unwrap(), 0, "nothing at the end");
    map.seek(SeekFrom::Start(100)).unwrap();
    assert_eq!(map.read(&mut buf).unwrap(), 0, "nothing past the end");

    map.seek(SeekFrom::Start(12)).unwrap();
    let err = map.read_exact(&mut buf).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    assert_eq!(map.position(), 12, "a failed read leaves the cursor");
    assert!(matches!(
        map.read_bytes(5),
        Err(Error::UnexpectedEof {
            offset: 12,
            len: 5,
            size: 16
        })
    ));
    assert!(matches!(
        map.read_value::<u64>(),
        Err(Error::UnexpectedEof { .. })
    ));
    assert_eq!(map.position(), 12);
    assert_eq!(map.read_value::<u32>().unwrap(), 0);
    assert_eq!(map.position(), 16);

    let mut rest = Vec::new();
    map.set_position(10);
    assert_eq!(map.read_to_end(&mut rest).unwrap(), 6);
}

#[test]
fn writes_past_the_end_write_nothing() {
    let mut map = Mapping::anonymous(16).unwrap();
    map.seek(SeekFrom::Start(12)).unwrap();
    let err = map.write(b"too long").unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::WriteZero);
    assert_eq!(map.position(), 12);
    assert_eq!(
        map.read_value_at::<[u8; 4]>(12).unwrap(),
        [0; 4],
        "nothing written"
    );
    assert!(map.write_all(b"1234").is_ok());
    assert_eq!(map.position(), 16);
    assert_eq!(map.write(b"").unwrap(), 0);
    assert!(matches!(
        map.write_at(u64::MAX, b"x"),
        Err(Error::OutOfBounds {
            offset: u64::MAX,
            len: 1,
            size: 16
        })
    ));
    map.seek(SeekFrom::Start(1000)).unwrap();
    assert!(map.write_value(&1u8).is_err());
    assert_eq!(map.position(), 1000);
}

#[test]
fn bad_seeks_are_errors() {
    let mut map = Mapping::anonymous(16).unwrap();
    map.seek(SeekFrom::Start(4)).unwrap();
    for from in [
        SeekFrom::Current(-5),
        SeekFrom::End(-17),
        SeekFrom::End(i64::MIN),
    ] {
        let err = map.seek(from).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{from:?}");
        assert_eq!(map.position(), 4, "{from:?} left the cursor");
    }
    map.seek(SeekFrom::Start(u64::MAX)).unwrap();
    assert_eq!(
        map.seek(SeekFrom::Current(1)).unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );
    assert_eq!(
        map.seek(SeekFrom::Current(i64::MAX)).unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );
    assert_eq!(map.position(), u64::MAX);
    let mut byte = [0u8];
    assert_eq!(map.read(&mut byte).unwrap(), 0);
}

#[test]
fn plain_values_round_trip() {
    let mut map = Mapping::anonymous(4096).unwrap();
    let sample = Sample {
        id: 9,
        flags: 3,
        kind: 1,
        level: 200,
        value: -1.5,
    };
    map.write_value(&sample).unwrap();
    map.write_value(&0xdead_beef_u32).unwrap();
    map.write_value(&[1u16, 2, 3]).unwrap();
    map.write_value(&b"raw bytes"[..]).unwrap();
    assert_eq!(map.position(), 16 + 4 + 6 + 9);
    map.set_position(0);
    assert_eq!(map.read_value::<Sample>().unwrap(), sample);
    assert_eq!(map.read_value::<u32>().unwrap(), 0xdead_beef);
    assert_eq!(map.read_value::<[u16; 3]>().unwrap(), [1, 2, 3]);
    assert_eq!(map.read_bytes(9).unwrap(), b"raw bytes");
    map.write_value_at(4093, &sample).unwrap_err();
    map.write_value_at(4080, &sample).unwrap();
    assert_eq!(map.read_value_at::<Sample>(4080).unwrap(), sample);
    map.write_value_at(3, &1.25f64).unwrap();
    assert_eq!(
        map.read_value_at::<f64>(3).unwrap(),
        1.25,
        "unaligned values work"
    );
}

#[test]
fn atomics_at_aligned_offsets() {
    let map = Mapping::anonymous(4096).unwrap();
    map.atomic_u32(4).unwrap().store(5, Ordering::SeqCst);
    assert_eq!(map.read_value_at::<u32>(4).unwrap(), 5);
    map.atomic_u64(8).unwrap().fetch_add(3, Ordering::SeqCst);
    assert_eq!(map.read_value_at::<u64>(8).unwrap(), 3);
    assert!(matches!(
        map.atomic_u32(6),
        Err(Error::Misaligned {
            offset: 6,
            align: 4
        })
    ));
    assert!(matches!(
        map.atomic_u64(12),
        Err(Error::Misaligned {
            offset: 12,
            align: 8
        })
    ));
    assert!(matches!(
        map.atomic_u32(4096),
        Err(Error::OutOfBounds { .. })
    ));
    assert!(matches!(
        map.atomic_u64(4092),
        Err(Error::OutOfBounds { .. })
    ));
    assert!(map.atomic_u64(4088).is_ok());
    assert!(matches!(
        map.atomic_u64(u64::MAX - 3),
        Err(Error::OutOfBounds { .. })
    ));
}

#[test]
fn records_round_trip_and_zero_reads_as_none() {
    let mut map = Mapping::anonymous(4096).unwrap();
    assert_eq!(map.read_record::<Listeners>().unwrap(), None);
    assert_eq!(map.position(), 0);
    let value = Listeners {
        command: "reload".into(),
        pids: vec![1, 2, 3],
    };
    let written = map.write_record(&value).unwrap();
    assert_eq!(map.position(), written);
    map.write_record(&"second").unwrap();
    map.set_position(0);
    assert_eq!(map.read_record::<Listeners>().unwrap(), Some(value));
    assert_eq!(
        map.read_record::<String>().unwrap().as_deref(),
        Some("second")
    );
    let mut raw = [0u8; 4];
    map.read_at(0, &mut raw).unwrap();
    assert_eq!(u32::from_le_bytes(raw) as u64, written - 4);
}

#[test]
fn corrupt_and_undecodable_records_are_typed_errors() {
    let mut map = Mapping::anonymous(64).unwrap();
    map.write_value_at(8, &61u32).unwrap();
    map.set_position(8);
    match map.read_record::<String>() {
        Err(e @ Error::Corrupt { offset: 8, .. }) => {
            assert_eq!(io::Error::from(e).kind(), io::ErrorKind::InvalidData)
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(map.position(), 8, "cursor unchanged");

    map.write_value_at(8, &5u32).unwrap();
    map.write_at(12, b"{oops").unwrap();
    match map.read_record::<String>() {
        Err(Error::Decode { offset: 8, raw, .. }) => assert_eq!(raw, b"{oops"),
        other => panic!("{other:?}"),
    }
    assert_eq!(map.position(), 8, "cursor unchanged");
    map.set_position(62);
    assert!(matches!(
        map.read_record::<String>(),
        Err(Error::UnexpectedEof { .. })
    ));

    let too_big = "x".repeat(100);
    map.set_position(0);
    assert!(matches!(
        map.write_record(&too_big),
        Err(Error::OutOfBounds { .. })
    ));
    assert_eq!(map.position(), 0);
    assert_eq!(map.read_value_at::<u32>(0).unwrap(), 0, "nothing written");
}

#[test]
fn views_at_unaligned_offsets() {
    let mut map = Mapping::anonymous(8192).unwrap();
    let view = map.view(4099, 100).unwrap();
    assert_eq!((view.offset(), view.len()), (4099, 100));
    view.write_at(0, b"view bytes").unwrap();
    assert_eq!(map.read_bytes_at(4099, 10), b"view bytes");
    view.write_value_at(11, &0x0102_0304u32).unwrap();
    assert_eq!(view.read_value_at::<u32>(11).unwrap(), 0x0102_0304);
    assert!(matches!(
        view.write_at(95, b"123456"),
        Err(Error::OutOfBounds { .. })
    ));
    assert!(matches!(
        map.view(8000, 193),
        Err(Error::OutOfBounds { .. })
    ));
    assert!(map.view(8192, 0).unwrap().is_empty());
    assert_eq!(view.to_vec()[..10], *b"view bytes");
    assert!(
        view.atomic_u32(1).is_ok(),
        "4099 + 1 is 4-aligned in memory"
    );
    assert!(view.atomic_u32(0).is_err());
    // SAFETY: no one else touches these bytes during the test.
    let slice = unsafe { view.as_slice() };
    assert_eq!(&slice[..4], b"view");

    map.set_position(10);
    let next = map.view_at_cursor(5).unwrap();
    assert_eq!((next.offset(), map.position()), (10, 15));
    drop(map);
    next.write_at(0, b"alive").unwrap();
    assert_eq!(next.to_vec(), b"alive", "a view keeps the memory mapped");
}

trait ReadBytesAt {
    fn read_bytes_at(&self, offset: u64, len: usize) -> Vec<u8>;
}

impl ReadBytesAt for Mapping {
    fn read_bytes_at(&self, offset: u64, len: usize) -> Vec<u8> {
        let mut out = vec![0; len];
        self.read_at(offset, &mut out).unwrap();
        out
    }
}

#[test]
fn clones_have_their_own_cursor() {
    let mut map = Mapping::anonymous(64).unwrap();
    map.write_all(b"0123").unwrap();
    let mut clone = map.clone();
    assert_eq!(clone.position(), 4);
    clone.set_position(0);
    map.write_all(b"45").unwrap();
    assert_eq!(clone.read_bytes(6).unwrap(), b"012345");
    assert_eq!(map.position(), 6);
}

#[test]
fn many_threads_share_one_mapping() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Mapping>();
    assert_send_sync::<shmio::View>();
    let map = Mapping::anonymous(4096).unwrap();
    std::thread::scope(|scope| {
        for t in 0..8u64 {
            let mut handle = map.clone();
            scope.spawn(move || {
                for _ in 0..10_000 {
                    handle
                        .atomic_u64(0)
                        .unwrap()
                        .fetch_add(1, Ordering::Relaxed);
                }
                handle.set_position(64 + t * 8);
                handle.write_value(&t).unwrap();
            });
        }
    });
    assert_eq!(map.read_value_at::<u64>(0).unwrap(), 80_000);
    for t in 0..8u64 {
        assert_eq!(map.read_value_at::<u64>(64 + t * 8).unwrap(), t);
    }
}

#[test]
fn read_only_and_copy_on_write() {
    let name = unique_name("access");
    let writer = Mapping::create(&name, 4096).unwrap();
    writer.write_at(0, b"original").unwrap();

    let mut reader = Mapping::options().read_only(true).open(&name).unwrap();
    assert!(reader.is_read_only());
    assert!(matches!(
        reader.write_at(0, b"x"),
        Err(Error::ReadOnly { .. })
    ));
    assert_eq!(
        reader.write_all(b"x").unwrap_err().kind(),
        io::ErrorKind::PermissionDenied
    );
    assert!(matches!(reader.atomic_u32(0), Err(Error::ReadOnly { .. })));
    assert_eq!(reader.read_bytes(8).unwrap(), b"original");

    if cfg!(target_os = "macos") {
        // XNU maps shared-memory objects MAP_SHARED only.
        assert!(matches!(
            Mapping::options().copy_on_write(true).open(&name),
            Err(Error::Unsupported { .. })
        ));
        return;
    }
    let private = Mapping::options().copy_on_write(true).open(&name).unwrap();
    assert!(private.is_copy_on_write());
    private.write_at(0, b"PRIVATE!").unwrap();
    assert_eq!(
        writer.read_bytes_at(0, 8),
        b"original",
        "copy-on-write stays private"
    );
    assert_eq!(private.read_bytes_at(0, 8), b"PRIVATE!");

    assert!(matches!(
        Mapping::options()
            .read_only(true)
            .copy_on_write(true)
            .open(&name),
        Err(Error::InvalidOptions { .. })
    ));
}

#[test]
fn file_backed_mappings() {
    let path = temp_path("file");
    {
        let map = Mapping::options()
            .file(&path)
            .size(8192)
            .map_file()
            .unwrap();
        assert_eq!(map.len(), 8192);
        map.write_at(100, b"on disk").unwrap();
        map.flush_to_file().unwrap();
    }
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len(), 8192);
    assert_eq!(&bytes[100..107], b"on disk");
    let reopened = Mapping::options().file(&path).map_file().unwrap();
    assert_eq!(reopened.len(), 8192, "an existing file keeps its size");
    let head = Mapping::options().file(&path).size(200).map_file().unwrap();
    assert_eq!(head.len(), 200, "a smaller size maps the start");
    let read_only = Mapping::options()
        .file(&path)
        .read_only(true)
        .map_file()
        .unwrap();
    assert!(read_only.write_at(0, b"x").is_err());
    assert!(matches!(
        Mapping::options()
            .file(&path)
            .size(10_000)
            .read_only(true)
            .map_file(),
        Err(Error::InvalidSize { .. })
    ));
    std::fs::remove_file(&path).unwrap();

    let empty = temp_path("empty");
    std::fs::write(&empty, b"").unwrap();
    let grown = Mapping::options().file(&empty).map_file().unwrap();
    assert_eq!(
        grown.len(),
        DEFAULT_SIZE,
        "an empty file grows to the default size"
    );
    assert_eq!(std::fs::metadata(&empty).unwrap().len(), DEFAULT_SIZE);
    std::fs::remove_file(&empty).unwrap();

    let missing = temp_path("missing");
    assert!(matches!(
        Mapping::options().file(&missing).read_only(true).map_file(),
        Err(Error::FileNotFound { .. })
    ));
    assert!(matches!(
        Mapping::options().map_file(),
        Err(Error::InvalidOptions { .. })
    ));
}

#[cfg(unix)]
#[test]
fn files_are_created_owner_only_and_never_through_a_symlink() {
    use std::os::unix::fs::{symlink, PermissionsExt};
    let path = temp_path("mode");
    let _map = Mapping::options()
        .file(&path)
        .size(4096)
        .map_file()
        .unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    std::fs::remove_file(&path).unwrap();

    let link = temp_path("dangling");
    let target = temp_path("target");
    symlink(&target, &link).unwrap();
    assert!(Mapping::options()
        .file(&link)
        .size(4096)
        .map_file()
        .is_err());
    assert!(!target.exists(), "no file was created through the symlink");
    std::fs::remove_file(&link).unwrap();
}

#[cfg(unix)]
#[test]
fn from_fd_and_borrowed_fd() {
    use std::os::fd::AsFd;
    let map = Mapping::anonymous(4096).unwrap();
    map.write_at(0, b"by handle").unwrap();
    let borrowed = Mapping::from_borrowed_fd(map.as_fd()).unwrap();
    assert_eq!(borrowed.len(), 4096);
    assert_eq!(borrowed.read_bytes_at(0, 9), b"by handle");
    let file = std::fs::File::open("/proc/self/exe").unwrap();
    let read_only = Mapping::from_fd(file.into()).unwrap();
    assert!(read_only.is_read_only());
    assert_eq!(read_only.read_bytes_at(1, 3), b"ELF");
    let empty_path = temp_path("empty-fd");
    let empty = std::fs::File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&empty_path)
        .unwrap();
    assert!(matches!(
        Mapping::from_fd(empty.into()),
        Err(Error::InvalidSize { size: 0, .. })
    ));
    let write_only = std::fs::File::options()
        .write(true)
        .open(&empty_path)
        .unwrap();
    assert!(matches!(
        Mapping::from_fd(write_only.into()),
        Err(Error::InvalidOptions { .. })
    ));
    std::fs::remove_file(&empty_path).unwrap();
}

#[test]
fn bad_names_are_typed_errors() {
    let too_long = "n".repeat(261);
    for (name, rule) in [
        ("", "empty"),
        (too_long.as_str(), "260"),
        ("a\\b", "backslash"),
        ("a/b", "slash"),
        ("a\0b", "NUL"),
        ("..", "\"..\""),
    ] {
        for result in [
            Mapping::create_or_open(name, 4096),
            Mapping::open(name),
            Mapping::create(name, 1),
        ] {
            match result {
                Err(e @ Error::InvalidName { .. }) => {
                    assert!(e.to_string().contains(rule), "{e}");
                    assert_eq!(io::Error::from(e).kind(), io::ErrorKind::InvalidInput);
                }
                other => panic!("{name:?}: {other:?}"),
            }
        }
        assert!(matches!(
            Mapping::remove(name),
            Err(Error::InvalidName { .. })
        ));
    }
}

#[test]
fn bad_sizes_are_typed_errors() {
    let name = unique_name("sizes");
    assert!(matches!(
        Mapping::create_or_open(&name, 0),
        Err(Error::InvalidSize { size: 0, .. })
    ));
    assert!(matches!(
        Mapping::anonymous(0),
        Err(Error::InvalidSize { size: 0, .. })
    ));
    for size in [u64::MAX, 1 << 63] {
        assert!(matches!(
            Mapping::create_or_open(&name, size),
            Err(Error::TooLarge { .. })
        ));
        assert!(matches!(
            Mapping::anonymous(size),
            Err(Error::TooLarge { .. })
        ));
    }
    // Past the address space (or, on Windows, the commit limit).
    match Mapping::anonymous(1 << 62) {
        Err(Error::TooLarge { .. } | Error::OutOfAddressSpace { .. } | Error::NoSpace { .. }) => {}
        other => panic!("a 4 EiB mapping: {other:?}"),
    }
    assert!(
        matches!(Mapping::open(&name), Err(Error::NotFound { .. })),
        "nothing half-created"
    );
}

#[test]
fn long_names_still_work() {
    let long = format!("{}-{}", unique_name("long"), "é".repeat(200));
    let parsed = shmio::Name::new(&long).unwrap();
    let map = Mapping::create_or_open(&long, 4096).unwrap();
    assert_eq!(map.name(), Some(long.as_str()));
    if cfg!(unix) {
        assert!(parsed.is_hashed(), "over 255 bytes: hashed");
        assert!(map.os_name().unwrap().starts_with("/shmio-"));
    } else {
        assert!(!parsed.is_hashed(), "Windows takes long names as they are");
        assert_eq!(map.os_name().unwrap(), long);
    }
    assert!(Mapping::open(&long).unwrap().existed());
}

#[cfg(unix)]
#[test]
fn remove_needs_an_existing_name() {
    let name = unique_name("remove");
    assert!(matches!(
        Mapping::remove(&name),
        Err(Error::NotFound { .. })
    ));
    let held = Mapping::create(&name, 4096).unwrap();
    Mapping::remove(&name).unwrap();
    assert!(matches!(Mapping::open(&name), Err(Error::NotFound { .. })));
    held.write_at(0, b"still mapped").unwrap();
    let fresh = Mapping::create(&name, 4096).unwrap();
    assert!(!fresh.existed());
    drop(held);
    assert!(
        Mapping::open(&name).is_ok(),
        "the old holder's close left the new name alone"
    );
}

#[cfg(windows)]
#[test]
fn windows_names_cannot_be_removed_or_persist() {
    let name = unique_name("remove");
    let _held = Mapping::create(&name, 4096).unwrap();
    assert!(matches!(
        Mapping::remove(&name),
        Err(Error::Unsupported { .. })
    ));
    assert!(matches!(
        Mapping::options()
            .persistent(true)
            .create(&unique_name("persist")),
        Err(Error::Unsupported { .. })
    ));
}

#[cfg(windows)]
#[test]
fn from_handle_and_borrowed_handle() {
    use std::os::windows::io::AsHandle;
    let map = Mapping::anonymous(4096).unwrap();
    map.write_at(0, b"by handle").unwrap();
    let borrowed = Mapping::from_borrowed_handle(map.as_handle()).unwrap();
    assert_eq!(borrowed.len(), 4096);
    assert_eq!(borrowed.read_bytes_at(0, 9), b"by handle");
    let owned = map.as_handle().try_clone_to_owned().unwrap();
    let taken = Mapping::from_handle(owned).unwrap();
    taken.write_at(0, b"BY").unwrap();
    assert_eq!(map.read_bytes_at(0, 9), b"BY handle");
}

#[cfg(windows)]
#[test]
fn a_name_held_by_another_kind_of_object_is_a_clear_error() {
    use windows_sys::Win32::Foundation::CloseHandle;
    use windows_sys::Win32::System::Threading::CreateEventW;
    let name = unique_name("event");
    let wide: Vec<u16> = name.encode_utf16().chain(Some(0)).collect();
    // SAFETY: a NUL-terminated name and default attributes; closed below.
    let event = unsafe { CreateEventW(std::ptr::null(), 1, 0, wide.as_ptr()) };
    assert!(!event.is_null());
    for result in [
        Mapping::create_or_open(&name, 4096),
        Mapping::open(&name),
        Mapping::create(&name, 4096),
    ] {
        match result {
            Err(e @ Error::WrongKind { .. }) => assert!(e.to_string().contains(&name), "{e}"),
            other => panic!("{other:?}"),
        }
    }
    // SAFETY: the handle came from CreateEventW and is closed once.
    unsafe { CloseHandle(event) };
}

#[test]
fn errors_convert_to_io_errors() {
    let err: io::Error = Error::NotFound {
        kind: Some(shmio::ObjectKind::Mapping),
        name: "x".into(),
    }
    .into();
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
    assert!(err.to_string().contains("\"x\""));
    let err: io::Error = Error::Misaligned {
        offset: 3,
        align: 8,
    }
    .into();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
}
