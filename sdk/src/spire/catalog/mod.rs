//! Loading SPIRE plugins as SPIRE's catalog does (`docs/protocol.md`, "SPIRE"): launch the
//! binary (checksum, cookie `<Type>=<Type>`, protocol version 1, no AutoMTLS), serve the host
//! services on broker ID 1, `Init` with their names, check the plugin reports its type's service,
//! `Configure` with the trust domain and the plugin's HCL data, then hand out typed clients.
//! [`LoadedPlugin::reconfigure`] re-reads a data file and configures again when its content
//! changed; [`LoadedPlugin::unload`] calls `Deinit` (10 s) and stops the process. A
//! [`LoadedPlugin`] derefs to its [`PluginSession`] (`client`, `configure`, `validate`, ...).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use spire_plugin_sdk::proto::spire::plugin::agent::keymanager::v1::KeyManagerBridge;
//! use spire_plugin_sdk::spire::Side;
//! use spire_plugin_sdk::spire::catalog::{LoadOptions, OfferedHostServices, load, parse_plugins};
//!
//! let decls = parse_plugins("plugins {\n  KeyManager \"disk\" { plugin_cmd = \"./km\" }\n}")?;
//! let options = LoadOptions::new("example.org");
//! let plugin = load(Side::Agent, &decls[0], &options, OfferedHostServices::new()).await?;
//! let mut key_manager = plugin.client::<KeyManagerBridge>()?;
//! # let _ = &mut key_manager;
//! plugin.unload().await;
//! # Ok(()) }
//! ```

mod config;

use std::ops::Deref;
use std::time::Duration;

use tonic::{Code, Status};

pub use self::config::{
    ChecksumError, ConfigError as ParseError, PluginData, PluginDeclaration, data_hash,
    parse_checksum, parse_plugins, sha256_hex,
};
pub use super::session::PluginSession;
use super::session::go_status;
use super::types::{PluginType, Side};
use crate::bridge::{BridgedServer, ServiceBridge};
use crate::goplugin::{
    BrokerError, ClientConfig, ExitInfo, HandshakeConfig, PluginClient, StartError,
};
use crate::proto::spire::service::common::config::v1::ConfigBridge;

/// How long `Deinit` may take on unload (SPIRE's value).
pub const DEINIT_TIMEOUT: Duration = Duration::from_secs(10);

/// The host services offered to a plugin on broker ID 1: generated service implementations
/// (`<Service>Bridge::bridged(...)`), whose full gRPC names are sent in `Init`. Build one per
/// plugin load. This is the host's side; inside a plugin, the clients `Init` binds are in
/// [`crate::spire::plugin::HostServices`].
#[derive(Debug, Default)]
pub struct OfferedHostServices {
    servers: Vec<BridgedServer>,
}

impl OfferedHostServices {
    /// No host services.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a generated service implementation (`<Service>Bridge::bridged(...)`).
    pub fn with(mut self, server: BridgedServer) -> Self {
        self.servers.push(server);
        self
    }

    /// The full gRPC names of the offered services, in the order given.
    pub fn names(&self) -> Vec<String> {
        self.servers
            .iter()
            .map(|server| server.info().full_name.to_owned())
            .collect()
    }

    /// The servers and their names, for serving them on a broker.
    pub(crate) fn into_parts(self) -> (Vec<BridgedServer>, Vec<String>) {
        let names = self.names();
        (self.servers, names)
    }
}

/// Settings for loading plugins. Build with [`LoadOptions::new`] and the setters.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LoadOptions {
    /// The trust domain sent in `CoreConfiguration` (bare name, e.g. `example.org`).
    pub trust_domain: String,
    /// Limit for each `Init`, `Configure` and `Validate` call (SPIRE has none; a hung plugin
    /// must not hang the host). Default 1 minute.
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

    /// The limit of each `Init`, `Configure` and `Validate` call.
    pub fn call_timeout(mut self, limit: Duration) -> Self {
        self.call_timeout = limit;
        self
    }

    /// The limit of `Deinit` on unload.
    pub fn deinit_timeout(mut self, limit: Duration) -> Self {
        self.deinit_timeout = limit;
        self
    }

    /// How long to wait for the plugin's handshake.
    pub fn start_timeout(mut self, limit: Duration) -> Self {
        self.start_timeout = limit;
        self
    }
}

/// Why a SPIRE plugin could not be loaded, served, configured or used: the one error of SPIRE's
/// host layer (catalog, plugintest, check). Messages name the plugin and follow SPIRE's texts;
/// where the plugin answered, the error keeps its [`Status`] ([`CatalogError::status`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// No plugin type of that name on this side.
    #[error("failed to load plugin \"{name}\": unsupported plugin type \"{given}\"")]
    UnknownType {
        /// The plugin name.
        name: String,
        /// The type asked for, `side/Type`.
        given: String,
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
    /// An in-process plugin ([`plugintest::serve`](super::plugintest::serve)) is misdeclared.
    #[error("failed to load plugin \"{name}\": {source}")]
    Declaration {
        /// The plugin name.
        name: String,
        /// What is wrong.
        source: super::plugin::DeclarationError,
    },
    /// The in-process server, its socket directory or its connection could not be set up.
    #[error("failed to load plugin \"{name}\": {message}")]
    Setup {
        /// The plugin name.
        name: String,
        /// What failed.
        message: String,
    },
    /// Host services could not be offered on the broker.
    #[error("failed to load plugin \"{name}\": failed to serve host services: {source}")]
    HostServices {
        /// The plugin name.
        name: String,
        /// The broker error.
        source: BrokerError,
    },
    /// `Init` failed or timed out (`DeadlineExceeded`).
    #[error("failed to load plugin \"{name}\": failed to initialize plugin: {}", go_status(.status))]
    Init {
        /// The plugin name.
        name: String,
        /// The plugin's answer.
        status: Status,
    },
    /// The plugin does not serve its type's service (SPIRE's text).
    #[error("failed to load plugin \"{name}\": no supported plugin interface found in: {}", go_quoted_list(.found))]
    NoPluginInterface {
        /// The plugin name.
        name: String,
        /// The names the plugin reported.
        found: Vec<String>,
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
    #[error("failed to configure plugin \"{name}\": {}", go_status(.status))]
    Configure {
        /// The plugin name.
        name: String,
        /// The plugin's answer.
        status: Status,
    },
    /// `Validate` failed or timed out.
    #[error("failed to validate plugin \"{name}\" configuration: {}", go_status(.status))]
    Validate {
        /// The plugin name.
        name: String,
        /// The plugin's answer.
        status: Status,
    },
    /// `Deinit` failed or timed out (SPIRE logs "Failed to deinitialize plugin").
    #[error("failed to deinitialize plugin \"{name}\": {}", go_status(.status))]
    Deinit {
        /// The plugin name.
        name: String,
        /// The plugin's answer.
        status: Status,
    },
    /// A client was asked for a service the plugin did not report in `Init`.
    #[error("plugin \"{name}\" does not serve {service} (it serves: {})", go_quoted_list(.served))]
    NotServed {
        /// The plugin name.
        name: String,
        /// The service asked for.
        service: &'static str,
        /// What it reported.
        served: Vec<String>,
    },
}

impl CatalogError {
    /// The plugin's answer, for `Init`, `Configure`, `Validate` and `Deinit` failures (a
    /// timeout is `DeadlineExceeded`).
    pub fn status(&self) -> Option<&Status> {
        match self {
            CatalogError::Init { status, .. }
            | CatalogError::Configure { status, .. }
            | CatalogError::Validate { status, .. }
            | CatalogError::Deinit { status, .. } => Some(status),
            _ => None,
        }
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        match self {
            CatalogError::UnknownType { name, .. }
            | CatalogError::Disabled { name, .. }
            | CatalogError::NoCommand { name }
            | CatalogError::Checksum { name, .. }
            | CatalogError::Launch { name, .. }
            | CatalogError::Declaration { name, .. }
            | CatalogError::Setup { name, .. }
            | CatalogError::HostServices { name, .. }
            | CatalogError::Init { name, .. }
            | CatalogError::NoPluginInterface { name, .. }
            | CatalogError::NoConfigInterface { name }
            | CatalogError::DataFile { name, .. }
            | CatalogError::Configure { name, .. }
            | CatalogError::Validate { name, .. }
            | CatalogError::Deinit { name, .. }
            | CatalogError::NotServed { name, .. } => name,
        }
    }
}

/// Formats names as Go's `%q` of a `[]string`.
fn go_quoted_list(names: &[String]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
    format!("[{}]", quoted.join(" "))
}

/// Loads one plugin declared for `side`: launch, host services on broker ID 1, Init, Configure.
/// On any failure the plugin process is stopped and reaped.
///
/// # Errors
///
/// [`CatalogError`] naming the plugin, in SPIRE's words.
pub async fn load(
    side: Side,
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
    let plugin_type =
        PluginType::new(side, &decl.plugin_type).map_err(|err| CatalogError::UnknownType {
            name: name.clone(),
            given: err.given().to_owned(),
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

    let handshake = HandshakeConfig::new(
        super::plugin::PROTOCOL_VERSION,
        plugin_type.name(),
        plugin_type.name(),
    );
    let cmd = std::path::absolute(&decl.cmd).unwrap_or_else(|_| decl.cmd.clone());
    let mut config = ClientConfig::new(handshake, [super::plugin::PROTOCOL_VERSION], cmd);
    config
        .args(&decl.args)
        .checksum(checksum)
        .auto_mtls(false)
        .start_timeout(options.start_timeout);
    let client = PluginClient::start(config)
        .await
        .map_err(|source| CatalogError::Launch {
            name: name.clone(),
            source,
        })?;
    match initialize(&client, name, plugin_type, decl, options, host_services).await {
        Ok((session, data_hash)) => Ok(LoadedPlugin {
            session,
            plugin_type,
            client: Some(client),
            data: decl.data.clone(),
            data_hash,
            deinit_timeout: options.deinit_timeout,
        }),
        Err(err) => {
            client.kill().await;
            Err(err)
        }
    }
}

/// Init, the plugin-interface check, and the first Configure.
async fn initialize(
    client: &PluginClient,
    name: String,
    plugin_type: PluginType,
    decl: &PluginDeclaration,
    options: &LoadOptions,
    host_services: OfferedHostServices,
) -> Result<(PluginSession, Option<String>), CatalogError> {
    let session = PluginSession::init(
        name,
        client.raw_channel(),
        client.broker(),
        host_services,
        options.trust_domain.clone(),
        options.call_timeout,
    )
    .await?;
    if !session.serves(plugin_type.service().full_name) {
        return Err(CatalogError::NoPluginInterface {
            name: session.name().to_owned(),
            found: session.service_names().to_vec(),
        });
    }
    for service in session.service_names() {
        let known = crate::proto::SERVICES
            .iter()
            .any(|info| info.full_name == service);
        if !known {
            tracing::warn!(plugin_name = %session.name(), service, "Unsupported plugin service found");
        }
    }
    let data = read_data(session.name(), &decl.data)?;
    let hash = configure(&session, data).await?;
    Ok((session, hash))
}

fn read_data(name: &str, data: &PluginData) -> Result<String, CatalogError> {
    match data {
        PluginData::None => Ok(String::new()),
        PluginData::Inline(text) => Ok(text.clone()),
        PluginData::File(path) => {
            std::fs::read_to_string(path).map_err(|source| CatalogError::DataFile {
                name: name.to_owned(),
                source,
            })
        }
    }
}

/// SPIRE's rule: a plugin without `Config` is not configured, unless it was given data.
/// Returns the hash of the data configured.
async fn configure(session: &PluginSession, data: String) -> Result<Option<String>, CatalogError> {
    if !session.serves(ConfigBridge::INFO.full_name) && data.is_empty() {
        return Ok(None);
    }
    let hash = data_hash(&data);
    session.configure(data).await?;
    Ok(Some(hash))
}

/// A loaded, configured plugin; derefs to its [`PluginSession`]. Drop stops the process too,
/// but without `Deinit`; prefer [`unload`](Self::unload).
#[derive(Debug)]
pub struct LoadedPlugin {
    session: PluginSession,
    plugin_type: PluginType,
    client: Option<PluginClient>,
    data: PluginData,
    data_hash: Option<String>,
    deinit_timeout: Duration,
}

/// What happened on [`LoadedPlugin::unload`].
#[derive(Debug)]
#[non_exhaustive]
pub struct Unloaded {
    /// `Deinit`'s outcome: `Ok` also when the plugin does not implement it.
    pub deinit: Result<(), CatalogError>,
    /// How the process ended.
    pub exit: ExitInfo,
}

impl Deref for LoadedPlugin {
    type Target = PluginSession;

    fn deref(&self) -> &PluginSession {
        &self.session
    }
}

impl LoadedPlugin {
    /// Re-reads `plugin_data_file` and calls `Configure` again if its content changed (by
    /// SPIRE's SHA-512/16 hash). Returns whether it configured. Inline data never changes.
    ///
    /// # Errors
    ///
    /// [`CatalogError::DataFile`] or [`CatalogError::Configure`]; a refused configuration
    /// leaves the previous one in force, as in SPIRE.
    pub async fn reconfigure(&mut self) -> Result<bool, CatalogError> {
        if !matches!(self.data, PluginData::File(_)) {
            return Ok(false);
        }
        let data = read_data(self.session.name(), &self.data)?;
        if self.data_hash.as_deref() == Some(data_hash(&data).as_str()) {
            return Ok(false);
        }
        self.data_hash = configure(&self.session, data).await?;
        Ok(true)
    }

    /// The plugin's type, e.g. `agent/KeyManager`.
    pub fn plugin_type(&self) -> PluginType {
        self.plugin_type
    }

    /// The go-plugin connection (process ID, handshake, exit status).
    pub fn plugin_client(&self) -> &PluginClient {
        self.client
            .as_ref()
            .expect("plugin client present until unload")
    }

    /// Unloads as SPIRE does: `Deinit` with the deinit timeout (`Unimplemented` tolerated,
    /// other errors logged and returned), then go-plugin's kill (Shutdown, grace, SIGKILL). The
    /// process is always reaped.
    pub async fn unload(mut self) -> Unloaded {
        let client = self
            .client
            .take()
            .expect("plugin client present until unload");
        let deinit = match self.session.deinit(self.deinit_timeout).await {
            Err(err)
                if err
                    .status()
                    .is_some_and(|s| s.code() == Code::Unimplemented) =>
            {
                Ok(())
            }
            Err(err) => {
                tracing::error!(plugin_name = %self.session.name(), error = %err, "Failed to deinitialize plugin");
                Err(err)
            }
            Ok(()) => Ok(()),
        };
        let exit = client.kill().await;
        Unloaded { deinit, exit }
    }
}
