//! Plugin side: a `tracing_subscriber` [`Layer`] that writes every event as one hclog JSON line
//! ([`HclogLayer`]), the writer it uses by default ([`OriginalStderr`]) and [`init`]. It does
//! not filter by level: that is the subscriber's job, and [`init`] installs no filter, which
//! matches go-plugin's default plugin logger at Trace.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde_json::{Number, Value};
use time::OffsetDateTime;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::{SubscriberInitExt as _, TryInitError};

use super::level::Level;
use super::timestamp;

/// Writes every `tracing` event as one line of hclog JSON, the format a go-plugin host parses
/// from plugin stderr.
///
/// Each line is a JSON object, keys sorted as Go's `encoding/json` sorts them, ending in `\n`
/// (newlines inside values are escaped, so a line is always one line):
///
/// - `@level`: `trace`, `debug`, `info`, `warn` or `error`;
/// - `@message`: the event's `message` field, always a string (`""` when there is none);
/// - `@timestamp`: now, in UTC, as Go layout `2006-01-02T15:04:05.000000Z07:00`
///   (e.g. `2026-08-23T10:11:12.123456Z`);
/// - `@module`: only when configured ([`with_name`](Self::with_name),
///   [`with_target_as_module`](Self::with_target_as_module));
/// - `@caller`: `file:line`, only with [`with_location`](Self::with_location);
/// - every other field of the event and of its enclosing spans (the event's win over its
///   spans', inner spans' over outer ones'): strings, integers, floats and booleans keep their
///   JSON type; errors, `Debug` and `Display` values become strings; integers beyond 64 bits and
///   non-finite floats (`NaN`, `+Inf`, `-Inf`) become strings too.
///
/// A field named `@level`, `@message` or `@timestamp` would break a host (a Go host panics on a
/// non-string one), so it is written as `_@level`, `_@message` or `_@timestamp`. A field named
/// `@module` or `@caller` replaces the configured one, as it does in hclog.
///
/// Keep lines under the host's buffer (64 KiB by default): a longer line reaches the host log
/// in unparsed pieces at Debug.
///
/// ```
/// use tracing_subscriber::layer::SubscriberExt;
/// use spire_plugin_sdk::goplugin::hclog::HclogLayer;
///
/// let subscriber = tracing_subscriber::registry()
///     .with(HclogLayer::new().with_name("keymanager").with_writer(std::io::sink));
/// tracing::subscriber::with_default(subscriber, || tracing::info!(keys = 3, "loaded"));
/// ```
pub struct HclogLayer<W = OriginalStderr> {
    make_writer: W,
    name: Option<String>,
    target_as_module: bool,
    include_location: bool,
    clock: fn() -> OffsetDateTime,
}

impl Default for HclogLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl HclogLayer {
    /// A layer writing to the process's real stderr (see [`OriginalStderr`]), without
    /// `@module` or `@caller`: the shape of go-plugin's default plugin logger.
    pub fn new() -> Self {
        Self {
            make_writer: OriginalStderr::new(),
            name: None,
            target_as_module: false,
            include_location: false,
            clock: OffsetDateTime::now_utc,
        }
    }
}

impl<W> HclogLayer<W> {
    /// Writes lines to `make_writer` instead, e.g. `std::io::stdout`, or a
    /// `Mutex<Vec<u8>>`-backed writer in tests. One `write_all` per line.
    pub fn with_writer<W2>(self, make_writer: W2) -> HclogLayer<W2>
    where
        W2: for<'w> MakeWriter<'w> + 'static,
    {
        HclogLayer {
            make_writer,
            name: self.name,
            target_as_module: self.target_as_module,
            include_location: self.include_location,
            clock: self.clock,
        }
    }

    /// Sets `@module` to `name`, like an hclog logger's name.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Uses the event's `tracing` target as `@module`; with a name as well, `@module` is
    /// `name.target`, the way hclog joins the names of nested loggers.
    pub fn with_target_as_module(mut self, enabled: bool) -> Self {
        self.target_as_module = enabled;
        self
    }

    /// Writes `@caller` as `file:line` of the event, like hclog's `IncludeLocation`.
    pub fn with_location(mut self, enabled: bool) -> Self {
        self.include_location = enabled;
        self
    }

    /// Replaces the clock, so tests get fixed timestamps.
    #[cfg(test)]
    pub(super) fn with_clock(mut self, clock: fn() -> OffsetDateTime) -> Self {
        self.clock = clock;
        self
    }

    /// Installs this layer, on a `tracing_subscriber` registry, as the global default subscriber
    /// (and, where `tracing-subscriber`'s `tracing-log` feature is on, routes `log` records to
    /// it), filtered by [`default_filter`].
    ///
    /// # Errors
    ///
    /// When a global subscriber is already installed.
    pub fn init(self) -> Result<(), InitError>
    where
        W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
    {
        tracing_subscriber::registry()
            .with(self.with_filter(default_filter()))
            .try_init()
            .map_err(InitError)
    }

    fn module(&self, target: &str) -> Option<String> {
        match (&self.name, self.target_as_module) {
            (Some(name), true) => Some(format!("{name}.{target}")),
            (Some(name), false) => Some(name.clone()),
            (None, true) => Some(target.to_owned()),
            (None, false) => None,
        }
    }
}

impl<W> fmt::Debug for HclogLayer<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HclogLayer")
            .field("name", &self.name)
            .field("target_as_module", &self.target_as_module)
            .field("include_location", &self.include_location)
            .finish_non_exhaustive()
    }
}

/// The filter [`init`] uses: `RUST_LOG` when set (directives `target=level` and a bare default
/// level, comma-separated, e.g. `info,my_plugin=trace`; an unreadable value is ignored),
/// otherwise everything at Trace (a Go plugin's default logger level) except the transport
/// libraries under the plugin (h2, hyper, tower, tonic, rustls, yamux), which log thousands of
/// per-frame lines at Debug and Trace and have no counterpart in a Go plugin's log; they stay at
/// Info.
///
/// It is a [`Targets`](tracing_subscriber::filter::Targets) filter rather than an `EnvFilter`:
/// plugins then carry no regex engine (span and field directives are not supported).
pub fn default_filter() -> tracing_subscriber::filter::Targets {
    const DEFAULT: &str =
        "trace,h2=info,hyper=info,hyper_util=info,tower=info,tonic=info,rustls=info,yamux=info";
    std::env::var("RUST_LOG")
        .ok()
        .and_then(|directives| directives.parse().ok())
        .unwrap_or_else(|| DEFAULT.parse().expect("the default directives parse"))
}

/// Installs [`HclogLayer::new`] as the global default subscriber: the plugin logs at Trace to the
/// real stderr, like a Go plugin's default logger, with transport libraries quieted (see
/// [`default_filter`]). Call it before anything redirects stderr.
///
/// # Errors
///
/// When a global subscriber is already installed.
pub fn init() -> Result<(), InitError> {
    HclogLayer::new().init()
}

/// Installing the hclog subscriber failed, because another global subscriber was already set.
#[derive(Debug, thiserror::Error)]
#[error("installing the hclog subscriber")]
pub struct InitError(#[source] TryInitError);

/// The fields a span recorded, kept in its extensions.
#[derive(Debug, Default)]
struct SpanFields(BTreeMap<&'static str, Value>);

impl<S, W> Layer<S> for HclogLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let mut fields = SpanFields::default();
        attrs.record(&mut FieldVisitor::new(&mut fields.0, None));
        span.extensions_mut().insert(fields);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let mut extensions = span.extensions_mut();
        match extensions.get_mut::<SpanFields>() {
            Some(fields) => values.record(&mut FieldVisitor::new(&mut fields.0, None)),
            None => {
                let mut fields = SpanFields::default();
                values.record(&mut FieldVisitor::new(&mut fields.0, None));
                extensions.insert(fields);
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let metadata = event.metadata();
        let mut object = BTreeMap::new();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(fields) = span.extensions().get::<SpanFields>() {
                    object.extend(fields.0.iter().map(|(k, v)| (*k, v.clone())));
                }
            }
        }
        let mut message = String::new();
        event.record(&mut FieldVisitor::new(&mut object, Some(&mut message)));

        if let Some(module) = self.module(metadata.target()) {
            object.entry("@module").or_insert(Value::String(module));
        }
        if self.include_location
            && let (Some(file), Some(line)) = (metadata.file(), metadata.line())
        {
            object
                .entry("@caller")
                .or_insert_with(|| Value::String(format!("{file}:{line}")));
        }
        let level = Level::from(*metadata.level());
        object.insert("@level", Value::from(level.as_str()));
        object.insert("@message", Value::String(message));
        object.insert(
            "@timestamp",
            Value::String(timestamp::format_json((self.clock)())),
        );

        let Ok(mut line) = serde_json::to_vec(&object) else {
            return;
        };
        line.push(b'\n');
        let mut writer = self.make_writer.make_writer_for(metadata);
        // A logger has nowhere to report its own write errors.
        let _ = writer.write_all(&line);
        let _ = writer.flush();
    }
}

/// Records `tracing` fields as JSON values; the event's `message` goes to `message` when given.
struct FieldVisitor<'a> {
    fields: &'a mut BTreeMap<&'static str, Value>,
    message: Option<&'a mut String>,
}

impl<'a> FieldVisitor<'a> {
    fn new(fields: &'a mut BTreeMap<&'static str, Value>, message: Option<&'a mut String>) -> Self {
        Self { fields, message }
    }

    fn put(&mut self, field: &Field, value: Value) {
        if field.name() == "message"
            && let Some(message) = self.message.as_deref_mut()
        {
            *message = match value {
                Value::String(text) => text,
                other => other.to_string(),
            };
            return;
        }
        let key = match field.name() {
            "@level" => "_@level",
            "@message" => "_@message",
            "@timestamp" => "_@timestamp",
            name => name,
        };
        self.fields.insert(key, value);
    }
}

impl Visit for FieldVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        let value = match Number::from_f64(value) {
            Some(number) => Value::Number(number),
            None if value.is_nan() => Value::from("NaN"),
            None if value > 0.0 => Value::from("+Inf"),
            None => Value::from("-Inf"),
        };
        self.put(field, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        let value = match i64::try_from(value) {
            Ok(small) => Value::from(small),
            Err(_) => match u64::try_from(value) {
                Ok(small) => Value::from(small),
                Err(_) => Value::String(value.to_string()),
            },
        };
        self.put(field, value);
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        let value = match u64::try_from(value) {
            Ok(small) => Value::from(small),
            Err(_) => Value::String(value.to_string()),
        };
        self.put(field, value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::Bool(value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::from(value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Value::String(value.to_string()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, Value::String(format!("{value:?}")));
    }
}

/// The process's stderr as it was when this value was made: a duplicate of the stderr handle
/// (file descriptor 2 on Unix), so log lines still reach the host after something redirects
/// stderr, as go-plugin's stdio forwarding does. If the handle cannot be duplicated it falls
/// back to [`std::io::stderr`]. Each line is written under a lock, in one `write_all`.
#[derive(Debug)]
pub struct OriginalStderr {
    target: Mutex<StderrTarget>,
}

#[derive(Debug)]
enum StderrTarget {
    Duplicate(File),
    Current(io::Stderr),
}

impl Default for OriginalStderr {
    fn default() -> Self {
        Self::new()
    }
}

impl OriginalStderr {
    /// Duplicates the current stderr handle.
    pub fn new() -> Self {
        let target = match duplicate_stderr() {
            Ok(file) => StderrTarget::Duplicate(file),
            Err(_) => StderrTarget::Current(io::stderr()),
        };
        Self {
            target: Mutex::new(target),
        }
    }
}

#[cfg(unix)]
fn duplicate_stderr() -> io::Result<File> {
    use std::os::fd::AsFd as _;
    Ok(File::from(io::stderr().as_fd().try_clone_to_owned()?))
}

#[cfg(windows)]
fn duplicate_stderr() -> io::Result<File> {
    use std::os::windows::io::AsHandle as _;
    Ok(File::from(io::stderr().as_handle().try_clone_to_owned()?))
}

#[cfg(not(any(unix, windows)))]
fn duplicate_stderr() -> io::Result<File> {
    Err(io::ErrorKind::Unsupported.into())
}

impl<'a> MakeWriter<'a> for OriginalStderr {
    type Writer = OriginalStderrWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        OriginalStderrWriter(self.target.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// The writer [`OriginalStderr`] hands out: holds its lock while alive.
#[derive(Debug)]
pub struct OriginalStderrWriter<'a>(MutexGuard<'a, StderrTarget>);

impl Write for OriginalStderrWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut *self.0 {
            StderrTarget::Duplicate(file) => file.write(buf),
            StderrTarget::Current(stderr) => stderr.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match &mut *self.0 {
            StderrTarget::Duplicate(file) => file.write_all(buf),
            StderrTarget::Current(stderr) => stderr.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut *self.0 {
            StderrTarget::Duplicate(file) => file.flush(),
            StderrTarget::Current(stderr) => stderr.flush(),
        }
    }
}
