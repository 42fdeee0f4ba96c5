//! Tests for `timestamp`: Go's `time.Parse` with hclog's JSON layout, case by case, and both
//! output layouts.

use time::macros::datetime;

use super::super::timestamp::{
    JSON_LAYOUT, ZERO_TEXT_TIMESTAMP, format_json, format_text, parse_json,
};

/// Inputs and what Go 1.26's `time.Parse(JSON_LAYOUT, input)` then `Format(TEXT_LAYOUT)` gave
/// (`None`: Go returned an error). Each row was run through Go.
const GO_PARSE: &[(&str, Option<&str>)] = &[
    (
        "2006-01-02T15:04:05.000000Z",
        Some("2006-01-02T15:04:05.000Z"),
    ),
    (
        "2006-01-02T15:04:05.123456+02:00",
        Some("2006-01-02T15:04:05.123+0200"),
    ),
    (
        "2006-01-02T15:04:05.123456-07:30",
        Some("2006-01-02T15:04:05.123-0730"),
    ),
    (
        "2006-01-02T15:04:05,123456Z",
        Some("2006-01-02T15:04:05.123Z"),
    ),
    (
        "2006-01-02T15:04:05.+12345Z",
        Some("2006-01-02T15:04:05.012Z"),
    ),
    (
        "2006-01-02T15:04:05.-00000Z",
        Some("2006-01-02T15:04:05.000Z"),
    ),
    ("2006-01-02T15:04:05.-00001Z", None),
    ("2006-01-02T15:04:05.12345Z", None),
    ("2006-01-02T15:04:05.1234567Z", None),
    ("2006-01-02T15:04:05Z", None),
    (
        "2006-01-02T5:04:05.000000Z",
        Some("2006-01-02T05:04:05.000Z"),
    ),
    ("2006-01-02T24:04:05.000000Z", None),
    ("2006-01-02T23:60:05.000000Z", None),
    ("2006-01-02T23:59:60.000000Z", None),
    ("2006-02-29T00:00:00.000000Z", None),
    (
        "2004-02-29T00:00:00.000000Z",
        Some("2004-02-29T00:00:00.000Z"),
    ),
    (
        "0000-02-29T00:00:00.000000Z",
        Some("0000-02-29T00:00:00.000Z"),
    ),
    ("2006-00-01T00:00:00.000000Z", None),
    ("2006-13-01T00:00:00.000000Z", None),
    ("2006-01-00T00:00:00.000000Z", None),
    ("2006-1-02T15:04:05.000000Z", None),
    ("2006-01-2T15:04:05.000000Z", None),
    ("2006-01-02t15:04:05.000000Z", None),
    ("2006-01-02T15:04:05.000000z", None),
    ("2006-01-02T15:04:05.000000+0200", None),
    (
        "2006-01-02T15:04:05.000000+24:00",
        Some("2006-01-02T15:04:05.000+2400"),
    ),
    (
        "2006-01-02T15:04:05.000000+24:60",
        Some("2006-01-02T15:04:05.000+2500"),
    ),
    ("2006-01-02T15:04:05.000000+25:00", None),
    ("2006-01-02T15:04:05.000000+02:61", None),
    (
        "2006-01-02T15:04:05.000000-00:00",
        Some("2006-01-02T15:04:05.000Z"),
    ),
    ("2006-01-02T15:04:05.000000 02:00", None),
    ("2006-01-02T15:04:05.000000Z ", None),
    (" 2006-01-02T15:04:05.000000Z", None),
    ("2006-01-02 15:04:05.000000Z", None),
    ("+006-01-02T15:04:05.000000Z", None),
    ("2006-01-02T15:4:05.000000Z", None),
    ("2006-01-02T15:04:5.000000Z", None),
    ("2006-01-02T15:04:05.000000", None),
    ("", None),
    ("2006-01-02T15:04:05.00000aZ", None),
    (
        "2006-01-02T15:04:05.999999+01:00",
        Some("2006-01-02T15:04:05.999+0100"),
    ),
    ("2006-01-02T015:04:05.000000Z", None),
];

#[test]
fn parses_like_go() {
    for &(input, want) in GO_PARSE {
        let got = parse_json(input).map(format_text);
        assert_eq!(got.as_deref(), want, "input {input:?}");
    }
}

#[test]
fn keeps_microseconds_and_offset() {
    let at = parse_json("2024-05-06T07:08:09.123456-07:30").unwrap();
    assert_eq!(at, datetime!(2024-05-06 07:08:09.123456 -07:30));
    let at = parse_json("2006-01-02T15:04:05.+12345Z").unwrap();
    assert_eq!(at.microsecond(), 12_345);
}

#[test]
fn json_layout_has_six_digits_and_truncates() {
    assert_eq!(
        format_json(datetime!(2026-08-23 10:11:12.123456789 UTC)),
        "2026-08-23T10:11:12.123456Z"
    );
    assert_eq!(
        format_json(datetime!(0005-01-02 03:04:05 UTC)),
        "0005-01-02T03:04:05.000000Z"
    );
    assert_eq!(
        format_json(datetime!(2026-08-23 10:11:12.5 +05:45)),
        "2026-08-23T10:11:12.500000+05:45"
    );
    assert_eq!(
        format_json(datetime!(2026-08-23 10:11:12 -03:00)),
        "2026-08-23T10:11:12.000000-03:00"
    );
    assert_eq!(
        JSON_LAYOUT.len(),
        format_json(datetime!(2026-01-01 0:00 -01:00)).len()
    );
}

#[test]
fn text_layout_has_three_digits_and_no_colon() {
    assert_eq!(
        format_text(datetime!(2026-08-23 10:11:12.999999 UTC)),
        "2026-08-23T10:11:12.999Z"
    );
    assert_eq!(
        format_text(datetime!(2026-08-23 10:11:12.001 -09:30)),
        "2026-08-23T10:11:12.001-0930"
    );
    assert_eq!(ZERO_TEXT_TIMESTAMP, "0001-01-01T00:00:00.000Z");
    assert_eq!(
        format_text(datetime!(0001-01-01 0:00 UTC)),
        ZERO_TEXT_TIMESTAMP
    );
}

#[test]
fn json_layout_round_trips() {
    for at in [
        datetime!(2026-08-23 10:11:12.123456 UTC),
        datetime!(1999-12-31 23:59:59.999999 +14:00),
        datetime!(2000-02-29 00:00:00 -12:00),
    ] {
        assert_eq!(parse_json(&format_json(at)), Some(at));
    }
}
