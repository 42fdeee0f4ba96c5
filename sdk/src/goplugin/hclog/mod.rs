//! hclog-compatible logging across the plugin's stderr, both sides, by go-plugin v1.8's rules
//! (`docs/protocol.md` "Logs"). It knows nothing about SPIRE and spawns no processes: hosts hand
//! it the child's stderr, plugins install its layer.
//!
//! **Plugin side.** [`HclogLayer`] is a `tracing_subscriber` layer that writes each event as
//! one hclog JSON line (`@level`, `@message`, `@timestamp` with six fractional digits, optional
//! `@module`/`@caller`, then the event's and its spans' fields) to the real stderr; [`init`]
//! installs it.
//!
//! ```no_run
//! spire_plugin_sdk::goplugin::hclog::init()?;
//! tracing::info!(path = "/tmp/keys", "loaded");
//! // stderr: {"@level":"info","@message":"loaded","@timestamp":"2026-08-23T10:11:12.123456Z","path":"/tmp/keys"}
//! # Ok::<(), spire_plugin_sdk::goplugin::hclog::InitError>(())
//! ```
//!
//! **Host side.** [`LineReader`] splits stderr into lines the way go-plugin's 64 KiB
//! `bufio.Reader` does (over-long lines come in pieces), [`parse_line`] classifies a line
//! (hclog JSON, `[LEVEL]` prefixes, sticky panic mode), and a [`LogSink`] receives the
//! [`LogEntry`]s; [`TracingSink`] re-emits them through `tracing` (see [`forward`] for the
//! fields). [`StderrPump`] drives all of it to end of file, optionally copying raw lines like
//! go-plugin's `ClientConfig.Stderr`; [`forward_stderr`] is the one-call version.
//!
//! ```no_run
//! # async fn host(mut child: tokio::process::Child) -> Result<(), Box<dyn std::error::Error>> {
//! use spire_plugin_sdk::goplugin::hclog;
//!
//! let stderr = child.stderr.take().ok_or("stderr not piped")?;
//! let name = hclog::plugin_log_name("/opt/plugins/keymanager-disk".as_ref());
//! tokio::spawn(async move { hclog::forward_stderr(stderr, &name).await });
//! # Ok(())
//! # }
//! ```

mod layer;
mod level;
mod parse;
mod reader;
mod sink;
pub mod timestamp;

#[cfg(test)]
mod tests;

pub use layer::{
    HclogLayer, InitError, OriginalStderr, OriginalStderrWriter, default_filter, init,
};
pub use level::Level;
pub use parse::{EntryKind, LogEntry, ParserState, parse_line};
pub use reader::{DEFAULT_BUFFER_SIZE, Line, LineKind, LineReader, MIN_BUFFER_SIZE};
pub use sink::{
    LogSink, StderrPump, StderrReadError, TARGET, TracingSink, forward, forward_stderr,
    plugin_log_name,
};
