//! The host side of go-plugin: [`PluginClient::start`] launches a plugin binary (Go or Rust)
//! the way go-plugin's `Client.Start` does (checksum, environment, handshake with a start
//! timeout, AutoMTLS, broker, stdio, hclog-parsed stderr), and [`PluginClient::kill`] stops it
//! the way `Client.Kill` does (Shutdown, a grace period, then SIGKILL; always reaped).

use std::collections::{BTreeSet, VecDeque};
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};
use tokio::sync::watch;
use tonic::Status;
use tonic::transport::Channel;

use super::broker::{Broker, BrokerTls};
use super::env::{ProtocolEnv, merge_env};
use super::handshake::{
    HandshakeConfig, HandshakeError, HandshakeLine, HostExpectations, unrecognized_diagnosis,
};
use super::hclog::{LogEntry, LogSink, StderrPump, TracingSink, plugin_log_name};
use super::mux::{MuxSession, Muxer};
use super::reattach::{ReattachAddr, ReattachConfig};
use super::tls::{self, Identity, PinnedCert, TlsError};
use super::transport::{self, BoxedIo, DialError, ListenSpec, SocketOptions};
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

/// A writer the host hands the plugin's forwarded stdout or stderr to (go-plugin's
/// `SyncStdout`/`SyncStderr`).
pub type SyncWriter = Box<dyn Write + Send>;

/// How to launch and talk to one plugin.
pub struct ClientConfig {
    /// The handshake both sides share.
    pub handshake: HandshakeConfig,
    /// The app protocol versions this host supports (go-plugin's `VersionedPlugins` keys).
    pub versions: BTreeSet<u32>,
    /// The plugin binary; resolved to an absolute path (relative to the current directory),
    /// never looked up in `PATH`.
    pub cmd: PathBuf,
    /// Arguments for the plugin.
    pub args: Vec<OsString>,
    /// Extra environment entries for the plugin (before the host's own environment).
    pub env: Vec<(String, String)>,
    /// Do not pass the host's environment on (go-plugin's `SkipHostEnv`).
    pub skip_host_env: bool,
    /// The expected SHA-256 of the binary, checked before it is started.
    pub checksum: Option<[u8; 32]>,
    /// Generate certificates and run every connection over mutual TLS.
    pub auto_mtls: bool,
    /// Ask for gRPC broker multiplexing (go-plugin's `GRPCBrokerMultiplex`): one connection, a
    /// yamux session on it, brokered connections as streams.
    pub multiplex: bool,
    /// How long to wait for the handshake line (go-plugin: 1 minute).
    pub start_timeout: Duration,
    /// How long `kill` waits for the process to exit after `Shutdown` before SIGKILL (2 s).
    pub kill_grace: Duration,
    /// Where the plugin's forwarded stdout goes (default: discarded).
    pub sync_stdout: Option<SyncWriter>,
    /// Where the plugin's forwarded stderr goes (default: discarded).
    pub sync_stderr: Option<SyncWriter>,
    /// Receives the plugin's parsed stderr log lines (default: `tracing`, named after the binary).
    pub log_sink: Option<Box<dyn LogSink + Send>>,
    /// Directory for the unix sockets this host creates for brokered connections.
    pub unix_socket_dir: Option<PathBuf>,
    /// On Linux, kill the plugin with SIGKILL if this process dies (SPIRE does). The kernel ties
    /// the signal to the thread that spawned the plugin: start plugins from a long-lived runtime
    /// (tokio's worker threads live as long as the runtime), not from a short-lived thread.
    pub parent_death_signal: bool,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("cmd", &self.cmd)
            .field("args", &self.args)
            .field("versions", &self.versions)
            .field("auto_mtls", &self.auto_mtls)
            .finish_non_exhaustive()
    }
}

impl ClientConfig {
    /// A config for `cmd` with go-plugin's defaults: no AutoMTLS, 1 min start timeout, 2 s kill
    /// grace, stdio discarded, logs to `tracing`, parent-death signal on.
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
        }
    }
}

/// Why a plugin could not be started.
#[derive(Debug, thiserror::Error)]
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
    #[error("{source}{}{}", exit_suffix(.exit), tail_suffix(.stderr_tail))]
    Handshake {
        /// go-plugin's error.
        source: HandshakeError,
        /// The plugin's last stderr lines.
        stderr_tail: Vec<String>,
        /// The exit status, if the plugin exited by itself before its handshake (`None` when
        /// the host killed it).
        exit: Option<ExitStatus>,
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

impl std::fmt::Display for ExitInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
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

/// A running plugin and the connection to it.
#[derive(Debug)]
pub struct PluginClient {
    channel: Channel,
    negotiated_version: u32,
    broker: Broker,
    handshake: HandshakeLine,
    pid: Option<u32>,
    exit: watch::Receiver<Option<ExitInfo>>,
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
            tail.push_back(entry.message.clone());
        }
        self.inner.log(entry);
    }

    fn read_failed(&mut self, error: &std::io::Error) {
        self.inner.read_failed(error);
    }
}

impl PluginClient {
    /// Launches the plugin and connects to it. On any failure the process is killed and reaped.
    pub async fn start(mut config: ClientConfig) -> Result<PluginClient, StartError> {
        let cmd = std::path::absolute(&config.cmd).unwrap_or_else(|_| config.cmd.clone());
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
        // The plugin's unix sockets go into a directory of its own, removed once it is reaped:
        // a plugin that crashes or is killed cannot remove them itself.
        let base_env = merge_env(&config.env, &host_env, config.skip_host_env, &[]);
        let socket_dir = SocketDir::create(&base_env);
        protocol.unix_socket_dir = socket_dir.as_ref().map(|dir| dir.0.display().to_string());
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
            .unwrap_or_else(|| Box::new(TracingSink::new(name)));
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
        let parsed = match tokio::time::timeout_at(deadline, read_first_line(&mut stdout)).await {
            Err(_) => Err(HandshakeError::StartTimeout),
            Ok(FirstLine::Line(line)) => HandshakeLine::parse(&line, &expectations),
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
                });
            }
        };
        // Lines after the handshake are read and discarded, as go-plugin does.
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut stdout, &mut tokio::io::sink()).await;
        });

        let result = connect(
            &line,
            identity.as_ref(),
            config.unix_socket_dir.clone(),
            config.sync_stdout.take(),
            config.sync_stderr.take(),
        )
        .await;
        let (channel, broker) = match result {
            Ok(connected) => connected,
            Err(err) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                return Err(err);
            }
        };

        let (exit_tx, exit) = watch::channel(None);
        let (kill_switch, kill_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(supervise(
            child,
            kill_rx,
            exit_tx,
            tail,
            stderr_done,
            socket_dir,
        ));

        Ok(PluginClient {
            channel,
            negotiated_version: line.app_version,
            broker,
            handshake: line,
            pid,
            exit,
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
        if reattach.protocol != "grpc" {
            return Err(StartError::Handshake {
                source: HandshakeError::UnsupportedProtocol {
                    protocol: super::handshake::Protocol::from_field(&reattach.protocol),
                    allowed: vec![super::handshake::Protocol::Grpc],
                },
                stderr_tail: Vec::new(),
                exit: None,
            });
        }
        if !process_exists(reattach.pid) {
            return Err(StartError::ReattachNotFound { pid: reattach.pid });
        }
        let line = HandshakeLine {
            core_version: super::handshake::CORE_PROTOCOL_VERSION,
            app_version: reattach.protocol_version,
            network: super::handshake::Network::from_field(&reattach.addr.network),
            address: reattach.addr.string.clone(),
            protocol: super::handshake::Protocol::Grpc,
            server_cert: None,
            multiplex: false,
        };
        let (channel, broker) = connect(
            &line,
            None,
            options.unix_socket_dir,
            options.sync_stdout,
            options.sync_stderr,
        )
        .await?;
        let (exit_tx, exit) = watch::channel(None);
        let (kill_switch, kill_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(supervise_attached(reattach.pid, kill_rx, exit_tx));
        Ok(PluginClient {
            channel,
            negotiated_version: reattach.protocol_version,
            broker,
            handshake: line,
            pid: Some(reattach.pid),
            exit,
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
            protocol: "grpc".to_owned(),
            protocol_version: self.negotiated_version,
            addr: ReattachAddr {
                network: self.handshake.network.to_string(),
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

    /// The gRPC channel to the plugin; build typed clients on it (e.g. with a `ClientBridge`).
    pub fn channel(&self) -> Channel {
        self.channel.clone()
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
        self.exit.borrow().clone()
    }

    /// Waits until the plugin process has exited.
    pub async fn wait(&self) -> ExitInfo {
        let mut exit = self.exit.clone();
        loop {
            if let Some(info) = exit.borrow_and_update().clone() {
                return info;
            }
            if exit.changed().await.is_err() {
                // The supervisor stopped: after publishing the exit, or because an attached
                // plugin was detached (it lives on). Never spin on a closed channel.
                let published = exit.borrow().clone();
                return match published {
                    Some(info) => info,
                    None => std::future::pending().await,
                };
            }
        }
    }

    /// Turns a failed call's status into one that says the plugin died (with its exit status
    /// and last stderr lines) when it did; other statuses pass unchanged.
    pub async fn explain(&self, status: Status) -> Status {
        if let Some(info) = self.exited() {
            return Status::unavailable(format!("{info} (call failed: {})", status.message()));
        }
        // Only transport failures (Unavailable, or a status tonic made from a local error, which
        // keeps that error as its source) may be the plugin dying; a status the plugin sent,
        // such as a Go plugin's plain-error `Unknown`, passes at once.
        let transport = status.code() == tonic::Code::Unavailable
            || std::error::Error::source(&status).is_some();
        if !transport {
            return status;
        }
        // A connection error can race the exit notification by a little.
        let exit = tokio::time::timeout(Duration::from_millis(500), self.wait()).await;
        match exit {
            Ok(info) => Status::unavailable(format!("{info} (call failed: {})", status.message())),
            Err(_) => status,
        }
    }

    /// Checks the plugin's health service (`grpc.health.v1`, service `plugin`).
    pub async fn ping(&self) -> Result<(), Status> {
        let mut health = tonic_health::pb::health_client::HealthClient::new(self.channel.clone());
        let response = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: "plugin".to_owned(),
            })
            .await?
            .into_inner();
        if response.status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        {
            Ok(())
        } else {
            Err(Status::unavailable(format!(
                "plugin health status is {}",
                response.status
            )))
        }
    }

    /// Stops the plugin: closes the broker, calls `GRPCController/Shutdown`, waits up to the
    /// kill grace for the process to exit, then SIGKILLs it. Always reaps the process.
    pub async fn kill(mut self) -> ExitInfo {
        self.broker.close();
        if self.exited().is_none() {
            let mut controller = GrpcControllerClient::new(self.channel.clone());
            // The plugin usually drops the connection while answering; the result does not matter.
            let _ = tokio::time::timeout(self.kill_grace, controller.shutdown(Empty {})).await;
        }
        let graceful = tokio::time::timeout(self.kill_grace, self.wait()).await;
        if let Some(muxer) = self.broker.muxer() {
            muxer.close();
        }
        if graceful.is_err() {
            tracing::warn!(pid = ?self.pid, "plugin failed to exit gracefully");
            if let Some(kill) = self.kill_switch.take() {
                let _ = kill.send(());
            }
        }
        self.wait().await
    }
}

impl Drop for PluginClient {
    fn drop(&mut self) {
        // A client dropped without `kill` still must not leave the process running, unless the
        // plugin manages its own lifetime (attached in debug mode).
        self.broker.close();
        if let Some(muxer) = self.broker.muxer() {
            muxer.close();
        }
        if let Some(kill) = self.kill_switch.take()
            && !self.self_managed
        {
            let _ = kill.send(());
        }
    }
}

/// Options for [`PluginClient::attach`].
#[derive(Default)]
pub struct AttachOptions {
    /// Where the plugin's forwarded stdout goes (default: discarded).
    pub sync_stdout: Option<SyncWriter>,
    /// Where the plugin's forwarded stderr goes (default: discarded).
    pub sync_stderr: Option<SyncWriter>,
    /// Directory for the unix sockets this host creates for brokered connections.
    pub unix_socket_dir: Option<PathBuf>,
    /// How long `kill` waits after `Shutdown` before SIGKILL (2 s when zero).
    pub kill_grace: Duration,
}

impl std::fmt::Debug for AttachOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
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
    exit: watch::Sender<Option<ExitInfo>>,
) {
    let gone = || {
        Some(ExitInfo {
            status: None,
            stderr_tail: Vec::new(),
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
                let _ = exit.send(gone());
                return;
            }
            () = tokio::time::sleep(Duration::from_secs(1)) => {
                if !process_exists(pid) {
                    let _ = exit.send(gone());
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
        let channel = transport::dial(&line.network.to_string(), &line.address, client_tls).await?;
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

/// Owns the child: reaps it when it exits (publishing how) or kills it when told to.
async fn supervise(
    mut child: Child,
    kill: tokio::sync::oneshot::Receiver<()>,
    exit: watch::Sender<Option<ExitInfo>>,
    tail: Arc<Mutex<VecDeque<String>>>,
    stderr_done: tokio::task::JoinHandle<()>,
    socket_dir: Option<SocketDir>,
) {
    let status = tokio::select! {
        status = child.wait() => status,
        _ = kill => {
            let _ = child.start_kill();
            child.wait().await
        }
    };
    drop(socket_dir);
    // The plugin has exited, so its stderr ends; wait for the last lines to be parsed.
    let _ = tokio::time::timeout(STDERR_DRAIN, stderr_done).await;
    let stderr_tail = tail
        .lock()
        .expect("stderr tail lock")
        .iter()
        .cloned()
        .collect();
    match status {
        Ok(status) => {
            if status.success() {
                tracing::info!(%status, "plugin process exited");
            } else {
                tracing::error!(%status, "plugin process exited");
            }
            let _ = exit.send(Some(ExitInfo {
                status: Some(status),
                stderr_tail,
            }));
        }
        Err(err) => {
            tracing::error!(error = %err, "waiting for the plugin process failed");
            // Publish anyway, so that nobody waits for an exit that will never be reported.
            let _ = exit.send(Some(ExitInfo {
                status: None,
                stderr_tail,
            }));
        }
    }
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

/// The plugin's private socket directory (`PLUGIN_UNIX_SOCKET_DIR`), as go-plugin creates one
/// for `RunnerFunc` hosts: `plugin-dir<random>` (mode 0700) inside the directory the plugin would
/// otherwise use (its `PLUGIN_UNIX_SOCKET_DIR`, else `TMPDIR`, else `/tmp`). Removed with its
/// contents when dropped.
#[derive(Debug)]
struct SocketDir(PathBuf);

impl SocketDir {
    /// `None` (the plugin then uses the base directory itself) if it cannot be created.
    fn create(env: &[(String, String)]) -> Option<SocketDir> {
        use std::os::unix::fs::DirBuilderExt;
        let var = |name: &str| {
            env.iter()
                .rev()
                .find(|(key, value)| key == name && !value.is_empty())
                .map(|(_, value)| PathBuf::from(value))
        };
        let base = var(super::env::PLUGIN_UNIX_SOCKET_DIR)
            .or_else(|| var("TMPDIR"))
            .unwrap_or_else(|| PathBuf::from("/tmp"));
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
