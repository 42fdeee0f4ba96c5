//! A test harness for Rust SPIRE plugins: serve a [`Plugin`] inside the test process with the
//! test's own host services ([`serve`]), or load a built plugin binary through the real
//! go-plugin handshake ([`load_binary`]).
//!
//! [`serve`] runs the same code a plugin binary runs under SPIRE — the plugin's services, SPIRE's
//! private `Init` service and go-plugin's broker — on a unix socket in a private temporary
//! directory, without a child process, cookie check, or stdio capture. The test plays SPIRE:
//! it serves its [`OfferedHostServices`] on broker ID 1, calls `Init` with their names and, unless told
//! not to, `Configure` with a trust domain and HCL. [`InProcess::close`] calls `Deinit` (so the
//! plugin's [`Plugin::on_close`] hook runs), stops the server and removes the directory.
//!
//! ```
//! use spire_plugin_sdk::proto::spire::plugin::agent::workloadattestor::v1::{
//!     AttestReferenceRequest, AttestReferenceResponse, AttestRequest, AttestResponse,
//!     WorkloadAttestorBridge, workload_attestor_server::WorkloadAttestor,
//! };
//! use spire_plugin_sdk::spire::plugin::Plugin;
//! use spire_plugin_sdk::spire::plugintest::{self, Options};
//! use tonic::{Request, Response, Status};
//!
//! /// Gives every workload `pid:<pid>`.
//! struct PidAttestor;
//!
//! #[tonic::async_trait]
//! impl WorkloadAttestor for PidAttestor {
//!     async fn attest(
//!         &self,
//!         request: Request<AttestRequest>,
//!     ) -> Result<Response<AttestResponse>, Status> {
//!         let pid = request.into_inner().pid;
//!         Ok(Response::new(AttestResponse { selector_values: vec![format!("pid:{pid}")] }))
//!     }
//!
//!     async fn attest_reference(
//!         &self,
//!         _request: Request<AttestReferenceRequest>,
//!     ) -> Result<Response<AttestReferenceResponse>, Status> {
//!         Err(Status::unimplemented("not supported"))
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let plugin = Plugin::new(WorkloadAttestorBridge::bridged(PidAttestor));
//! // No Config service here, so nothing is configured; a plugin with one gets
//! // `Options::new().configuration("key = \"value\"")`.
//! let served = plugintest::serve(plugin, Options::new()).await?;
//! assert_eq!(
//!     served.service_names(),
//!     ["spire.plugin.agent.workloadattestor.v1.WorkloadAttestor"]
//! );
//! let mut attestor = served.client::<WorkloadAttestorBridge>()?;
//! let answer = attestor.attest(AttestRequest { pid: 42 }).await?.into_inner();
//! assert_eq!(answer.selector_values, ["pid:42"]);
//! served.close().await?;
//! # Ok(()) }
//! ```
//!
//! A plugin that needs a host service gets the test's implementation through
//! [`Options::host_services`] (e.g. `OfferedHostServices::new().with(MetricsBridge::bridged(fake))`);
//! when a [`Requirement::Required`](super::plugin::Requirement::Required) one is missing,
//! [`serve`] fails with [`PluginTestError::Init`] (`FailedPrecondition`, naming the service).

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::service::RoutesBuilder;
use tonic::transport::Channel;
use tonic::{Code, Status};

pub use super::catalog::OfferedHostServices;
use super::catalog::{
    self, CatalogError, LoadOptions, LoadedPlugin, PluginData, PluginDeclaration,
};
use super::plugin::{HOST_SERVICE_BROKER_ID, Plugin, ServeError};
use crate::bridge::{ClientBridge, ServiceBridge};
use crate::goplugin::broker::Broker;
use crate::goplugin::transport::{self, ListenSpec, Listener, SocketOptions};
use crate::proto::spire::service::common::config::v1::{
    ConfigBridge, ConfigureRequest, CoreConfiguration,
};
use crate::proto::spire::service::private::init::v1::{DeinitRequest, InitBridge, InitRequest};

/// The trust domain [`Options::new`] configures with.
pub const DEFAULT_TRUST_DOMAIN: &str = "example.org";

/// How [`serve`] sets the plugin up.
#[derive(Debug)]
pub struct Options {
    name: Option<String>,
    host_services: OfferedHostServices,
    trust_domain: String,
    configuration: Option<String>,
    call_timeout: Duration,
    temp_dir: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options::new()
    }
}

impl Options {
    /// No host services; `Configure` with trust domain [`DEFAULT_TRUST_DOMAIN`] and empty HCL
    /// when the plugin serves `Config` (as SPIRE does for a plugin without `plugin_data`); a
    /// one-minute limit per call.
    pub fn new() -> Options {
        Options {
            name: None,
            host_services: OfferedHostServices::new(),
            trust_domain: DEFAULT_TRUST_DOMAIN.to_owned(),
            configuration: Some(String::new()),
            call_timeout: Duration::from_secs(60),
            temp_dir: None,
        }
    }

    /// Where the private socket directory is made (default: the system temp dir).
    pub fn temp_dir(mut self, parent: impl Into<PathBuf>) -> Options {
        self.temp_dir = Some(parent.into());
        self
    }

    /// The plugin's name in error messages (default: its type, e.g. `KeyManager`).
    pub fn name(mut self, name: impl Into<String>) -> Options {
        self.name = Some(name.into());
        self
    }

    /// The host services offered to the plugin on broker ID 1 and named in `Init`.
    pub fn host_services(mut self, host_services: OfferedHostServices) -> Options {
        self.host_services = host_services;
        self
    }

    /// The trust domain sent in `Configure` (bare name, e.g. `example.org`).
    pub fn trust_domain(mut self, trust_domain: impl Into<String>) -> Options {
        self.trust_domain = trust_domain.into();
        self
    }

    /// The HCL sent in `Configure` (the content of SPIRE's `plugin_data`).
    pub fn configuration(mut self, hcl: impl Into<String>) -> Options {
        self.configuration = Some(hcl.into());
        self
    }

    /// Skips `Configure`, to call it from the test with [`InProcess::configure`] or the
    /// `Config` client.
    pub fn skip_configure(mut self) -> Options {
        self.configuration = None;
        self
    }

    /// The limit for each `Init`, `Configure` and `Deinit` call the harness makes.
    pub fn call_timeout(mut self, limit: Duration) -> Options {
        self.call_timeout = limit;
        self
    }
}

/// Why the harness failed. Messages name the plugin and the step.
#[derive(Debug, thiserror::Error)]
pub enum PluginTestError {
    /// The [`Plugin`] is misdeclared (e.g. a host service declared as a plugin service).
    #[error("plugin \"{name}\" cannot be served: {source}")]
    Declaration {
        /// The plugin's name.
        name: String,
        /// What is wrong.
        source: ServeError,
    },
    /// The temporary directory, socket, server or broker could not be set up.
    #[error("plugin \"{name}\": setting up the in-process server failed: {message}")]
    Setup {
        /// The plugin's name.
        name: String,
        /// What failed.
        message: String,
    },
    /// `Init` failed (e.g. `FailedPrecondition` for a required host service not offered).
    #[error("plugin \"{name}\": Init failed: {code:?}: {}", status.message(), code = status.code())]
    Init {
        /// The plugin's name.
        name: String,
        /// The plugin's answer.
        status: Status,
    },
    /// HCL was given but the plugin does not serve `Config`.
    #[error("plugin \"{name}\": cannot be configured: it does not serve {}", ConfigBridge::INFO.full_name)]
    NoConfigInterface {
        /// The plugin's name.
        name: String,
    },
    /// `Configure` failed (e.g. `InvalidArgument` for bad HCL).
    #[error("plugin \"{name}\": Configure failed: {code:?}: {}", status.message(), code = status.code())]
    Configure {
        /// The plugin's name.
        name: String,
        /// The plugin's answer.
        status: Status,
    },
    /// `Deinit` failed.
    #[error("plugin \"{name}\": Deinit failed: {code:?}: {}", status.message(), code = status.code())]
    Deinit {
        /// The plugin's name.
        name: String,
        /// The plugin's answer.
        status: Status,
    },
    /// A client was asked for a service the plugin did not report in `Init`.
    #[error("plugin \"{name}\" does not serve {service} (it serves: {served:?})")]
    NotServed {
        /// The plugin's name.
        name: String,
        /// The service asked for.
        service: &'static str,
        /// What it reported.
        served: Vec<String>,
    },
}

impl PluginTestError {
    /// The plugin's answer, for `Init`, `Configure` and `Deinit` failures (a harness timeout is
    /// `DeadlineExceeded`).
    pub fn status(&self) -> Option<&Status> {
        match self {
            PluginTestError::Init { status, .. }
            | PluginTestError::Configure { status, .. }
            | PluginTestError::Deinit { status, .. } => Some(status),
            _ => None,
        }
    }
}

/// A plugin served in the test process by [`serve`], initialized (and configured unless
/// [`Options::skip_configure`]). Call [`close`](Self::close) at the end; dropping it stops the
/// server without `Deinit`.
#[derive(Debug)]
pub struct InProcess {
    name: String,
    channel: Channel,
    services: Vec<String>,
    trust_domain: String,
    call_timeout: Duration,
    running: Option<Running>,
}

/// What [`InProcess`] must stop.
#[derive(Debug)]
struct Running {
    dir: PathBuf,
    stop: CancellationToken,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
    plugin_broker: Broker,
    host_broker: Broker,
}

impl Running {
    /// Stops everything at once (no waiting); the directory goes last.
    fn abort(&self) {
        self.stop.cancel();
        self.host_broker.close();
        self.plugin_broker.close();
        self.server.abort();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Serves `plugin` inside the test process, offers `options`' host services on broker ID 1,
/// calls `Init` with their names and `Configure` per `options`. Must run inside a Tokio runtime.
///
/// # Errors
///
/// [`PluginTestError`] naming the failed step; everything set up so far is torn down.
pub async fn serve(plugin: Plugin, options: Options) -> Result<InProcess, PluginTestError> {
    let name = options
        .name
        .clone()
        .or_else(|| plugin.plugin_type().map(str::to_owned))
        .unwrap_or_else(|| "plugin".to_owned());
    let setup = |message: String| PluginTestError::Setup {
        name: name.clone(),
        message,
    };
    let dir = make_temp_dir(options.temp_dir.as_deref())
        .map_err(|err| setup(format!("temporary directory: {err}")))?;
    let sockets = SocketOptions {
        unix_dir: Some(dir.clone()),
        unix_group: None,
    };
    let plugin_broker = Broker::new(ListenSpec::Unix, sockets.clone(), None);
    let host_broker = Broker::new(ListenSpec::Unix, sockets.clone(), None);
    let stop = CancellationToken::new();

    let services = match plugin.into_validated_services(plugin_broker.clone()) {
        Ok(services) => services,
        Err(source) => {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(PluginTestError::Declaration { name, source });
        }
    };
    let listener = match Listener::bind(&ListenSpec::Unix, &sockets) {
        Ok(listener) => listener,
        Err(err) => {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(setup(format!("listening: {err}")));
        }
    };
    let address = listener.address();
    let mut routes = RoutesBuilder::default();
    routes.add_service(plugin_broker.service());
    for service in services {
        service.register(&mut routes);
    }
    let server = tokio::spawn(
        tonic::transport::Server::builder().serve_with_incoming_shutdown(
            routes.routes().prepare(),
            listener.incoming(None),
            stop.clone().cancelled_owned(),
        ),
    );
    let running = Running {
        dir,
        stop,
        server,
        plugin_broker,
        host_broker,
    };
    let mut served = InProcess {
        name,
        channel: Channel::from_static("http://localhost").connect_lazy(),
        services: Vec::new(),
        trust_domain: options.trust_domain.clone(),
        call_timeout: options.call_timeout,
        running: Some(running),
    };
    // From here on, dropping `served` tears everything down.
    served.start(&address, options).await?;
    Ok(served)
}

impl InProcess {
    fn running(&self) -> &Running {
        self.running.as_ref().expect("running until closed")
    }

    fn setup_error(&self, message: String) -> PluginTestError {
        PluginTestError::Setup {
            name: self.name.clone(),
            message,
        }
    }

    async fn start(&mut self, address: &str, options: Options) -> Result<(), PluginTestError> {
        self.channel = transport::dial("unix", address, None)
            .await
            .map_err(|err| self.setup_error(format!("connecting: {err}")))?;
        let (routes, names) = options.host_services.into_parts();
        let running = self.running();
        running
            .host_broker
            .run_client(self.channel.clone())
            .map_err(|status| self.setup_error(format!("broker stream: {}", status.message())))?;
        running
            .host_broker
            .accept_and_serve_routes(HOST_SERVICE_BROKER_ID, routes.routes())
            // Served until `close` (or drop) closes the broker.
            .map(crate::goplugin::broker::BrokeredServer::detach)
            .map_err(|err| self.setup_error(format!("serving host services: {err}")))?;

        let mut init = InitBridge::client(self.channel.clone());
        let request = InitRequest {
            host_service_names: names,
        };
        let response = timed(self.call_timeout, init.init(request))
            .await
            .map_err(|status| PluginTestError::Init {
                name: self.name.clone(),
                status,
            })?;
        self.services = response.plugin_service_names;
        match options.configuration {
            Some(hcl) if hcl.is_empty() && !self.serves(ConfigBridge::INFO.full_name) => Ok(()),
            Some(hcl) => self.configure(hcl).await,
            None => Ok(()),
        }
    }

    /// The plugin's name in messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The full gRPC names the plugin reported in `Init`, plugin service first.
    pub fn service_names(&self) -> &[String] {
        &self.services
    }

    /// Whether the plugin reported `full_name` in `Init`.
    pub fn serves(&self, full_name: &str) -> bool {
        self.services.iter().any(|name| name == full_name)
    }

    /// The private directory holding the plugin's and the brokers' unix sockets; removed by
    /// [`close`](Self::close) (and on drop).
    pub fn socket_dir(&self) -> &Path {
        &self.running().dir
    }

    /// The connection to the plugin, for clients the harness has no bridge for.
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// A typed client for one of the plugin's services, e.g. `client::<KeyManagerBridge>()`.
    ///
    /// # Errors
    ///
    /// [`PluginTestError::NotServed`] when the plugin did not report `B` in `Init`.
    pub fn client<B: ClientBridge>(&self) -> Result<B::Client, PluginTestError> {
        if !self.serves(B::INFO.full_name) {
            return Err(PluginTestError::NotServed {
                name: self.name.clone(),
                service: B::INFO.full_name,
                served: self.services.clone(),
            });
        }
        Ok(B::client(self.channel.clone()))
    }

    /// Calls `Configure` with the trust domain from the [`Options`] and `hcl`.
    ///
    /// # Errors
    ///
    /// [`PluginTestError::NoConfigInterface`], or [`PluginTestError::Configure`] with the
    /// plugin's status.
    pub async fn configure(&self, hcl: impl Into<String>) -> Result<(), PluginTestError> {
        if !self.serves(ConfigBridge::INFO.full_name) {
            return Err(PluginTestError::NoConfigInterface {
                name: self.name.clone(),
            });
        }
        let mut config = ConfigBridge::client(self.channel.clone());
        let request = ConfigureRequest {
            core_configuration: Some(CoreConfiguration {
                trust_domain: self.trust_domain.clone(),
            }),
            hcl_configuration: hcl.into(),
        };
        timed(self.call_timeout, config.configure(request))
            .await
            .map(drop)
            .map_err(|status| PluginTestError::Configure {
                name: self.name.clone(),
                status,
            })
    }

    /// Calls `Deinit` (running the plugin's close hook), then stops the server and the brokers
    /// and removes the temporary directory with its sockets. Everything is stopped even when
    /// `Deinit` fails.
    ///
    /// # Errors
    ///
    /// [`PluginTestError::Deinit`] with the plugin's status.
    pub async fn close(mut self) -> Result<(), PluginTestError> {
        let mut init = InitBridge::client(self.channel.clone());
        let deinit = timed(self.call_timeout, init.deinit(DeinitRequest {})).await;
        let running = self.running.take().expect("running until closed");
        running.stop.cancel();
        running.host_broker.close();
        running.plugin_broker.close();
        // A graceful stop would wait for our own open connection: end the server outright.
        running.server.abort();
        let _ = running.server.await;
        let _ = std::fs::remove_dir_all(&running.dir);
        deinit.map(drop).map_err(|status| PluginTestError::Deinit {
            name: self.name.clone(),
            status,
        })
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            running.abort();
        }
    }
}

/// Makes a call, turning no answer within `limit` into `DeadlineExceeded`.
async fn timed<T>(
    limit: Duration,
    call: impl Future<Output = Result<tonic::Response<T>, Status>>,
) -> Result<T, Status> {
    match tokio::time::timeout(limit, call).await {
        Ok(result) => result.map(tonic::Response::into_inner),
        Err(_) => Err(Status::new(
            Code::DeadlineExceeded,
            format!("no answer within {limit:?}"),
        )),
    }
}

/// A fresh private directory under `parent` (else the system temp dir), for the sockets.
fn make_temp_dir(parent: Option<&Path>) -> std::io::Result<PathBuf> {
    let base = parent.map_or_else(std::env::temp_dir, Path::to_path_buf);
    let mut last = None;
    for _ in 0..16 {
        let dir = base.join(format!(
            "spire-plugintest-{}-{:08x}",
            std::process::id(),
            fastrand::u32(..)
        ));
        match create_private_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => last = Some(err),
            Err(err) => return Err(err),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free temporary directory name")))
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new().mode(0o700).create(dir)
}

/// Loads the plugin binary at `path` as SPIRE would, through [`catalog::load`]: the real
/// go-plugin handshake (cookie, checksum-less launch), `host_services` on broker ID 1, `Init`,
/// then `Configure` with trust domain [`DEFAULT_TRUST_DOMAIN`] and `hcl` (SPIRE's
/// `plugin_data`; empty skips `Configure` for plugins without `Config`).
///
/// `side_type` is the qualified plugin type, e.g. `agent/WorkloadAttestor` or
/// `server/KeyManager` (as [`ServiceInfo::qualified_type`](crate::bridge::ServiceInfo::qualified_type)
/// prints it). The plugin is named after the binary's file name. Call
/// [`LoadedPlugin::unload`] at the end: it calls `Deinit` and stops the process. In a Cargo
/// integration test, `path` is typically `env!("CARGO_BIN_EXE_<name>")`.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use spire_plugin_sdk::proto::spire::plugin::agent::workloadattestor::v1::WorkloadAttestorBridge;
/// use spire_plugin_sdk::spire::plugintest::{OfferedHostServices, load_binary};
///
/// let plugin = load_binary(
///     "agent/WorkloadAttestor",
///     "target/debug/my-attestor",
///     "selectors = [\"team:blue\"]",
///     OfferedHostServices::new(),
/// )
/// .await?;
/// let _attestor = plugin.client::<WorkloadAttestorBridge>()?;
/// plugin.unload().await;
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// A [`CatalogError`] with SPIRE's texts; `UnknownType` when `side_type` names no plugin type.
pub async fn load_binary(
    side_type: &str,
    path: impl AsRef<Path>,
    hcl: &str,
    host_services: OfferedHostServices,
) -> Result<LoadedPlugin, CatalogError> {
    let path = path.as_ref();
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    let (side, plugin_type) = side_type.split_once('/').unwrap_or(("", side_type));
    let mut decl = PluginDeclaration::new(plugin_type, name, path);
    if !hcl.is_empty() {
        decl.data = PluginData::Inline(hcl.to_owned());
    }
    catalog::load(
        side,
        &decl,
        &LoadOptions::new(DEFAULT_TRUST_DOMAIN),
        host_services,
    )
    .await
}
