//! Hooks for the fuzz targets in `fuzz/`: not part of the API, hidden from
//! the docs, and free to change with any release.
//!
//! A channel normally comes from a named segment; here it comes from an
//! anonymous mapping holding whatever bytes the fuzzer chose, checked the way
//! [`Channel::open`] checks a segment (magic, ready flag, version, then the
//! geometry), except that an unready segment is refused at once instead of
//! waited for.

use crate::channel::{ring, Channel, ChannelGeometry};
use crate::error::Result;
use crate::kind::ObjectKind;
use crate::mapping::Mapping;
use crate::object::{self, Header};
use crate::owner::Trust;

/// The platform's OS-name prefix ([`crate::Name::os_name`] starts with it).
pub const OS_NAME_PREFIX: &str = crate::sys::OS_NAME_PREFIX;
/// The platform's longest OS name, in bytes.
pub const OS_NAME_MAX_BYTES: usize = crate::sys::OS_NAME_MAX_BYTES;

/// Where a channel's slots start.
pub const CHANNEL_SLOTS: u64 = ring::SLOTS;
/// Where a channel's `enqueue` position (`u64`) is.
pub const CHANNEL_ENQUEUE: u64 = ring::ENQUEUE;
/// Where a channel's `dequeue` position (`u64`) is.
pub const CHANNEL_DEQUEUE: u64 = ring::DEQUEUE;
/// The bytes before a slot's payload (state, len, padding).
pub const CHANNEL_SLOT_HEADER: u64 = ring::SLOT_HEADER;

/// The bytes per slot of a channel of messages of at most `max_message_size` bytes.
pub fn channel_stride(max_message_size: u32) -> u64 {
    ring::slot_stride(max_message_size, ring::chunks_for(1, max_message_size))
}

/// The image of a freshly created channel with `options`, as
/// [`Channel::create_or_open`] lays it out (segment header included), or
/// `None` if the geometry is too large to hold in memory here.
pub fn channel_image(options: ChannelGeometry) -> Option<Vec<u8>> {
    let ChannelGeometry {
        capacity,
        max_message_size,
    } = options;
    let chunks = ring::chunks_for(capacity, max_message_size);
    let size = usize::try_from(ring::Ring::size_for(capacity, max_message_size, chunks)?).ok()?;
    let mut image = vec![0u8; size];
    let mut put = |offset: u64, bytes: &[u8]| {
        let offset = offset as usize;
        image[offset..offset + bytes.len()].copy_from_slice(bytes);
    };
    put(
        0,
        zerocopy::IntoBytes::as_bytes(&Header::new(ObjectKind::Channel)),
    );
    put(ring::CAPACITY, &capacity.to_le_bytes());
    put(ring::MAX_MESSAGE, &max_message_size.to_le_bytes());
    let stride = ring::slot_stride(max_message_size, chunks);
    put(ring::STRIDE, &(stride as u32).to_le_bytes());
    put(ring::CHUNKS, &chunks.to_le_bytes());
    for index in 0..u64::from(capacity) {
        let state = u64::from(ring::send_turn(index)) << 32;
        put(ring::SLOTS + index * stride, &state.to_le_bytes());
    }
    Some(image)
}

/// A channel over an anonymous mapping of `len` bytes that starts with
/// `bytes` (cut to `len`; zeros after them).
///
/// # Errors
/// Whatever [`Channel::open`] would say of such a segment ([`Error::WrongKind`](crate::Error::WrongKind),
/// [`Error::Corrupt`](crate::Error::Corrupt), ...); a segment whose ready flag is not set is
/// [`Error::WrongKind`](crate::Error::WrongKind), as on Linux, where no segment is seen before it is set up.
pub fn channel_over(bytes: &[u8], len: u64) -> Result<Channel> {
    let map = Mapping::anonymous(len)?;
    let take = bytes.len().min(usize::try_from(len).unwrap_or(usize::MAX));
    map.write_at(0, &bytes[..take])?;
    let map = object::check(map, "shmio-fuzz", ObjectKind::Channel)?;
    Channel::from_map(map, "shmio-fuzz", &Trust::OWN)
}
