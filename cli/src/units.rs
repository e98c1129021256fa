//! What the command line's values parse as: sizes (`64K`, `1MiB`),
//! durations (`500ms`, `2s`) and JSON arguments; and sizes and durations
//! as people read them.

use std::time::Duration;

/// Binary suffixes: K, M, G, T and KiB, MiB, GiB, TiB are all powers of 1024.
const SUFFIXES: &[(&str, u32)] = &[
    ("", 0),
    ("b", 0),
    ("k", 10),
    ("kib", 10),
    ("m", 20),
    ("mib", 20),
    ("g", 30),
    ("gib", 30),
    ("t", 40),
    ("tib", 40),
];

/// Parses a JSON argument on the command line (clap's value parser: a bad
/// one is a usage error, exit 2).
pub fn parse_json(text: &str) -> Result<serde_json::Value, String> {
    serde_json::from_str(text).map_err(|error| format!("not JSON: {error}"))
}

/// A byte count: digits with an optional K/M/G/T or KiB/MiB/GiB/TiB suffix
/// (any case; all powers of 1024). Zero is allowed (offsets, lengths).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let digits_end = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, suffix) = trimmed.split_at(digits_end);
    if digits.is_empty() {
        return Err(format!(
            "{text:?} is not a size: expected a number of bytes such as 4096, 64K or 1MiB"
        ));
    }
    let lower = suffix.trim_start().to_ascii_lowercase();
    let Some(&(_, shift)) = SUFFIXES.iter().find(|(name, _)| *name == lower) else {
        let hint = if lower.ends_with("kb") || lower.ends_with("mb") || lower.ends_with("gb") {
            " (write K/KiB, M/MiB or G/GiB: sizes here are powers of 1024)"
        } else {
            " (known: K, KiB, M, MiB, G, GiB, T, TiB)"
        };
        return Err(format!("{text:?} has an unknown unit {suffix:?}{hint}"));
    };
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is too large: sizes go up to {} bytes", u64::MAX))?;
    number
        .checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{text:?} is too large: sizes go up to {} bytes", u64::MAX))
}

/// A mapping size: as [`parse_bytes`], but not zero.
pub fn parse_size(text: &str) -> Result<u64, String> {
    match parse_bytes(text)? {
        0 => Err(format!(
            "{text:?}: a mapping cannot be empty; give a size of at least 1 byte"
        )),
        size => Ok(size),
    }
}

/// A topic's largest message: as [`parse_size`], and at most `u32::MAX`.
pub fn parse_message_size(text: &str) -> Result<u32, String> {
    u32::try_from(parse_size(text)?)
        .map_err(|_| format!("{text:?} is too large: a message is at most 4 GiB - 1 bytes"))
}

/// Permission bits in octal, as `chmod` takes them: `600`, `0660`, `0o666`.
pub fn parse_mode(text: &str) -> Result<u32, String> {
    let trimmed = text.trim();
    let digits = trimmed.strip_prefix("0o").unwrap_or(trimmed);
    match u32::from_str_radix(digits, 8) {
        Ok(mode) if mode <= 0o777 && !digits.is_empty() => Ok(mode),
        _ => Err(format!(
            "{text:?} is not a permission mode: expected octal bits such as 600, 660 or 666"
        )),
    }
}

/// A duration: a whole number with `us` (or `µs`), `ms` or `s`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    let digits_end = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(digits_end);
    if digits.is_empty() {
        return Err(format!(
            "{text:?} is not a duration: expected a whole number with a unit, such as 500ms or 2s"
        ));
    }
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is too long a duration"))?;
    let per_unit_ns: u64 = match unit.trim_start() {
        "us" | "µs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "" => {
            return Err(format!(
                "{text:?} has no unit: write {number}ms or {number}s"
            ))
        }
        other => {
            return Err(format!(
                "{text:?} has an unknown unit {other:?} (known: us, ms, s)"
            ))
        }
    };
    number
        .checked_mul(per_unit_ns)
        .map(Duration::from_nanos)
        .ok_or_else(|| format!("{text:?} is too long a duration"))
}

/// `65536 (64 KiB)`, or just `100` for sizes under 1 KiB.
pub fn describe_size(bytes: u64) -> String {
    if bytes < 1024 {
        format!("{bytes} bytes")
    } else {
        format!("{bytes} bytes ({})", human_size(bytes))
    }
}

/// `64 KiB`, `1.5 MiB`, `100 B`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: &[&str] = &["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut unit = 0;
    let mut whole = bytes;
    while whole >= 1024 && unit + 1 < UNITS.len() {
        whole /= 1024;
        unit += 1;
    }
    if unit == 0 {
        return format!("{bytes} B");
    }
    let exact = bytes.is_multiple_of(1u64 << (10 * unit));
    if exact {
        format!("{whole} {}", UNITS[unit])
    } else {
        let value = bytes as f64 / (1u64 << (10 * unit)) as f64;
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A duration with three significant digits: `87.3 ns`, `4.21 µs`, `12.0 ms`.
pub fn human_duration(duration: Duration) -> String {
    let ns = duration.as_secs_f64() * 1e9;
    let (value, unit) = if ns < 1e3 {
        (ns, "ns")
    } else if ns < 1e6 {
        (ns / 1e3, "µs")
    } else if ns < 1e9 {
        (ns / 1e6, "ms")
    } else {
        (ns / 1e9, "s")
    };
    let decimals = if value >= 100.0 {
        0
    } else if value >= 10.0 {
        1
    } else {
        2
    };
    format!("{value:.decimals$} {unit}")
}

/// `40,000`: digits in groups of three.
pub fn grouped(number: u64) -> String {
    let digits = number.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        for (text, bytes) in [
            ("4096", 4096),
            ("64K", 65536),
            ("64k", 65536),
            ("64KiB", 65536),
            ("64kib", 65536),
            ("1M", 1 << 20),
            ("1MiB", 1 << 20),
            ("1mib", 1 << 20),
            ("1G", 1 << 30),
            ("1GiB", 1 << 30),
            ("2T", 2 << 40),
            ("100B", 100),
            (" 8K ", 8192),
            ("16 K", 16384),
        ] {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
        for bad in [
            "", "K", "0", "0K", "-1", "1.5M", "12X", "64KB", "1MB", "0x10", "k64",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(parse_size("18446744073709551616")
            .unwrap_err()
            .contains("too large"));
        assert!(parse_size("17179869184G")
            .unwrap_err()
            .contains("too large"));
        assert_eq!(parse_size("16777215T"), Ok(16777215u64 << 40));
        assert!(parse_size("64KB").unwrap_err().contains("powers of 1024"));
        assert!(parse_size("0").unwrap_err().contains("empty"));
        assert_eq!(parse_bytes("0"), Ok(0));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("250µs"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("0ms"), Ok(Duration::ZERO));
        for bad in [
            "",
            "ms",
            "5",
            "1m",
            "1.5s",
            "2h",
            "-1s",
            "99999999999999999999s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(parse_duration("5").unwrap_err().contains("5ms"));
    }

    #[test]
    fn human() {
        assert_eq!(human_size(100), "100 B");
        assert_eq!(human_size(65536), "64 KiB");
        assert_eq!(human_size(3 << 19), "1.5 MiB");
        assert_eq!(human_size(1 << 30), "1 GiB");
        assert_eq!(describe_size(65536), "65536 bytes (64 KiB)");
        assert_eq!(human_duration(Duration::from_nanos(87)), "87.0 ns");
        assert_eq!(human_duration(Duration::from_nanos(4_210)), "4.21 µs");
        assert_eq!(human_duration(Duration::from_micros(12_000)), "12.0 ms");
        assert_eq!(human_duration(Duration::from_nanos(250)), "250 ns");
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(40_000), "40,000");
        assert_eq!(grouped(1_234_567), "1,234,567");
    }
}
