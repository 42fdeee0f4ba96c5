//! Tests for the host's output side: the `tracing` events `forward` emits, `TracingSink`,
//! `StderrPump` (raw copy, pieces, read errors) and `forward_stderr`.

use std::collections::BTreeMap;
use std::io;

use super::super::{
    EntryKind, Level, LogEntry, LogSink, ParserState, StderrPump, TARGET, TracingSink, forward,
    forward_stderr, parse_line, plugin_log_name,
};
use super::{Buffer, Chunked, block_on, capture};

fn fields(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn forwards_hclog_json_with_module_timestamp_and_fields() {
    let entry = parse_line(
        br#"{"@level":"warn","@message":"slow","@module":"km","@timestamp":"2024-05-06T07:08:09.123456+02:00","@caller":"a.go:3","n":1.5,"o":{"k":[true]}}"#,
        &mut ParserState::new(),
    );
    let events = capture(|| forward(&entry, "keymanager-disk"));
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].level, tracing::Level::WARN);
    assert_eq!(events[0].target, TARGET);
    assert_eq!(
        events[0].fields,
        fields(&[
            ("message", "slow"),
            ("plugin", "keymanager-disk"),
            ("module", "km"),
            ("timestamp", "2024-05-06T07:08:09.123+0200"),
            ("fields", r#"{"@caller":"a.go:3","n":1.5,"o":{"k":[true]}}"#),
        ])
    );
}

#[test]
fn forwards_missing_timestamp_as_go_zero_time_and_omits_empty_parts() {
    let entry = parse_line(
        br#"{"@level":"info","@message":"m"}"#,
        &mut ParserState::new(),
    );
    let events = capture(|| forward(&entry, "p"));
    assert_eq!(
        events[0].fields,
        fields(&[
            ("message", "m"),
            ("plugin", "p"),
            ("timestamp", "0001-01-01T00:00:00.000Z"),
        ])
    );
}

#[test]
fn non_string_module_stays_in_fields() {
    let entry = parse_line(br#"{"@level":"info","@module":7}"#, &mut ParserState::new());
    let events = capture(|| forward(&entry, "p"));
    assert_eq!(events[0].fields.get("module"), None);
    assert_eq!(events[0].fields["fields"], r#"{"@module":7}"#);
}

#[test]
fn forwards_text_and_fragments_bare() {
    let mut state = ParserState::new();
    let cases = [
        (
            parse_line(b"[ERROR] boom", &mut state),
            tracing::Level::ERROR,
            "[ERROR] boom",
        ),
        (
            parse_line(b"[TRACE] fine", &mut state),
            tracing::Level::TRACE,
            "[TRACE] fine",
        ),
        (
            parse_line(b"{\"@level\":\"off\"}", &mut state),
            tracing::Level::DEBUG,
            "{\"@level\":\"off\"}",
        ),
        (
            LogEntry::fragment(b"{\"@level\":\"info\",\"@mess"),
            tracing::Level::DEBUG,
            "{\"@level\":\"info\",\"@mess",
        ),
    ];
    for (entry, level, message) in cases {
        let events = capture(|| forward(&entry, "p"));
        assert_eq!(events[0].level, level);
        assert_eq!(
            events[0].fields,
            fields(&[("message", message), ("plugin", "p")])
        );
    }
}

#[test]
fn tracing_sink_logs_entries_and_read_errors() {
    let mut sink = TracingSink::new("plug");
    assert_eq!(sink.plugin(), "plug");
    let events = capture(|| {
        sink.log(parse_line(b"[INFO] hi", &mut ParserState::new()));
        sink.read_failed(&io::Error::other("gone"));
    });
    assert_eq!(events.len(), 2);
    assert_eq!(
        events[0].fields,
        fields(&[("message", "[INFO] hi"), ("plugin", "plug")])
    );
    assert_eq!(events[1].level, tracing::Level::ERROR);
    assert_eq!(
        events[1].fields,
        fields(&[
            ("message", "reading plugin stderr"),
            ("plugin", "plug"),
            ("error", "gone")
        ])
    );
}

/// go-plugin's `TestClient_logStderr`: what reaches `ClientConfig.Stderr` is the input, byte
/// for byte, even with lines longer than the 32-byte buffer.
#[test]
fn raw_copy_matches_go_plugin() {
    let msg = "\nthis line is more than 32 bytes long\nand this line is more than 32 bytes long\n{\"a\": \"b\", \"@level\": \"debug\"}\nthis line is short\n";
    let raw = Buffer::default();
    let mut entries = Vec::new();
    block_on(async {
        let mut pump = StderrPump::new();
        pump.buffer_size(32).raw_stderr(raw.clone());
        pump.run(Chunked::new(msg.as_bytes(), 5), &mut |e: LogEntry| {
            entries.push(e)
        })
        .await
        .unwrap();
    });
    assert_eq!(raw.text(), msg);
    let kinds: Vec<(EntryKind, Level)> = entries.iter().map(|e| (e.kind, e.level)).collect();
    assert_eq!(
        kinds,
        [
            (EntryKind::Text, Level::Debug),
            (EntryKind::Fragment, Level::Debug),
            (EntryKind::Fragment, Level::Debug),
            (EntryKind::Fragment, Level::Debug),
            (EntryKind::Fragment, Level::Debug),
            (EntryKind::Json, Level::Debug),
            (EntryKind::Text, Level::Debug),
        ]
    );
}

/// go-plugin's `TestClient_logStderrParseJSON`: with a 64-byte buffer, the short JSON line is
/// parsed and the long one is logged in two unparsed Debug pieces.
#[test]
fn long_json_line_is_logged_in_pieces_like_go_plugin() {
    let msg = "{\"@message\": \"this is a message\", \"@level\": \"info\"}\n{\"@message\": \"this is a large message that is more than 64 bytes long\", \"@level\": \"info\"}";
    let mut seen = Vec::new();
    block_on(async {
        let mut pump = StderrPump::new();
        pump.buffer_size(64);
        pump.run(msg.as_bytes(), &mut |e: LogEntry| {
            seen.push((e.level, e.message))
        })
        .await
        .unwrap();
    });
    assert_eq!(
        seen,
        [
            (Level::Info, "this is a message".to_owned()),
            (
                Level::Debug,
                "{\"@message\": \"this is a large message that is more than 64 bytes".to_owned()
            ),
            (Level::Debug, " long\", \"@level\": \"info\"}".to_owned()),
        ]
    );
}

#[test]
fn raw_copy_drops_carriage_returns_of_line_endings_like_go() {
    let raw = Buffer::default();
    block_on(async {
        let mut pump = StderrPump::new();
        pump.raw_stderr(raw.clone());
        pump.run(&b"a\r\nb\rc\nlast"[..], &mut |_: LogEntry| {})
            .await
            .unwrap();
    });
    assert_eq!(raw.text(), "a\nb\rc\nlast\n");
}

#[test]
fn panic_state_carries_across_the_stream() {
    let mut levels = Vec::new();
    block_on(async {
        StderrPump::new()
            .run(
                &b"starting\npanic: boom\n\ngoroutine 1 [running]:\n[INFO] still info\n"[..],
                &mut |e: LogEntry| levels.push(e.level),
            )
            .await
            .unwrap();
    });
    assert_eq!(
        levels,
        [
            Level::Debug,
            Level::Error,
            Level::Error,
            Level::Error,
            Level::Info
        ]
    );
}

#[test]
fn read_error_stops_the_pump_and_tells_the_sink() {
    struct Recorder {
        entries: Vec<String>,
        failures: Vec<io::ErrorKind>,
    }
    impl LogSink for Recorder {
        fn log(&mut self, entry: LogEntry) {
            self.entries.push(entry.message);
        }
        fn read_failed(&mut self, error: &io::Error) {
            self.failures.push(error.kind());
        }
    }
    let mut sink = Recorder {
        entries: Vec::new(),
        failures: Vec::new(),
    };
    let result = block_on(async {
        StderrPump::new()
            .run(
                Chunked::failing(b"one\ntwo", 3, io::ErrorKind::ConnectionReset),
                &mut sink,
            )
            .await
    });
    let error = result.unwrap_err();
    assert_eq!(error.to_string(), "reading plugin stderr");
    assert_eq!(error.io_error().kind(), io::ErrorKind::ConnectionReset);
    assert_eq!(sink.entries, ["one", "two"]);
    assert_eq!(sink.failures, [io::ErrorKind::ConnectionReset]);
}

#[test]
fn forward_stderr_logs_through_tracing() {
    let events = capture(|| {
        block_on(forward_stderr(
            &b"{\"@level\":\"error\",\"@message\":\"bad\",\"k\":\"v\"}\n[WARN] w\n"[..],
            "plug",
        ))
        .unwrap();
    });
    let seen: Vec<(tracing::Level, &str, Option<&str>)> = events
        .iter()
        .map(|e| {
            (
                e.level,
                e.fields["message"].as_str(),
                e.fields.get("fields").map(String::as_str),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (tracing::Level::ERROR, "bad", Some(r#"{"k":"v"}"#)),
            (tracing::Level::WARN, "[WARN] w", None),
        ]
    );
}

#[test]
fn plugin_log_names() {
    assert_eq!(plugin_log_name("/opt/plugins/km-disk".as_ref()), "km-disk");
    assert_eq!(plugin_log_name("km-disk".as_ref()), "km-disk");
    assert_eq!(plugin_log_name("./bin/plugin.exe".as_ref()), "plugin.exe");
    assert_eq!(plugin_log_name("/".as_ref()), "/");
    let pump = format!("{:?}", StderrPump::new());
    assert!(pump.contains("65536"), "{pump}");
}
