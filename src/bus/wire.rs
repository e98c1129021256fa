//! The bus's messages, as they travel through a member's inbox (a
//! [`crate::Channel`]): a small fixed header, then the command's name and
//! the arguments or the reply as JSON (the crate's record codec). Nothing
//! here is ever executed: a message is only decoded, and a message that
//! does not decode is dropped by whoever reads it.
//!
//! | bytes | request, post | reply |
//! |---|---|---|
//! | 0 | kind: 1 request, 2 post | kind: 3 |
//! | 1 | 0 | status: 0 no reply, 1 a reply, 2 handler error, 3 listener gone |
//! | 2..4 | the command's length | 0 |
//! | 4..8 | the sender's token | the replier's token |
//! | 8..16 | the request id (0 for a post) | the request id |
//! | 16..24 | the listener it is for | 0 |
//! | 24..32 | when the caller gives up (ms on the host's monotonic clock; 0 for none, and for a post) | 0 |
//! | 32.. | the command, then the arguments | the reply, or the error's text |
//!
//! A stop (kind 4) is one byte: it wakes a member's own dispatch thread to
//! let it see that the member is leaving.
//!
//! A message larger than the receiver's inbox slots travels *spilled*
//! (kind 5): its bytes are in a mapping of their own, `GROUP@big.T.N`
//! (the sender's token `T` and its spill number `N`, in hex), after an
//! 8-byte header whose first word the receiver sets to 1 once it has
//! taken them; the inbox carries only the 32-byte header: the sender's
//! token at 4..8, `N` at 8..16 and the message's length at 16..24. The
//! receiver removes the mapping's name when it has read it; the sender
//! lets go of it when it sees it taken (or gives up on it).

use serde::Serialize;

use crate::error::Result;
use crate::mapping::record;

/// Bytes before a message's command and payload.
pub(crate) const HEADER: usize = 32;

const REQUEST: u8 = 1;
const POST: u8 = 2;
const REPLY: u8 = 3;
const STOP: u8 = 4;
const SPILLED: u8 = 5;

/// Bytes before a spilled message in its mapping: the taken flag (a
/// `u32`), then 4 spare.
pub(crate) const SPILL_HEADER: u64 = 8;

/// What a listener said to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// No reply: the next listener is asked (aardio's `null`).
    Pass,
    /// A reply, as JSON.
    Reply(Vec<u8>),
    /// The handler failed or panicked; why.
    Failed(String),
    /// The listener was no longer there (it was dropped meanwhile).
    Gone,
}

/// A message read from an inbox.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Message {
    /// A call to one listener, which answers with a [`Message::Reply`].
    Request(Request),
    /// A call to one listener that wants no reply.
    Post(Request),
    /// The answer to the request `id`.
    Reply {
        id: u64,
        from: u32,
        outcome: Outcome,
    },
    /// Wake up: the member is leaving.
    Stop,
    /// A message of `len` bytes in the mapping the member `from` spilled
    /// it to, its `spill`th.
    Spilled { from: u32, spill: u64, len: u64 },
}

/// A request or a post, for the listener `listener` of the member it was sent to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Request {
    pub(crate) id: u64,
    pub(crate) from: u32,
    pub(crate) listener: u64,
    /// When the caller gives up, in ms of `sys::monotonic_ms` (0: never
    /// said).
    pub(crate) due: u64,
    /// The command's name, then the JSON arguments: one buffer.
    body: Vec<u8>,
    command_len: usize,
}

impl Request {
    /// The command's name (checked UTF-8 when decoded).
    pub(crate) fn command(&self) -> &str {
        std::str::from_utf8(&self.body[..self.command_len]).unwrap_or_default()
    }

    /// The arguments, as JSON.
    pub(crate) fn args(&self) -> &[u8] {
        &self.body[self.command_len..]
    }
}

/// The bytes of a request or post of `command` with `args` (JSON), but for
/// whom it is: [`address`] fills that in, once for each listener it goes to.
pub(crate) fn request_body<A: Serialize + ?Sized>(command: &str, args: &A) -> Result<Vec<u8>> {
    let mut message = Vec::with_capacity(HEADER + command.len() + 32);
    message.extend_from_slice(&[0; HEADER]);
    // Command names are at most `registry::MAX_COMMAND` bytes.
    message[2..4].copy_from_slice(&(command.len() as u16).to_le_bytes());
    message.extend_from_slice(command.as_bytes());
    record::append_payload(args, &mut message)?;
    Ok(message)
}

/// Makes `message` (from [`request_body`]) request `id` (a post for 0) from
/// the member `from` to the listener `listener`, its caller giving up at
/// `due` (see [`Request::due`]).
pub(crate) fn address(message: &mut [u8], id: u64, from: u32, listener: u64, due: u64) {
    message[0] = if id == 0 { POST } else { REQUEST };
    message[4..8].copy_from_slice(&from.to_le_bytes());
    message[8..16].copy_from_slice(&id.to_le_bytes());
    message[16..24].copy_from_slice(&listener.to_le_bytes());
    message[24..32].copy_from_slice(&due.to_le_bytes());
}

/// A request (`id` non-zero) or a post (`id` 0) of `command` with the JSON
/// `args`, from the member `from` to the listener `listener`.
#[cfg(test)]
pub(crate) fn request(id: u64, from: u32, listener: u64, command: &str, args: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(HEADER + command.len() + args.len());
    message.extend_from_slice(&[0; HEADER]);
    message[2..4].copy_from_slice(&(command.len() as u16).to_le_bytes());
    message.extend_from_slice(command.as_bytes());
    message.extend_from_slice(args);
    address(&mut message, id, from, listener, 0);
    message
}

/// The reply to request `id`, from the member `from`.
pub(crate) fn reply(id: u64, from: u32, outcome: &Outcome) -> Vec<u8> {
    let (status, body): (u8, &[u8]) = match outcome {
        Outcome::Pass => (0, &[]),
        Outcome::Reply(json) => (1, json),
        Outcome::Failed(why) => (2, why.as_bytes()),
        Outcome::Gone => (3, &[]),
    };
    let mut message = Vec::with_capacity(HEADER + body.len());
    message.extend_from_slice(&[REPLY, status, 0, 0]);
    message.extend_from_slice(&from.to_le_bytes());
    message.extend_from_slice(&id.to_le_bytes());
    message.extend_from_slice(&[0; 16]);
    message.extend_from_slice(body);
    message
}

/// What travels through the inbox for a message spilled to a mapping: the
/// member `from`'s `spill`th, of `len` bytes.
pub(crate) fn spilled(from: u32, spill: u64, len: u64) -> Vec<u8> {
    let mut message = Vec::with_capacity(HEADER);
    message.extend_from_slice(&[SPILLED, 0, 0, 0]);
    message.extend_from_slice(&from.to_le_bytes());
    message.extend_from_slice(&spill.to_le_bytes());
    message.extend_from_slice(&len.to_le_bytes());
    message.extend_from_slice(&[0; 8]);
    message
}

/// The name of the mapping the member `from` spills its `spill`th
/// message of the group `group` to.
pub(crate) fn spill_name(group: &str, from: u32, spill: u64) -> String {
    crate::name::spill_name(group, from, spill)
}

/// The one-byte stop message.
pub(crate) fn stop() -> [u8; 1] {
    [STOP]
}

/// Decodes a message; `None` for bytes no member sends (a scribbler's).
pub(crate) fn decode(bytes: &[u8]) -> Option<Message> {
    if bytes == [STOP] {
        return Some(Message::Stop);
    }
    let header = bytes.get(..HEADER)?;
    let word = |at: usize| u32::from_le_bytes(header[at..at + 4].try_into().expect("4 bytes"));
    let long = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().expect("8 bytes"));
    let (kind, status) = (header[0], header[1]);
    let command_len = usize::from(u16::from_le_bytes([header[2], header[3]]));
    let (from, id, listener, due) = (word(4), long(8), long(16), long(24));
    let body = &bytes[HEADER..];
    match kind {
        REQUEST | POST => {
            std::str::from_utf8(body.get(..command_len)?).ok()?;
            let request = Request {
                id,
                from,
                listener,
                due,
                body: body.to_vec(),
                command_len,
            };
            match (kind, id) {
                (REQUEST, 1..) => Some(Message::Request(request)),
                (POST, 0) => Some(Message::Post(request)),
                _ => None,
            }
        }
        SPILLED if bytes.len() == HEADER => Some(Message::Spilled {
            from,
            spill: id,
            len: listener,
        }),
        REPLY if id != 0 => {
            let outcome = match status {
                0 => Outcome::Pass,
                1 => Outcome::Reply(body.to_vec()),
                2 => Outcome::Failed(String::from_utf8_lossy(body).into_owned()),
                3 => Outcome::Gone,
                _ => return None,
            };
            Some(Message::Reply { id, from, outcome })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_round_trips() {
        let request = request(7, 0x401, 99, "add", b"[1,2]");
        match decode(&request) {
            Some(Message::Request(
                request @ Request {
                    id: 7,
                    from: 0x401,
                    listener: 99,
                    ..
                },
            )) => assert_eq!((request.command(), request.args()), ("add", &b"[1,2]"[..])),
            other => panic!("{other:?}"),
        }
        let mut built = request_body("add", &[1, 2]).unwrap();
        address(&mut built, 7, 0x401, 99, 0);
        assert_eq!(built, request, "the same bytes, built in one buffer");
        assert!(matches!(
            decode(&super::request(0, 1, 2, "log", b"\"x\"")),
            Some(Message::Post(_))
        ));
        for outcome in [
            Outcome::Pass,
            Outcome::Reply(b"3".to_vec()),
            Outcome::Failed("no".into()),
            Outcome::Gone,
        ] {
            assert_eq!(
                decode(&reply(7, 5, &outcome)),
                Some(Message::Reply {
                    id: 7,
                    from: 5,
                    outcome
                })
            );
        }
        assert_eq!(decode(&stop()), Some(Message::Stop));
        assert_eq!(
            decode(&spilled(0x401, 9, 1 << 20)),
            Some(Message::Spilled {
                from: 0x401,
                spill: 9,
                len: 1 << 20
            })
        );
        // A spilled message is its header alone.
        let mut longer = spilled(1, 2, 3);
        longer.push(0);
        assert_eq!(decode(&longer), None);
        assert_eq!(spill_name("g", 0x401, 9), "g@big.401.9");
    }

    #[test]
    fn scribbles_do_not_decode() {
        assert_eq!(decode(&[]), None);
        assert_eq!(decode(&[1; 10]), None);
        let mut bad = request(7, 1, 2, "add", b"1");
        bad[2] = 200; // a command longer than the message
        assert_eq!(decode(&bad), None);
        let mut bad = reply(7, 1, &Outcome::Pass);
        bad[1] = 9;
        assert_eq!(decode(&bad), None);
        // A request without an id, a post with one, a reply to id 0.
        assert_eq!(
            decode(&request(0, 1, 2, "add", b"1")[..]).map(|_| ()),
            Some(())
        );
        let mut bad = request(5, 1, 2, "add", b"1");
        bad[0] = POST;
        assert_eq!(decode(&bad), None);
        assert_eq!(decode(&reply(0, 1, &Outcome::Pass)), None);
    }
}
