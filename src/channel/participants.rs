//! Who works on a channel's slots, and whether they are still alive: a
//! participant is known by a *seat* the OS takes back when it dies, never
//! by a process id (which means nothing in another pid namespace, and which
//! the OS hands out again).
//!
//! Every open channel handle is one participant. It takes the first free
//! seat of [`SEATS`] (a `sys::Seat`: on Linux a lock on the channel's file,
//! on Windows a named event, on macOS an `flock`ed seat file), then moves
//! that seat's *generation* (a word in the channel's header) on by one, and
//! claims slots with the token `generation << 10 | seat`. The claimer of a
//! slot is alive while its seat is held *and* the seat's generation is still
//! the token's: once the seat is taken again, by anyone, the token's owner
//! let it go, by closing its handle or by dying.
//!
//! A participant that closes its handle has finished every claim (a send or
//! receive completes before it returns, and a panic while copying publishes
//! a tombstone or releases the slot), so a seat let go with claims still on
//! it means the holder died. A seat taken but not yet moved on to its new
//! generation reads as alive for the old token: for a moment a dead
//! claimer's slot waits one more repair interval, never the other way round.
//!
//! Generations count within 21 bits and skip 0 (a token is never 0, which
//! means "unclaimed"). A token could be taken for the same seat's token of
//! 2^21 - 1 generations later; by then its slot has long been repaired.

use std::sync::atomic::Ordering;

use crate::error::{Error, Result};
use crate::owner::Trust;
use crate::sys;

use super::ring::{Ring, SEATS};

/// Bits of a token that say the seat.
const SEAT_BITS: u32 = SEATS.trailing_zeros();
/// The generations a seat counts through (tokens keep [`super::ring::READING`] clear).
const GENERATION_MASK: u32 = (1 << (31 - SEAT_BITS)) - 1;

/// One open handle's place among a channel's participants: its seat, which
/// it holds until dropped, and its token.
pub(crate) struct Participant {
    token: u32,
    _seat: sys::Seat,
}

impl Participant {
    /// Takes the first free seat of the channel `name` (`os_name` to the
    /// OS), whose memory `ring` is and whose object is `object`.
    /// [`Error::TooManyParticipants`] when every seat is held.
    pub(crate) fn join(
        ring: &Ring,
        object: &sys::Object,
        os_name: &str,
        name: &str,
    ) -> Result<Participant> {
        for index in 0..SEATS {
            let Some(seat) = sys::Seat::take(object, os_name, index, name)? else {
                continue;
            };
            let generation = ring.generation(index);
            let mut current = generation.load(Ordering::Relaxed);
            let next = loop {
                let next = next_generation(current);
                match generation.compare_exchange_weak(
                    current,
                    next,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => break next,
                    Err(now) => current = now,
                }
            };
            return Ok(Participant {
                token: next << SEAT_BITS | index,
                _seat: seat,
            });
        }
        Err(Error::TooManyParticipants {
            name: name.to_owned(),
            limit: SEATS,
        })
    }

    /// The token this participant claims slots with.
    pub(crate) fn token(&self) -> u32 {
        self.token
    }

    /// Whether the participant whose token is `owner` is alive (it is if it
    /// is this one). Only reads: an owner that is not a token a participant
    /// can have (scribbled memory) is dead once its seat says so.
    pub(crate) fn is_alive(
        &self,
        owner: u32,
        ring: &Ring,
        object: &sys::Object,
        os_name: &str,
        trust: &Trust,
    ) -> bool {
        if owner == self.token {
            return true;
        }
        let index = owner & (SEATS - 1);
        if ring.generation(index).load(Ordering::Acquire) != owner >> SEAT_BITS {
            return false;
        }
        sys::Seat::is_held(object, os_name, index, trust)
    }
}

/// The generation after `current`, within [`GENERATION_MASK`] and never 0.
fn next_generation(current: u32) -> u32 {
    match current.wrapping_add(1) & GENERATION_MASK {
        0 => 1,
        next => next,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_wrap_past_zero() {
        assert_eq!(next_generation(0), 1);
        assert_eq!(next_generation(GENERATION_MASK - 1), GENERATION_MASK);
        assert_eq!(next_generation(GENERATION_MASK), 1);
        // A scribbled word still gives a generation in range.
        assert_eq!(next_generation(u32::MAX), 1);
        let token = GENERATION_MASK << SEAT_BITS | (SEATS - 1);
        assert_eq!(
            token & super::super::ring::READING,
            0,
            "a token never reads as a receiver's"
        );
    }
}
