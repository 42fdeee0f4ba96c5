//! The contract between generated bridge code and the runtime: a service's identity, its typed
//! client, and its server packed for later registration. Generated `<Service>Bridge` types
//! implement these; the runtime and hosts consume them.

use std::fmt;

use tonic::service::RoutesBuilder;
use tonic::transport::Channel;

/// Message size limit for generated clients and servers in both directions: go-plugin hosts
/// and plugins use `math.MaxInt32`, so we match it.
pub const MAX_MESSAGE_SIZE: usize = i32::MAX as usize;

/// The role a service plays between a host and its plugins (from the tree's role manifest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The main service of a plugin type; a plugin binary of that type implements it.
    Plugin,
    /// A service a plugin may serve beside its plugin service (e.g. SPIRE's Config).
    Service,
    /// A service the host serves and plugins dial through the broker.
    HostService,
    /// Protocol plumbing (go-plugin's broker, controller, stdio; SPIRE's Init).
    Private,
}

/// The identity of one gRPC service, as generated from the proto tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ServiceInfo {
    /// Fully-qualified gRPC service name, e.g. `spire.plugin.agent.keymanager.v1.KeyManager`.
    pub full_name: &'static str,
    /// What the service is for.
    pub role: Role,
    /// For [`Role::Plugin`]: the plugin type name, also the go-plugin cookie key and value.
    pub plugin_type: Option<&'static str>,
    /// For [`Role::Plugin`]: the namespace keeping equal type names apart (`agent`, `server`).
    pub side: Option<&'static str>,
    /// The `.proto` file that declares the service, relative to the tree root.
    pub proto_file: &'static str,
}

impl ServiceInfo {
    /// `side/type` for plugin services with a side (`agent/KeyManager`), the bare type without
    /// one, `None` for other roles.
    pub fn qualified_type(&self) -> Option<String> {
        let plugin_type = self.plugin_type?;
        Some(match self.side {
            Some(side) => format!("{side}/{plugin_type}"),
            None => plugin_type.to_owned(),
        })
    }
}

/// Implemented by every generated `<Service>Bridge`.
pub trait ServiceBridge {
    /// The service's identity.
    const INFO: ServiceInfo;
}

/// Implemented by generated bridges when clients are generated: builds the typed client.
pub trait ClientBridge: ServiceBridge {
    /// The tonic client type, e.g. `key_manager_client::KeyManagerClient<Channel>`.
    type Client: Clone + Send + 'static;

    /// Builds the typed client on a channel, with [`MAX_MESSAGE_SIZE`] limits.
    fn client(channel: Channel) -> Self::Client;
}

/// A service implementation packed with its identity, ready to be registered on a router by
/// whoever builds the gRPC server. Made by the generated `<Service>Bridge::bridged`.
pub struct BridgedServer {
    info: ServiceInfo,
    register: Box<dyn FnOnce(&mut RoutesBuilder) + Send>,
}

impl BridgedServer {
    /// Packs `register`, which adds the service to a router, with the service's identity.
    pub fn new(
        info: ServiceInfo,
        register: impl FnOnce(&mut RoutesBuilder) + Send + 'static,
    ) -> Self {
        BridgedServer {
            info,
            register: Box::new(register),
        }
    }

    /// The identity of the packed service.
    pub fn info(&self) -> &ServiceInfo {
        &self.info
    }

    /// Adds the service to `routes`.
    pub fn register(self, routes: &mut RoutesBuilder) {
        (self.register)(routes);
    }
}

impl fmt::Debug for BridgedServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BridgedServer")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}
