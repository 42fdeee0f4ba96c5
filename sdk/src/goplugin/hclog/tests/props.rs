//! Property tests: the parser, the timestamp parser and the line reader never panic on
//! arbitrary input (invalid UTF-8 included), and the reader's output does not depend on how
//! the input is chunked and puts the input back together.

use proptest::prelude::*;
use serde_json::json;

use super::super::timestamp::{format_json, parse_json};
use super::super::{EntryKind, Level, Line, LineKind, LineReader, ParserState, parse_line};
use super::{Chunked, block_on};

fn read_all(input: &[u8], size: usize, chunk: usize) -> Vec<Line> {
    block_on(async {
        let mut reader = LineReader::with_buffer_size(Chunked::new(input, chunk), size);
        let mut out = Vec::new();
        while let Some(line) = reader.next_line().await.unwrap() {
            out.push(line);
        }
        out
    })
}

/// Strings that look like hclog lines with odd values in the special keys.
fn hclog_like() -> impl Strategy<Value = String> {
    let value = prop_oneof![
        any::<String>().prop_map(|s| json!(s)),
        any::<i64>().prop_map(|n| json!(n)),
        any::<bool>().prop_map(|b| json!(b)),
        Just(json!(null)),
        Just(json!({"nested": [1, "x"]})),
        prop::sample::select(vec!["info", " WARN ", "off", "2024-05-06T07:08:09.123456Z"])
            .prop_map(|s| json!(s)),
    ];
    (value.clone(), value.clone(), value, any::<String>()).prop_map(|(level, message, at, key)| {
        json!({"@level": level, "@message": message, "@timestamp": at, key: 1}).to_string()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn parse_line_never_panics_on_bytes(lines in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 1..6)) {
        let mut state = ParserState::new();
        for line in &lines {
            let entry = parse_line(line, &mut state);
            if entry.kind != EntryKind::Json {
                prop_assert!(entry.fields.is_empty());
                prop_assert_eq!(&entry.message, &String::from_utf8_lossy(line));
            }
            prop_assert!(entry.kind != EntryKind::Fragment);
        }
    }

    #[test]
    fn parse_line_never_panics_on_hclog_like_lines(line in hclog_like(), in_panic in any::<bool>()) {
        let mut state = ParserState::new();
        if in_panic {
            parse_line(b"panic: x", &mut state);
        }
        let entry = parse_line(line.as_bytes(), &mut state);
        if entry.kind == EntryKind::UnleveledJson {
            prop_assert_eq!(entry.level, Level::Debug);
        }
        prop_assert_eq!(state.in_panic(), in_panic);
    }

    #[test]
    fn parse_line_never_panics_on_near_json(s in r#"[{}\[\]":,@a-z0-9\\ .+\-]{0,60}"#) {
        let _ = parse_line(s.as_bytes(), &mut ParserState::new());
    }

    #[test]
    fn timestamp_parser_never_panics(s in any::<String>(), t in "[0-9T:.,Z+\\- ]{0,40}") {
        let _ = parse_json(&s);
        let _ = parse_json(&t);
    }

    #[test]
    fn timestamps_round_trip(secs in -62_135_596_800i64..253_402_300_799, micros in 0u32..1_000_000, offset_min in -(24 * 60)..=(24 * 60i32)) {
        let offset = time::UtcOffset::from_whole_seconds(offset_min * 60).unwrap();
        let at = time::OffsetDateTime::from_unix_timestamp(secs).unwrap()
            .replace_microsecond(micros).unwrap()
            .to_offset(offset);
        prop_assume!((0..=9999).contains(&at.year()));
        prop_assert_eq!(parse_json(&format_json(at)), Some(at));
    }

    #[test]
    fn reader_never_panics_and_reassembles(input in prop::collection::vec(prop_oneof![Just(b'\n'), Just(b'\r'), Just(b'a'), any::<u8>()], 0..300), size in 0usize..48, chunk in 1usize..40) {
        let lines = read_all(&input, size, chunk);
        let size = size.max(16);
        let mut rebuilt = Vec::new();
        let mut continuing = false;
        for line in &lines {
            match line.kind {
                LineKind::Whole => {
                    prop_assert!(!continuing);
                    prop_assert!(line.bytes.len() < size);
                }
                LineKind::Piece { last } => {
                    prop_assert!(line.bytes.len() <= size);
                    continuing = !last;
                }
            }
            rebuilt.extend_from_slice(&line.bytes);
            if line.ends_line() {
                rebuilt.push(b'\n');
            }
        }
        // Without '\r' the raw copy is the input, plus a '\n' when the input does not end
        // with one and its last line was not an exact run of full pieces.
        if !input.contains(&b'\r') {
            let exact = rebuilt == input;
            let plus_newline = rebuilt.len() == input.len() + 1
                && rebuilt.starts_with(&input)
                && rebuilt.last() == Some(&b'\n');
            prop_assert!(exact || plus_newline);
        }
        // Chunking never changes the result.
        prop_assert_eq!(read_all(&input, size, 1000), lines);
    }
}
