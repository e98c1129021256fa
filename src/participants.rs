//! Who takes part in a shared object (a channel's senders and receivers, a
//! bus's members), and whether they are still alive: a participant is known
//! by a *seat* the OS takes back when it dies, never by a process id (which
//! means nothing in another pid namespace, and which the OS hands out again).
//!
//! Every open handle is one participant. It takes the first free seat of
//! [`SEATS`] (a `sys::Seat`: on Linux a lock on the object's file, on
//! Windows a named event, on macOS an `flock`ed seat file), then moves that
//! seat's *generation* (a word in the object, in a table of [`SEATS`] words
//! its layout keeps) on by one, and signs what it does with the token
//! `generation << 10 | seat` (a channel's claims, a bus's registrations).
//! The token's owner is alive while its seat is held *and* the seat's
//! generation is still the token's: once the seat is taken again, by
//! anyone, the token's owner let it go, by closing its handle or by dying.
//!
//! A channel handle that closes has finished every claim (a send or receive
//! completes before it returns, and a panic while copying publishes a
//! tombstone or releases the slot), so a seat let go with claims still on
//! it means the holder died. A seat taken but not yet moved on to its new
//! generation reads as alive for the old token: for a moment a dead
//! claimer's slot waits one more repair interval, never the other way round.
//!
//! Generations count within 21 bits and skip 0 (a token is never 0, which
//! means "unclaimed"). A token could be taken for the same seat's token of
//! 2^21 - 1 generations later; by then its slot has long been repaired.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::{Error, Result};
use crate::owner::Trust;
use crate::sys;

/// How many participants an object has room for at once.
pub(crate) const SEATS: u32 = 1024;

/// Bits of a token that say the seat.
const SEAT_BITS: u32 = SEATS.trailing_zeros();
/// The generations a seat counts through (tokens leave the top bit clear,
/// for a channel's receiver flag).
const GENERATION_MASK: u32 = (1 << (31 - SEAT_BITS)) - 1;

/// One open handle's place among an object's participants: its seat, which
/// it holds until dropped, and its token.
///
/// A participant is its process's: a forked child that inherits the handle
/// shares the seat's lock with its parent, so it must not sign anything
/// with the token ([`is_here`](Self::is_here) is false there), and its copy
/// lets go of nothing when dropped.
pub(crate) struct Participant {
    token: u32,
    _seat: sys::Seat,
    origin: sys::Origin,
}

impl Participant {
    /// Takes the first free seat of the object `name` (`os_name` to the
    /// OS), whose seats' generations are `generations` ([`SEATS`] words in
    /// its memory). [`Error::TooManyParticipants`] when every seat is held.
    pub(crate) fn join(
        generations: &[AtomicU32],
        object: &sys::Object,
        os_name: &str,
        name: &str,
    ) -> Result<Participant> {
        debug_assert_eq!(generations.len(), SEATS as usize);
        for index in 0..SEATS {
            let Some(seat) = sys::Seat::take(object, os_name, index, name)? else {
                continue;
            };
            let generation = &generations[index as usize];
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
                origin: sys::Origin::here(),
            });
        }
        Err(Error::TooManyParticipants {
            name: name.to_owned(),
            limit: SEATS,
        })
    }

    /// The token this participant signs with (a channel's claims, a bus's
    /// registrations).
    pub(crate) fn token(&self) -> u32 {
        self.token
    }

    /// Whether this is the process that joined (false in a forked child).
    #[inline]
    pub(crate) fn is_here(&self) -> bool {
        self.origin.is_here()
    }

    /// The seat this participant holds.
    pub(crate) fn seat(&self) -> u32 {
        seat_of(self.token)
    }
}

/// The seat of the participant whose token is `token`.
pub(crate) fn seat_of(token: u32) -> u32 {
    token & (SEATS - 1)
}

/// Whether the participant whose token is `token` is alive, in the object
/// whose seats' generations are `generations`. Only reads: a token no
/// participant can have (scribbled memory) is dead once its seat says so.
/// A caller that is itself a participant answers for its own token first:
/// its own seat may read as free to it (a Linux lock does not conflict with
/// its own holder).
pub(crate) fn is_alive(
    token: u32,
    generations: &[AtomicU32],
    object: &sys::Object,
    os_name: &str,
    trust: &Trust,
) -> bool {
    let index = seat_of(token);
    if generations[index as usize].load(Ordering::Acquire) != token >> SEAT_BITS {
        return false;
    }
    sys::Seat::is_held(object, os_name, index, trust)
}

/// Whether any participant but `own` (a token) is alive, in the object
/// whose seats' generations are `generations`: every seat ever taken (its
/// generation not 0) is asked whether it is held, until one is. Seats are
/// taken lowest first, so this asks about as many as have ever been held
/// at once.
pub(crate) fn others_alive(
    own: u32,
    generations: &[AtomicU32],
    object: &sys::Object,
    os_name: &str,
    trust: &Trust,
) -> bool {
    let own_seat = seat_of(own);
    (0..SEATS).any(|index| {
        index != own_seat
            && generations[index as usize].load(Ordering::Acquire) != 0
            && sys::Seat::is_held(object, os_name, index, trust)
    })
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
        assert_eq!(token >> 31, 0, "a token leaves the top bit clear");
    }
}
