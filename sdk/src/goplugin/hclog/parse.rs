//! Host side: turning one line of plugin stderr into a [`LogEntry`] by go-plugin's rules
//! (`parse_line`, with the panic state in [`ParserState`]). It neither reads stderr (see
//! [`reader`](super::reader)) nor logs anything (see [`sink`](super::sink)).
//!
//! # Where this differs from a Go host, on purpose
//!
//! - **Invalid UTF-8** is decoded lossily (Rust's `from_utf8_lossy`) before anything else. Go
//!   keeps the raw bytes for text lines and substitutes U+FFFD inside JSON strings one byte at a
//!   time, so the number of U+FFFD characters in a message can differ; the level and the
//!   JSON-or-not decision do not.
//! - **Non-string `@message`, `@level` or `@timestamp`** panics a Go host's log goroutine. Here
//!   a non-string `@message` becomes its compact JSON text (`42`, `null`, `{"a":1}`), a
//!   non-string `@level` counts as no level (the raw line is logged at Debug, like `warning`),
//!   and a non-string `@timestamp` counts as one that fails to parse (the line is not JSON).
//! - **Numbers** keep their JSON form (integers stay exact) instead of becoming `float64`.
//! - **Field order** is the order of the keys in the line, where Go's is random. A repeated key
//!   keeps its first position and its last value (Go: last value).
//! - **Nesting deeper than 127** levels makes `serde_json` reject the line, so it is a text line
//!   here while Go (limit 10 000) reads it as JSON.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;
use time::OffsetDateTime;

use super::level::Level;
use super::reader::{Line, LineKind};
use super::timestamp;

/// One line (or piece of a line) of plugin stderr, classified the way a go-plugin host does.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEntry {
    /// The level the host logs this entry at. Always one of the five: lines without a usable
    /// level end up at [`Level::Debug`] (or [`Level::Error`] after a panic).
    pub level: Level,
    /// The message: `@message` for [`EntryKind::Json`], otherwise the whole line (or piece).
    pub message: String,
    /// `@timestamp`, for [`EntryKind::Json`] only. `None` when the line had none (a Go host
    /// then logs Go's zero time; see [`LogEntry::hclog_timestamp`]).
    pub timestamp: Option<OffsetDateTime>,
    /// Every other key of a [`EntryKind::Json`] line, in the line's order, including
    /// `@module` and `@caller`. Empty for every other kind.
    pub fields: Vec<(String, Value)>,
    /// How the line was classified.
    pub kind: EntryKind,
}

/// How a stderr line was classified; this decides which parts of a [`LogEntry`] are filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A JSON object with a usable `@level`: level, message, timestamp and fields come from it.
    Json,
    /// A JSON object (or `null`) whose `@level` is missing, not a string, or not one of the five
    /// (hclog's `NoLevel`/`Off`). Like go-plugin, the whole raw line is the message, at Debug,
    /// without fields.
    UnleveledJson,
    /// Anything else, including JSON whose `@timestamp` does not parse. The whole line is the
    /// message; the level comes from a `[LEVEL]` prefix or the panic state, else Debug.
    Text,
    /// A piece of a line longer than the read buffer: logged at Debug, unparsed.
    Fragment,
}

/// What parsing remembers from one line to the next: whether a Go panic (or fatal error) has
/// started, after which every text line without a `[LEVEL]` prefix is an error.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParserState {
    in_panic: bool,
}

impl ParserState {
    /// A fresh state, before any panic.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether a line starting with `panic: ` or `fatal error: ` has been seen. It stays true
    /// for the rest of the stream.
    pub fn in_panic(&self) -> bool {
        self.in_panic
    }

    /// Classifies a line from a [`LineReader`](super::LineReader): a whole line goes through
    /// [`parse_line`]; a piece of an over-long line becomes a [`EntryKind::Fragment`] and leaves
    /// the state alone, as in go-plugin.
    pub fn parse(&mut self, line: &Line) -> LogEntry {
        match line.kind {
            LineKind::Whole => parse_line(&line.bytes, self),
            LineKind::Piece { .. } => LogEntry::fragment(&line.bytes),
        }
    }
}

impl LogEntry {
    /// The entry go-plugin makes of a piece of an over-long line: the piece, at Debug.
    pub fn fragment(piece: &[u8]) -> Self {
        Self::raw(Level::Debug, piece, EntryKind::Fragment)
    }

    /// The `timestamp` value a go-plugin host adds to a JSON entry: `@timestamp` in Go layout
    /// `2006-01-02T15:04:05.000Z0700`, or Go's zero time `0001-01-01T00:00:00.000Z` when the
    /// line had none. `None` for every kind but [`EntryKind::Json`], which Go logs without it.
    pub fn hclog_timestamp(&self) -> Option<String> {
        if self.kind != EntryKind::Json {
            return None;
        }
        Some(match self.timestamp {
            Some(at) => timestamp::format_text(at),
            None => timestamp::ZERO_TEXT_TIMESTAMP.to_owned(),
        })
    }

    /// The value of field `key`, if the entry has it.
    pub fn field(&self, key: &str) -> Option<&Value> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    fn raw(level: Level, line: &[u8], kind: EntryKind) -> Self {
        Self {
            level,
            message: String::from_utf8_lossy(line).into_owned(),
            timestamp: None,
            fields: Vec::new(),
            kind,
        }
    }
}

/// Classifies one whole stderr line (without its line ending) by go-plugin's rules:
///
/// 1. If it parses as a JSON object (or `null`) and any `@timestamp` is a string in Go layout
///    `2006-01-02T15:04:05.000000Z07:00`: with a `@level` of trace/debug/info/warn/error
///    (trimmed, any case) it is [`EntryKind::Json`]; otherwise [`EntryKind::UnleveledJson`].
/// 2. Otherwise it is [`EntryKind::Text`]: `[TRACE]`, `[DEBUG]`, `[INFO]`, `[WARN]` or
///    `[ERROR]` at the start gives that level; a line starting with `panic: ` or
///    `fatal error: ` is an error and switches `state` into panic mode, where every later text
///    line without a `[LEVEL]` prefix is an error too; anything else is Debug.
///
/// It never fails and never panics, whatever the bytes; see the module docs for how odd input
/// is treated.
///
/// ```
/// use spire_plugin_sdk::goplugin::hclog::{parse_line, EntryKind, Level, ParserState};
///
/// let mut state = ParserState::new();
/// let line = br#"{"@level":"info","@message":"hi","@timestamp":"2024-05-06T07:08:09.123456Z","n":1}"#;
/// let entry = parse_line(line, &mut state);
/// assert_eq!((entry.kind, entry.level, entry.message.as_str()), (EntryKind::Json, Level::Info, "hi"));
/// assert_eq!(entry.fields, vec![("n".to_owned(), serde_json::json!(1))]);
/// assert_eq!(entry.hclog_timestamp().as_deref(), Some("2024-05-06T07:08:09.123Z"));
///
/// assert_eq!(parse_line(b"[WARN] disk low", &mut state).level, Level::Warn);
/// assert_eq!(parse_line(b"goroutine 1 [running]:", &mut state).level, Level::Debug);
/// assert_eq!(parse_line(b"panic: boom", &mut state).level, Level::Error);
/// assert_eq!(parse_line(b"goroutine 1 [running]:", &mut state).level, Level::Error);
/// ```
pub fn parse_line(line: &[u8], state: &mut ParserState) -> LogEntry {
    let text = String::from_utf8_lossy(line);
    match parse_json(&text) {
        Json::Leveled(entry) => entry,
        Json::Unleveled => LogEntry::raw(Level::Debug, line, EntryKind::UnleveledJson),
        Json::Not => parse_text(line, state),
    }
}

/// What the JSON branch of [`parse_line`] made of a line.
enum Json {
    /// Not JSON by go-plugin's rules (including a bad `@timestamp`).
    Not,
    /// JSON without a usable `@level`.
    Unleveled,
    /// An hclog entry.
    Leveled(LogEntry),
}

fn parse_json(text: &str) -> Json {
    let Some(object) = decode_object(text) else {
        return Json::Not;
    };
    let mut message = None;
    let mut level = None;
    let mut timestamp = None;
    let mut fields = Vec::with_capacity(object.len());
    for (key, value) in object {
        match key.as_str() {
            "@message" => message = Some(value),
            "@level" => level = Some(value),
            "@timestamp" => timestamp = Some(value),
            _ => fields.push((key, value)),
        }
    }

    let timestamp = match timestamp {
        None => None,
        Some(Value::String(value)) => match timestamp::parse_json(&value) {
            Some(at) => Some(at),
            None => return Json::Not,
        },
        Some(_) => return Json::Not,
    };
    let level = match level {
        Some(Value::String(value)) => Level::from_hclog(&value),
        _ => None,
    };
    let Some(level) = level else {
        return Json::Unleveled;
    };
    let message = match message {
        None => String::new(),
        Some(Value::String(message)) => message,
        Some(other) => other.to_string(),
    };
    Json::Leveled(LogEntry {
        level,
        message,
        timestamp,
        fields,
        kind: EntryKind::Json,
    })
}

fn parse_text(line: &[u8], state: &mut ParserState) -> LogEntry {
    const PREFIXES: [(&[u8], Level); 5] = [
        (b"[TRACE]", Level::Trace),
        (b"[DEBUG]", Level::Debug),
        (b"[INFO]", Level::Info),
        (b"[WARN]", Level::Warn),
        (b"[ERROR]", Level::Error),
    ];
    let level = if let Some(&(_, level)) = PREFIXES.iter().find(|(p, _)| line.starts_with(p)) {
        level
    } else if line.starts_with(b"panic: ") || line.starts_with(b"fatal error: ") {
        state.in_panic = true;
        Level::Error
    } else if state.in_panic {
        Level::Error
    } else {
        Level::Debug
    };
    LogEntry::raw(level, line, EntryKind::Text)
}

/// Decodes `text` the way Go's `json.Unmarshal` into a `map[string]any` succeeds: an object
/// (keys in order, repeated keys merged), or `null` (an empty object). `None` otherwise.
fn decode_object(text: &str) -> Option<Vec<(String, Value)>> {
    match serde_json::from_str::<TopLevel>(text) {
        Ok(TopLevel(object)) => Some(object),
        // Go turns unpaired UTF-16 surrogate escapes into U+FFFD; serde_json rejects them.
        Err(_) => match replace_lone_surrogates(text) {
            Cow::Owned(fixed) => serde_json::from_str::<TopLevel>(&fixed).ok().map(|t| t.0),
            Cow::Borrowed(_) => None,
        },
    }
}

/// A top-level JSON value that Go can unmarshal into a map: an object or `null`.
struct TopLevel(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for TopLevel {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TopLevelVisitor)
    }
}

struct TopLevelVisitor;

impl<'de> Visitor<'de> for TopLevelVisitor {
    type Value = TopLevel;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object or null")
    }

    fn visit_unit<E: de::Error>(self) -> Result<TopLevel, E> {
        Ok(TopLevel(Vec::new()))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TopLevel, A::Error> {
        let mut pairs: Vec<(String, Value)> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        while let Some((key, value)) = map.next_entry::<String, Value>()? {
            match index.get(&key) {
                Some(&at) => pairs[at].1 = value,
                None => {
                    index.insert(key.clone(), pairs.len());
                    pairs.push((key, value));
                }
            }
        }
        Ok(TopLevel(pairs))
    }
}

/// Rewrites every `\uXXXX` escape inside a JSON string that is a UTF-16 surrogate not forming a
/// valid high-low pair into `\ufffd`, which is what Go's decoder reads it as. Borrowed when
/// there was nothing to rewrite.
fn replace_lone_surrogates(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut in_string = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                in_string = !in_string;
                i += 1;
            }
            b'\\' if in_string => {
                let Some(unit) = escape_unit(bytes, i) else {
                    i += 2;
                    continue;
                };
                if !(0xD800..=0xDFFF).contains(&unit) {
                    i += 6;
                    continue;
                }
                let paired = (0xD800..=0xDBFF).contains(&unit)
                    && escape_unit(bytes, i + 6)
                        .is_some_and(|low| (0xDC00..=0xDFFF).contains(&low));
                if paired {
                    i += 12;
                    continue;
                }
                let out = out.get_or_insert_with(|| String::with_capacity(text.len()));
                out.push_str(&text[copied..i]);
                out.push_str("\\ufffd");
                i += 6;
                copied = i;
            }
            _ => i += 1,
        }
    }
    match out {
        Some(mut out) => {
            out.push_str(&text[copied..]);
            Cow::Owned(out)
        }
        None => Cow::Borrowed(text),
    }
}

/// The code unit of a `\uXXXX` escape starting at `at`, if there is one.
fn escape_unit(bytes: &[u8], at: usize) -> Option<u32> {
    let escape = bytes.get(at..at + 6)?;
    if escape[0] != b'\\' || escape[1] != b'u' {
        return None;
    }
    escape[2..].iter().try_fold(0u32, |acc, &b| {
        char::from(b).to_digit(16).map(|d| acc * 16 + d)
    })
}
