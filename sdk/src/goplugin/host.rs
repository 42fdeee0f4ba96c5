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
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tonic::Status;
use tonic::transport::Channel;

use super::broker::{Broker, BrokerTls};
use super::env::{ProtocolEnv, merge_env};
use super::handshake::{HandshakeConfig, HandshakeError, HandshakeLine, HostExpectations};
use super::hclog::{LogEntry, LogSink, StderrPump, TracingSink, plugin_log_name};
use super::tls::{self, Identity, PinnedCert, TlsError};
use super::transport::{self, DialError, ListenSpec, SocketOptions};
use crate::bridge::MAX_MESSAGE_SIZE;
use crate::proto::plugin::Empty;
use crate::proto::plugin::grpc_controller_client::GrpcControllerClient;
use crate::proto::plugin::grpc_stdio_client::GrpcStdioClient;
use crate::proto::plugin::stdio_data::Channel as StdioChannel;

/// How many of the plugin's last stderr lines are kept for crash reports.
const STDERR_TAIL: usize = 20;

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
    /// On Linux, kill the plugin with SIGKILL if this process dies (SPIRE does).
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
    #[error("{source}{}", tail_suffix(.stderr_tail))]
    Handshake {
        /// go-plugin's error.
        source: HandshakeError,
        /// The plugin's last stderr lines.
        stderr_tail: Vec<String>,
        /// The exit status, if the plugin had exited.
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
    /// The exit status.
    pub status: ExitStatus,
    /// The plugin's last stderr lines.
    pub stderr_tail: Vec<String>,
}

impl std::fmt::Display for ExitInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "plugin process exited ({}){}",
            self.status,
            tail_suffix(&self.stderr_tail)
        )
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
        let host_env: Vec<(String, String)> = std::env::vars().collect();
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

        let stdout = child.stdout.take().expect("stdout is piped");
        let mut stdout = BufReader::new(stdout).lines();
        let expectations = HostExpectations::grpc(config.versions.iter().copied());
        let first = tokio::select! {
            line = stdout.next_line() => Ok(line),
            _ = tokio::time::sleep(config.start_timeout) => Err(HandshakeError::StartTimeout),
        };
        let parsed = match first {
            Ok(Ok(Some(line))) => HandshakeLine::parse(&line, &expectations),
            Ok(Ok(None)) | Ok(Err(_)) => Err(HandshakeError::ExitedBeforeHandshake),
            Err(err) => Err(err),
        };
        let line = match parsed {
            Ok(line) => line,
            Err(source) => {
                let _ = child.start_kill();
                let exit = child.wait().await.ok();
                // The plugin is gone, so stderr reaches its end and the tail is complete.
                let _ = stderr_done.await;
                let stderr_tail = tail
                    .lock()
                    .expect("stderr tail lock")
                    .iter()
                    .cloned()
                    .collect();
                return Err(StartError::Handshake {
                    source,
                    stderr_tail,
                    exit,
                });
            }
        };
        // Lines after the handshake are read and discarded, as go-plugin does.
        tokio::spawn(async move { while let Ok(Some(_)) = stdout.next_line().await {} });

        let result = connect(&mut config, &line, identity.as_ref()).await;
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
        tokio::spawn(supervise(child, kill_rx, exit_tx, tail, stderr_done));

        Ok(PluginClient {
            channel,
            negotiated_version: line.app_version,
            broker,
            handshake: line,
            pid,
            exit,
            kill_switch: Some(kill_switch),
            kill_grace: config.kill_grace,
        })
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
                // The supervisor is gone only after publishing the exit.
                if let Some(info) = exit.borrow().clone() {
                    return info;
                }
            }
        }
    }

    /// Turns a failed call's status into one that says the plugin died (with its exit status
    /// and last stderr lines) when it did; other statuses pass unchanged.
    pub async fn explain(&self, status: Status) -> Status {
        if status.code() != tonic::Code::Unavailable && status.code() != tonic::Code::Unknown {
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
        // A client dropped without `kill` still must not leave the process running.
        self.broker.close();
        if let Some(kill) = self.kill_switch.take() {
            let _ = kill.send(());
        }
    }
}

/// Dials the plugin, starts the broker and the stdio stream.
async fn connect(
    config: &mut ClientConfig,
    line: &HandshakeLine,
    identity: Option<&Identity>,
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
    let channel = transport::dial(
        &line.network.to_string(),
        &line.address,
        tls.as_ref().map(|t| t.client.clone()),
    )
    .await?;
    let sockets = SocketOptions {
        unix_dir: config.unix_socket_dir.clone(),
        unix_group: None,
    };
    let broker = Broker::new(ListenSpec::Unix, sockets, tls);
    broker
        .run_client(channel.clone())
        .map_err(StartError::Broker)?;
    spawn_stdio(
        channel.clone(),
        config.sync_stdout.take(),
        config.sync_stderr.take(),
    );
    Ok((channel, broker))
}

/// Streams the plugin's forwarded stdio into the sinks; a plugin without the service is fine.
fn spawn_stdio(channel: Channel, mut stdout: Option<SyncWriter>, mut stderr: Option<SyncWriter>) {
    tokio::spawn(async move {
        let mut client = GrpcStdioClient::new(channel).max_decoding_message_size(MAX_MESSAGE_SIZE);
        let mut stream = match client.stream_stdio(()).await {
            Ok(response) => response.into_inner(),
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
) {
    let status = tokio::select! {
        status = child.wait() => status,
        _ = kill => {
            let _ = child.start_kill();
            child.wait().await
        }
    };
    // The plugin has exited, so its stderr ends; wait for the last lines to be parsed.
    let _ = tokio::time::timeout(Duration::from_secs(1), stderr_done).await;
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
                status,
                stderr_tail,
            }));
        }
        Err(err) => tracing::error!(error = %err, "waiting for the plugin process failed"),
    }
}

/// Hashes the binary with SHA-256 and compares in constant time.
async fn verify_checksum(cmd: &Path, expected: &[u8; 32]) -> Result<(), StartError> {
    use sha2::Digest;
    let bytes = tokio::fs::read(cmd).await.map_err(StartError::ChecksumIo)?;
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
