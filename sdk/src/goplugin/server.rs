//! The plugin side of go-plugin: [`PluginServer`] serves a Rust plugin to any go-plugin host
//! (SPIRE, Terraform-class tools, Vault, Nomad…), following go-plugin's `Serve` step by step:
//! cookie check, version negotiation, listener, AutoMTLS, the protocol services (health,
//! controller, broker, stdio, optional reflection), the handshake line, SIGINT ignored, and exit
//! on `GRPCController/Shutdown`.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tonic::service::RoutesBuilder;
use tonic::{Request, Response, Status};

use super::broker::{Broker, BrokerTls};
use super::env::{EnvError, PluginEnv};
use super::handshake::{
    CORE_PROTOCOL_VERSION, CookieError, HandshakeConfig, HandshakeLine, Network, Protocol,
    negotiate_version,
};
use super::mux::{MuxError, Muxer};
use super::reattach::{ReattachAddr, ReattachConfig};
use super::stdio::{Capture, StdioService};
use super::tls::{self, Identity, PinnedCert, TlsError};
use super::transport::{ListenError, ListenSpec, Listener, SocketOptions};
use crate::bridge::{BridgedServer, MAX_MESSAGE_SIZE};
use crate::proto::plugin::Empty;
use crate::proto::plugin::grpc_controller_server::{GrpcController, GrpcControllerServer};

/// How long in-flight calls may finish after `Shutdown` before the server is dropped; well
/// inside go-plugin's 2 s grace period.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(100);

/// What the services of one protocol version get to build themselves.
#[derive(Debug, Clone)]
pub struct ServeContext {
    /// This side's broker, for extra connections with the host: `dial` an ID the host accepted,
    /// or serve one the host will dial, with [`Broker::accept_and_serve`] (keep the returned
    /// [`BrokeredServer`](super::broker::BrokeredServer) and stop it when done) or with
    /// [`Broker::accept`] and your own server on
    /// [`BrokerListener::incoming`](super::broker::BrokerListener::incoming). Under AutoMTLS
    /// both use the main connection's certificates, as go-plugin does.
    pub broker: Broker,
    /// The negotiated app protocol version.
    pub version: u32,
}

type ServicesFn = Box<dyn FnOnce(&ServeContext) -> Vec<BridgedServer> + Send>;

/// A plugin ready to be served: its handshake and, per app protocol version, its services.
///
/// ```no_run
/// # use spire_plugin_sdk::goplugin::{HandshakeConfig, PluginServer};
/// # async fn run() {
/// let handshake = HandshakeConfig::new(1, "MY_PLUGIN", "hello");
/// PluginServer::new(handshake)
///     .version(1, |_ctx| vec![/* MyServiceBridge::bridged(MyImpl) */])
///     .serve_or_exit()
///     .await;
/// # }
/// ```
pub struct PluginServer {
    handshake: HandshakeConfig,
    versions: BTreeMap<u32, ServicesFn>,
    tcp: bool,
    capture_stdio: bool,
    debug: bool,
    reflection: Vec<&'static [u8]>,
}

impl std::fmt::Debug for PluginServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginServer")
            .field("handshake", &self.handshake)
            .field("versions", &self.versions.keys().collect::<Vec<_>>())
            .field("tcp", &self.tcp)
            .finish_non_exhaustive()
    }
}

/// Why serving stopped before or instead of a clean shutdown.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The cookie check failed; `Display` is go-plugin's exact text.
    #[error(transparent)]
    Cookie(#[from] CookieError),
    /// The plugin's services are misdeclared (e.g. SPIRE's
    /// `spire::plugin::DeclarationError`); nothing was served.
    #[error("the plugin's services are misdeclared: {0}")]
    Services(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The plugin declared no protocol version.
    #[error("the plugin serves no protocol version: call PluginServer::version")]
    NoVersions,
    /// A protocol variable is unusable (port range).
    #[error("plugin init error: {0}")]
    Env(#[from] EnvError),
    /// The listener could not be created.
    #[error("plugin init error: {0}")]
    Listen(#[from] ListenError),
    /// `PLUGIN_CLIENT_CERT` is malformed, or our certificate could not be made.
    #[error("plugin init error: AutoMTLS: {0}")]
    Tls(#[from] TlsError),
    /// Writing the handshake line or capturing stdio failed.
    #[error("plugin init error: {0}")]
    Io(#[from] std::io::Error),
    /// The gRPC server failed.
    #[error("plugin server error: {0}")]
    Serve(#[from] tonic::transport::Error),
    /// Multiplexed (`PLUGIN_MULTIPLEX_GRPC=true`): the yamux session could not be set up or
    /// failed.
    #[error("plugin server error: {0}")]
    Mux(#[from] MuxError),
}

impl ServeError {
    /// The exit status a plugin process should end with: 1, as go-plugin uses for a failed
    /// cookie check; we use it for every init failure too (a Go plugin exits 0 there, which
    /// hides the failure from scripts).
    pub fn exit_code(&self) -> i32 {
        1
    }
}

impl PluginServer {
    /// A plugin with this handshake and no services yet.
    pub fn new(handshake: HandshakeConfig) -> PluginServer {
        PluginServer {
            handshake,
            versions: BTreeMap::new(),
            tcp: false,
            capture_stdio: true,
            debug: false,
            reflection: Vec::new(),
        }
    }

    /// Serves `services` when the host negotiates app protocol `version` (go-plugin's
    /// `VersionedPlugins`). The closure runs once, after negotiation.
    pub fn version(
        mut self,
        version: u32,
        services: impl FnOnce(&ServeContext) -> Vec<BridgedServer> + Send + 'static,
    ) -> PluginServer {
        self.versions.insert(version, Box::new(services));
        self
    }

    /// Listens on loopback TCP within `PLUGIN_MIN_PORT..=PLUGIN_MAX_PORT` instead of a unix
    /// socket (what a Go plugin does on Windows).
    pub fn tcp(mut self, enable: bool) -> PluginServer {
        self.tcp = enable;
        self
    }

    /// Whether to forward what the process writes to fds 1 and 2 after the handshake over
    /// `GRPCStdio` (default: yes). Turn it off when serving inside a test process.
    pub fn capture_stdio(mut self, enable: bool) -> PluginServer {
        self.capture_stdio = enable;
        self
    }

    /// Serves gRPC reflection (v1 and v1alpha) for the services in this encoded
    /// `FileDescriptorSet`; may be called several times.
    pub fn reflection(mut self, file_descriptor_set: &'static [u8]) -> PluginServer {
        self.reflection.push(file_descriptor_set);
        self
    }

    /// [`serve`](Self::serve), then end the process: status 0 after `Shutdown`, otherwise the
    /// error on stderr (for a failed cookie check, go-plugin's exact text) and status 1.
    pub async fn serve_or_exit(self) -> ! {
        match self.serve().await {
            Ok(()) => std::process::exit(0),
            Err(err) => {
                let mut stderr = super::stdio::log_writer();
                let _ = match &err {
                    ServeError::Cookie(cookie) => write!(stderr, "{cookie}"),
                    other => writeln!(stderr, "{other}"),
                };
                std::process::exit(err.exit_code())
            }
        }
    }

    /// Debug mode (go-plugin's test/reattach serving, what Terraform's provider debug mode
    /// uses): no cookie check, no host environment, the highest version, no stdio capture; instead
    /// of the handshake line, one JSON line with the [`ReattachConfig`] a host passes to
    /// [`PluginClient::attach`](super::host::PluginClient::attach). Ctrl-C stops it.
    pub fn debug(mut self, enable: bool) -> PluginServer {
        self.debug = enable;
        self
    }

    /// Serves until the host calls `GRPCController/Shutdown` (or the server fails). The socket
    /// file is removed before this returns.
    pub async fn serve(mut self) -> Result<(), ServeError> {
        if self.versions.is_empty() {
            return Err(ServeError::NoVersions);
        }
        let env = if self.debug {
            let all: Vec<String> = self.versions.keys().map(u32::to_string).collect();
            PluginEnv {
                protocol_versions: Some(all.join(",")),
                ..PluginEnv::default()
            }
        } else {
            self.handshake.check_cookie(super::env::process_lookup)?;
            PluginEnv::from_process()
        };
        let supported = self.versions.keys().copied().collect();
        let negotiated = negotiate_version(
            &supported,
            self.handshake.protocol_version,
            env.protocol_versions.as_deref(),
        );
        for warning in &negotiated.warnings {
            let _ = write!(super::stdio::log_writer(), "{warning}");
        }
        let version = negotiated.version;

        let spec = if self.tcp {
            ListenSpec::Tcp(env.port_range()?)
        } else {
            ListenSpec::Unix
        };
        let sockets = SocketOptions {
            unix_dir: env.unix_socket_dir.clone().map(Into::into),
            unix_group: env.unix_socket_group.clone(),
        };
        let auto_tls = match &env.client_cert_pem {
            Some(pem) => {
                let host = PinnedCert::from_pem(pem)?;
                let identity = Identity::generate()?;
                let tls = BrokerTls {
                    server: tls::server_config(&identity, &host)?,
                    client: tls::client_config(&identity, &host)?,
                };
                Some((identity, tls))
            }
            None => None,
        };
        let listener = Listener::bind(&spec, &sockets)?;
        // The listener's own guard removes the file from a spawned task, which may never run
        // once the caller exits the process; remove it here too, before returning.
        let socket_file = listener.socket_path().map(std::path::Path::to_path_buf);
        let broker_tls = auto_tls.as_ref().map(|(_, tls)| tls.clone());
        let muxer = env.multiplex_enabled.then(Muxer::new);
        let broker = match &muxer {
            Some(muxer) => Broker::multiplexed(spec, sockets, broker_tls, muxer.clone()),
            None => Broker::new(spec, sockets, broker_tls),
        };
        let shutdown = CancellationToken::new();

        let mut routes = RoutesBuilder::default();
        let (health, health_service) = tonic_health::server::health_reporter();
        health
            .set_service_status("plugin", tonic_health::ServingStatus::Serving)
            .await;
        routes.add_service(health_service);
        routes.add_service(
            GrpcControllerServer::new(Controller {
                shutdown: shutdown.clone(),
            })
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE),
        );
        routes.add_service(broker.service());
        if !self.reflection.is_empty() {
            add_reflection(&mut routes, &self.reflection);
        }
        let services = self
            .versions
            .remove(&version)
            .expect("negotiation picks a served version");
        let context = ServeContext {
            broker: broker.clone(),
            version,
        };
        for service in services(&context) {
            service.register(&mut routes);
        }

        // Before the handshake: a host may signal as soon as it has read the line.
        if self.debug {
            stop_on_sigint(shutdown.clone());
        } else {
            ignore_sigint();
        }
        let line = HandshakeLine {
            core_version: CORE_PROTOCOL_VERSION,
            app_version: version,
            network: Network::from_field(listener.network()),
            address: listener.address(),
            protocol: Protocol::Grpc,
            server_cert: auto_tls
                .as_ref()
                .map(|(identity, _)| identity.cert_der().to_vec()),
            // Announced whenever the variable is set, even to `false`, as go-plugin does.
            multiplex: env.multiplex_announced,
        };
        {
            let announcement = if self.debug {
                let reattach = ReattachConfig {
                    protocol: Protocol::Grpc,
                    protocol_version: version,
                    addr: ReattachAddr {
                        network: line.network.clone(),
                        string: line.address.clone(),
                    },
                    pid: std::process::id(),
                    test: true,
                };
                let json = serde_json::to_string(&reattach).expect("reattach config serializes");
                format!("{json}\n")
            } else {
                line.to_line()
            };
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(announcement.as_bytes())?;
            stdout.flush()?;
        }
        let capture = if self.capture_stdio && !self.debug {
            Capture::start()?
        } else {
            Capture::disabled()
        };
        routes.add_service(StdioService::server(capture));

        let main_tls = auto_tls.map(|(_, tls)| tls.server);
        let (incoming, mut mux_ended) = match &muxer {
            Some(muxer) => {
                let plugin_mux = muxer.serve_plugin(listener, main_tls);
                (plugin_mux.incoming, Some(plugin_mux.ended))
            }
            None => (listener.incoming(main_tls), None),
        };
        let stopping = shutdown.clone();
        let server = super::panic::server().serve_with_incoming_shutdown(
            routes.routes().prepare(),
            incoming,
            stopping.cancelled_owned(),
        );
        tokio::pin!(server);
        let result = tokio::select! {
            // Multiplexed, serving ends with the session, as a Go plugin's does. First, so that
            // its outcome wins over the server ending for lack of connections.
            biased;
            ended = async {
                match mux_ended.as_mut() {
                    Some(ended) => ended.await.unwrap_or(Ok(())),
                    None => std::future::pending().await,
                }
            } => {
                mux_ended = None;
                match ended {
                    // After Shutdown the host closes its connection: a broken session then is
                    // the orderly end, not a failure (the plugin exits 0, as a Go plugin does).
                    Err(err) if shutdown.is_cancelled() => {
                        tracing::debug!(error = %err, "yamux session ended after Shutdown");
                        Ok(())
                    }
                    other => other.map_err(ServeError::Mux),
                }
            }
            result = &mut server => result.map_err(ServeError::from),
            () = async {
                shutdown.cancelled().await;
                broker.close();
                tokio::time::sleep(SHUTDOWN_GRACE).await;
                // The host still holds a connection (or a call is still running): stop anyway.
                // A go-plugin host closes its connection right after Shutdown, so this is rare.
                tracing::warn!(
                    grace = ?SHUTDOWN_GRACE,
                    "shutdown grace ran out with connections still open; stopping anyway"
                );
            } => Ok(()),
        };
        // Multiplexed: after Shutdown the host closes the session itself, right after the reply.
        // Give it that moment (within the grace) before closing ours, so that closing first does
        // not reset the connection under the host's last frames ("connection reset by peer").
        if shutdown.is_cancelled()
            && let Some(ended) = mux_ended.as_mut()
        {
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, ended).await;
        }
        broker.close();
        if let Some(muxer) = &muxer {
            muxer.close();
        }
        if let Some(path) = socket_file {
            let _ = std::fs::remove_file(path);
        }
        result
    }
}

fn add_reflection(routes: &mut RoutesBuilder, sets: &[&'static [u8]]) {
    let mut v1 = tonic_reflection::server::Builder::configure();
    let mut v1alpha = tonic_reflection::server::Builder::configure();
    for set in sets {
        v1 = v1.register_encoded_file_descriptor_set(set);
        v1alpha = v1alpha.register_encoded_file_descriptor_set(set);
    }
    match v1.build_v1() {
        Ok(service) => {
            routes.add_service(service);
        }
        Err(err) => tracing::warn!(error = %err, "gRPC reflection (v1) not served"),
    }
    match v1alpha.build_v1alpha() {
        Ok(service) => {
            routes.add_service(service);
        }
        Err(err) => tracing::warn!(error = %err, "gRPC reflection (v1alpha) not served"),
    }
}

/// In debug mode the developer's Ctrl-C stops the plugin.
fn stop_on_sigint(shutdown: CancellationToken) {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()) {
        Ok(mut signals) => {
            tokio::spawn(async move {
                if signals.recv().await.is_some() {
                    shutdown.cancel();
                }
            });
        }
        Err(err) => tracing::warn!(error = %err, "could not install the SIGINT handler"),
    }
}

/// A Ctrl-C in a terminal reaches the whole process group; the host, not the terminal, decides
/// when a plugin stops, so SIGINT is logged and ignored.
fn ignore_sigint() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()) {
        Ok(mut signals) => {
            tokio::spawn(async move {
                while signals.recv().await.is_some() {
                    tracing::trace!("plugin received interrupt signal, ignoring");
                }
            });
        }
        Err(err) => tracing::warn!(error = %err, "could not install the SIGINT handler"),
    }
}

/// `plugin.GRPCController`: `Shutdown` stops the server; `serve` then returns.
#[derive(Debug)]
struct Controller {
    shutdown: CancellationToken,
}

#[tonic::async_trait]
impl GrpcController for Controller {
    async fn shutdown(&self, _request: Request<Empty>) -> Result<Response<Empty>, Status> {
        self.shutdown.cancel();
        Ok(Response::new(Empty {}))
    }
}
