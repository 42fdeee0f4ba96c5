//! Round trip: events written by `HclogLayer`, read back by `LineReader` and `parse_line`, keep
//! their level, message and fields.

use serde_json::{Value, json};
use tracing_subscriber::layer::SubscriberExt as _;

use super::super::{EntryKind, HclogLayer, Level, LineKind, LineReader, LogEntry, ParserState};
use super::{Buffer, block_on};

fn write_then_parse(layer: HclogLayer<Buffer>, buffer: &Buffer, f: impl FnOnce()) -> Vec<LogEntry> {
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), f);
    let bytes = buffer.contents();
    block_on(async {
        let mut reader = LineReader::new(bytes.as_slice());
        let mut state = ParserState::new();
        let mut entries = Vec::new();
        while let Some(line) = reader.next_line().await.unwrap() {
            assert_eq!(line.kind, LineKind::Whole);
            entries.push(state.parse(&line));
        }
        entries
    })
}

fn pairs(items: &[(&str, Value)]) -> Vec<(String, Value)> {
    items
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

#[test]
fn level_message_and_fields_survive() {
    let buffer = Buffer::default();
    let layer = HclogLayer::new()
        .with_writer(buffer.clone())
        .with_name("rt");
    let entries = write_then_parse(layer, &buffer, || {
        tracing::trace!(n = 1u64, "trace \"quoted\"");
        tracing::debug!(flag = false, ratio = 0.25, "debug");
        tracing::info!(text = "multi\nline", list = ?[1, 2], "info\twith tab");
        tracing::warn!(neg = -9i64, "warn ünïcödé 🦀");
        let span = tracing::error_span!("req", id = 77u64);
        span.in_scope(|| tracing::error!("error"));
    });

    type Expected<'a> = (Level, &'a str, Vec<(String, Value)>);
    let expected: Vec<Expected<'_>> = vec![
        (
            Level::Trace,
            "trace \"quoted\"",
            pairs(&[("@module", json!("rt")), ("n", json!(1))]),
        ),
        (
            Level::Debug,
            "debug",
            pairs(&[
                ("@module", json!("rt")),
                ("flag", json!(false)),
                ("ratio", json!(0.25)),
            ]),
        ),
        (
            Level::Info,
            "info\twith tab",
            pairs(&[
                ("@module", json!("rt")),
                ("list", json!("[1, 2]")),
                ("text", json!("multi\nline")),
            ]),
        ),
        (
            Level::Warn,
            "warn ünïcödé 🦀",
            pairs(&[("@module", json!("rt")), ("neg", json!(-9))]),
        ),
        (
            Level::Error,
            "error",
            pairs(&[("@module", json!("rt")), ("id", json!(77))]),
        ),
    ];
    assert_eq!(entries.len(), expected.len());
    for (entry, (level, message, fields)) in entries.iter().zip(expected) {
        assert_eq!(entry.kind, EntryKind::Json);
        assert_eq!(entry.level, level);
        assert_eq!(entry.message, message);
        assert_eq!(entry.fields, fields);
        assert!(entry.timestamp.is_some());
    }
}

#[test]
fn timestamp_survives_to_the_microsecond() {
    let buffer = Buffer::default();
    let layer = HclogLayer::new().with_writer(buffer.clone());
    let before = time::OffsetDateTime::now_utc();
    let entries = write_then_parse(layer, &buffer, || tracing::info!("t"));
    let after = time::OffsetDateTime::now_utc();
    let at = entries[0].timestamp.unwrap();
    assert!(
        at <= after && at + time::Duration::microseconds(1) > before,
        "{at}"
    );
    assert_eq!(at.nanosecond() % 1_000, 0);
}
