//! Copies into a mapping, in one process: shmio's `write_at`, and its
//! limit, `copy_from_slice` (`memcpy`) into the same mapping. Each copies
//! one message into the next of `slots` slots, so a mapping the size of a
//! channel's ring sees the footprint the ring does.

use std::hint::black_box;

use shmio::{Mapping, View};

use super::{message, stamp};
use crate::bench::harness::{timed, Side};
use crate::bench::Result;

/// An anonymous mapping of `slots` slots of `size` bytes, and the message
/// both sides copy into it.
#[derive(Clone)]
pub struct Target {
    map: Mapping,
    source: Vec<u8>,
    size: usize,
    slots: usize,
}

impl Target {
    /// A fresh target; every page is written once, so no side pays for
    /// the first touch.
    pub fn anonymous(size: usize, slots: usize) -> Result<Target> {
        let map = Mapping::anonymous((size * slots) as u64)?;
        let mut source = message(size);
        stamp(&mut source, 1);
        for slot in 0..slots {
            map.write_at((slot * size) as u64, &vec![0x5A; size])?;
        }
        Ok(Target {
            map,
            source,
            size,
            slots,
        })
    }

    /// shmio's side: `write_at` into the next slot.
    pub fn write_at(&self) -> WriteAt {
        WriteAt {
            target: self.clone(),
            next: 0,
        }
    }

    /// The limit: `copy_from_slice` into the next slot of the same mapping.
    pub fn memcpy(&self) -> Result<Memcpy> {
        let slots = (0..self.slots)
            .map(|slot| self.map.view((slot * self.size) as u64, self.size as u64))
            .collect::<shmio::Result<_>>()?;
        Ok(Memcpy {
            source: self.source.clone(),
            slots,
            next: 0,
        })
    }

    /// Whether every slot holds the message (checked after a run: the
    /// copies landed where they should).
    pub fn landed(&self) -> Result<bool> {
        let mut slot = vec![0; self.size];
        for index in 0..self.slots {
            self.map.read_at((index * self.size) as u64, &mut slot)?;
            if slot != self.source {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// `write_at` of the message into the next slot.
pub struct WriteAt {
    target: Target,
    next: usize,
}

impl WriteAt {
    /// One copy (criterion calls this directly).
    #[inline]
    pub fn copy(&mut self) -> Result<()> {
        let Target {
            map, source, size, ..
        } = &self.target;
        map.write_at((self.next * size) as u64, black_box(source))?;
        self.next = (self.next + 1) % self.target.slots;
        Ok(())
    }
}

impl Side for WriteAt {
    fn batch(&mut self, n: u64) -> Result<f64> {
        timed(n, || self.copy())
    }
}

/// `copy_from_slice` of the message into the next slot.
pub struct Memcpy {
    source: Vec<u8>,
    /// A view of each slot, made once.
    slots: Vec<View>,
    next: usize,
}

impl Memcpy {
    /// One copy (criterion calls this directly).
    #[inline]
    pub fn copy(&mut self) {
        // SAFETY: the mapping is anonymous and this process's alone; the
        // sides that share it run one at a time on one thread, and nothing
        // else (no other view, handle or thread) touches the slot while
        // the slice lives, which is only for this copy.
        let slot = unsafe { self.slots[self.next].as_mut_slice() };
        slot.copy_from_slice(black_box(&self.source));
        black_box(slot);
        self.next = (self.next + 1) % self.slots.len();
    }
}

impl Side for Memcpy {
    fn batch(&mut self, n: u64) -> Result<f64> {
        timed(n, || {
            self.copy();
            Ok(())
        })
    }
}
