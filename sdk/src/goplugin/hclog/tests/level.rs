//! Tests for `Level`: reading `@level` like hclog's `LevelFromString`, and the `tracing`
//! mapping.

use super::super::Level;

#[test]
fn reads_levels_like_hclog() {
    let cases: &[(&str, Option<Level>)] = &[
        ("trace", Some(Level::Trace)),
        ("debug", Some(Level::Debug)),
        ("info", Some(Level::Info)),
        ("warn", Some(Level::Warn)),
        ("error", Some(Level::Error)),
        ("TRACE", Some(Level::Trace)),
        ("Debug", Some(Level::Debug)),
        ("  info\t", Some(Level::Info)),
        ("\u{a0}WaRn\u{3000}", Some(Level::Warn)),
        ("\nERROR\r\n", Some(Level::Error)),
        // Go's unicode.ToLower maps U+0130 to 'i'.
        ("\u{130}NFO", Some(Level::Info)),
        ("off", None),
        ("OFF", None),
        ("warning", None),
        ("fatal", None),
        ("err", None),
        ("", None),
        ("   ", None),
        ("in fo", None),
        ("infoo", None),
        ("inf", None),
        ("all", None),
        ("\u{131}nfo", None),
    ];
    for &(input, want) in cases {
        assert_eq!(Level::from_hclog(input), want, "input {input:?}");
    }
}

#[test]
fn words_and_tracing_levels() {
    let words: Vec<&str> = Level::ALL.iter().map(|l| l.as_str()).collect();
    assert_eq!(words, ["trace", "debug", "info", "warn", "error"]);
    for level in Level::ALL {
        assert_eq!(Level::from(tracing::Level::from(level)), level);
        assert_eq!(level.to_string(), level.as_str());
        assert_eq!(Level::from_hclog(level.as_str()), Some(level));
    }
    assert_eq!(tracing::Level::from(Level::Warn), tracing::Level::WARN);
    assert!(Level::Trace < Level::Error);
}
