//! Tests for `HclogLayer`: the exact JSON written for events with every kind of field, spans,
//! module and location options, reserved keys and the real clock.

use std::io;

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::macros::datetime;
use tracing_subscriber::layer::SubscriberExt as _;

use super::super::{HclogLayer, OriginalStderr};
use super::{Buffer, is_json_timestamp};

fn fixed_clock() -> OffsetDateTime {
    datetime!(2026-08-23 10:11:12.123456789 UTC)
}

/// Runs `f` under an `HclogLayer` configured by `configure` (fixed clock) and returns its lines.
fn lines_from(
    configure: impl FnOnce(HclogLayer<Buffer>) -> HclogLayer<Buffer>,
    f: impl FnOnce(),
) -> Vec<String> {
    let buffer = Buffer::default();
    let layer = configure(
        HclogLayer::new()
            .with_writer(buffer.clone())
            .with_clock(fixed_clock),
    );
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), f);
    let text = buffer.text();
    assert!(text.is_empty() || text.ends_with('\n'), "{text:?}");
    text.lines().map(str::to_owned).collect()
}

fn one_line(f: impl FnOnce()) -> String {
    let lines = lines_from(|layer| layer, f);
    assert_eq!(lines.len(), 1, "{lines:?}");
    lines.into_iter().next().unwrap()
}

#[test]
fn exact_line_for_a_plain_event() {
    let line = one_line(|| tracing::info!("hello"));
    assert_eq!(
        line,
        r#"{"@level":"info","@message":"hello","@timestamp":"2026-08-23T10:11:12.123456Z"}"#
    );
}

#[test]
fn every_level_including_trace() {
    let lines = lines_from(
        |layer| layer,
        || {
            tracing::trace!("t");
            tracing::debug!("d");
            tracing::info!("i");
            tracing::warn!("w");
            tracing::error!("e");
        },
    );
    let levels: Vec<Value> = lines
        .iter()
        .map(|line| serde_json::from_str::<Value>(line).unwrap()["@level"].clone())
        .collect();
    assert_eq!(
        levels,
        [
            json!("trace"),
            json!("debug"),
            json!("info"),
            json!("warn"),
            json!("error")
        ]
    );
}

#[test]
fn field_types() {
    let error = io::Error::other("disk on fire");
    let line = one_line(|| {
        tracing::warn!(
            s = "text",
            i = -5i64,
            u = 7u64,
            f = 1.5f64,
            b = true,
            dbg = ?vec![1, 2],
            disp = %"shown",
            big = u128::MAX,
            small128 = -3i128,
            nan = f64::NAN,
            inf = f64::INFINITY,
            ninf = f64::NEG_INFINITY,
            err = &error as &(dyn std::error::Error + 'static),
            "count {} of {}",
            1,
            2
        )
    });
    assert_eq!(
        line,
        concat!(
            r#"{"@level":"warn","@message":"count 1 of 2","@timestamp":"2026-08-23T10:11:12.123456Z","#,
            r#""b":true,"big":"340282366920938463463374607431768211455","dbg":"[1, 2]","disp":"shown","#,
            r#""err":"disk on fire","f":1.5,"i":-5,"inf":"+Inf","nan":"NaN","ninf":"-Inf","s":"text","#,
            r#""small128":-3,"u":7}"#
        )
    );
}

#[test]
fn message_is_always_a_string() {
    let lines = lines_from(
        |layer| layer,
        || {
            tracing::info!(message = 42);
            tracing::info!(message = true);
            tracing::info!(other = 1);
            tracing::info!(message = "explicit");
        },
    );
    let messages: Vec<Value> = lines
        .iter()
        .map(|line| serde_json::from_str::<Value>(line).unwrap()["@message"].clone())
        .collect();
    assert_eq!(
        messages,
        [json!("42"), json!("true"), json!(""), json!("explicit")]
    );
}

#[test]
fn newlines_are_escaped_so_one_event_is_one_line() {
    let line = one_line(|| tracing::error!(detail = "a\nb\r\nc", "first\nsecond"));
    assert!(!line.contains('\n') && !line.contains('\r'));
    let value: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(value["@message"], "first\nsecond");
    assert_eq!(value["detail"], "a\nb\r\nc");
}

#[test]
fn span_fields_nest_and_events_win() {
    let line = one_line(|| {
        let outer = tracing::info_span!("outer", a = 1, shared = "outer", kept = "o");
        let _outer = outer.enter();
        let inner = tracing::info_span!("inner", shared = "inner", later = tracing::field::Empty);
        inner.record("later", 5);
        inner.in_scope(|| tracing::info!(kept = "event", "in spans"));
    });
    assert_eq!(
        line,
        concat!(
            r#"{"@level":"info","@message":"in spans","@timestamp":"2026-08-23T10:11:12.123456Z","#,
            r#""a":1,"kept":"event","later":5,"shared":"inner"}"#
        )
    );
    // Outside the spans, their fields are gone.
    let line = one_line(|| {
        tracing::info_span!("gone", a = 1).in_scope(|| {});
        tracing::info!("after");
    });
    assert!(!line.contains("\"a\""), "{line}");
}

#[test]
fn module_options() {
    let module_of = |configure: fn(HclogLayer<Buffer>) -> HclogLayer<Buffer>| {
        let lines = lines_from(configure, || tracing::info!(target: "my_plugin::keys", "m"));
        serde_json::from_str::<Value>(&lines[0])
            .unwrap()
            .get("@module")
            .cloned()
    };
    assert_eq!(module_of(|l| l), None);
    assert_eq!(
        module_of(|l| l.with_name("keymanager")),
        Some(json!("keymanager"))
    );
    assert_eq!(
        module_of(|l| l.with_target_as_module(true)),
        Some(json!("my_plugin::keys"))
    );
    assert_eq!(
        module_of(|l| l.with_name("km").with_target_as_module(true)),
        Some(json!("km.my_plugin::keys"))
    );
    assert_eq!(
        module_of(|l| l.with_name("km").with_target_as_module(false)),
        Some(json!("km"))
    );
}

#[test]
fn location_option() {
    let lines = lines_from(|l| l.with_location(true), || tracing::info!("here"));
    let value: Value = serde_json::from_str(&lines[0]).unwrap();
    let caller = value["@caller"].as_str().unwrap();
    let (file, line) = caller.rsplit_once(':').unwrap();
    assert_eq!(file, file!());
    assert!(line.parse::<u32>().unwrap() > 0);

    let lines = lines_from(|l| l, || tracing::info!("here"));
    assert!(!lines[0].contains("@caller"));
}

#[test]
fn reserved_keys_cannot_be_overwritten_with_non_strings() {
    let line = one_line(|| {
        tracing::info!(
            "@level" = 5,
            "@message" = 6,
            "@timestamp" = 7,
            "@module" = "mine",
            "m"
        )
    });
    assert_eq!(
        line,
        concat!(
            r#"{"@level":"info","@message":"m","@module":"mine","@timestamp":"2026-08-23T10:11:12.123456Z","#,
            r#""_@level":5,"_@message":6,"_@timestamp":7}"#
        )
    );
    // A field named @module wins over the configured name, as in hclog.
    let lines = lines_from(
        |l| l.with_name("configured"),
        || tracing::info!("@module" = "field", "m"),
    );
    assert!(lines[0].contains(r#""@module":"field""#), "{}", lines[0]);
}

#[test]
fn real_clock_writes_go_layout() {
    let buffer = Buffer::default();
    let layer = HclogLayer::new().with_writer(buffer.clone());
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        tracing::info!("now")
    });
    let value: Value = serde_json::from_str(buffer.text().trim_end()).unwrap();
    let at = value["@timestamp"].as_str().unwrap();
    assert!(is_json_timestamp(at), "{at}");
    assert!(at.ends_with('Z'));
}

#[test]
fn original_stderr_is_writable() {
    use std::io::Write as _;
    use tracing_subscriber::fmt::MakeWriter as _;
    let stderr = OriginalStderr::new();
    stderr.make_writer().write_all(b"").unwrap();
    stderr.make_writer().flush().unwrap();
    let debug = format!("{:?}", HclogLayer::new().with_name("n"));
    assert!(debug.contains("HclogLayer"), "{debug}");
}
