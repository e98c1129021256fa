//! Every kind of object builds the same way: `X::options()`, its own
//! settings and the shared ones, then `create`, `open` or `create_or_open`.

use shmio::{Channel, Error, EventMode, Mapping, NamedEvent, NamedMutex, ObjectKind};

fn unique(tag: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "shmio-test-builders-{tag}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

#[track_caller]
fn not_found<T: std::fmt::Debug>(result: shmio::Result<T>) {
    assert!(matches!(result, Err(Error::NotFound { .. })), "{result:?}");
}

#[track_caller]
fn already_exists<T: std::fmt::Debug>(result: shmio::Result<T>) {
    assert!(
        matches!(result, Err(Error::AlreadyExists { .. })),
        "{result:?}"
    );
}

#[test]
fn mappings_build_through_their_options() {
    let name = unique("mapping");
    not_found(Mapping::options().open(&name).map(drop));
    let made = Mapping::options()
        .size(4096)
        .permissions(0o600)
        .create(&name)
        .unwrap();
    assert!(!made.existed());
    already_exists(Mapping::options().size(4096).create(&name).map(drop));
    assert!(Mapping::options().open(&name).unwrap().existed());
    assert!(Mapping::options().create_or_open(&name).unwrap().existed());
}

#[test]
fn mutexes_build_through_their_options() {
    let name = unique("mutex");
    not_found(NamedMutex::options().open(&name).map(drop));
    not_found(NamedMutex::open(&name).map(drop));
    let made = NamedMutex::options()
        .permissions(0o600)
        .create(&name)
        .unwrap();
    assert!(!made.existed());
    already_exists(NamedMutex::options().create(&name).map(drop));
    let opened = NamedMutex::options().open(&name).unwrap();
    assert!(opened.existed());
    let guard = made.lock().unwrap();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            assert!(
                matches!(opened.try_lock(), Err(shmio::Error::WouldBlock)),
                "the same mutex"
            )
        });
    });
    drop(guard);
    assert!(NamedMutex::options()
        .create_or_open(&name)
        .unwrap()
        .existed());
}

#[test]
fn events_build_through_their_options() {
    let name = unique("event");
    not_found(NamedEvent::options().open(&name).map(drop));
    not_found(NamedEvent::open(&name).map(drop));
    let made = NamedEvent::options()
        .reset(EventMode::ManualReset)
        .permissions(0o600)
        .create(&name)
        .unwrap();
    assert!(!made.existed());
    already_exists(NamedEvent::options().create(&name).map(drop));
    // An opener gets the creator's mode, whatever it asks for.
    let opened = NamedEvent::options()
        .reset(EventMode::AutoReset)
        .open(&name)
        .unwrap();
    assert_eq!(opened.mode(), EventMode::ManualReset);
    made.set().unwrap();
    assert!(opened.wait_timeout(std::time::Duration::ZERO).is_ok());
    assert!(NamedEvent::open(&name).unwrap().existed());
}

#[test]
fn channels_build_through_their_options() {
    let name = unique("channel");
    not_found(Channel::options().open(&name).map(drop));
    let made = Channel::options()
        .capacity(4)
        .max_message_size(16)
        .permissions(0o600)
        .create(&name)
        .unwrap();
    assert!(!made.existed());
    already_exists(Channel::options().create(&name).map(drop));
    // Opening takes the channel's own geometry.
    let opened = Channel::options().capacity(99).open(&name).unwrap();
    assert_eq!(opened.geometry().capacity, 4);
    made.send(b"hi").unwrap();
    assert_eq!(opened.recv().unwrap(), b"hi");
    assert!(matches!(
        Channel::options().capacity(99).create_or_open(&name),
        Err(Error::Mismatch { .. })
    ));
}

/// Errors say what kind of object they are about.
#[test]
fn errors_name_the_kind_of_object() {
    let name = unique("missing");
    let said = |error: Error| error.to_string();
    assert!(said(Mapping::open(&name).unwrap_err()).starts_with("no mapping named"));
    assert!(said(Channel::open(&name).unwrap_err()).starts_with("no channel named"));
    assert!(said(NamedMutex::open(&name).unwrap_err()).starts_with("no mutex named"));
    assert!(said(NamedEvent::open(&name).unwrap_err()).starts_with("no event named"));
    let file = std::env::temp_dir().join(unique("no-such-file"));
    let missing_file = Mapping::options()
        .file(&file)
        .read_only(true)
        .map_file()
        .unwrap_err();
    assert!(
        said(missing_file).starts_with("no backing file named"),
        "a file"
    );
    let channel = unique("taken");
    let _held = Channel::options().create(&channel).unwrap();
    let taken = Channel::options().create(&channel).unwrap_err();
    assert!(said(taken).starts_with("a channel named"));
    // Full and empty are easy to tell apart from real failures.
    let empty = Channel::options()
        .open(&channel)
        .unwrap()
        .try_recv()
        .unwrap_err();
    assert!(empty.is_would_block() && !empty.is_timed_out());
}

/// One rule for every mismatch: an existing object that is not what was
/// asked for is an error naming what exists and what was asked, and a
/// name that holds another kind of object says which.
#[test]
fn a_mismatch_names_what_exists_and_what_was_asked() {
    let name = unique("mismatch-size");
    let _map = Mapping::create(&name, 8192).unwrap();
    for asked in [4096, 16384] {
        match Mapping::create_or_open(&name, asked) {
            Err(e @ Error::Mismatch { .. }) => {
                let text = e.to_string();
                assert!(
                    text.contains("8192 bytes") && text.contains(&format!("{asked} bytes")),
                    "{text}"
                );
            }
            other => panic!("asked {asked}: {other:?}"),
        }
    }
    assert_eq!(Mapping::create_or_open(&name, 8192).unwrap().len(), 8192);
    assert_eq!(
        Mapping::open(&name).unwrap().len(),
        8192,
        "no size asked: any"
    );

    let event = unique("mismatch-mode");
    let _auto = NamedEvent::create_or_open(&event, EventMode::AutoReset).unwrap();
    assert!(matches!(
        NamedEvent::create_or_open(&event, EventMode::ManualReset),
        Err(Error::Mismatch { .. })
    ));
    let opened = NamedEvent::options().create_or_open(&event).unwrap();
    assert_eq!(
        opened.mode(),
        EventMode::AutoReset,
        "no mode asked: the creator's"
    );

    let channel = unique("mismatch-kind");
    let _channel = Channel::create_or_open(&channel, shmio::ChannelGeometry::default()).unwrap();
    assert!(
        matches!(Mapping::open(&channel), Err(Error::WrongKind { .. })),
        "a channel is not opened as plain bytes"
    );
    assert_eq!(
        Mapping::create(&channel, 4096).map(drop),
        Err(Error::AlreadyExists {
            kind: Some(ObjectKind::Channel),
            name: channel.clone()
        })
    );
    assert_eq!(
        Channel::options().create(&name).map(drop),
        Err(Error::AlreadyExists {
            kind: Some(ObjectKind::Mapping),
            name: name.clone()
        }),
        "a plain mapping's name is taken by a mapping, not a channel"
    );
}
