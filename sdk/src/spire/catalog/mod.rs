//! Loading SPIRE plugins as SPIRE's catalog does (PROTOCOL.md §2.3–2.6): launch the binary
//! (checksum, cookie `<Type>=<Type>`, protocol version 1, no AutoMTLS), serve the host services
//! on broker ID 1, `Init` with their names, check the plugin reports its type's service,
//! `Configure` with the trust domain and the plugin's HCL data, then hand out typed clients.
//! [`LoadedPlugin::reconfigure`] re-reads a data file and configures again when its content
//! changed; [`LoadedPlugin::unload`] calls `Deinit` (10 s) and stops the process.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use spire_plugin_sdk::proto::spire::plugin::agent::keymanager::v1::KeyManagerBridge;
//! use spire_plugin_sdk::spire::catalog::{OfferedHostServices, LoadOptions, load, parse_plugins};
//!
//! let decls = parse_plugins("plugins {\n  KeyManager \"disk\" { plugin_cmd = \"./km\" }\n}")?;
//! let plugin = load("agent", &decls[0], &LoadOptions::new("example.org"), OfferedHostServices::new()).await?;
//! let mut key_manager = plugin.client::<KeyManagerBridge>()?;
//! # let _ = &mut key_manager;
//! plugin.unload().await;
//! # Ok(()) }
//! ```

mod config;

use std::time::Duration;

use tonic::Code;
use tonic::service::RoutesBuilder;

pub use self::config::{
    ChecksumError, ConfigError, PluginData, PluginDeclaration, data_hash, parse_checksum,
    parse_plugins, sha256_hex,
};
use crate::bridge::{BridgedServer, ClientBridge, Role, ServiceBridge, ServiceInfo};
use crate::goplugin::handshake::HandshakeConfig;
use crate::goplugin::host::{ClientConfig, ExitInfo, PluginClient, StartError};
use crate::proto::spire::service::common::config::v1::{
    ConfigBridge, ConfigureRequest, CoreConfiguration,
};
use crate::proto::spire::service::private::init::v1::{DeinitRequest, InitBridge, InitRequest};

/// The broker ID SPIRE serves host services on (`private.HostServiceProviderID`).
pub const HOST_SERVICES_BROKER_ID: u32 = 1;

/// How long `Deinit` may take on unload (SPIRE's value).
pub const DEINIT_TIMEOUT: Duration = Duration::from_secs(10);

/// The host services offered to a plugin on broker ID 1: a router and the full gRPC names of
/// the services on it (sent in `Init`). Build one per plugin load. This is the host's side;
/// inside a plugin, the clients `Init` binds are in [`crate::spire::plugin::HostServices`].
#[derive(Default)]
pub struct OfferedHostServices {
    routes: RoutesBuilder,
    names: Vec<String>,
}

impl std::fmt::Debug for OfferedHostServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OfferedHostServices")
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

impl OfferedHostServices {
    /// No host services.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a generated service implementation (`<Service>Bridge::bridged(...)`).
    pub fn with(mut self, server: BridgedServer) -> Self {
        self.names.push(server.info().full_name.to_owned());
        server.register(&mut self.routes);
        self
    }

    /// Adds services already registered on `routes`, named `names` (full gRPC names).
    pub fn with_routes(
        mut self,
        register: impl FnOnce(&mut RoutesBuilder),
        names: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        register(&mut self.routes);
        self.names.extend(names.into_iter().map(Into::into));
        self
    }

    /// The full gRPC names of the offered services.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The router and the names, for serving them on a broker.
    pub(crate) fn into_parts(self) -> (RoutesBuilder, Vec<String>) {
        (self.routes, self.names)
    }
}

/// Settings for loading plugins.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// The trust domain sent in `CoreConfiguration` (bare name, e.g. `example.org`).
    pub trust_domain: String,
    /// Limit for each `Init` and `Configure` call (SPIRE has none; a hung plugin must not hang
    /// the host). Default 1 minute.
    pub call_timeout: Duration,
    /// Limit for `Deinit` on unload (default [`DEINIT_TIMEOUT`]).
    pub deinit_timeout: Duration,
    /// How long to wait for the plugin's handshake (go-plugin's default, 1 minute).
    pub start_timeout: Duration,
}

impl LoadOptions {
    /// Defaults for `trust_domain`.
    pub fn new(trust_domain: impl Into<String>) -> Self {
        LoadOptions {
            trust_domain: trust_domain.into(),
            call_timeout: Duration::from_secs(60),
            deinit_timeout: DEINIT_TIMEOUT,
            start_timeout: Duration::from_secs(60),
        }
    }
}

/// Why a plugin could not be loaded, configured or used. Messages name the plugin and follow
/// SPIRE's texts.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// No plugin type of that name on this side.
    #[error("failed to load plugin \"{name}\": unsupported plugin type \"{side}/{plugin_type}\"")]
    UnknownType {
        /// The plugin name.
        name: String,
        /// `agent` or `server`.
        side: String,
        /// The declared type.
        plugin_type: String,
    },
    /// The declaration is disabled (`enabled = false`).
    #[error("plugin \"{plugin_type}\"/\"{name}\" is disabled")]
    Disabled {
        /// The plugin type.
        plugin_type: String,
        /// The plugin name.
        name: String,
    },
    /// `plugin_cmd` is empty (a built-in plugin, which this catalog does not provide).
    #[error("failed to load plugin \"{name}\": plugin_cmd is empty")]
    NoCommand {
        /// The plugin name.
        name: String,
    },
    /// `plugin_checksum` is malformed.
    #[error("failed to load plugin \"{name}\": {source}")]
    Checksum {
        /// The plugin name.
        name: String,
        /// What is wrong with it.
        source: ChecksumError,
    },
    /// The plugin could not be launched (checksum mismatch, spawn or handshake failure).
    #[error("failed to load plugin \"{name}\": failed to launch plugin: {source}")]
    Launch {
        /// The plugin name.
        name: String,
        /// The go-plugin error.
        source: StartError,
    },
    /// Host services could not be offered on the broker.
    #[error("failed to load plugin \"{name}\": failed to serve host services: {message}")]
    HostServices {
        /// The plugin name.
        name: String,
        /// The broker error.
        message: String,
    },
    /// `Init` failed or timed out.
    #[error("failed to load plugin \"{name}\": failed to initialize plugin: {message}")]
    Init {
        /// The plugin name.
        name: String,
        /// The status, Go-formatted.
        message: String,
    },
    /// The plugin does not serve its type's service (SPIRE's text).
    #[error("failed to load plugin \"{name}\": no supported plugin interface found in: {found}")]
    NoPluginInterface {
        /// The plugin name.
        name: String,
        /// The names the plugin reported, formatted as Go's `%q` of a slice.
        found: String,
    },
    /// The plugin has data but no Config service (SPIRE's text).
    #[error("failed to load plugin \"{name}\": no supported configuration interface found")]
    NoConfigInterface {
        /// The plugin name.
        name: String,
    },
    /// The data file could not be read.
    #[error("failed to configure plugin \"{name}\": failed to read plugin data file: {source}")]
    DataFile {
        /// The plugin name.
        name: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// `Configure` failed or timed out (SPIRE's prefix).
    #[error("failed to configure plugin \"{name}\": {message}")]
    Configure {
        /// The plugin name.
        name: String,
        /// The status, Go-formatted, or the timeout.
        message: String,
    },
    /// A client was asked for a service the plugin did not report.
    #[error("plugin \"{name}\" does not serve {service}")]
    NotServed {
        /// The plugin name.
        name: String,
        /// The service asked for.
        service: &'static str,
    },
}

/// Resolves `side` + `plugin_type` (e.g. `agent` + `KeyManager`) to its plugin service.
pub fn plugin_service(side: &str, plugin_type: &str) -> Option<ServiceInfo> {
    crate::proto::SERVICES.iter().copied().find(|info| {
        info.role == Role::Plugin
            && info.side == Some(side)
            && info.plugin_type == Some(plugin_type)
    })
}

/// Formats a status as Go's `status.Error` does: `rpc error: code = X desc = msg`.
fn go_status(status: &tonic::Status) -> String {
    let code = match status.code() {
        Code::Cancelled => "Canceled".to_owned(),
        other => format!("{other:?}"),
    };
    format!("rpc error: code = {code} desc = {}", status.message())
}

/// Formats names as Go's `%q` of a `[]string`.
fn go_quoted_list(names: &[String]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
    format!("[{}]", quoted.join(" "))
}

/// Why a call made under a timeout failed.
#[derive(Debug)]
enum CallError {
    /// The plugin answered with an error.
    Status(tonic::Status),
    /// No answer in time.
    Timeout(Duration),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Status(status) => f.write_str(&go_status(status)),
            CallError::Timeout(limit) => write!(f, "timed out after {limit:?}"),
        }
    }
}

/// Makes a call, giving up (and cancelling it) after `limit`.
async fn call_with_timeout<T>(
    limit: Duration,
    call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, CallError> {
    match tokio::time::timeout(limit, call).await {
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) => Err(CallError::Status(status)),
        Err(_) => Err(CallError::Timeout(limit)),
    }
}

/// Loads one plugin declared for `side` (`agent` or `server`): launch, host services on broker
/// ID 1, Init, Configure. On any failure the plugin process is stopped and reaped.
pub async fn load(
    side: &str,
    decl: &PluginDeclaration,
    options: &LoadOptions,
    host_services: OfferedHostServices,
) -> Result<LoadedPlugin, CatalogError> {
    let name = decl.name.clone();
    if !decl.enabled {
        return Err(CatalogError::Disabled {
            plugin_type: decl.plugin_type.clone(),
            name,
        });
    }
    let info =
        plugin_service(side, &decl.plugin_type).ok_or_else(|| CatalogError::UnknownType {
            name: name.clone(),
            side: side.to_owned(),
            plugin_type: decl.plugin_type.clone(),
        })?;
    if decl.cmd.as_os_str().is_empty() {
        return Err(CatalogError::NoCommand { name });
    }
    let checksum = match &decl.checksum {
        Some(text) => Some(
            parse_checksum(text).map_err(|source| CatalogError::Checksum {
                name: name.clone(),
                source,
            })?,
        ),
        None => {
            tracing::warn!(plugin_name = %name, "Plugin checksum not configured");
            None
        }
    };

    let handshake = HandshakeConfig {
        protocol_version: 1,
        magic_cookie_key: decl.plugin_type.clone(),
        magic_cookie_value: decl.plugin_type.clone(),
    };
    let cmd = std::path::absolute(&decl.cmd).unwrap_or_else(|_| decl.cmd.clone());
    let mut config = ClientConfig::new(handshake, [1], cmd);
    config.args = decl.args.iter().map(Into::into).collect();
    config.checksum = checksum;
    config.auto_mtls = false;
    config.start_timeout = options.start_timeout;
    let client = PluginClient::start(config)
        .await
        .map_err(|source| CatalogError::Launch {
            name: name.clone(),
            source,
        })?;

    let mut loaded = LoadedPlugin {
        name,
        plugin_type: decl.plugin_type.clone(),
        info,
        client: Some(client),
        services: Vec::new(),
        data: decl.data.clone(),
        data_hash: None,
        options: options.clone(),
    };
    match loaded.initialize(host_services).await {
        Ok(()) => Ok(loaded),
        Err(err) => {
            if let Some(client) = loaded.client.take() {
                client.kill().await;
            }
            Err(err)
        }
    }
}

/// A loaded, configured plugin. Drop stops the process too, but without `Deinit`; prefer
/// [`unload`](Self::unload).
#[derive(Debug)]
pub struct LoadedPlugin {
    name: String,
    plugin_type: String,
    info: ServiceInfo,
    client: Option<PluginClient>,
    services: Vec<String>,
    data: PluginData,
    data_hash: Option<String>,
    options: LoadOptions,
}

/// What happened on [`LoadedPlugin::unload`].
#[derive(Debug)]
pub struct Unloaded {
    /// `Deinit`'s outcome: `Ok` also when the plugin does not implement it.
    pub deinit: Result<(), String>,
    /// How the process ended.
    pub exit: ExitInfo,
}

impl LoadedPlugin {
    fn go_plugin(&self) -> &PluginClient {
        self.client
            .as_ref()
            .expect("plugin client present until unload")
    }

    async fn initialize(&mut self, host_services: OfferedHostServices) -> Result<(), CatalogError> {
        let client = self.go_plugin();
        // SPIRE accepts broker ID 1 at Dispense, just before Init: the Go plugin dials it during
        // Init and gives up when the address is older than a few seconds.
        let OfferedHostServices { routes, names } = host_services;
        client
            .broker()
            .accept_and_serve_routes(HOST_SERVICES_BROKER_ID, routes.routes())
            // Served until unload closes the broker.
            .map(crate::goplugin::broker::BrokeredServer::detach)
            .map_err(|err| CatalogError::HostServices {
                name: self.name.clone(),
                message: err.to_string(),
            })?;
        let mut init = InitBridge::client(client.channel());
        let response = call_with_timeout(
            self.options.call_timeout,
            init.init(InitRequest {
                host_service_names: names,
            }),
        )
        .await
        .map_err(|err| CatalogError::Init {
            name: self.name.clone(),
            message: err.to_string(),
        })?;
        self.services = response.plugin_service_names;
        if !self.services.iter().any(|s| s == self.info.full_name) {
            return Err(CatalogError::NoPluginInterface {
                name: self.name.clone(),
                found: go_quoted_list(&self.services),
            });
        }
        for service in &self.services {
            let known = crate::proto::SERVICES
                .iter()
                .any(|info| info.full_name == service);
            if !known {
                tracing::warn!(plugin_name = %self.name, service, "Unsupported plugin service found");
            }
        }
        let data = self.read_data()?;
        self.configure(data).await
    }

    fn read_data(&self) -> Result<String, CatalogError> {
        match &self.data {
            PluginData::None => Ok(String::new()),
            PluginData::Inline(text) => Ok(text.clone()),
            PluginData::File(path) => {
                std::fs::read_to_string(path).map_err(|source| CatalogError::DataFile {
                    name: self.name.clone(),
                    source,
                })
            }
        }
    }

    fn has_config(&self) -> bool {
        self.serves(ConfigBridge::INFO.full_name)
    }

    async fn configure(&mut self, data: String) -> Result<(), CatalogError> {
        if !self.has_config() {
            if data.is_empty() {
                return Ok(());
            }
            return Err(CatalogError::NoConfigInterface {
                name: self.name.clone(),
            });
        }
        let hash = data_hash(&data);
        let mut config = ConfigBridge::client(self.go_plugin().channel());
        let request = ConfigureRequest {
            core_configuration: Some(CoreConfiguration {
                trust_domain: self.options.trust_domain.clone(),
            }),
            hcl_configuration: data,
        };
        call_with_timeout(self.options.call_timeout, config.configure(request))
            .await
            .map_err(|err| CatalogError::Configure {
                name: self.name.clone(),
                message: err.to_string(),
            })?;
        self.data_hash = Some(hash);
        Ok(())
    }

    /// Re-reads `plugin_data_file` and calls `Configure` again if its content changed (by
    /// SPIRE's SHA-512/16 hash). Returns whether it configured. Inline data never changes.
    pub async fn reconfigure(&mut self) -> Result<bool, CatalogError> {
        if !matches!(self.data, PluginData::File(_)) {
            return Ok(false);
        }
        let data = self.read_data()?;
        if self.data_hash.as_deref() == Some(data_hash(&data).as_str()) {
            return Ok(false);
        }
        self.configure(data).await?;
        Ok(true)
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The plugin's type, e.g. `KeyManager`.
    pub fn plugin_type(&self) -> &str {
        &self.plugin_type
    }

    /// The plugin type's service.
    pub fn info(&self) -> &ServiceInfo {
        &self.info
    }

    /// The service names the plugin reported in `Init`.
    pub fn service_names(&self) -> &[String] {
        &self.services
    }

    /// Whether the plugin reported `full_name` in `Init`.
    pub fn serves(&self, full_name: &str) -> bool {
        self.services.iter().any(|s| s == full_name)
    }

    /// The go-plugin connection (process ID, channel, exit status).
    pub fn plugin_client(&self) -> &PluginClient {
        self.go_plugin()
    }

    /// A typed client for the plugin service or one of the plugin's services, e.g.
    /// `loaded.client::<KeyManagerBridge>()`; fails if the plugin did not report it.
    pub fn client<B: ClientBridge>(&self) -> Result<B::Client, CatalogError> {
        if !self.serves(B::INFO.full_name) {
            return Err(CatalogError::NotServed {
                name: self.name.clone(),
                service: B::INFO.full_name,
            });
        }
        Ok(B::client(self.go_plugin().channel()))
    }

    /// Unloads as SPIRE does: `Deinit` with the deinit timeout (`Unimplemented` tolerated,
    /// other errors logged and returned), then go-plugin's kill (Shutdown, grace, SIGKILL). The
    /// process is always reaped.
    pub async fn unload(mut self) -> Unloaded {
        let client = self
            .client
            .take()
            .expect("plugin client present until unload");
        let mut init = InitBridge::client(client.channel());
        let deinit = match call_with_timeout(
            self.options.deinit_timeout,
            init.deinit(DeinitRequest {}),
        )
        .await
        {
            Ok(_) => Ok(()),
            Err(CallError::Status(status)) if status.code() == Code::Unimplemented => Ok(()),
            Err(err) => {
                let message = err.to_string();
                tracing::error!(plugin_name = %self.name, error = %message, "Failed to deinitialize plugin");
                Err(message)
            }
        };
        let exit = client.kill().await;
        Unloaded { deinit, exit }
    }
}
