//! hclog's two time layouts: parsing and writing `@timestamp` (Go layout
//! `2006-01-02T15:04:05.000000Z07:00`), and writing the `timestamp` field a go-plugin host
//! re-emits (Go layout `2006-01-02T15:04:05.000Z0700`). Nothing else about log lines lives here.

use std::fmt::Write as _;

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// The Go layout hclog writes `@timestamp` in and go-plugin parses it with.
pub const JSON_LAYOUT: &str = "2006-01-02T15:04:05.000000Z07:00";

/// The Go layout a go-plugin host writes the re-emitted `timestamp` field in.
pub const TEXT_LAYOUT: &str = "2006-01-02T15:04:05.000Z0700";

/// What a go-plugin host writes as `timestamp` when a JSON line had no `@timestamp`: Go's zero
/// time in [`TEXT_LAYOUT`].
pub const ZERO_TEXT_TIMESTAMP: &str = "0001-01-01T00:00:00.000Z";

/// Formats `at` as `@timestamp`: [`JSON_LAYOUT`], microseconds (truncated, as Go does) and `Z`
/// for a zero offset.
pub fn format_json(at: OffsetDateTime) -> String {
    let mut out = String::with_capacity(32);
    write_date_time(&mut out, at);
    let _ = write!(out, ".{:06}", at.nanosecond() / 1_000);
    write_offset(&mut out, at.offset().whole_seconds(), true);
    out
}

/// Formats `at` as the `timestamp` field a go-plugin host adds: [`TEXT_LAYOUT`], milliseconds
/// (truncated) and `Z` for a zero offset.
pub fn format_text(at: OffsetDateTime) -> String {
    let mut out = String::with_capacity(28);
    write_date_time(&mut out, at);
    let _ = write!(out, ".{:03}", at.nanosecond() / 1_000_000);
    write_offset(&mut out, at.offset().whole_seconds(), false);
    out
}

/// Parses `value` exactly as Go's `time.Parse(JSON_LAYOUT, value)` does, or returns `None`
/// where Go returns an error.
///
/// The rules, all checked against Go's `time` package:
/// - four-digit year; two-digit month 01–12; two-digit day valid for that month (leap years
///   are proleptic Gregorian, so `0000-02-29` is fine);
/// - a literal `T`, then the hour as one **or** two digits (Go's `15` is not zero-padded on
///   input), 0–23; two-digit minute and second, 0–59 (no leap second);
/// - `.` **or** `,`, then exactly six characters that Go's `atoi` accepts: digits, optionally
///   after one `+` or `-` (so `.+12345` is 12 345 µs and `.-00000` is zero, while any other
///   negative value fails);
/// - `Z`, or a sign, two-digit hours up to 24, `:`, two-digit minutes up to 60;
/// - nothing after that.
pub fn parse_json(value: &str) -> Option<OffsetDateTime> {
    let mut cur = Cursor(value.as_bytes());
    let year = cur.fixed_digits(4)?;
    cur.literal(b'-')?;
    let month = cur.fixed_digits(2)?;
    cur.literal(b'-')?;
    let day = cur.fixed_digits(2)?;
    cur.literal(b'T')?;
    let hour = cur.hour()?;
    cur.literal(b':')?;
    let minute = cur.fixed_digits(2)?;
    cur.literal(b':')?;
    let second = cur.fixed_digits(2)?;
    let micros = cur.fraction()?;
    let offset = cur.offset()?;
    if !cur.0.is_empty() || hour >= 24 || minute >= 60 || second >= 60 {
        return None;
    }

    let month = Month::try_from(u8::try_from(month).ok()?).ok()?;
    let date =
        Date::from_calendar_date(i32::try_from(year).ok()?, month, u8::try_from(day).ok()?).ok()?;
    let time = Time::from_hms_micro(
        u8::try_from(hour).ok()?,
        u8::try_from(minute).ok()?,
        u8::try_from(second).ok()?,
        micros,
    )
    .ok()?;
    Some(PrimitiveDateTime::new(date, time).assume_offset(offset))
}

fn write_date_time(out: &mut String, at: OffsetDateTime) {
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    );
}

/// Go's `Z07:00` (`colon`) or `Z0700`: `Z` for a zero offset, else a sign and the offset in
/// whole minutes as hours and minutes.
fn write_offset(out: &mut String, seconds: i32, colon: bool) {
    if seconds == 0 {
        out.push('Z');
        return;
    }
    let minutes = seconds / 60;
    let sign = if minutes < 0 { '-' } else { '+' };
    let minutes = minutes.unsigned_abs();
    let sep = if colon { ":" } else { "" };
    let _ = write!(out, "{sign}{:02}{sep}{:02}", minutes / 60, minutes % 60);
}

/// The unread rest of a timestamp.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn literal(&mut self, byte: u8) -> Option<()> {
        let (&first, rest) = self.0.split_first()?;
        (first == byte).then(|| self.0 = rest)
    }

    fn fixed_digits(&mut self, n: usize) -> Option<u32> {
        let digits = self.0.get(..n)?;
        let value = digits_value(digits)?;
        self.0 = &self.0[n..];
        Some(value)
    }

    /// Go's non-padded `15`: one digit, or two when a second digit follows.
    fn hour(&mut self) -> Option<u32> {
        let n = match self.0 {
            [a, b, ..] if a.is_ascii_digit() && b.is_ascii_digit() => 2,
            [a, ..] if a.is_ascii_digit() => 1,
            _ => return None,
        };
        self.fixed_digits(n)
    }

    /// `.` or `,` and six characters that Go's `atoi` reads as a non-negative number.
    fn fraction(&mut self) -> Option<u32> {
        let (&sep, rest) = self.0.split_first()?;
        if sep != b'.' && sep != b',' {
            return None;
        }
        let field = rest.get(..6)?;
        let (negative, digits) = match field.split_first() {
            Some((b'-', digits)) => (true, digits),
            Some((b'+', digits)) => (false, digits),
            _ => (false, field),
        };
        let value = digits_value(digits)?;
        if negative && value != 0 {
            return None;
        }
        self.0 = &rest[6..];
        Some(value)
    }

    /// Go's `Z07:00` on input.
    fn offset(&mut self) -> Option<UtcOffset> {
        if self.literal(b'Z').is_some() {
            return Some(UtcOffset::UTC);
        }
        let field = self.0.get(..6)?;
        if field[3] != b':' {
            return None;
        }
        let hours = digits_value(&field[1..3])?;
        let minutes = digits_value(&field[4..6])?;
        if hours > 24 || minutes > 60 {
            return None;
        }
        let seconds = i32::try_from((hours * 60 + minutes) * 60).ok()?;
        let seconds = match field[0] {
            b'+' => seconds,
            b'-' => -seconds,
            _ => return None,
        };
        self.0 = &self.0[6..];
        UtcOffset::from_whole_seconds(seconds).ok()
    }
}

/// The value of a non-empty run of ASCII digits short enough not to overflow.
fn digits_value(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() || digits.len() > 9 {
        return None;
    }
    digits.iter().try_fold(0u32, |acc, &d| {
        d.is_ascii_digit().then(|| acc * 10 + u32::from(d - b'0'))
    })
}
