//! `shmio ls` and `shmio stat NAME`: what the registry says about named
//! objects, as a table, a detail page, or JSON (and, for `stat` of a
//! topic, what the topic itself says).

use serde::Serialize;
use shmio::inventory::{self, NameInfo};
use shmio::ObjectKind;

use super::topic;

use crate::cli::{Ls, Stat};
use crate::error::Result;
use crate::output::{escape, print};
use crate::owners;
use crate::units::{describe_size, human_size};

/// A named object as `ls --json` and `stat --json` print it.
#[derive(Serialize)]
struct Listed<'a> {
    name: &'a str,
    os_name: &'a str,
    kind: &'static str,
    size: u64,
    holders: Option<u32>,
    follows_holders: bool,
    stale: bool,
    owner: String,
    /// Only `stat` of a topic that opens.
    #[serde(skip_serializing_if = "Option::is_none")]
    topic: Option<topic::Details>,
}

impl<'a> From<&'a NameInfo> for Listed<'a> {
    fn from(info: &'a NameInfo) -> Self {
        Listed {
            name: &info.name,
            os_name: &info.os_name,
            kind: info.kind.as_str(),
            size: info.size,
            holders: info.holders,
            follows_holders: info.follows_holders,
            stale: info.stale,
            owner: owners::describe(&info.owner),
            topic: None,
        }
    }
}

pub fn ls(args: Ls) -> Result {
    let all = inventory::list()?;
    let text = if args.json {
        let listed: Vec<Listed> = all.iter().map(Listed::from).collect();
        serde_json::to_string_pretty(&listed).expect("plain data serializes") + "\n"
    } else if all.is_empty() {
        "no named objects\n".to_owned()
    } else {
        table(&all)
    };
    print(&text)
}

fn table(all: &[NameInfo]) -> String {
    let header = [
        "NAME", "OS NAME", "KIND", "SIZE", "HOLDERS", "STALE", "OWNER",
    ];
    let rows: Vec<[String; 7]> = all
        .iter()
        .map(|info| {
            [
                escape(&info.name),
                escape(&info.os_name),
                info.kind.as_str().to_owned(),
                human_size(info.size),
                info.holders.map_or("?".to_owned(), |h| h.to_string()),
                if info.stale { "yes" } else { "no" }.to_owned(),
                escape(&owners::describe(&info.owner)),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    let mut line = |cells: &[&str]| {
        let mut out = String::new();
        for (index, (cell, width)) in cells.iter().zip(widths).enumerate() {
            // Numbers right-aligned, words left-aligned; no trailing blanks.
            let right = matches!(index, 3 | 4);
            let last = index + 1 == cells.len();
            let pad = width.saturating_sub(cell.chars().count());
            if right {
                out.push_str(&" ".repeat(pad));
                out.push_str(cell);
            } else {
                out.push_str(cell);
                if !last {
                    out.push_str(&" ".repeat(pad));
                }
            }
            if !last {
                out.push_str("  ");
            }
        }
        text.push_str(out.trim_end());
        text.push('\n');
    };
    line(&header);
    for row in &rows {
        line(&row.each_ref().map(String::as_str));
    }
    text
}

pub fn stat(args: Stat) -> Result {
    let info = inventory::stat(&args.name)?;
    // The registry knows a topic's size, not its settings: those are in its
    // header, read by opening it (after the holders were counted, so that
    // this process is not among them). A stale one is not opened: opening
    // would take it away.
    let details = (info.kind == ObjectKind::Topic && !info.stale)
        .then(|| topic::details(&info.name, &args.trusting));
    let text = if args.json {
        let mut listed = Listed::from(&info);
        listed.topic = details.and_then(std::result::Result::ok);
        serde_json::to_string_pretty(&listed).expect("plain data serializes") + "\n"
    } else {
        let mut fields = vec![
            ("name", escape(&info.name)),
            ("os name", escape(&info.os_name)),
            ("kind", info.kind.as_str().to_owned()),
            ("owner", escape(&owners::describe(&info.owner))),
            ("size", describe_size(info.size)),
            (
                "holders",
                info.holders.map_or("unknown".to_owned(), |h| h.to_string()),
            ),
            (
                "lifetime",
                if info.follows_holders {
                    "removed with its last holder"
                } else {
                    "persistent (until `shmio rm`)"
                }
                .to_owned(),
            ),
            (
                "stale",
                if info.stale {
                    "yes: every holder died; `shmio gc` or the next open removes it"
                } else {
                    "no"
                }
                .to_owned(),
            ),
        ];
        match details {
            Some(Ok(topic)) => fields.extend(topic_fields(&topic)),
            Some(Err(error)) => fields.push(("settings", format!("unknown: {error}"))),
            None => {}
        }
        page(&fields)
    };
    print(&text)
}

fn topic_fields(topic: &topic::Details) -> [(&'static str, String); 6] {
    [
        ("capacity", format!("{} messages", topic.capacity)),
        (
            "max message",
            describe_size(u64::from(topic.max_message_size)),
        ),
        ("history", topic.history.to_string()),
        (
            "overflow",
            match topic.overflow {
                "block" => "block (a publisher waits for the slowest subscriber)",
                _ => "overwrite (a publisher never waits; a subscriber that falls behind misses messages)",
            }
            .to_owned(),
        ),
        ("subscribers", topic.subscribers.to_string()),
        ("published", topic.published.to_string()),
    ]
}

/// `label: value` lines, the values in one column.
fn page(fields: &[(&str, String)]) -> String {
    let width = fields
        .iter()
        .map(|(label, _)| label.len())
        .max()
        .unwrap_or(0)
        + 2;
    let mut text = String::new();
    for (label, value) in fields {
        text.push_str(&format!("{:width$}{value}\n", format!("{label}:")));
    }
    text
}
