//! Tests for `parse_line`: every go-plugin rule as a table, the panic state across lines, and
//! the treatment of input that would panic a Go host.

use serde_json::{Value, json};
use time::macros::datetime;

use super::super::{EntryKind, Level, Line, LineKind, LogEntry, ParserState, parse_line};

fn parse(line: &str) -> LogEntry {
    parse_line(line.as_bytes(), &mut ParserState::new())
}

fn fields(pairs: &[(&str, Value)]) -> Vec<(String, Value)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

/// One whole line, parsed in a fresh state: expected kind, level and message.
#[test]
fn classifies_single_lines() {
    use EntryKind::{Json, Text, UnleveledJson};
    let raw = |s: &str| s.to_owned();
    let cases: Vec<(&str, EntryKind, Level, String)> = vec![
        // hclog JSON.
        (
            r#"{"@level":"trace","@message":"t"}"#,
            Json,
            Level::Trace,
            raw("t"),
        ),
        (
            r#"{"@level":"debug","@message":"d"}"#,
            Json,
            Level::Debug,
            raw("d"),
        ),
        (
            r#"{"@level":"info","@message":"i"}"#,
            Json,
            Level::Info,
            raw("i"),
        ),
        (
            r#"{"@level":"warn","@message":"w"}"#,
            Json,
            Level::Warn,
            raw("w"),
        ),
        (
            r#"{"@level":"error","@message":"e"}"#,
            Json,
            Level::Error,
            raw("e"),
        ),
        (
            r#"{"@level":" ERROR ","@message":"e"}"#,
            Json,
            Level::Error,
            raw("e"),
        ),
        (
            r#"  {"@level":"info","@message":"padded"} "#,
            Json,
            Level::Info,
            raw("padded"),
        ),
        (r#"{"@level":"info"}"#, Json, Level::Info, raw("")),
        (
            r#"{"@message":"multi\nline","@level":"info"}"#,
            Json,
            Level::Info,
            raw("multi\nline"),
        ),
        // Repeated keys: the last one counts, as in a Go map.
        (
            r#"{"@level":"debug","@level":"error","@message":"x"}"#,
            Json,
            Level::Error,
            raw("x"),
        ),
        // Non-string @message (a Go host panics): its JSON text.
        (
            r#"{"@level":"info","@message":42}"#,
            Json,
            Level::Info,
            raw("42"),
        ),
        (
            r#"{"@level":"info","@message":null}"#,
            Json,
            Level::Info,
            raw("null"),
        ),
        (
            r#"{"@level":"info","@message":{"a":[1,true]}}"#,
            Json,
            Level::Info,
            raw(r#"{"a":[1,true]}"#),
        ),
        // No usable level: the raw line at Debug.
        (
            r#"{"@message":"no level"}"#,
            UnleveledJson,
            Level::Debug,
            raw(r#"{"@message":"no level"}"#),
        ),
        (
            r#"{"@level":"off","@message":"x"}"#,
            UnleveledJson,
            Level::Debug,
            raw(r#"{"@level":"off","@message":"x"}"#),
        ),
        (
            r#"{"@level":"warning","@message":"x"}"#,
            UnleveledJson,
            Level::Debug,
            raw(r#"{"@level":"warning","@message":"x"}"#),
        ),
        (
            r#"{"@level":"fatal"}"#,
            UnleveledJson,
            Level::Debug,
            raw(r#"{"@level":"fatal"}"#),
        ),
        (
            r#"{"@level":""}"#,
            UnleveledJson,
            Level::Debug,
            raw(r#"{"@level":""}"#),
        ),
        (
            r#"{"@level":3,"@message":"x"}"#,
            UnleveledJson,
            Level::Debug,
            raw(r#"{"@level":3,"@message":"x"}"#),
        ),
        (
            r#"{"@level":null}"#,
            UnleveledJson,
            Level::Debug,
            raw(r#"{"@level":null}"#),
        ),
        (
            r#"{"a":"b"}"#,
            UnleveledJson,
            Level::Debug,
            raw(r#"{"a":"b"}"#),
        ),
        ("{}", UnleveledJson, Level::Debug, raw("{}")),
        // Go unmarshals `null` into a nil map without error: JSON without a level.
        ("null", UnleveledJson, Level::Debug, raw("null")),
        (" null ", UnleveledJson, Level::Debug, raw(" null ")),
        // A bad or non-string @timestamp makes the whole line text.
        (
            r#"{"@level":"info","@timestamp":"2024-05-06T07:08:09.12345Z"}"#,
            Text,
            Level::Debug,
            raw(r#"{"@level":"info","@timestamp":"2024-05-06T07:08:09.12345Z"}"#),
        ),
        (
            r#"{"@level":"error","@timestamp":"2024-05-06T07:08:09Z"}"#,
            Text,
            Level::Debug,
            raw(r#"{"@level":"error","@timestamp":"2024-05-06T07:08:09Z"}"#),
        ),
        (
            r#"{"@level":"info","@timestamp":1714979289}"#,
            Text,
            Level::Debug,
            raw(r#"{"@level":"info","@timestamp":1714979289}"#),
        ),
        (
            r#"{"@level":"info","@timestamp":null}"#,
            Text,
            Level::Debug,
            raw(r#"{"@level":"info","@timestamp":null}"#),
        ),
        (
            r#"{"@timestamp":"bad"}"#,
            Text,
            Level::Debug,
            raw(r#"{"@timestamp":"bad"}"#),
        ),
        // Not a JSON object: text.
        (
            r#"["@level","info"]"#,
            Text,
            Level::Debug,
            raw(r#"["@level","info"]"#),
        ),
        (r#""info""#, Text, Level::Debug, raw(r#""info""#)),
        ("42", Text, Level::Debug, raw("42")),
        (
            r#"{"@level":"info""#,
            Text,
            Level::Debug,
            raw(r#"{"@level":"info""#),
        ),
        (
            r#"{"@level":"info"} {}"#,
            Text,
            Level::Debug,
            raw(r#"{"@level":"info"} {}"#),
        ),
        (
            r#"{"@level":"info","n":1e400}"#,
            Text,
            Level::Debug,
            raw(r#"{"@level":"info","n":1e400}"#),
        ),
        (
            r#"{'@level':'info'}"#,
            Text,
            Level::Debug,
            raw(r#"{'@level':'info'}"#),
        ),
        ("", Text, Level::Debug, raw("")),
        // Prefixes.
        ("[TRACE] t", Text, Level::Trace, raw("[TRACE] t")),
        ("[DEBUG] d", Text, Level::Debug, raw("[DEBUG] d")),
        ("[INFO] i", Text, Level::Info, raw("[INFO] i")),
        ("[WARN] w", Text, Level::Warn, raw("[WARN] w")),
        ("[ERROR] e", Text, Level::Error, raw("[ERROR] e")),
        ("[INFO]no space", Text, Level::Info, raw("[INFO]no space")),
        (
            "[info] lower case",
            Text,
            Level::Debug,
            raw("[info] lower case"),
        ),
        (
            " [INFO] indented",
            Text,
            Level::Debug,
            raw(" [INFO] indented"),
        ),
        ("[WARNING] w", Text, Level::Debug, raw("[WARNING] w")),
        ("[FATAL] f", Text, Level::Debug, raw("[FATAL] f")),
        // Panics.
        (
            "panic: runtime error",
            Text,
            Level::Error,
            raw("panic: runtime error"),
        ),
        (
            "fatal error: all goroutines are asleep",
            Text,
            Level::Error,
            raw("fatal error: all goroutines are asleep"),
        ),
        ("panic:no space", Text, Level::Debug, raw("panic:no space")),
        ("Panic: capital", Text, Level::Debug, raw("Panic: capital")),
        ("plain text", Text, Level::Debug, raw("plain text")),
    ];
    for (line, kind, level, message) in cases {
        let entry = parse(line);
        assert_eq!(
            (entry.kind, entry.level, entry.message.as_str()),
            (kind, level, message.as_str()),
            "line {line:?}"
        );
        if kind != Json {
            assert!(entry.fields.is_empty(), "line {line:?}");
            assert_eq!(entry.timestamp, None, "line {line:?}");
        }
    }
}

#[test]
fn json_fields_keep_order_types_and_reserved_keys() {
    let entry = parse(
        r#"{"z":1,"@module":"plugin.sub","@level":"warn","@caller":"main.go:12","@message":"m","a":"s","f":1.5,"b":false,"n":null,"o":{"k":[1,2]},"big":18446744073709551615,"neg":-3,"stacktrace":"x"}"#,
    );
    assert_eq!(entry.kind, EntryKind::Json);
    assert_eq!(
        entry.fields,
        fields(&[
            ("z", json!(1)),
            ("@module", json!("plugin.sub")),
            ("@caller", json!("main.go:12")),
            ("a", json!("s")),
            ("f", json!(1.5)),
            ("b", json!(false)),
            ("n", Value::Null),
            ("o", json!({"k": [1, 2]})),
            ("big", json!(u64::MAX)),
            ("neg", json!(-3)),
            ("stacktrace", json!("x")),
        ])
    );
    assert_eq!(entry.field("@module"), Some(&json!("plugin.sub")));
    assert_eq!(entry.field("missing"), None);
}

#[test]
fn repeated_field_keeps_first_position_and_last_value() {
    let entry = parse(r#"{"@level":"info","a":1,"b":2,"a":3}"#);
    assert_eq!(entry.fields, fields(&[("a", json!(3)), ("b", json!(2))]));
}

#[test]
fn timestamps() {
    let entry = parse(
        r#"{"@level":"info","@message":"m","@timestamp":"2024-05-06T07:08:09.123456+02:00"}"#,
    );
    assert_eq!(
        entry.timestamp,
        Some(datetime!(2024-05-06 07:08:09.123456 +02:00))
    );
    assert_eq!(
        entry.hclog_timestamp().as_deref(),
        Some("2024-05-06T07:08:09.123+0200")
    );
    assert!(entry.fields.is_empty());

    // Missing: a Go host logs its zero time.
    let entry = parse(r#"{"@level":"info","@message":"m"}"#);
    assert_eq!(entry.timestamp, None);
    assert_eq!(
        entry.hclog_timestamp().as_deref(),
        Some("0001-01-01T00:00:00.000Z")
    );

    // Only hclog JSON entries get one.
    assert_eq!(parse("[INFO] x").hclog_timestamp(), None);
    let unleveled = parse(r#"{"@level":"off","@timestamp":"2024-05-06T07:08:09.123456Z"}"#);
    assert_eq!(unleveled.kind, EntryKind::UnleveledJson);
    assert_eq!(unleveled.timestamp, None);
    assert_eq!(unleveled.hclog_timestamp(), None);
}

#[test]
fn panic_mode_is_sticky_for_unprefixed_text_only() {
    let mut state = ParserState::new();
    let mut step = |line: &str| {
        let entry = parse_line(line.as_bytes(), &mut state);
        (entry.kind, entry.level, state.in_panic())
    };
    use EntryKind::{Json, Text, UnleveledJson};
    assert_eq!(step("before"), (Text, Level::Debug, false));
    assert_eq!(step("[INFO] before"), (Text, Level::Info, false));
    assert_eq!(step("panic: oh no"), (Text, Level::Error, true));
    assert_eq!(step(""), (Text, Level::Error, true));
    assert_eq!(step("goroutine 1 [running]:"), (Text, Level::Error, true));
    assert_eq!(step("\tmain.go:12 +0x1d"), (Text, Level::Error, true));
    // A [LEVEL] prefix is checked first and still wins.
    assert_eq!(step("[INFO] after"), (Text, Level::Info, true));
    assert_eq!(step("[TRACE] after"), (Text, Level::Trace, true));
    // JSON lines keep their own level.
    assert_eq!(
        step(r#"{"@level":"info","@message":"m"}"#),
        (Json, Level::Info, true)
    );
    assert_eq!(
        step(r#"{"@level":"nope"}"#),
        (UnleveledJson, Level::Debug, true)
    );
    // JSON with a bad timestamp is text, so it is an error now.
    assert_eq!(
        step(r#"{"@level":"info","@timestamp":"yesterday"}"#),
        (Text, Level::Error, true)
    );
    assert_eq!(step("panic: again"), (Text, Level::Error, true));
}

#[test]
fn fatal_error_starts_panic_mode_too() {
    let mut state = ParserState::new();
    parse_line(b"fatal error: concurrent map writes", &mut state);
    assert!(state.in_panic());
    assert_eq!(parse_line(b"goroutine 7", &mut state).level, Level::Error);
}

#[test]
fn pieces_are_debug_fragments_and_leave_state_alone() {
    let mut state = ParserState::new();
    for last in [false, true] {
        let piece = Line {
            bytes: b"panic: [ERROR] {\"@level\":\"error\"}".to_vec(),
            kind: LineKind::Piece { last },
        };
        let entry = state.parse(&piece);
        assert_eq!(entry.kind, EntryKind::Fragment);
        assert_eq!(entry.level, Level::Debug);
        assert_eq!(entry.message, "panic: [ERROR] {\"@level\":\"error\"}");
        assert!(!state.in_panic());
    }
    // Even in panic mode, a piece is Debug.
    parse_line(b"panic: x", &mut state);
    assert_eq!(LogEntry::fragment(b"stack").level, Level::Debug);
    let whole = Line {
        bytes: b"panic: x".to_vec(),
        kind: LineKind::Whole,
    };
    assert_eq!(state.parse(&whole).kind, EntryKind::Text);
}

#[test]
fn invalid_utf8_is_decoded_lossily() {
    let entry = parse_line(b"[WARN] caf\xe9", &mut ParserState::new());
    assert_eq!(
        (entry.level, entry.message.as_str()),
        (Level::Warn, "[WARN] caf\u{fffd}")
    );

    // Inside a JSON string, as in Go, the line stays JSON.
    let entry = parse_line(
        b"{\"@level\":\"info\",\"@message\":\"a\xffb\",\"k\":\"\xc3\"}",
        &mut ParserState::new(),
    );
    assert_eq!(entry.kind, EntryKind::Json);
    assert_eq!(entry.message, "a\u{fffd}b");
    assert_eq!(entry.fields, fields(&[("k", json!("\u{fffd}"))]));

    // Outside strings it is not JSON.
    let entry = parse_line(b"{\"@level\":\"info\"}\xff", &mut ParserState::new());
    assert_eq!(entry.kind, EntryKind::Text);
}

#[test]
fn unpaired_surrogate_escapes_become_replacement_characters_like_go() {
    let cases = [
        (r#""a\ud800b""#, "a\u{fffd}b"),
        (r#""\udc00""#, "\u{fffd}"),
        (r#""\ud800\u0041""#, "\u{fffd}A"),
        (r#""\ud800\ud800\udc00""#, "\u{fffd}\u{10000}"),
        (r#""\ud83d\ude00 ok""#, "\u{1f600} ok"),
        (r#""\\ud800""#, "\\ud800"),
    ];
    for (message, want) in cases {
        let line = format!(r#"{{"@level":"info","@message":{message},"k\udfff":1}}"#);
        let entry = parse(&line);
        assert_eq!(entry.kind, EntryKind::Json, "line {line}");
        assert_eq!(entry.message, want, "line {line}");
        assert_eq!(
            entry.fields,
            fields(&[("k\u{fffd}", json!(1))]),
            "line {line}"
        );
    }
    // Still not JSON when something else is wrong.
    assert_eq!(
        parse(r#"{"@level":"info","@message":"\ud800"#).kind,
        EntryKind::Text
    );
}

#[test]
fn nesting_limit_is_a_documented_difference() {
    let nested = |depth: usize| {
        format!(
            r#"{{"@level":"info","deep":{}{}}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        )
    };
    assert_eq!(parse(&nested(100)).kind, EntryKind::Json);
    // Go reads this as JSON; serde_json stops at 128 levels, so it is text here.
    assert_eq!(parse(&nested(200)).kind, EntryKind::Text);
}

/// go-plugin's own test line, without the long one: `{"a": "b", "@level": "debug"}`.
#[test]
fn go_plugin_test_line() {
    let entry = parse(r#"{"a": "b", "@level": "debug"}"#);
    assert_eq!(
        (entry.kind, entry.level, entry.message.as_str()),
        (EntryKind::Json, Level::Debug, "")
    );
    assert_eq!(entry.fields, fields(&[("a", json!("b"))]));
}
