//! The host side of go-plugin: [`PluginClient::start`] launches a plugin binary (Go or Rust)
//! the way go-plugin's `Client.Start` does (checksum, environment, handshake with a start
//! timeout, AutoMTLS, broker, stdio, hclog-parsed stderr), and [`PluginClient::kill`] stops it
//! the way `Client.Kill` does (Shutdown, a grace period, then SIGKILL; always reaped).

use std::collections::{BTreeSet, VecDeque};
use std::ffi::OsString;
use std::fmt;
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use futures_util::StreamExt;
use http_body::{Frame, SizeHint};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::Status;
use tonic::body::Body;
use tonic::codegen::http;
use tonic::codegen::{Bytes, Service};
use tonic::transport::Channel;

use super::broker::{Broker, BrokerTls};
use super::env::{ProtocolEnv, merge_env};
use super::handshake::{
    HandshakeConfig, HandshakeError, HandshakeLine, HostExpectations, unrecognized_diagnosis,
};
use super::hclog::{EntryKind, LogEntry, LogSink, StderrPump, TracingSink, plugin_log_name};
use super::mux::{MuxSession, Muxer};
use super::reattach::{ReattachAddr, ReattachConfig};
use super::tls::{self, Identity, PinnedCert, TlsError};
use super::transport::{self, BoxedIo, DialError, ListenSpec, MAX_UNIX_SOCKET_PATH, SocketOptions};
use crate::bridge::MAX_MESSAGE_SIZE;
use crate::proto::plugin::Empty;
use crate::proto::plugin::grpc_controller_client::GrpcControllerClient;
use crate::proto::plugin::grpc_stdio_client::GrpcStdioClient;
use crate::proto::plugin::stdio_data::Channel as StdioChannel;

/// How many of the plugin's last stderr lines are kept for crash reports.
const STDERR_TAIL: usize = 20;

/// The longest first stdout line read (go-plugin's `bufio.Scanner` gives up beyond 64 KiB).
const MAX_HANDSHAKE_LINE: usize = 64 * 1024;

/// How long, once the plugin has exited, its last stderr lines are waited for: a process it left
/// behind may hold the pipe open.
const STDERR_DRAIN: Duration = Duration::from_secs(1);

/// How long a call that failed on the transport waits for the plugin's exit to be published
/// before its status is returned as is: the connection breaking and the exit (published once the
/// process is reaped and its last stderr lines are read) race by a little.
const EXIT_RACE: Duration = Duration::from_millis(500);

/// The error type of [`PluginChannel`]'s [`Service`] impl; tonic turns a boxed [`Status`] back
/// into that status.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A writer the host hands the plugin's forwarded stdout or stderr to (go-plugin's
/// `SyncStdout`/`SyncStderr`).
pub type SyncWriter = Box<dyn Write + Send>;

/// How to launch and talk to one plugin: [`ClientConfig::new`] with go-plugin's defaults, then
/// one setter per knob.
///
/// # The command
///
/// [`cmd`](Self::cmd) is one program, run directly with [`args`](Self::args), as go-plugin's
/// `exec.Command(name, args...)` runs it: no shell, no word splitting. A `cmd` without a `/` is
/// looked up in the host process's `PATH` (Go's `exec.LookPath`; the `PATH` given to the plugin
/// through [`env`](Self::env) does not change the lookup, and a match in a relative `PATH`
/// entry such as `.` is refused, as Go refuses it). A `cmd` with a `/` is taken as a path,
/// relative to the current directory. Either way the host resolves it to an absolute path
/// before the checksum check and the spawn, and reports that path in errors.
///
/// go-plugin hosts are often given a whole command line (`sh -c "$PLUGIN"`); do the same with
/// `sh` as the command, and `exec` so that the plugin keeps the shell's PID (the host signals
/// and reaps that PID):
///
/// ```
/// use std::time::Duration;
/// use spire_plugin_sdk::goplugin::HandshakeConfig;
/// use spire_plugin_sdk::goplugin::ClientConfig;
///
/// let handshake = HandshakeConfig::new(1, "BASIC_PLUGIN", "hello");
/// // A program found in PATH, with arguments:
/// let mut direct = ClientConfig::new(handshake.clone(), [1], "kv-plugin");
/// direct.args(["--flag", "value"]).start_timeout(Duration::from_secs(10));
///
/// // A command line, as `sh -c` runs it (with PATH lookup inside the shell):
/// let mut shell = ClientConfig::new(handshake, [1], "sh");
/// shell.args(["-c", "exec kv-plugin --flag value"]);
/// ```
#[non_exhaustive]
pub struct ClientConfig {
    handshake: HandshakeConfig,
    versions: BTreeSet<u32>,
    cmd: PathBuf,
    args: Vec<OsString>,
    env: Vec<(String, String)>,
    skip_host_env: bool,
    checksum: Option<[u8; 32]>,
    auto_mtls: bool,
    multiplex: bool,
    start_timeout: Duration,
    kill_grace: Duration,
    sync_stdout: Option<SyncWriter>,
    sync_stderr: Option<SyncWriter>,
    log_sink: Option<Box<dyn LogSink + Send>>,
    unix_socket_dir: Option<PathBuf>,
    parent_death_signal: bool,
    name: Option<String>,
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("cmd", &self.cmd)
            .field("args", &self.args)
            .field("versions", &self.versions)
            .field("auto_mtls", &self.auto_mtls)
            .finish_non_exhaustive()
    }
}

impl ClientConfig {
    /// A config for `cmd` (see [the command](Self#the-command)) with go-plugin's defaults: no
    /// arguments, the host's environment passed on, no checksum, no AutoMTLS, no multiplexing,
    /// 1 min start timeout, 2 s kill grace, stdio discarded, logs to `tracing`, parent-death
    /// signal on.
    pub fn new(
        handshake: HandshakeConfig,
        versions: impl IntoIterator<Item = u32>,
        cmd: impl Into<PathBuf>,
    ) -> Self {
        ClientConfig {
            handshake,
            versions: versions.into_iter().collect(),
            cmd: cmd.into(),
            args: Vec::new(),
            env: Vec::new(),
            skip_host_env: false,
            checksum: None,
            auto_mtls: false,
            multiplex: false,
            start_timeout: Duration::from_secs(60),
            kill_grace: Duration::from_secs(2),
            sync_stdout: None,
            sync_stderr: None,
            log_sink: None,
            unix_socket_dir: None,
            parent_death_signal: true,
            name: None,
        }
    }

    /// The handshake both sides share (replaces the one given to [`new`](Self::new)).
    pub fn handshake(&mut self, handshake: HandshakeConfig) -> &mut Self {
        self.handshake = handshake;
        self
    }

    /// The app protocol versions this host supports (go-plugin's `VersionedPlugins` keys).
    pub fn versions(&mut self, versions: impl IntoIterator<Item = u32>) -> &mut Self {
        self.versions = versions.into_iter().collect();
        self
    }

    /// The program to run (see [the command](Self#the-command)).
    pub fn cmd(&mut self, cmd: impl Into<PathBuf>) -> &mut Self {
        self.cmd = cmd.into();
        self
    }

    /// The program's arguments, each passed as is (default: none).
    pub fn args<I, S>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args = args.into_iter().map(Into::into).collect();
        self
    }

    /// Extra environment entries for the plugin, placed before the host's own environment
    /// (default: none).
    pub fn env<I, K, V>(&mut self, env: I) -> &mut Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        self.env = env.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        self
    }

    /// Do not pass the host's environment on (go-plugin's `SkipHostEnv`; default: off).
    pub fn skip_host_env(&mut self, skip: bool) -> &mut Self {
        self.skip_host_env = skip;
        self
    }

    /// The expected SHA-256 of the binary, checked before it is started (default: none).
    pub fn checksum(&mut self, checksum: Option<[u8; 32]>) -> &mut Self {
        self.checksum = checksum;
        self
    }

    /// Generate certificates and run every connection over mutual TLS (default: off).
    pub fn auto_mtls(&mut self, enable: bool) -> &mut Self {
        self.auto_mtls = enable;
        self
    }

    /// Ask for gRPC broker multiplexing (go-plugin's `GRPCBrokerMultiplex`): one connection, a
    /// yamux session on it, brokered connections as streams (default: off).
    pub fn multiplex(&mut self, enable: bool) -> &mut Self {
        self.multiplex = enable;
        self
    }

    /// How long to wait for the handshake line (go-plugin's default: 1 minute).
    pub fn start_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.start_timeout = timeout;
        self
    }

    /// How long [`PluginClient::kill`] waits for the process to exit after `Shutdown` before
    /// SIGKILL (go-plugin's: 2 s).
    pub fn kill_grace(&mut self, grace: Duration) -> &mut Self {
        self.kill_grace = grace;
        self
    }

    /// Where the plugin's forwarded stdout goes (default: discarded).
    pub fn sync_stdout(&mut self, writer: impl Write + Send + 'static) -> &mut Self {
        self.sync_stdout = Some(Box::new(writer));
        self
    }

    /// Where the plugin's forwarded stderr goes (default: discarded).
    pub fn sync_stderr(&mut self, writer: impl Write + Send + 'static) -> &mut Self {
        self.sync_stderr = Some(Box::new(writer));
        self
    }

    /// Receives the plugin's parsed stderr log lines (default: `tracing`, named after the
    /// binary).
    pub fn log_sink(&mut self, sink: impl LogSink + Send + 'static) -> &mut Self {
        self.log_sink = Some(Box::new(sink));
        self
    }

    /// Directory for the unix sockets this host creates for brokered connections (default: the
    /// host's temp dir). The plugin's own sockets go in the directory its environment names
    /// (`PLUGIN_UNIX_SOCKET_DIR` from [`env`](Self::env) or the host's environment, else its
    /// `TMPDIR`, else `/tmp`): inside a private `plugin-dir<digits>` there, removed once the
    /// plugin is reaped, when the longest socket path in it fits a unix socket address;
    /// otherwise (a long directory) straight in it, as go-plugin has a plugin bind, with the
    /// plugin's socket removed after a crash.
    pub fn unix_socket_dir(&mut self, dir: impl Into<PathBuf>) -> &mut Self {
        self.unix_socket_dir = Some(dir.into());
        self
    }

    /// On Linux, kill the plugin with SIGKILL if this process dies (default: on, as SPIRE
    /// does). The kernel ties the signal to the thread that spawned the plugin: start plugins
    /// from a long-lived runtime (tokio's worker threads live as long as the runtime), not
    /// from a short-lived thread.
    pub fn parent_death_signal(&mut self, enable: bool) -> &mut Self {
        self.parent_death_signal = enable;
        self
    }

    /// The plugin's name in the statuses of calls that fail because it exited (default: the
    /// binary's file name). The [`PluginManager`](super::manager::PluginManager) sets the
    /// registered name.
    pub fn name(&mut self, name: impl Into<String>) -> &mut Self {
        self.name = Some(name.into());
        self
    }
}

/// Why a plugin could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The binary could not be read for its checksum.
    #[error("error verifying checksum: {0}")]
    ChecksumIo(std::io::Error),
    /// The binary's SHA-256 is not the configured one.
    #[error("checksums did not match")]
    ChecksumMismatch,
    /// The process could not be started.
    #[error("error starting plugin {cmd}: {source}")]
    Spawn {
        /// The binary.
        cmd: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The handshake failed; the plugin's last stderr lines are attached.
    #[error(
        "{source}{}{}{}",
        exit_suffix(.exit),
        tail_suffix(.stderr_tail),
        socket_dir_suffix(.socket_dir)
    )]
    #[non_exhaustive]
    Handshake {
        /// go-plugin's error.
        source: HandshakeError,
        /// The plugin's last stderr lines, rendered with their hclog fields
        /// (`message key=value ...`).
        stderr_tail: Vec<String>,
        /// The exit status, if the plugin exited by itself before its handshake (`None` when
        /// the host killed it).
        exit: Option<ExitStatus>,
        /// Set when the plugin's socket directory is too long for a unix socket in it: the
        /// likely reason a plugin fails before its handshake.
        socket_dir: Option<Box<SocketDirTooLong>>,
    },
    /// AutoMTLS setup failed (our certificate, or the plugin's in the handshake).
    #[error("AutoMTLS: {0}")]
    Tls(#[from] TlsError),
    /// The plugin's address could not be dialled.
    #[error(transparent)]
    Dial(#[from] DialError),
    /// The broker stream could not be opened.
    #[error("opening the broker stream: {0}")]
    Broker(Status),
    /// No process has the PID given to [`PluginClient::attach`].
    #[error("reattachment process not found (pid {pid})")]
    ReattachNotFound {
        /// The PID looked for.
        pid: u32,
    },
}

fn exit_suffix(exit: &Option<ExitStatus>) -> String {
    exit.map(|status| format!("\nplugin process exited ({status})"))
        .unwrap_or_default()
}

fn socket_dir_suffix(dir: &Option<Box<SocketDirTooLong>>) -> String {
    dir.as_ref()
        .map(|dir| format!("\n{dir}"))
        .unwrap_or_default()
}

/// The directory a plugin creates its unix sockets in leaves no room for a socket name: a
/// go-plugin plugin names its socket `plugin<up to 10 digits>` there, and a unix socket path
/// may hold at most [`MAX_UNIX_SOCKET_PATH`] bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the plugin's unix socket directory {} is {len} bytes long: a socket `plugin<digits>` in it \
     takes up to {longest} bytes, over the {limit}-byte limit of a unix socket path (sun_path); \
     set PLUGIN_UNIX_SOCKET_DIR or TMPDIR to a shorter directory",
    dir.display()
)]
#[non_exhaustive]
pub struct SocketDirTooLong {
    /// The directory (the plugin's `PLUGIN_UNIX_SOCKET_DIR`, else its `TMPDIR`).
    pub dir: PathBuf,
    /// Its length in bytes.
    pub len: usize,
    /// The length of the longest socket path a plugin may pick in it.
    pub longest: usize,
    /// [`MAX_UNIX_SOCKET_PATH`].
    pub limit: usize,
}

impl SocketDirTooLong {
    /// `Some` when a go-plugin socket name may not fit in `dir`.
    fn check(dir: &Path) -> Option<SocketDirTooLong> {
        let len = dir.as_os_str().len();
        // `/plugin` and the decimal digits of a random u32 (Go's `os.CreateTemp` pattern).
        let longest = len + "/plugin".len() + 10;
        (longest > MAX_UNIX_SOCKET_PATH).then(|| SocketDirTooLong {
            dir: dir.to_owned(),
            len,
            longest,
            limit: MAX_UNIX_SOCKET_PATH,
        })
    }
}

fn tail_suffix(tail: &[String]) -> String {
    if tail.is_empty() {
        String::new()
    } else {
        format!("\nlast plugin stderr lines:\n  {}", tail.join("\n  "))
    }
}

/// How the plugin process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitInfo {
    /// The exit status; `None` for a plugin this host attached to (not its child), whose
    /// status cannot be read.
    pub status: Option<ExitStatus>,
    /// The plugin's last stderr lines.
    pub stderr_tail: Vec<String>,
}

impl fmt::Display for ExitInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.status {
            Some(status) => write!(f, "plugin process exited ({status})")?,
            None => write!(
                f,
                "plugin process exited (status unknown: attached, not launched)"
            )?,
        }
        f.write_str(&tail_suffix(&self.stderr_tail))
    }
}

/// Why a plugin process is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExitCause {
    /// It exited without being asked to (including a signal from someone else).
    Crashed,
    /// Its host stopped it ([`PluginClient::kill`], a dropped client, or a
    /// [`PluginManager`](super::manager::PluginManager)'s unload, close or drop).
    Stopped,
}

/// A plugin process has exited: which plugin, why, and how ([`ExitInfo`]: the exit status and
/// the last stderr lines). The [`source`](std::error::Error::source) of the `Unavailable` status
/// a call through [`PluginClient::channel`] fails with once the plugin is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginExited {
    name: String,
    cause: ExitCause,
    exit: ExitInfo,
}

impl PluginExited {
    /// The plugin's name ([`ClientConfig::name`]; a manager's registered name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Crashed or stopped.
    pub fn cause(&self) -> ExitCause {
        self.cause
    }

    /// The exit status and the last stderr lines.
    pub fn exit(&self) -> &ExitInfo {
        &self.exit
    }

    /// The exit info carried by a status a [`PluginChannel`] made, if `status` is one.
    pub fn from_status(status: &Status) -> Option<&PluginExited> {
        std::error::Error::source(status)?.downcast_ref::<PluginExited>()
    }

    /// `Unavailable`, saying what happened, with `self` as the source; `call_error` is the
    /// transport's own message, if there was one.
    pub(crate) fn to_status(&self, call_error: Option<&str>) -> Status {
        let mut message = self.to_string();
        if let Some(call_error) = call_error {
            message.push_str(&format!(" (call failed: {call_error})"));
        }
        let mut status = Status::unavailable(message);
        status.set_source(Arc::new(self.clone()));
        status
    }
}

impl fmt::Display for PluginExited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.cause {
            ExitCause::Crashed => "crashed",
            ExitCause::Stopped => "was stopped by the host",
        };
        write!(f, "plugin {:?} {what}: {}", self.name, self.exit)
    }
}

impl std::error::Error for PluginExited {}

/// The published exit of one plugin process, and the rules that turn a failed call into a
/// status naming it. Shared by [`PluginClient`], its [`PluginChannel`]s and a manager's handles.
#[derive(Debug, Clone)]
pub(crate) struct ExitWatch {
    exit: watch::Receiver<Option<PluginExited>>,
}

impl ExitWatch {
    /// How the process ended, once it has.
    pub(crate) fn exited(&self) -> Option<PluginExited> {
        self.exit.borrow().clone()
    }

    /// Resolves once the exit is published; pends forever if it never is (an attached plugin
    /// that was detached, or a runtime shutting down).
    pub(crate) async fn wait(&self) -> PluginExited {
        let mut exit = self.exit.clone();
        let exited = exit
            .wait_for(Option::is_some)
            .await
            .map(|exited| exited.clone());
        match exited {
            Ok(Some(exited)) => exited,
            _ => {
                let published = exit.borrow().clone();
                match published {
                    Some(exited) => exited,
                    None => std::future::pending().await,
                }
            }
        }
    }

    /// `Ok` while the process runs; once it has exited, the `Unavailable` status calls get.
    pub(crate) fn check(&self) -> Result<(), Status> {
        match self.exited() {
            Some(exited) => Err(exited.to_status(None)),
            None => Ok(()),
        }
    }

    /// `status`, which a call failed with: when the plugin has exited, `Unavailable` with the
    /// exit info; when `status` is a transport failure (`Unavailable`, or a status tonic made
    /// from a local error, which keeps that error as its source), the same if the exit is
    /// published within `EXIT_RACE`; a status the plugin sent passes at once.
    pub(crate) async fn explain(&self, status: Status) -> Status {
        if let Some(exited) = self.exited() {
            return exited.to_status(Some(status.message()));
        }
        let transport = status.code() == tonic::Code::Unavailable
            || std::error::Error::source(&status).is_some();
        if !transport {
            return status;
        }
        self.explain_transport(status).await
    }

    /// `status` (a transport failure) with the exit info, if the process exits within
    /// `EXIT_RACE`; else `status` unchanged.
    async fn explain_transport(&self, status: Status) -> Status {
        match tokio::time::timeout(EXIT_RACE, self.wait()).await {
            Ok(exited) => exited.to_status(Some(status.message())),
            Err(_) => status,
        }
    }
}

/// A running plugin and the connection to it.
#[derive(Debug)]
pub struct PluginClient {
    channel: PluginChannel,
    negotiated_version: u32,
    broker: Broker,
    handshake: HandshakeLine,
    pid: Option<u32>,
    exit: ExitWatch,
    /// Set before the host stops the plugin, so that its exit counts as [`ExitCause::Stopped`].
    stopping: Arc<AtomicBool>,
    /// Cancelled to close the host's connection to the plugin, whoever holds channel clones.
    connection: CancellationToken,
    kill_switch: Option<tokio::sync::oneshot::Sender<()>>,
    kill_grace: Duration,
    /// Attached to a self-managed (debug mode) plugin: dropping the client leaves it running.
    self_managed: bool,
}

/// Keeps the last lines of the plugin's stderr while passing entries on.
struct TailSink {
    inner: Box<dyn LogSink + Send>,
    tail: Arc<Mutex<VecDeque<String>>>,
}

impl LogSink for TailSink {
    fn log(&mut self, entry: LogEntry) {
        {
            let mut tail = self.tail.lock().expect("stderr tail lock");
            if tail.len() == STDERR_TAIL {
                tail.pop_front();
            }
            tail.push_back(render_tail_line(&entry));
        }
        self.inner.log(entry);
    }

    fn read_failed(&mut self, error: &std::io::Error) {
        self.inner.read_failed(error);
    }
}

/// A stderr entry as the tail keeps it: the message, then the hclog line's own fields as
/// `key=value` (hclog's text form: strings quoted when they hold spaces, quotes or `=`), leaving
/// out the `@`-keys (`@module`, `@caller`, ...), so that `plugin init error` keeps its
/// `error="listen unix ...: bind: invalid argument"`.
fn render_tail_line(entry: &LogEntry) -> String {
    let mut line = entry.message.clone();
    if entry.kind != EntryKind::Json {
        return line;
    }
    for (key, value) in &entry.fields {
        if key.starts_with('@') {
            continue;
        }
        line.push(' ');
        line.push_str(key);
        line.push('=');
        match value {
            serde_json::Value::String(text)
                if !text.is_empty()
                    && !text
                        .chars()
                        .any(|c| c.is_whitespace() || c == '"' || c == '=') =>
            {
                line.push_str(text);
            }
            other => line.push_str(&other.to_string()),
        }
    }
    line
}

/// Resolves `cmd` as go-plugin's `exec.Command` does: a name without a `/` is looked up in the
/// host's `PATH` (entries that are not absolute are skipped, as Go refuses matches found
/// through them); anything else is a path, made absolute against the current directory. A
/// name found nowhere is returned as is, so that the spawn reports it as not found.
fn resolve_cmd(cmd: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let is_name =
        !cmd.as_os_str().is_empty() && !cmd.as_os_str().as_encoded_bytes().contains(&b'/');
    if !is_name {
        return std::path::absolute(cmd).unwrap_or_else(|_| cmd.to_owned());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(cmd))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        })
        .unwrap_or_else(|| cmd.to_owned())
}

/// The directory a launched plugin creates its unix sockets in, as go-plugin's server picks it:
/// `PLUGIN_UNIX_SOCKET_DIR`, else `TMPDIR` (Go's `os.TempDir`), else `/tmp`.
fn plugin_socket_dir(env: &[(String, String)]) -> PathBuf {
    let var = |name: &str| {
        env.iter()
            .rev()
            .find(|(key, value)| key == name && !value.is_empty())
            .map(|(_, value)| PathBuf::from(value))
    };
    var(super::env::PLUGIN_UNIX_SOCKET_DIR)
        .or_else(|| var("TMPDIR"))
        .unwrap_or_else(|| PathBuf::from("/tmp"))
}

/// The unix socket a handshake line names (it need not be a valid line otherwise).
fn socket_in_line(line: &str) -> Option<PathBuf> {
    let mut fields = line.trim_end().split('|');
    let network = fields.nth(2)?;
    let address = fields.next()?;
    (network == "unix" && !address.is_empty()).then(|| PathBuf::from(address))
}

/// Removes the plugin's unix socket once the plugin is gone, if the plugin left it there (it
/// cannot after a crash or SIGKILL). Only a socket is removed, never another kind of file.
fn remove_left_socket(path: &Path) {
    use std::os::unix::fs::FileTypeExt;
    if std::fs::symlink_metadata(path).is_ok_and(|meta| meta.file_type().is_socket()) {
        let _ = std::fs::remove_file(path);
    }
}

impl PluginClient {
    /// Launches the plugin and connects to it. On any failure the process is killed and reaped.
    pub async fn start(mut config: ClientConfig) -> Result<PluginClient, StartError> {
        let cmd = resolve_cmd(&config.cmd);
        if let Some(expected) = config.checksum {
            verify_checksum(&cmd, &expected).await?;
        }
        let identity = if config.auto_mtls {
            Some(Identity::generate()?)
        } else {
            None
        };
        let mut protocol = ProtocolEnv::new(&config.handshake, config.versions.clone());
        protocol.client_cert_pem = identity.as_ref().map(|id| id.cert_pem().to_owned());
        protocol.multiplex = config.multiplex;
        let host_env: Vec<(String, String)> = std::env::vars().collect();
        // The plugin's unix sockets go into a directory of its own, removed once it is reaped
        // (a plugin that crashes or is killed cannot remove them itself), but only where that
        // costs nothing: go-plugin makes one only for `RunnerFunc` hosts and otherwise lets the
        // plugin bind straight in its socket dir, so a socket path that would not fit with the
        // extra component makes us do the same. Then the socket a crashed plugin leaves is
        // removed once it is reaped (its path is in the handshake).
        let base_env = merge_env(&config.env, &host_env, config.skip_host_env, &[]);
        let base_dir = plugin_socket_dir(&base_env);
        let socket_dir = SocketDirTooLong::check(&base_dir).map(Box::new);
        let private_dir = SocketDir::create(&base_dir);
        protocol.unix_socket_dir = private_dir.as_ref().map(|dir| dir.0.display().to_string());
        let env = merge_env(
            &config.env,
            &host_env,
            config.skip_host_env,
            &protocol.entries(),
        );

        let mut command = Command::new(&cmd);
        command
            .args(&config.args)
            .env_clear()
            .envs(env)
            .stdin(Stdio::inherit())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if config.parent_death_signal {
            set_parent_death_signal(&mut command);
        }
        let mut child = command.spawn().map_err(|source| StartError::Spawn {
            cmd: cmd.clone(),
            source,
        })?;
        let pid = child.id();

        // stderr: parsed as hclog, with a tail kept for error reports.
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let name = plugin_log_name(&cmd);
        let sink = config
            .log_sink
            .take()
            .unwrap_or_else(|| Box::new(TracingSink::new(name.clone())));
        let mut sink = TailSink {
            inner: sink,
            tail: tail.clone(),
        };
        let stderr = child.stderr.take().expect("stderr is piped");
        let stderr_done = tokio::spawn(async move {
            let _ = StderrPump::new().run(stderr, &mut sink).await;
        });

        let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
        let mut expectations = HostExpectations::grpc(config.versions.iter().copied());
        expectations.multiplex = config.multiplex;
        let deadline = tokio::time::Instant::now() + config.start_timeout;
        let no_line = || HandshakeError::Unrecognized {
            line: String::new(),
            stdout_closed: true,
            diagnosis: unrecognized_diagnosis(""),
        };
        let mut exited = None;
        let mut raw_line = None;
        let parsed = match tokio::time::timeout_at(deadline, read_first_line(&mut stdout)).await {
            Err(_) => Err(HandshakeError::StartTimeout),
            Ok(FirstLine::Line(line)) => {
                let parsed = HandshakeLine::parse(&line, &expectations);
                raw_line = Some(line);
                parsed
            }
            Ok(FirstLine::TooLong) => Err(no_line()),
            // Stdout closed without a line: normally the plugin is exiting; say how it ended.
            Ok(FirstLine::Closed) => match tokio::time::timeout_at(deadline, child.wait()).await {
                Ok(status) => {
                    exited = status.ok();
                    Err(HandshakeError::ExitedBeforeHandshake)
                }
                Err(_) => Err(no_line()),
            },
        };
        let line = match parsed {
            Ok(line) => line,
            Err(source) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                // A plugin rejected after its handshake (no common version, say) was listening.
                if let Some(socket) = raw_line.as_deref().and_then(socket_in_line) {
                    remove_left_socket(&socket);
                }
                // The plugin is gone, so stderr normally reaches its end and the tail is complete.
                let _ = tokio::time::timeout(STDERR_DRAIN, stderr_done).await;
                let stderr_tail = tail
                    .lock()
                    .expect("stderr tail lock")
                    .iter()
                    .cloned()
                    .collect();
                return Err(StartError::Handshake {
                    source,
                    stderr_tail,
                    exit: exited,
                    socket_dir,
                });
            }
        };
        // Lines after the handshake are read and discarded, as go-plugin does.
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut stdout, &mut tokio::io::sink()).await;
        });
        let socket =
            (line.network == super::handshake::Network::Unix).then(|| PathBuf::from(&line.address));

        let connection = CancellationToken::new();
        let result = connect(
            &line,
            identity.as_ref(),
            config.unix_socket_dir.clone(),
            config.sync_stdout.take(),
            config.sync_stderr.take(),
            connection.clone(),
        )
        .await;
        let (channel, broker) = match result {
            Ok(connected) => connected,
            Err(err) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                if let Some(socket) = &socket {
                    remove_left_socket(socket);
                }
                return Err(err);
            }
        };

        let (exit_tx, exit) = watch::channel(None);
        let (kill_switch, kill_rx) = tokio::sync::oneshot::channel();
        let stopping = Arc::new(AtomicBool::new(false));
        tokio::spawn(supervise(
            child,
            Supervised {
                kill: kill_rx,
                exit: exit_tx,
                name: config.name.take().unwrap_or(name),
                stopping: stopping.clone(),
                tail,
                stderr_done,
                socket,
                private_dir,
            },
        ));
        let exit = ExitWatch { exit };

        Ok(PluginClient {
            channel: PluginChannel::new(channel, exit.clone()),
            negotiated_version: line.app_version,
            broker,
            handshake: line,
            pid,
            exit,
            stopping,
            connection,
            kill_switch: Some(kill_switch),
            kill_grace: config.kill_grace,
            self_managed: false,
        })
    }

    /// Connects to a plugin that is already running (go-plugin's reattach), for example one
    /// served in debug mode or launched by another host. No process is spawned; the plugin's
    /// exit is noticed by polling its PID every second. AutoMTLS is not available here.
    pub async fn attach(
        reattach: ReattachConfig,
        options: AttachOptions,
    ) -> Result<PluginClient, StartError> {
        if reattach.protocol != super::handshake::Protocol::Grpc {
            return Err(StartError::Handshake {
                source: HandshakeError::UnsupportedProtocol {
                    protocol: reattach.protocol.clone(),
                    allowed: vec![super::handshake::Protocol::Grpc],
                },
                stderr_tail: Vec::new(),
                exit: None,
                socket_dir: None,
            });
        }
        if !process_exists(reattach.pid) {
            return Err(StartError::ReattachNotFound { pid: reattach.pid });
        }
        let line = HandshakeLine {
            core_version: super::handshake::CORE_PROTOCOL_VERSION,
            app_version: reattach.protocol_version,
            network: reattach.addr.network.clone(),
            address: reattach.addr.string.clone(),
            protocol: super::handshake::Protocol::Grpc,
            server_cert: None,
            multiplex: false,
        };
        let connection = CancellationToken::new();
        let (channel, broker) = connect(
            &line,
            None,
            options.unix_socket_dir,
            options.sync_stdout,
            options.sync_stderr,
            connection.clone(),
        )
        .await?;
        let (exit_tx, exit) = watch::channel(None);
        let (kill_switch, kill_rx) = tokio::sync::oneshot::channel();
        let stopping = Arc::new(AtomicBool::new(false));
        let name = options
            .name
            .unwrap_or_else(|| format!("pid {}", reattach.pid));
        tokio::spawn(supervise_attached(
            reattach.pid,
            kill_rx,
            exit_tx,
            name,
            stopping.clone(),
        ));
        let exit = ExitWatch { exit };
        Ok(PluginClient {
            channel: PluginChannel::new(channel, exit.clone()),
            negotiated_version: reattach.protocol_version,
            broker,
            handshake: line,
            pid: Some(reattach.pid),
            exit,
            stopping,
            connection,
            kill_switch: Some(kill_switch),
            kill_grace: if options.kill_grace.is_zero() {
                Duration::from_secs(2)
            } else {
                options.kill_grace
            },
            self_managed: reattach.test,
        })
    }

    /// What another host needs to attach to this plugin (go-plugin's `ReattachConfig()`).
    pub fn reattach_config(&self) -> ReattachConfig {
        ReattachConfig {
            protocol: super::handshake::Protocol::Grpc,
            protocol_version: self.negotiated_version,
            addr: ReattachAddr {
                network: self.handshake.network.clone(),
                string: self.handshake.address.clone(),
            },
            pid: self.pid.unwrap_or_default(),
            test: self.self_managed,
        }
    }

    /// Lets go of an attached plugin without stopping it: the broker and connection close, the
    /// process keeps running. A plugin this client launched is its child and still ends with it.
    pub fn detach(mut self) {
        self.broker.close();
        // Dropping the switch without sending tells the supervisor to stop watching, not to kill.
        self.kill_switch.take();
    }

    /// The gRPC channel to the plugin, for typed clients (`FooClient::new(client.channel())`):
    /// once the process has exited, calls fail at once with `Unavailable`, naming the exit
    /// status and last stderr lines, with a [`PluginExited`] as the status's source; calls in
    /// flight when it dies and transport failures get the same (see [`PluginChannel`]).
    pub fn channel(&self) -> PluginChannel {
        self.channel.clone()
    }

    /// The plain tonic channel, without the fail-fast explanation (for `ClientBridge::client`,
    /// which takes a tonic [`Channel`]); pair it with [`explain`](Self::explain).
    pub(crate) fn raw_channel(&self) -> Channel {
        self.channel.inner.clone()
    }

    /// The app protocol version the plugin chose.
    pub fn negotiated_version(&self) -> u32 {
        self.negotiated_version
    }

    /// This host's broker.
    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// The handshake the plugin printed.
    pub fn handshake(&self) -> &HandshakeLine {
        &self.handshake
    }

    /// The plugin's process ID.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// How the plugin exited, once it has.
    pub fn exited(&self) -> Option<ExitInfo> {
        self.exit.exited().map(|exited| exited.exit)
    }

    /// Waits until the plugin process has exited.
    pub async fn wait(&self) -> ExitInfo {
        self.exit.wait().await.exit
    }

    /// Like [`wait`](Self::wait), with the plugin's name and whether the host stopped it.
    pub async fn wait_exited(&self) -> PluginExited {
        self.exit.wait().await
    }

    /// Turns a failed call's status into the one a call through [`channel`](Self::channel)
    /// gets, for calls made another way: `Unavailable` naming the exit (with a
    /// [`PluginExited`] source) when the plugin has died, or dies within a moment of a
    /// transport failure; other statuses pass unchanged.
    pub async fn explain(&self, status: Status) -> Status {
        self.exit.explain(status).await
    }

    /// The exit watch its channel explains with (for a manager's handles).
    pub(crate) fn exit_watch(&self) -> ExitWatch {
        self.exit.clone()
    }

    /// Checks the plugin's health service (`grpc.health.v1`, service `plugin`).
    pub async fn ping(&self) -> Result<(), Status> {
        ping(self.channel()).await
    }

    /// Stops the plugin as go-plugin's `Kill` does: closes the broker, calls
    /// `GRPCController/Shutdown`, closes this host's connection to the plugin (every clone of
    /// [`channel`](Self::channel) included, so that the plugin's graceful stop is not held up
    /// by it), waits up to the kill grace for the process to exit, then SIGKILLs it. Always
    /// reaps the process.
    pub async fn kill(mut self) -> ExitInfo {
        self.stopping.store(true, Ordering::SeqCst);
        self.broker.close();
        if self.exited().is_none() {
            let mut controller = GrpcControllerClient::new(self.channel.inner.clone());
            // The plugin usually drops the connection while answering; the result does not matter.
            let _ = tokio::time::timeout(self.kill_grace, controller.shutdown(Empty {})).await;
        }
        self.close_connection();
        let graceful = tokio::time::timeout(self.kill_grace, self.wait()).await;
        if graceful.is_err() {
            tracing::warn!(pid = ?self.pid, "plugin failed to exit gracefully");
            if let Some(kill) = self.kill_switch.take() {
                let _ = kill.send(());
            }
        }
        self.wait().await
    }

    /// Ends the host's connections to the plugin: the main one (whoever holds its channel) and,
    /// multiplexed, the session under it.
    fn close_connection(&self) {
        self.connection.cancel();
        if let Some(muxer) = self.broker.muxer() {
            muxer.close();
        }
    }
}

/// `grpc.health.v1` Check of service `plugin`.
pub(crate) async fn ping(channel: PluginChannel) -> Result<(), Status> {
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let response = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "plugin".to_owned(),
        })
        .await?
        .into_inner();
    if response.status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32 {
        Ok(())
    } else {
        Err(Status::unavailable(format!(
            "plugin health status is {}",
            response.status
        )))
    }
}

impl Drop for PluginClient {
    fn drop(&mut self) {
        // A client dropped without `kill` still must not leave the process running, unless the
        // plugin manages its own lifetime (attached in debug mode).
        self.broker.close();
        let kill = self.kill_switch.take();
        if kill.is_some() && !self.self_managed {
            self.stopping.store(true, Ordering::SeqCst);
        }
        self.close_connection();
        if let Some(kill) = kill
            && !self.self_managed
        {
            let _ = kill.send(());
        }
    }
}

/// Options for [`PluginClient::attach`]: [`AttachOptions::default`], then one setter per knob.
#[derive(Default)]
#[non_exhaustive]
pub struct AttachOptions {
    sync_stdout: Option<SyncWriter>,
    sync_stderr: Option<SyncWriter>,
    unix_socket_dir: Option<PathBuf>,
    kill_grace: Duration,
    name: Option<String>,
}

impl AttachOptions {
    /// The defaults: stdio discarded, brokered sockets in the temp dir, 2 s kill grace.
    pub fn new() -> Self {
        AttachOptions::default()
    }

    /// Where the plugin's forwarded stdout goes (default: discarded).
    pub fn sync_stdout(&mut self, writer: impl Write + Send + 'static) -> &mut Self {
        self.sync_stdout = Some(Box::new(writer));
        self
    }

    /// Where the plugin's forwarded stderr goes (default: discarded).
    pub fn sync_stderr(&mut self, writer: impl Write + Send + 'static) -> &mut Self {
        self.sync_stderr = Some(Box::new(writer));
        self
    }

    /// Directory for the unix sockets this host creates for brokered connections (default: the
    /// temp dir).
    pub fn unix_socket_dir(&mut self, dir: impl Into<PathBuf>) -> &mut Self {
        self.unix_socket_dir = Some(dir.into());
        self
    }

    /// How long `kill` waits after `Shutdown` before SIGKILL (default, and when zero: 2 s).
    pub fn kill_grace(&mut self, grace: Duration) -> &mut Self {
        self.kill_grace = grace;
        self
    }

    /// The plugin's name in the statuses of calls that fail because it exited (default:
    /// `pid <pid>`).
    pub fn name(&mut self, name: impl Into<String>) -> &mut Self {
        self.name = Some(name.into());
        self
    }
}

impl fmt::Debug for AttachOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AttachOptions")
            .field("unix_socket_dir", &self.unix_socket_dir)
            .field("kill_grace", &self.kill_grace)
            .finish_non_exhaustive()
    }
}

/// True while a process with this PID exists and has not exited: signal 0 probes without
/// sending anything, and on Linux a zombie (exited, not yet reaped by its parent) counts as gone.
fn process_exists(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    if let Err(nix::errno::Errno::ESRCH) =
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), None)
    {
        return false;
    }
    !is_zombie(pid)
}

#[cfg(target_os = "linux")]
fn is_zombie(pid: u32) -> bool {
    // `/proc/<pid>/stat` is `pid (comm) state ...`; comm may hold spaces and parentheses.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

#[cfg(not(target_os = "linux"))]
fn is_zombie(_pid: u32) -> bool {
    false
}

/// Watches an attached plugin's PID (every second, as go-plugin does); on a kill request sends
/// SIGKILL and waits for the process to disappear. A dropped switch just stops watching.
async fn supervise_attached(
    pid: u32,
    mut kill: tokio::sync::oneshot::Receiver<()>,
    exit: watch::Sender<Option<PluginExited>>,
    name: String,
    stopping: Arc<AtomicBool>,
) {
    let gone = |cause| {
        Some(PluginExited {
            name: name.clone(),
            cause,
            exit: ExitInfo {
                status: None,
                stderr_tail: Vec::new(),
            },
        })
    };
    loop {
        tokio::select! {
            request = &mut kill => {
                if request.is_err() {
                    return;
                }
                if let Ok(raw) = i32::try_from(pid) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(raw),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                while process_exists(pid) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                let _ = exit.send(gone(ExitCause::Stopped));
                return;
            }
            () = tokio::time::sleep(Duration::from_secs(1)) => {
                if !process_exists(pid) {
                    let cause = if stopping.load(Ordering::SeqCst) {
                        ExitCause::Stopped
                    } else {
                        ExitCause::Crashed
                    };
                    let _ = exit.send(gone(cause));
                    return;
                }
            }
        }
    }
}

/// Dials the plugin, starts the broker and the stdio stream.
async fn connect(
    line: &HandshakeLine,
    identity: Option<&Identity>,
    unix_socket_dir: Option<PathBuf>,
    sync_stdout: Option<SyncWriter>,
    sync_stderr: Option<SyncWriter>,
    connection: CancellationToken,
) -> Result<(Channel, Broker), StartError> {
    let tls = match (identity, &line.server_cert) {
        (Some(identity), Some(der)) => {
            let plugin = PinnedCert::from_der(der.clone())?;
            Some(BrokerTls {
                server: tls::server_config(identity, &plugin)?,
                client: tls::client_config(identity, &plugin)?,
            })
        }
        (Some(_), None) => {
            return Err(StartError::Handshake {
                source: HandshakeError::InvalidServerCert {
                    reason: "AutoMTLS is on but the plugin sent no certificate".to_owned(),
                },
                stderr_tail: Vec::new(),
                exit: None,
                socket_dir: None,
            });
        }
        (None, _) => None,
    };
    let sockets = SocketOptions {
        unix_dir: unix_socket_dir,
        unix_group: None,
    };
    let client_tls = tls.as_ref().map(|t| t.client.clone());
    let (channel, broker) = if line.multiplex {
        let (channel, muxer) = dial_multiplexed(line, client_tls).await?;
        (
            channel,
            Broker::multiplexed(ListenSpec::Unix, sockets, tls, muxer),
        )
    } else {
        let channel = transport::dial_closable(
            &line.network.to_string(),
            &line.address,
            client_tls,
            connection,
        )
        .await?;
        (channel, Broker::new(ListenSpec::Unix, sockets, tls))
    };
    broker
        .run_client(channel.clone())
        .map_err(StartError::Broker)?;
    spawn_stdio(channel.clone(), broker.clone(), sync_stdout, sync_stderr);
    Ok((channel, broker))
}

/// Multiplexed: one raw connection with a yamux client session on it; each (re)connect of the
/// main channel is a new stream, with TLS inside it when AutoMTLS is on (as in go-plugin).
async fn dial_multiplexed(
    line: &HandshakeLine,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<(Channel, Muxer), StartError> {
    let raw = transport::connect_raw(&line.network.to_string(), &line.address).await?;
    let muxer = Muxer::new();
    muxer.attach(MuxSession::client(raw), None);
    let streams = muxer.clone();
    let connector = tower::service_fn(move |_: tonic::transport::Uri| {
        let streams = streams.clone();
        let tls = tls.clone();
        async move {
            let stream = streams.open_stream().await.map_err(std::io::Error::other)?;
            let io = match tls {
                Some(config) => BoxedIo::new(
                    tokio_rustls::TlsConnector::from(config)
                        .connect(tls::server_name(), stream)
                        .await?,
                ),
                None => BoxedIo::new(stream),
            };
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(io))
        }
    });
    let channel = tonic::transport::Endpoint::from_static("http://localhost")
        .connect_with_connector(connector)
        .await
        .map_err(|source| DialError::Connect {
            network: line.network.to_string(),
            address: line.address.clone(),
            source,
        })?;
    Ok((channel, muxer))
}

/// Streams the plugin's forwarded stdio into the sinks; a plugin without the service is fine.
/// `broker` tells whether an unload has begun (a Go plugin answers the stream only with its
/// first output, so an unload before any output ends the call with the connection).
fn spawn_stdio(
    channel: Channel,
    broker: Broker,
    mut stdout: Option<SyncWriter>,
    mut stderr: Option<SyncWriter>,
) {
    tokio::spawn(async move {
        let mut client = GrpcStdioClient::new(channel).max_decoding_message_size(MAX_MESSAGE_SIZE);
        let mut stream = match client.stream_stdio(()).await {
            Ok(response) => response.into_inner(),
            Err(status) if super::broker::is_orderly_end(&status, broker.is_closed()) => {
                tracing::debug!(%status, "the plugin's stdio stream ended with the connection");
                return;
            }
            Err(status) => {
                tracing::warn!(%status, "stdio service not available, stdout/stderr won't be forwarded");
                return;
            }
        };
        while let Some(Ok(chunk)) = stream.next().await {
            let sink = match StdioChannel::try_from(chunk.channel) {
                Ok(StdioChannel::Stdout) => stdout.as_mut(),
                Ok(StdioChannel::Stderr) => stderr.as_mut(),
                _ => {
                    tracing::warn!(
                        channel = chunk.channel,
                        "unknown stdio channel, chunk dropped"
                    );
                    continue;
                }
            };
            if let Some(sink) = sink {
                let _ = sink.write_all(&chunk.data);
                let _ = sink.flush();
            }
        }
    });
}

/// What the supervisor of a launched plugin needs besides the child.
struct Supervised {
    kill: tokio::sync::oneshot::Receiver<()>,
    exit: watch::Sender<Option<PluginExited>>,
    name: String,
    stopping: Arc<AtomicBool>,
    tail: Arc<Mutex<VecDeque<String>>>,
    stderr_done: tokio::task::JoinHandle<()>,
    /// The plugin's unix socket, from its handshake.
    socket: Option<PathBuf>,
    /// The plugin's private socket directory, if it has one.
    private_dir: Option<SocketDir>,
}

/// Owns the child: reaps it when it exits (publishing how) or kills it when told to; then
/// removes the socket it may have left.
async fn supervise(mut child: Child, supervised: Supervised) {
    let Supervised {
        kill,
        exit,
        name,
        stopping,
        tail,
        stderr_done,
        socket,
        private_dir,
    } = supervised;
    let (status, cause) = tokio::select! {
        status = child.wait() => {
            let cause = if stopping.load(Ordering::SeqCst) {
                ExitCause::Stopped
            } else {
                ExitCause::Crashed
            };
            (status, cause)
        }
        _ = kill => {
            let _ = child.start_kill();
            (child.wait().await, ExitCause::Stopped)
        }
    };
    // The process is reaped; a socket it left behind (crash, SIGKILL) can no longer be used,
    // and its path was the plugin's alone.
    if let Some(socket) = &socket {
        remove_left_socket(socket);
    }
    drop(private_dir);
    // The plugin has exited, so its stderr ends; wait for the last lines to be parsed.
    let _ = tokio::time::timeout(STDERR_DRAIN, stderr_done).await;
    let stderr_tail = tail
        .lock()
        .expect("stderr tail lock")
        .iter()
        .cloned()
        .collect();
    let status = match status {
        Ok(status) => {
            if status.success() {
                tracing::info!(%status, "plugin process exited");
            } else {
                tracing::error!(%status, "plugin process exited");
            }
            Some(status)
        }
        Err(err) => {
            tracing::error!(error = %err, "waiting for the plugin process failed");
            // Publish anyway, so that nobody waits for an exit that will never be reported.
            None
        }
    };
    let _ = exit.send(Some(PluginExited {
        name,
        cause,
        exit: ExitInfo {
            status,
            stderr_tail,
        },
    }));
}

/// The plugin's first stdout line, or why there is none.
enum FirstLine {
    Line(String),
    /// End of file (or a read error) before any byte.
    Closed,
    /// Longer than [`MAX_HANDSHAKE_LINE`].
    TooLong,
}

/// Reads the plugin's first stdout line as go-plugin's scanner does: any bytes (invalid UTF-8 is
/// replaced, not an error), a last line without a newline counts, a line over 64 KiB does not.
async fn read_first_line(stdout: &mut BufReader<ChildStdout>) -> FirstLine {
    let mut line = Vec::new();
    let limit = MAX_HANDSHAKE_LINE as u64 + 1;
    match (&mut *stdout)
        .take(limit)
        .read_until(b'\n', &mut line)
        .await
    {
        Ok(0) | Err(_) => FirstLine::Closed,
        Ok(_) if line.len() > MAX_HANDSHAKE_LINE => FirstLine::TooLong,
        Ok(_) => FirstLine::Line(String::from_utf8_lossy(&line).into_owned()),
    }
}

/// The plugin's [`Channel`] as a tower [`Service`] that fails fast once the plugin is gone; what
/// [`PluginClient::channel`] returns. Every generated tonic client accepts it
/// (`EchoClient::new(client.channel())`).
///
/// - Once the process is known to have exited, a call fails at once with `Unavailable` and a
///   [`PluginExited`] source, without touching the connection.
/// - A call in flight races the exit notification, so it fails that way as soon as the process
///   is reaped, rather than whenever (and however: tonic says `Unknown`) the transport notices.
/// - A *transport* failure (the service erroring, or the response body breaking) waits up to
///   `EXIT_RACE` for the exit and then carries it; a status the plugin itself sent (including
///   a Go plugin's `Unknown` for plain errors) passes through untouched, so healthy plugins pay
///   nothing.
#[derive(Debug, Clone)]
pub struct PluginChannel {
    inner: Channel,
    exit: ExitWatch,
}

impl PluginChannel {
    pub(crate) fn new(inner: Channel, exit: ExitWatch) -> Self {
        PluginChannel { inner, exit }
    }
}

impl Service<http::Request<Body>> for PluginChannel {
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // An exited plugin is "ready": `call` fails at once. (tonic turns a `poll_ready` error
        // into `Unknown`, losing our status, so the failure belongs in `call`.)
        if self.exit.exited().is_some() {
            return Poll::Ready(Ok(()));
        }
        Service::poll_ready(&mut self.inner, cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if let Some(exited) = self.exit.exited() {
            return Box::pin(std::future::ready(Err(exited.to_status(None).into())));
        }
        let call = Service::call(&mut self.inner, request);
        let exit = self.exit.clone();
        Box::pin(async move {
            let outcome = tokio::select! {
                biased;
                outcome = call => outcome,
                exited = exit.wait() => {
                    return Err(exited.to_status(None).into());
                }
            };
            match outcome {
                Ok(response) => Ok(response.map(|body| {
                    Body::new(ExplainBody {
                        inner: body,
                        exit,
                        pending: None,
                    })
                })),
                Err(err) => {
                    let status = Status::from_error(err.into());
                    Err(exit.explain_transport(status).await.into())
                }
            }
        })
    }
}

/// A response body whose transport errors carry the exit info when the process died.
struct ExplainBody {
    inner: Body,
    exit: ExitWatch,
    pending: Option<Pin<Box<dyn Future<Output = Status> + Send>>>,
}

impl http_body::Body for ExplainBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        loop {
            if let Some(pending) = &mut this.pending {
                let status = ready!(pending.as_mut().poll(cx));
                this.pending = None;
                return Poll::Ready(Some(Err(status)));
            }
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Err(status)) => {
                    let exit = this.exit.clone();
                    this.pending = Some(Box::pin(
                        async move { exit.explain_transport(status).await },
                    ));
                }
                other => return Poll::Ready(other),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.pending.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The plugin's private socket directory (`PLUGIN_UNIX_SOCKET_DIR`), as go-plugin creates one
/// for `RunnerFunc` hosts: `plugin-dir<random>` (mode 0700) inside the directory the plugin would
/// otherwise use. Removed with its contents when dropped.
#[derive(Debug)]
struct SocketDir(PathBuf);

impl SocketDir {
    /// `None` (the plugin then uses `base` itself, as under go-plugin) when the longest socket
    /// path in the private directory would not fit in a unix socket address, or when it cannot
    /// be created.
    fn create(base: &Path) -> Option<SocketDir> {
        use std::os::unix::fs::DirBuilderExt;
        // `/plugin-dir<u32>` and `/plugin<u32>`, each u32 up to 10 digits.
        let longest = base.as_os_str().len() + "/plugin-dir".len() + 10 + "/plugin".len() + 10;
        if longest > MAX_UNIX_SOCKET_PATH {
            tracing::debug!(dir = %base.display(), "socket dir too long for a private one inside");
            return None;
        }
        for _ in 0..100 {
            let dir = base.join(format!("plugin-dir{}", fastrand::u32(..)));
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => return Some(SocketDir(dir)),
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(err) => {
                    tracing::debug!(dir = %base.display(), error = %err, "no private socket directory for the plugin");
                    return None;
                }
            }
        }
        None
    }
}

impl Drop for SocketDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Hashes the binary with SHA-256 and compares in constant time.
async fn verify_checksum(cmd: &Path, expected: &[u8; 32]) -> Result<(), StartError> {
    use sha2::Digest;
    let bytes = tokio::fs::read(cmd).await.map_err(|err| {
        // Go's error names the file; io::Error does not.
        StartError::ChecksumIo(std::io::Error::new(
            err.kind(),
            format!("{}: {err}", cmd.display()),
        ))
    })?;
    let actual = sha2::Sha256::digest(&bytes);
    if subtle::ConstantTimeEq::ct_eq(actual.as_slice(), expected.as_slice()).into() {
        Ok(())
    } else {
        Err(StartError::ChecksumMismatch)
    }
}

#[cfg(target_os = "linux")]
#[allow(
    unsafe_code,
    reason = "pre_exec is unsafe; the closure only calls prctl"
)]
fn set_parent_death_signal(command: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec and only calls prctl(2), which is
    // async-signal-safe; it allocates nothing and touches no shared state.
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn set_parent_death_signal(_command: &mut Command) {}
