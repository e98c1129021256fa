//! Name validation and OS-name mapping on arbitrary strings: never panics,
//! and a valid name's OS name follows the rules in `src/name.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shmio::fuzzing::{OS_NAME_MAX_BYTES, OS_NAME_PREFIX};
use shmio::{Error, Name, HASHED_NAME_TAG, MAX_NAME_CHARS};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let name = match Name::new(&text) {
        Ok(name) => name,
        Err(Error::InvalidName { name, rule }) => {
            assert_eq!(name, text);
            let broken = text.is_empty()
                || text.chars().count() > MAX_NAME_CHARS
                || text.contains(['\\', '/', '\0'])
                || text == "."
                || text == "..";
            assert!(broken, "{text:?} refused: {rule}");
            return;
        }
        Err(other) => panic!("{text:?}: {other:?}"),
    };
    assert_eq!(name.as_str(), text);
    assert!(!text.is_empty() && text.chars().count() <= MAX_NAME_CHARS);
    assert!(!text.contains(['\\', '/', '\0']) && text != "." && text != "..");

    let os = name.os_name();
    assert_eq!(os, name.os_name(), "deterministic");
    assert_eq!(os, Name::new(&text).unwrap().os_name(), "deterministic");
    assert!(os.starts_with(OS_NAME_PREFIX));
    if cfg!(unix) {
        assert!(os.starts_with('/'));
        assert!(!os[1..].contains('/'), "{os:?}");
    }
    assert!(os.len() <= OS_NAME_MAX_BYTES, "{os:?} is too long");
    let fits = OS_NAME_PREFIX.len() + text.len() <= OS_NAME_MAX_BYTES;
    assert_eq!(name.is_hashed(), !fits);
    if fits {
        assert_eq!(os, format!("{OS_NAME_PREFIX}{text}"));
    } else {
        let hex = &os[OS_NAME_PREFIX.len()..]
            .strip_prefix(HASHED_NAME_TAG)
            .expect("a hashed name carries the tag");
        let room = OS_NAME_MAX_BYTES - OS_NAME_PREFIX.len() - HASHED_NAME_TAG.len();
        assert_eq!(hex.len(), room.min(64), "{os:?}");
        assert!(hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    }
});
