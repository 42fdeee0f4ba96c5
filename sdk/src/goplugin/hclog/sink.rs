//! Host side: where parsed plugin log entries go ([`LogSink`], with [`TracingSink`] and
//! [`forward`] re-emitting them as `tracing` events), and the loop that drives
//! reader → parser → sink until end of file ([`StderrPump`], [`forward_stderr`]).
//!
//! `tracing` needs field names fixed at compile time while plugin lines carry arbitrary keys, so
//! [`forward`] puts the extra keys into one `fields` value holding compact JSON.

use std::fmt;
use std::io::{self, Write};
use std::path::Path;

use serde_json::Value;
use tokio::io::AsyncRead;

use super::level::Level;
use super::parse::{LogEntry, ParserState};
use super::reader::{DEFAULT_BUFFER_SIZE, LineReader};

/// The `tracing` target of the events [`forward`] and [`TracingSink`] emit.
pub const TARGET: &str = "spire_plugin_sdk::goplugin::hclog";

/// Somewhere parsed plugin log entries go.
///
/// Closures taking a [`LogEntry`] are sinks, which is handy in tests:
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use spire_plugin_sdk::goplugin::hclog::{Level, StderrPump};
///
/// let mut seen = Vec::new();
/// let stderr = &b"[WARN] low disk\nplain\n"[..];
/// StderrPump::new().run(stderr, &mut |entry: spire_plugin_sdk::goplugin::hclog::LogEntry| {
///     seen.push((entry.level, entry.message))
/// }).await.unwrap();
/// assert_eq!(seen, [(Level::Warn, "[WARN] low disk".to_owned()), (Level::Debug, "plain".to_owned())]);
/// # });
/// ```
pub trait LogSink {
    /// Takes one entry (a parsed line or a piece of an over-long one).
    fn log(&mut self, entry: LogEntry);

    /// Told when reading stderr failed; the pump stops afterwards. go-plugin logs
    /// `reading plugin stderr` at Error with the error as field `error`. Does nothing by
    /// default.
    fn read_failed(&mut self, error: &io::Error) {
        let _ = error;
    }
}

impl<F: FnMut(LogEntry)> LogSink for F {
    fn log(&mut self, entry: LogEntry) {
        self(entry);
    }
}

/// A [`LogSink`] that re-emits every entry as a `tracing` event through [`forward`], the way a
/// go-plugin host logs plugin stderr through its hclog logger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TracingSink {
    plugin: String,
}

impl TracingSink {
    /// A sink for the plugin called `plugin` (go-plugin names the logger after the basename of
    /// the plugin's path; see [`plugin_log_name`]).
    pub fn new(plugin: impl Into<String>) -> Self {
        Self {
            plugin: plugin.into(),
        }
    }

    /// The plugin name put on every event.
    pub fn plugin(&self) -> &str {
        &self.plugin
    }
}

impl LogSink for TracingSink {
    fn log(&mut self, entry: LogEntry) {
        forward(&entry, &self.plugin);
    }

    fn read_failed(&mut self, error: &io::Error) {
        tracing::error!(target: TARGET, plugin = %self.plugin, error = %error, "reading plugin stderr");
    }
}

/// Emits `entry` as a `tracing` event at its level, target [`TARGET`], with these fields:
///
/// | field | value |
/// |---|---|
/// | `message` | the entry's message |
/// | `plugin` | `plugin` |
/// | `module` | `@module`, when the line had it as a string |
/// | `timestamp` | for hclog JSON lines only: `@timestamp` in Go layout `2006-01-02T15:04:05.000Z0700`, or Go's zero time when missing, exactly what a go-plugin host adds |
/// | `fields` | every other key of the line as one **compact JSON object** string, in the line's order, e.g. `{"@caller":"main.go:12","n":1}`; absent when there are none |
///
/// `tracing` needs field names fixed at compile time and plugin lines carry arbitrary keys, so
/// the extra keys travel together. JSON keeps value types and nesting, and any log pipeline can
/// take it apart again; a host that wants them as separate values implements [`LogSink`].
pub fn forward(entry: &LogEntry, plugin: &str) {
    let module = entry
        .fields
        .iter()
        .find_map(|(key, value)| match (key.as_str(), value) {
            ("@module", Value::String(name)) => Some(name.as_str()),
            _ => None,
        });
    let fields = (entry.fields.len() > usize::from(module.is_some()))
        .then(|| FieldsJson(&entry.fields, module.is_some()));
    let timestamp = entry.hclog_timestamp();
    let timestamp = timestamp.as_deref();
    let message = entry.message.as_str();

    macro_rules! emit {
        ($level:expr) => {
            tracing::event!(
                target: TARGET,
                $level,
                plugin,
                module,
                timestamp,
                fields = fields.map(tracing::field::display),
                "{}",
                message
            )
        };
    }
    match entry.level {
        Level::Trace => emit!(tracing::Level::TRACE),
        Level::Debug => emit!(tracing::Level::DEBUG),
        Level::Info => emit!(tracing::Level::INFO),
        Level::Warn => emit!(tracing::Level::WARN),
        Level::Error => emit!(tracing::Level::ERROR),
    }
}

/// Writes the extra fields of an entry as one compact JSON object, keys in the line's order,
/// leaving out the first string `@module` when that became the `module` field.
struct FieldsJson<'a>(&'a [(String, Value)], bool);

impl fmt::Display for FieldsJson<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut skip_module = self.1;
        f.write_str("{")?;
        let mut first = true;
        for (key, value) in self.0 {
            if skip_module && key == "@module" && value.is_string() {
                skip_module = false;
                continue;
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            write!(f, "{}:{}", Value::from(key.as_str()), value)?;
        }
        f.write_str("}")
    }
}

/// The name go-plugin gives a plugin's logger: the last element of its path (Go's
/// `filepath.Base`), or the whole path when it has none.
///
/// ```
/// use spire_plugin_sdk::goplugin::hclog::plugin_log_name;
///
/// assert_eq!(plugin_log_name("/opt/spire/plugins/keymanager-disk".as_ref()), "keymanager-disk");
/// ```
pub fn plugin_log_name(path: &Path) -> String {
    match path.file_name() {
        Some(name) => name.to_string_lossy().into_owned(),
        None => path.to_string_lossy().into_owned(),
    }
}

/// Reading plugin stderr failed.
#[derive(Debug, thiserror::Error)]
#[error("reading plugin stderr")]
pub struct StderrReadError(#[source] io::Error);

impl StderrReadError {
    /// The I/O error that stopped the pump.
    pub fn io_error(&self) -> &io::Error {
        &self.0
    }
}

/// Drives plugin stderr through [`LineReader`] → [`ParserState`] → a [`LogSink`] until end of
/// file, copying the raw bytes to an optional writer on the way, like go-plugin's
/// `Client.logStderr`.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use spire_plugin_sdk::goplugin::hclog::{StderrPump, TracingSink};
///
/// let stderr = &b"{\"@level\":\"info\",\"@message\":\"started\"}\n"[..];
/// let mut pump = StderrPump::new();
/// pump.buffer_size(32 * 1024).raw_stderr(std::io::sink());
/// pump.run(stderr, &mut TracingSink::new("my-plugin")).await.unwrap();
/// # });
/// ```
pub struct StderrPump {
    buffer_size: usize,
    raw: Option<Box<dyn Write + Send>>,
}

impl fmt::Debug for StderrPump {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StderrPump")
            .field("buffer_size", &self.buffer_size)
            .field("raw_stderr", &self.raw.is_some())
            .finish()
    }
}

impl Default for StderrPump {
    fn default() -> Self {
        Self {
            buffer_size: DEFAULT_BUFFER_SIZE,
            raw: None,
        }
    }
}

impl StderrPump {
    /// A pump with go-plugin's defaults: a 64 KiB buffer and no raw copy.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the read buffer size (go-plugin's `PluginLogBufferSize`, default 64 KiB); lines that
    /// do not fit are passed on in pieces. Sizes below 16 are raised to 16.
    pub fn buffer_size(&mut self, size: usize) -> &mut Self {
        self.buffer_size = size;
        self
    }

    /// Copies every raw line to `writer` (go-plugin's `ClientConfig.Stderr`): the bytes of
    /// each line or piece, then `\n` where a line ends. A `\r` before a `\n` is not copied.
    /// Write errors are ignored, as in go-plugin.
    pub fn raw_stderr(&mut self, writer: impl Write + Send + 'static) -> &mut Self {
        self.raw = Some(Box::new(writer));
        self
    }

    /// Reads `stderr` to its end, handing every line to `sink`.
    ///
    /// # Errors
    ///
    /// When reading fails; `sink` was told through [`LogSink::read_failed`] first. End of file
    /// is success.
    pub async fn run<R, S>(&mut self, stderr: R, sink: &mut S) -> Result<(), StderrReadError>
    where
        R: AsyncRead + Unpin,
        S: LogSink + ?Sized,
    {
        let mut lines = LineReader::with_buffer_size(stderr, self.buffer_size);
        let mut state = ParserState::new();
        loop {
            let line = match lines.next_line().await {
                Ok(Some(line)) => line,
                Ok(None) => return Ok(()),
                Err(error) => {
                    sink.read_failed(&error);
                    return Err(StderrReadError(error));
                }
            };
            if let Some(raw) = self.raw.as_mut() {
                let _ = raw.write_all(&line.bytes);
                if line.ends_line() {
                    let _ = raw.write_all(b"\n");
                }
            }
            let entry = state.parse(&line);
            sink.log(entry);
        }
    }
}

/// Reads a plugin's stderr to its end with go-plugin's defaults and logs every line through
/// `tracing` (see [`TracingSink`]).
///
/// # Errors
///
/// When reading fails (after logging `reading plugin stderr` at Error).
pub async fn forward_stderr<R: AsyncRead + Unpin>(
    stderr: R,
    plugin: &str,
) -> Result<(), StderrReadError> {
    StderrPump::new()
        .run(stderr, &mut TracingSink::new(plugin))
        .await
}
