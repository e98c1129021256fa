//! Records: serde values framed in shared memory (aardio's `writeTable` /
//! `readTable`).
//!
//! A record is a `u32` little-endian payload length, then the payload: the
//! value as JSON, so any language can read it. A length of 0 means "nothing
//! here", so zeroed memory reads as empty. Reading checks the frame against
//! the end of the memory before touching the payload: a length that runs
//! past the end is [`Error::Corrupt`]; a payload that does not decode is
//! [`Error::Decode`] with the raw bytes.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::Window;
use crate::error::{Error, Result};

/// Bytes taken by the length prefix.
pub const RECORD_HEADER_LEN: u64 = 4;

/// The whole frame (length prefix and payload) for `value`.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    let mut frame = vec![0u8; RECORD_HEADER_LEN as usize];
    serde_json::to_writer(&mut frame, value).map_err(|source| Error::Encode {
        source: source.into(),
    })?;
    let payload_len = frame.len() - RECORD_HEADER_LEN as usize;
    let Ok(prefix) = u32::try_from(payload_len) else {
        return Err(Error::Encode {
            source: <serde_json::Error as serde::ser::Error>::custom(format!(
                "the encoded value is {payload_len} bytes; a record holds at most {} bytes",
                u32::MAX
            ))
            .into(),
        });
    };
    frame[..RECORD_HEADER_LEN as usize].copy_from_slice(&prefix.to_le_bytes());
    Ok(frame)
}

/// `value` as a bare payload (JSON, no length prefix), for channel messages.
pub(crate) fn encode_payload<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|source| Error::Encode {
        source: source.into(),
    })
}

/// [`encode_payload`], appended to `out` (a message's header and name
/// before it): one buffer for the whole message.
pub(crate) fn append_payload<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<()> {
    serde_json::to_writer(out, value).map_err(|source| Error::Encode {
        source: source.into(),
    })
}

/// The payload length a frame at `offset` claims, checked against `size`,
/// the end of the memory. `None` for a zero length.
pub(crate) fn payload_len(header: [u8; 4], offset: u64, size: u64) -> Result<Option<u32>> {
    let len = u32::from_le_bytes(header);
    if len == 0 {
        return Ok(None);
    }
    let end = offset + RECORD_HEADER_LEN + u64::from(len);
    if end > size {
        return Err(Error::Corrupt {
            offset,
            reason: format!("the record claims {len} bytes, which run past the end ({size} bytes)"),
        });
    }
    Ok(Some(len))
}

/// Decodes a payload found at `offset`, keeping the bytes if it does not decode.
pub(crate) fn decode<T: DeserializeOwned>(offset: u64, raw: Vec<u8>) -> Result<T> {
    serde_json::from_slice(&raw).map_err(|source| Error::Decode {
        offset,
        raw,
        source: source.into(),
    })
}

/// Writes `value` as a record at `offset`; returns the bytes written.
pub(crate) fn write<T: Serialize + ?Sized>(window: &Window, offset: u64, value: &T) -> Result<u64> {
    let frame = encode(value)?;
    window.write(offset, &frame)?;
    Ok(frame.len() as u64)
}

/// Reads the record at `offset`: the value and the bytes it took, or `None` for a zero length.
pub(crate) fn read<T: DeserializeOwned>(window: &Window, offset: u64) -> Result<Option<(T, u64)>> {
    let mut header = [0u8; RECORD_HEADER_LEN as usize];
    window.read(offset, &mut header)?;
    let Some(len) = payload_len(header, offset, window.len())? else {
        return Ok(None);
    };
    let mut raw = vec![0u8; len as usize];
    window.read(offset + RECORD_HEADER_LEN, &mut raw)?;
    let value = decode(offset, raw)?;
    Ok(Some((value, RECORD_HEADER_LEN + u64::from(len))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_is_length_then_json() {
        let frame = encode(&vec![1, 2]).unwrap();
        assert_eq!(&frame[..4], &5u32.to_le_bytes());
        assert_eq!(&frame[4..], b"[1,2]");
    }

    #[test]
    fn zero_length_is_none() {
        assert_eq!(payload_len([0; 4], 0, 100).unwrap(), None);
    }

    #[test]
    fn length_past_the_end_is_corrupt() {
        assert_eq!(payload_len(96u32.to_le_bytes(), 0, 100).unwrap(), Some(96));
        let err = payload_len(97u32.to_le_bytes(), 0, 100).unwrap_err();
        assert!(matches!(err, Error::Corrupt { offset: 0, .. }), "{err}");
        assert!(payload_len(u32::MAX.to_le_bytes(), 10, 100).is_err());
    }

    #[test]
    fn undecodable_payload_keeps_its_bytes() {
        match decode::<u32>(8, b"{nope".to_vec()) {
            Err(Error::Decode { offset: 8, raw, .. }) => assert_eq!(raw, b"{nope"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn records_round_trip_through_a_window() {
        let mut memory = [0u64; 4];
        let window = crate::mapping::view::tests::heap_window(&mut memory, true);
        let written = write(&window, 3, &("hi", 7u8)).unwrap();
        assert_eq!(written, 4 + br#"["hi",7]"#.len() as u64);
        let (value, taken): ((String, u8), u64) = read(&window, 3).unwrap().unwrap();
        assert_eq!((value.0.as_str(), value.1, taken), ("hi", 7, written));
        // Zeroed memory reads as nothing.
        assert!(read::<u8>(&window, 20).unwrap().is_none());
    }

    #[test]
    fn frames_are_checked_against_the_window() {
        let mut memory = [0u64; 2];
        let window = crate::mapping::view::tests::heap_window(&mut memory, true);
        // A record that does not fit writes nothing.
        assert!(matches!(
            write(&window, 0, &"x".repeat(20)),
            Err(Error::OutOfBounds { .. })
        ));
        assert_eq!(window.read_value::<u32>(0).unwrap(), 0);
        // A length running one byte past the end is corrupt, exactly at the end is fine.
        window.write_value(0, &13u32).unwrap();
        assert!(matches!(
            read::<u8>(&window, 0),
            Err(Error::Corrupt { offset: 0, .. })
        ));
        window.write_value(0, &12u32).unwrap();
        window.write(4, b"123456789012").unwrap();
        assert_eq!(read::<u64>(&window, 0).unwrap(), Some((123456789012, 16)));
        // A header that does not fit, anywhere up to u64::MAX, is an early end.
        for offset in [13, 16, 17, u64::MAX - 3, u64::MAX] {
            assert!(
                matches!(
                    read::<u8>(&window, offset),
                    Err(Error::UnexpectedEof { .. })
                ),
                "{offset}"
            );
        }
        // A payload that does not decode keeps its bytes.
        window.write_value(0, &2u32).unwrap();
        window.write(4, b"{x").unwrap();
        assert!(matches!(read::<u8>(&window, 0), Err(Error::Decode { raw, .. }) if raw == b"{x"));
    }
}
