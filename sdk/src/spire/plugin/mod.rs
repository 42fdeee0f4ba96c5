//! Serving a Rust SPIRE plugin, the counterpart of upstream's `pluginmain.Serve`: one builder,
//! [`Plugin`], takes the plugin service, extra services (e.g. Config) and the host services the
//! plugin uses, and serves them over go-plugin with SPIRE's handshake (cookie key = value = the
//! plugin type, protocol version 1) and SPIRE's private `Init` service.
//!
//! ```no_run
//! use spire_plugin_sdk::proto::spire::hostservice::common::metrics::v1::MetricsBridge;
//! use spire_plugin_sdk::spire::plugin::{HostServices, Plugin, Requirement};
//! # use spire_plugin_sdk::bridge::BridgedServer;
//! # fn key_manager(_: HostServices) -> BridgedServer { unimplemented!() }
//! # fn config() -> BridgedServer { unimplemented!() }
//!
//! #[tokio::main]
//! async fn main() {
//!     let hosts = HostServices::new();
//!     Plugin::new(key_manager(hosts.clone())) // KeyManagerBridge::bridged(MyKeyManager { hosts, .. })
//!         .service(config()) //                  ConfigBridge::bridged(...)
//!         .host_service::<MetricsBridge>(Requirement::Required)
//!         .host_services(hosts)
//!         .serve_or_exit()
//!         .await
//! }
//! ```
//!
//! What happens, in SPIRE's order (`docs/protocol.md`, "SPIRE"):
//!
//! 1. [`Plugin::serve`] installs the hclog `tracing` subscriber (plugin code logs with
//!    `tracing`; SPIRE shows the lines at their levels, Trace dropped), checks the cookie and
//!    serves go-plugin's protocol services, the plugin's services and `Init`.
//! 2. `Init(host_service_names)`: fails with `FailedPrecondition` when a
//!    [`Requirement::Required`] host service is not offered; otherwise dials the host's broker
//!    ID 1 once (only when there is something to bind), binds a client for every declared and
//!    offered host service into [`HostServices`], and answers with the full gRPC names of the
//!    plugin's services, plugin service first.
//! 3. `Deinit` runs the [`Plugin::on_close`] hook once; its error is logged, not returned (as
//!    upstream does with `io.Closer`).
//!
//! Configuration decoding: [`Configuration`], [`parse_config`], [`ConfigError`]; error-to-status
//! mapping: [`PluginError`], [`ResultExt`].

mod config;
mod host_services;
mod status;

use std::future::Future;
use std::sync::Mutex;

use futures_util::future::BoxFuture;
use tokio::sync::OnceCell;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

pub use self::config::{ConfigError, Configuration, CoreConfig, parse as parse_config};
pub use self::host_services::{HostServices, Requirement};
pub use self::status::{PluginError, ResultExt};
use crate::bridge::{BridgedServer, ClientBridge, Role, ServiceInfo};
use crate::goplugin::{Broker, HandshakeConfig, PluginServer, ServeError, hclog};
use crate::proto::spire::service::private::init::v1::init_server::Init;
use crate::proto::spire::service::private::init::v1::{
    DeinitRequest, DeinitResponse, InitBridge, InitRequest, InitResponse,
};

/// The broker ID SPIRE serves its host services on (`private.HostServiceProviderID`).
pub const HOST_SERVICE_BROKER_ID: u32 = 1;

/// The go-plugin app protocol version of every SPIRE plugin.
pub const PROTOCOL_VERSION: u32 = 1;

/// The stream a server-streaming or bidirectional RPC answers with, for the associated
/// `…Stream` types of the generated service traits: `type MintX509CAAndSubscribeStream =
/// ResponseStream<MintX509caResponse>;`. Build one with `Box::pin(stream)` from any
/// `Stream<Item = Result<T, Status>> + Send + 'static` (e.g. `tokio_stream::iter`, or a
/// `tokio_stream::wrappers::ReceiverStream` fed by a task).
pub type ResponseStream<T> =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send + 'static>>;

type CloseHook = Box<dyn FnOnce() -> BoxFuture<'static, Result<(), String>> + Send>;

/// Why a [`Plugin`]'s declaration cannot be served: a service given in the wrong role, or
/// twice.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeclarationError {
    /// [`Plugin::new`] got a service that is not a SPIRE plugin type.
    #[error(
        "{name} is not a plugin service (role {role:?}); pass e.g. NodeAttestorBridge::bridged"
    )]
    NotAPluginType {
        /// The service's full name.
        name: &'static str,
        /// Its role.
        role: Role,
    },
    /// [`Plugin::service`] got a service that is not an extra plugin service (e.g. Config).
    #[error("{name} cannot be served beside the plugin service (role {role:?})")]
    NotAService {
        /// The service's full name.
        name: &'static str,
        /// Its role.
        role: Role,
    },
    /// [`Plugin::host_service`] named a service that is not a host service.
    #[error("{name} is not a host service (role {role:?})")]
    NotAHostService {
        /// The service's full name.
        name: &'static str,
        /// Its role.
        role: Role,
    },
    /// A service was given twice.
    #[error("service {0} is registered twice")]
    Duplicate(&'static str),
}

/// A SPIRE plugin ready to serve: its plugin service, extra services, declared host services
/// and close hook. See the module docs.
pub struct Plugin {
    plugin: BridgedServer,
    services: Vec<BridgedServer>,
    host_services: Vec<(ServiceInfo, Requirement)>,
    hosts: HostServices,
    close: Option<CloseHook>,
    logging: bool,
    capture_stdio: bool,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("plugin", self.plugin.info())
            .field("services", &self.services)
            .field("host_services", &self.host_services)
            .finish_non_exhaustive()
    }
}

impl Plugin {
    /// A plugin serving `plugin`, the implementation of its type's service (e.g.
    /// `NodeAttestorBridge::bridged(my_attestor)`).
    pub fn new(plugin: BridgedServer) -> Plugin {
        Plugin {
            plugin,
            services: Vec::new(),
            host_services: Vec::new(),
            hosts: HostServices::new(),
            close: None,
            logging: true,
            capture_stdio: true,
        }
    }

    /// Also serves `service` (e.g. `ConfigBridge::bridged(my_config)`); reported by `Init`
    /// after the plugin service, in the order given.
    pub fn service(mut self, service: BridgedServer) -> Plugin {
        self.services.push(service);
        self
    }

    /// Declares host service `B` (e.g. `MetricsBridge`): bound at `Init` when the host offers
    /// it; when it does not and `requirement` is [`Requirement::Required`], `Init` fails.
    pub fn host_service<B: ClientBridge>(mut self, requirement: Requirement) -> Plugin {
        self.host_services.push((B::INFO, requirement));
        self
    }

    /// The handle `Init` binds host-service clients into; give clones of the same handle to
    /// the implementations. Without this call the plugin uses a private handle.
    pub fn host_services(mut self, hosts: HostServices) -> Plugin {
        self.hosts = hosts;
        self
    }

    /// Runs `close` on `Deinit` (once), before SPIRE kills the plugin; an error is logged.
    pub fn on_close<F, Fut, E>(mut self, close: F) -> Plugin
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display + 'static,
    {
        self.close = Some(Box::new(move || {
            let fut = close();
            Box::pin(async move { fut.await.map_err(|err| err.to_string()) })
        }));
        self
    }

    /// Whether [`serve`](Self::serve) installs the hclog `tracing` subscriber (default: yes).
    /// Turn it off when the process installs its own.
    pub fn logging(mut self, enable: bool) -> Plugin {
        self.logging = enable;
        self
    }

    /// Whether to forward fds 1 and 2 to the host (default: yes); see
    /// [`PluginServer::capture_stdio`].
    pub fn capture_stdio(mut self, enable: bool) -> Plugin {
        self.capture_stdio = enable;
        self
    }

    /// The plugin type (`NodeAttestor`, `KeyManager`, …), when the plugin service is one.
    pub fn plugin_type(&self) -> Option<&'static str> {
        self.plugin.info().plugin_type
    }

    /// SPIRE's handshake for this plugin: version 1, cookie key and value = the plugin type.
    ///
    /// # Errors
    ///
    /// [`DeclarationError::NotAPluginType`].
    pub fn handshake(&self) -> Result<HandshakeConfig, DeclarationError> {
        let info = self.plugin.info();
        match (info.role, info.plugin_type) {
            (Role::Plugin, Some(plugin_type)) => Ok(HandshakeConfig::new(
                PROTOCOL_VERSION,
                plugin_type,
                plugin_type,
            )),
            _ => Err(DeclarationError::NotAPluginType {
                name: info.full_name,
                role: info.role,
            }),
        }
    }

    /// The full gRPC names `Init` reports: the plugin service, then the extra services.
    pub fn service_names(&self) -> Vec<String> {
        std::iter::once(&self.plugin)
            .chain(&self.services)
            .map(|service| service.info().full_name.to_owned())
            .collect()
    }

    fn validate(&self) -> Result<HandshakeConfig, DeclarationError> {
        let handshake = self.handshake()?;
        let mut seen = vec![self.plugin.info().full_name];
        for service in &self.services {
            let info = service.info();
            if info.role != Role::Service {
                return Err(DeclarationError::NotAService {
                    name: info.full_name,
                    role: info.role,
                });
            }
            if seen.contains(&info.full_name) {
                return Err(DeclarationError::Duplicate(info.full_name));
            }
            seen.push(info.full_name);
        }
        let mut hosts = Vec::new();
        for (info, _) in &self.host_services {
            if info.role != Role::HostService {
                return Err(DeclarationError::NotAHostService {
                    name: info.full_name,
                    role: info.role,
                });
            }
            if hosts.contains(&info.full_name) {
                return Err(DeclarationError::Duplicate(info.full_name));
            }
            hosts.push(info.full_name);
        }
        Ok(handshake)
    }

    /// The go-plugin server for this plugin (SPIRE's handshake, the services and `Init`), for
    /// callers that want to adjust it (e.g. TCP) before serving. Installs no logger.
    ///
    /// # Errors
    ///
    /// A [`DeclarationError`] for a misdeclared service.
    pub fn into_server(self) -> Result<PluginServer, DeclarationError> {
        let handshake = self.validate()?;
        let capture_stdio = self.capture_stdio;
        let server = PluginServer::new(handshake)
            .capture_stdio(capture_stdio)
            .version(PROTOCOL_VERSION, move |ctx| {
                self.into_services(ctx.broker.clone())
            });
        Ok(server)
    }

    /// Validates the declaration, then gives every service to serve: the plugin service, the
    /// extra services and `Init`, whose host services are dialled through `broker`. Used by
    /// [`into_server`](Self::into_server) and by the in-process harness
    /// ([`crate::spire::plugintest`]).
    #[cfg(feature = "spire-host")]
    pub(crate) fn into_validated_services(
        self,
        broker: Broker,
    ) -> Result<Vec<BridgedServer>, DeclarationError> {
        self.validate()?;
        Ok(self.into_services(broker))
    }

    fn into_services(self, broker: Broker) -> Vec<BridgedServer> {
        let names = self.service_names();
        let Plugin {
            plugin,
            services,
            host_services,
            hosts,
            close,
            ..
        } = self;
        let init = InitService {
            names,
            declared: host_services,
            hosts,
            broker,
            channel: OnceCell::new(),
            close: Mutex::new(close),
        };
        let mut all = vec![plugin];
        all.extend(services);
        all.push(InitBridge::bridged(init));
        all
    }

    /// Serves until SPIRE shuts the plugin down. Installs the hclog subscriber first (unless
    /// [`logging`](Self::logging) is off; an already installed subscriber is kept).
    ///
    /// # Errors
    ///
    /// A [`ServeError`]: a misdeclared service ([`ServeError::Services`] with the
    /// [`DeclarationError`]), a failed cookie check (the process was not started by SPIRE), or a
    /// failed server.
    pub async fn serve(self) -> Result<(), ServeError> {
        if self.logging {
            let _ = hclog::init();
        }
        let server = self
            .into_server()
            .map_err(|err| ServeError::Services(Box::new(err)))?;
        server.serve().await
    }

    /// [`serve`](Self::serve), then end the process like [`PluginServer::serve_or_exit`]
    /// (status 0 after shutdown; the error on stderr and status 1 otherwise).
    pub async fn serve_or_exit(self) -> ! {
        if self.logging {
            let _ = hclog::init();
        }
        match self.into_server() {
            Ok(server) => server.serve_or_exit().await,
            Err(err) => {
                use std::io::Write as _;
                let _ = writeln!(std::io::stderr(), "{err}");
                std::process::exit(1)
            }
        }
    }
}

/// [`Plugin::serve_or_exit`] as a function: `serve(Plugin::new(..).service(..)).await`.
pub async fn serve(plugin: Plugin) -> ! {
    plugin.serve_or_exit().await
}

/// SPIRE's private `Init` service.
struct InitService {
    names: Vec<String>,
    declared: Vec<(ServiceInfo, Requirement)>,
    hosts: HostServices,
    broker: Broker,
    channel: OnceCell<Channel>,
    close: Mutex<Option<CloseHook>>,
}

#[tonic::async_trait]
impl Init for InitService {
    async fn init(&self, request: Request<InitRequest>) -> Result<Response<InitResponse>, Status> {
        let offered = request.into_inner().host_service_names;
        let is_offered = |info: &ServiceInfo| offered.iter().any(|name| name == info.full_name);
        let missing: Vec<&str> = self
            .declared
            .iter()
            .filter(|(info, requirement)| {
                *requirement == Requirement::Required && !is_offered(info)
            })
            .map(|(info, _)| info.full_name)
            .collect();
        if !missing.is_empty() {
            let message = format!(
                "required host service not offered by the host: {} (offered: [{}])",
                missing.join(", "),
                offered.join(", ")
            );
            tracing::error!(error = %message, "Plugin failed brokering host services");
            return Err(Status::failed_precondition(message));
        }
        let to_bind: Vec<&'static str> = self
            .declared
            .iter()
            .filter(|(info, _)| is_offered(info))
            .map(|(info, _)| info.full_name)
            .collect();
        if to_bind.is_empty() {
            self.hosts.rebind([]);
        } else {
            let channel = self
                .channel
                .get_or_try_init(|| self.broker.dial(HOST_SERVICE_BROKER_ID))
                .await
                .map_err(|err| {
                    let message = format!(
                        "dialing the host services (broker ID {HOST_SERVICE_BROKER_ID}): {err}"
                    );
                    tracing::error!(error = %message, "Plugin failed brokering host services");
                    Status::unavailable(message)
                })?;
            self.hosts
                .rebind(to_bind.iter().map(|name| (*name, channel.clone())));
            tracing::debug!(host_services = ?to_bind, "host services bound");
        }
        Ok(Response::new(InitResponse {
            plugin_service_names: self.names.clone(),
        }))
    }

    async fn deinit(
        &self,
        _request: Request<DeinitRequest>,
    ) -> Result<Response<DeinitResponse>, Status> {
        let close = self.close.lock().expect("close hook lock").take();
        if let Some(close) = close
            && let Err(err) = close().await
        {
            tracing::error!(error = %err, "Plugin implementation failed to deinitialize");
        }
        Ok(Response::new(DeinitResponse {}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bridge::ServiceBridge;
    use crate::proto::spire::hostservice::common::metrics::v1::MetricsBridge;
    use crate::proto::spire::plugin::agent::workloadattestor::v1::WorkloadAttestorBridge;
    use crate::proto::spire::service::common::config::v1::ConfigBridge;

    /// A packed service with `bridge`'s identity; never registered.
    fn packed<B: ServiceBridge>() -> BridgedServer {
        BridgedServer::new(B::INFO, |_| {})
    }

    #[test]
    fn handshake_uses_the_plugin_type_as_cookie() {
        let plugin = Plugin::new(packed::<WorkloadAttestorBridge>());
        let handshake = plugin.handshake().unwrap();
        assert_eq!(handshake.protocol_version, 1);
        assert_eq!(handshake.magic_cookie_key, "WorkloadAttestor");
        assert_eq!(handshake.magic_cookie_value, "WorkloadAttestor");
        assert_eq!(plugin.plugin_type(), Some("WorkloadAttestor"));
    }

    #[test]
    fn service_names_put_the_plugin_service_first() {
        let plugin =
            Plugin::new(packed::<WorkloadAttestorBridge>()).service(packed::<ConfigBridge>());
        assert_eq!(
            plugin.service_names(),
            [
                "spire.plugin.agent.workloadattestor.v1.WorkloadAttestor",
                "spire.service.common.config.v1.Config"
            ]
        );
        assert!(plugin.validate().is_ok());
    }

    #[test]
    fn misdeclared_services_are_refused() {
        let err = Plugin::new(packed::<ConfigBridge>())
            .validate()
            .unwrap_err();
        assert!(
            matches!(err, DeclarationError::NotAPluginType { .. }),
            "{err}"
        );
        let err = Plugin::new(packed::<WorkloadAttestorBridge>())
            .service(packed::<MetricsBridge>())
            .validate()
            .unwrap_err();
        assert!(matches!(err, DeclarationError::NotAService { .. }), "{err}");
        let err = Plugin::new(packed::<WorkloadAttestorBridge>())
            .host_service::<ConfigBridge>(Requirement::Optional)
            .validate()
            .unwrap_err();
        assert!(
            matches!(err, DeclarationError::NotAHostService { .. }),
            "{err}"
        );
        let err = Plugin::new(packed::<WorkloadAttestorBridge>())
            .service(packed::<ConfigBridge>())
            .service(packed::<ConfigBridge>())
            .validate()
            .unwrap_err();
        assert!(matches!(err, DeclarationError::Duplicate(_)), "{err}");
    }
}
