//! `shmio publish TOPIC` and `shmio subscribe TOPIC`: messages on a
//! publish–subscribe topic (created with the settings given, the library's
//! defaults for the rest, if there is none), waiting in slices so that a
//! terminating signal ends the wait cleanly; and a topic's settings and
//! subscribers as `stat` shows them.

use std::io;
use std::process::ExitCode;
use std::time::Instant;

use serde::Serialize;
use shmio::{Error as ShmioError, Overflow, Topic, TopicOptions};

use super::channel::{each_stdin_line, is_only_holder, os_bytes, too_few};
use super::exactly;
use crate::cli::{OverflowPolicy, Publish, Sharing, Subscribe, TopicSettings, Trusting};
use crate::error::{Error, Result};
use crate::output::{message_line, stdout_failed};
use crate::{owners, signals};

/// Opens the topic `name`, or (if `create`) makes it with `settings` if
/// there is none; an existing topic must have the settings given (the ones
/// not given are whatever it has).
fn open_topic(
    name: &str,
    settings: &TopicSettings,
    sharing: &Sharing,
    create: bool,
) -> Result<Topic> {
    let mut options = Topic::options();
    if let Some(permissions) = sharing.permissions {
        options.permissions(exactly(permissions));
    }
    owners::trust(
        &mut options,
        &sharing.trusting.allow_owner,
        TopicOptions::allow_owner,
        TopicOptions::allow_any_owner,
    );
    // Opening comes first and without the settings: `create_or_open`
    // compares every setting, the defaults of those not given included,
    // and an existing topic made with other defaults is no mismatch here.
    let topic = match options.open(name) {
        Err(ShmioError::NotFound { .. }) if create => {
            let mut creating = options.clone();
            apply(&mut creating, settings);
            match creating.create_or_open(name) {
                // Another process made it in between, maybe with other
                // defaults: only the settings given are to be checked.
                Err(ShmioError::Mismatch { .. }) => options.open(name)?,
                other => other?,
            }
        }
        other => other?,
    };
    check(&topic, settings)?;
    Ok(topic)
}

fn apply(options: &mut TopicOptions, settings: &TopicSettings) {
    if let Some(capacity) = settings.capacity {
        options.capacity(capacity);
    }
    if let Some(max) = settings.max_message_size {
        options.max_message_size(max);
    }
    if let Some(history) = settings.history {
        options.history(history);
    }
    if let Some(overflow) = settings.overflow {
        options.overflow(overflow.into());
    }
}

impl From<OverflowPolicy> for Overflow {
    fn from(policy: OverflowPolicy) -> Overflow {
        match policy {
            OverflowPolicy::Overwrite => Overflow::Overwrite,
            OverflowPolicy::Block => Overflow::Block,
        }
    }
}

/// The library's `Error::Mismatch` if `topic` lacks a setting given.
fn check(topic: &Topic, settings: &TopicSettings) -> Result<()> {
    let mut asked = Vec::new();
    let mut differs = false;
    let mut compare = |what: &str, given: Option<String>, found: String| {
        if let Some(given) = given {
            differs |= given != found;
            asked.push(format!("{what} {given}"));
        }
    };
    compare(
        "capacity",
        settings.capacity.map(|c| c.to_string()),
        topic.capacity().to_string(),
    );
    compare(
        "max_message_size",
        settings.max_message_size.map(|m| m.to_string()),
        topic.max_message_size().to_string(),
    );
    compare(
        "history",
        settings.history.map(|h| h.to_string()),
        topic.history().to_string(),
    );
    compare(
        "overflow",
        settings
            .overflow
            .map(|o| overflow_word(Overflow::from(o)).to_owned()),
        overflow_word(topic.overflow()).to_owned(),
    );
    if !differs {
        return Ok(());
    }
    Err(ShmioError::Mismatch {
        name: topic.name().to_owned(),
        asked: format!("a topic with {}", asked.join(", ")).into(),
        found: format!(
            "a topic with capacity {}, max_message_size {}, history {}, overflow {}",
            topic.capacity(),
            topic.max_message_size(),
            topic.history(),
            overflow_word(topic.overflow())
        )
        .into(),
    }
    .into())
}

/// `--overflow`'s word for `overflow`.
fn overflow_word(overflow: Overflow) -> &'static str {
    match overflow {
        Overflow::Block => "block",
        Overflow::Overwrite => "overwrite",
    }
}

pub fn publish(args: Publish) -> Result {
    let Publish {
        topic: name,
        messages,
        timeout,
        settings,
        sharing,
    } = args;
    let topic = open_topic(&name, &settings, &sharing, true)?;
    warn_if_alone(&topic);
    // Per message, unlike `send`'s: a stream on stdin may run for hours,
    // and what the limit is for is one subscriber holding one message back.
    let publish_one = |message: &[u8]| -> Result<()> {
        let deadline = timeout.map(|timeout| Instant::now() + timeout);
        let published = signals::wait(deadline, |slice| {
            match topic.publish_timeout(message, slice) {
                Ok(()) => Ok(Some(())),
                Err(ShmioError::TimedOut { .. }) => Ok(None),
                Err(error) => Err(error.into()),
            }
        })?;
        published.ok_or_else(|| Error::Full {
            source: ShmioError::TimedOut { name: name.clone() },
            waited: timeout.unwrap_or_default(),
        })
    };
    if messages.is_empty() {
        each_stdin_line(publish_one)?;
    } else {
        for message in messages {
            publish_one(&os_bytes(message))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A topic lasts only while a process holds it: say so when this one is
/// the only holder as it starts, since what it publishes (its history
/// too) may go when it exits.
fn warn_if_alone(topic: &Topic) {
    if is_only_holder(topic.name(), topic.existed()) {
        eprintln!(
            "shmio: warning: no other process holds the topic {name}: unless one opens it \
             before this command exits, what is published goes away with it (start `shmio \
             subscribe {name}` first)",
            name = topic.name()
        );
    }
}

pub fn subscribe(args: Subscribe) -> Result {
    let Subscribe {
        topic: name,
        count,
        timeout,
        no_create,
        settings,
        sharing,
    } = args;
    let topic = open_topic(&name, &settings, &sharing, !no_create)?;
    let mut subscriber = topic.subscribe()?;
    let deadline = timeout.map(|timeout| Instant::now() + timeout);
    let mut out = io::stdout().lock();
    let mut message = Vec::new();
    let mut received = 0u64;
    while count == 0 || received < count {
        let next = signals::wait(deadline, |slice| {
            match subscriber.recv_into_timeout(&mut message, slice) {
                Ok(()) => Ok(Some(())),
                Err(ShmioError::TimedOut { .. }) => Ok(None),
                // The subscription goes on from the oldest message held: a
                // reader of the stream is told of the gap, and reads on.
                Err(ShmioError::Lagged { missed, .. }) => {
                    eprintln!(
                        "shmio: warning: missed {missed} message(s) of the topic {name}: \
                         they were overwritten before this subscriber read them"
                    );
                    Ok(None)
                }
                Err(error) => Err(error.into()),
            }
        })?;
        match next {
            Some(()) => {}
            // With no count, the time being up is the end.
            None if count == 0 && received > 0 => break,
            None => return Err(too_few(name, received, count, timeout)),
        }
        if let Err(e) = message_line(&mut out, &message) {
            return stdout_failed(e);
        }
        received += 1;
    }
    Ok(ExitCode::SUCCESS)
}

/// A topic's settings and readers, as `stat` shows them.
#[derive(Serialize)]
pub struct Details {
    pub capacity: u32,
    pub max_message_size: u32,
    pub history: u32,
    pub overflow: &'static str,
    pub subscribers: usize,
    pub published: u64,
}

/// Opens the topic `name` to read its settings and count its subscribers.
pub fn details(name: &str, trusting: &Trusting) -> shmio::Result<Details> {
    let mut options = Topic::options();
    owners::trust(
        &mut options,
        &trusting.allow_owner,
        TopicOptions::allow_owner,
        TopicOptions::allow_any_owner,
    );
    let topic = options.open(name)?;
    Ok(Details {
        capacity: topic.capacity(),
        max_message_size: topic.max_message_size(),
        history: topic.history(),
        overflow: overflow_word(topic.overflow()),
        subscribers: topic.subscribers(),
        published: topic.published(),
    })
}
