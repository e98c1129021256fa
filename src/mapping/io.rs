//! The cursor of a [`Mapping`]: `Read`, `Write`, `Seek`, and typed values,
//! byte runs and records at the cursor (aardio's `read`, `write`, `seek`,
//! `readTable`, `writeTable`, `mapView`).
//!
//! The rules, which every method here follows:
//! - `Read::read` behaves like a file's: a short read near the end, `Ok(0)`
//!   at or past it. Every read of an exact length (`read_exact`,
//!   `read_value`, `read_bytes`, `read_record`) past the end is
//!   [`Error::UnexpectedEof`] (`io::ErrorKind::UnexpectedEof`).
//! - A write that does not fit is [`Error::OutOfBounds`]
//!   (`io::ErrorKind::WriteZero`) and writes nothing.
//! - On any error the cursor stays where it was.
//! - Seeking before 0 or past `u64::MAX` is an error; seeking past the end
//!   is allowed, as for a file.

use std::io::{self, Read, Seek, SeekFrom, Write};

use serde::de::DeserializeOwned;
use serde::Serialize;
use zerocopy::{FromBytes, Immutable, IntoBytes};

use super::record;
use super::Mapping;
use super::View;
use crate::error::{Error, Result};

impl Mapping {
    /// Where the cursor is (aardio's `getOffset`).
    #[inline]
    pub fn position(&self) -> u64 {
        self.cursor
    }

    /// The cursor as its low and high 32-bit halves (aardio's `getOffset32`).
    pub fn position32(&self) -> (u32, u32) {
        (self.cursor as u32, (self.cursor >> 32) as u32)
    }

    /// Moves the cursor by `n` bytes after a successful access.
    #[inline]
    fn advance(&mut self, n: u64) {
        // Accesses are bounds-checked against the length, so this cannot overflow.
        self.cursor += n;
    }

    /// Reads `len` bytes at the cursor and advances (aardio's `read(len)`).
    pub fn read_bytes(&mut self, len: usize) -> Result<Vec<u8>> {
        let mut out = vec![0; len];
        self.read_at(self.cursor, &mut out)?;
        self.advance(len as u64);
        Ok(out)
    }

    /// Reads a plain value at the cursor and advances past it (aardio's `read(struct)`).
    #[inline]
    pub fn read_value<T: FromBytes>(&mut self) -> Result<T> {
        let value = self.read_value_at(self.cursor)?;
        self.advance(size_of::<T>() as u64);
        Ok(value)
    }

    /// Writes a plain value at the cursor and advances past it (aardio's `write(struct)`).
    #[inline]
    pub fn write_value<T: IntoBytes + Immutable + ?Sized>(&mut self, value: &T) -> Result<()> {
        let bytes = value.as_bytes();
        self.write_at(self.cursor, bytes)?;
        self.advance(bytes.len() as u64);
        Ok(())
    }

    /// Writes `value` as a record at the cursor and advances past it
    /// (aardio's `writeTable`); returns the bytes written.
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// use shmio::Mapping;
    ///
    /// let mut map = Mapping::anonymous(4096)?;
    /// let listeners = BTreeMap::from([("reload".to_string(), vec![101u32, 202])]);
    /// map.write_record(&listeners)?;
    /// map.set_position(0);
    /// let back: Option<BTreeMap<String, Vec<u32>>> = map.read_record()?;
    /// assert_eq!(back, Some(listeners));
    /// # Ok::<(), shmio::Error>(())
    /// ```
    pub fn write_record<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<u64> {
        let written = self.write_record_at(self.cursor, value)?;
        self.advance(written);
        Ok(written)
    }

    /// Reads a record at the cursor and advances past it (aardio's `readTable`).
    /// `None`, cursor unchanged, where the length is 0 (nothing written there).
    pub fn read_record<T: DeserializeOwned>(&mut self) -> Result<Option<T>> {
        let found = record::read(self.mem(), self.cursor)?;
        Ok(found.map(|(value, taken)| {
            self.advance(taken);
            value
        }))
    }

    /// A [`View`] of `len` bytes at the cursor, then advances past it (aardio's `mapView`).
    pub fn view_at_cursor(&mut self, len: u64) -> Result<View> {
        let view = self.view(self.cursor, len)?;
        self.advance(len);
        Ok(view)
    }

    /// Moves the cursor to `position` from the start (aardio's `seek("set", ..)`).
    /// Past the end is allowed, as for a file.
    pub fn set_position(&mut self, position: u64) {
        self.cursor = position;
    }

    /// Where a seek lands, or why it cannot.
    fn seek_target(&self, from: SeekFrom) -> Result<u64> {
        let (base, delta) = match from {
            SeekFrom::Start(position) => return Ok(position),
            SeekFrom::End(delta) => (self.len(), delta),
            SeekFrom::Current(delta) => (self.cursor, delta),
        };
        base.checked_add_signed(delta)
            .ok_or_else(|| Error::InvalidSeek {
                reason: if delta < 0 {
                    format!("{base} {delta} is before the start")
                } else {
                    format!("{base} + {delta} is past u64::MAX")
                },
            })
    }
}

impl Read for Mapping {
    /// Reads what is there, up to `buf.len()` bytes: `Ok(0)` at the end.
    #[inline]
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let remaining = self.len().saturating_sub(self.cursor);
        let n = buf
            .len()
            .min(usize::try_from(remaining).unwrap_or(usize::MAX));
        if n == 0 {
            return Ok(0);
        }
        self.read_at(self.cursor, &mut buf[..n])?;
        self.advance(n as u64);
        Ok(n)
    }

    /// All of `buf` or nothing: past the end, `UnexpectedEof` and the cursor stays.
    #[inline]
    fn read_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.read_at(self.cursor, buf)?;
        self.advance(buf.len() as u64);
        Ok(())
    }
}

impl Write for Mapping {
    /// Writes all of `buf` or, if it does not fit, nothing (`WriteZero`).
    #[inline]
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_at(self.cursor, buf)?;
        self.advance(buf.len() as u64);
        Ok(buf.len())
    }

    #[inline]
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.write(buf).map(drop)
    }

    /// Nothing to do: the memory is already shared. See
    /// [`Mapping::flush_to_file`] to write a file-backed mapping to disk.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for Mapping {
    fn seek(&mut self, from: SeekFrom) -> io::Result<u64> {
        self.cursor = self.seek_target(from)?;
        Ok(self.cursor)
    }

    fn stream_position(&mut self) -> io::Result<u64> {
        Ok(self.cursor)
    }
}
