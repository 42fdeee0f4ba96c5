//! The five hclog levels a log line can carry, how hclog spells them, and how they map to and
//! from `tracing` levels. It does not decide which level a stderr line ends up at; that is
//! [`parse`](super::parse)'s job.

use std::fmt;

/// One of the five levels that hclog writes in `@level` and that a host logs a plugin line at.
///
/// hclog also knows `NoLevel` and `Off`. Neither is ever the level of a logged line: a JSON line
/// that carries them (or any other `@level`) is logged verbatim at [`Level::Debug`], which
/// [`EntryKind::UnleveledJson`](super::EntryKind::UnleveledJson) records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// hclog `trace`.
    Trace,
    /// hclog `debug`.
    Debug,
    /// hclog `info`.
    Info,
    /// hclog `warn`.
    Warn,
    /// hclog `error`.
    Error,
}

impl Level {
    /// All five levels, most verbose first.
    pub const ALL: [Level; 5] = [
        Level::Trace,
        Level::Debug,
        Level::Info,
        Level::Warn,
        Level::Error,
    ];

    /// The lowercase word hclog writes in `@level`: `trace`, `debug`, `info`, `warn` or `error`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }

    /// Reads an `@level` value the way hclog's `LevelFromString` does: surrounding Unicode
    /// white space is trimmed and case is ignored.
    ///
    /// Returns `None` for everything hclog maps to `NoLevel` or `Off` (`off`, `warning`,
    /// `fatal`, `""`, …), since go-plugin logs all of those the same way.
    ///
    /// Case folding follows Go's per-character `unicode.ToLower`, not Rust's `to_lowercase`,
    /// so `İNFO` (capital I with dot above) is `info` here exactly as it is for a Go host.
    ///
    /// ```
    /// use spire_plugin_sdk::goplugin::hclog::Level;
    ///
    /// assert_eq!(Level::from_hclog(" WARN\n"), Some(Level::Warn));
    /// assert_eq!(Level::from_hclog("warning"), None);
    /// assert_eq!(Level::from_hclog("off"), None);
    /// ```
    pub fn from_hclog(value: &str) -> Option<Level> {
        let trimmed = value.trim();
        Level::ALL
            .into_iter()
            .find(|level| go_lower_eq(trimmed, level.as_str()))
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<Level> for tracing::Level {
    fn from(level: Level) -> Self {
        match level {
            Level::Trace => tracing::Level::TRACE,
            Level::Debug => tracing::Level::DEBUG,
            Level::Info => tracing::Level::INFO,
            Level::Warn => tracing::Level::WARN,
            Level::Error => tracing::Level::ERROR,
        }
    }
}

impl From<tracing::Level> for Level {
    fn from(level: tracing::Level) -> Self {
        match level {
            tracing::Level::TRACE => Level::Trace,
            tracing::Level::DEBUG => Level::Debug,
            tracing::Level::INFO => Level::Info,
            tracing::Level::WARN => Level::Warn,
            _ => Level::Error,
        }
    }
}

/// Whether `value`, lowercased one character at a time as Go's `strings.ToLower` does, equals
/// the ASCII word `lower`.
///
/// Only two non-ASCII characters have an ASCII lowercase in Go's tables: U+0130 (`İ` → `i`)
/// and U+212A (Kelvin sign → `k`). Every other non-ASCII character stays non-ASCII, so it can
/// never match.
fn go_lower_eq(value: &str, lower: &str) -> bool {
    let mut expected = lower.chars();
    for c in value.chars() {
        let folded = match c {
            '\u{130}' => 'i',
            '\u{212A}' => 'k',
            c => c.to_ascii_lowercase(),
        };
        if expected.next() != Some(folded) {
            return false;
        }
    }
    expected.next().is_none()
}
