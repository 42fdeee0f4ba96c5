//! HashiCorp go-plugin's gRPC protocol, both sides, with no knowledge of SPIRE: the handshake
//! and the environment it travels in, hclog-compatible logging, AutoMTLS, the broker, and the
//! process lifecycle. This module and its children use only the `plugin` proto package, never a
//! SPIRE one.
//!
//! The submodules are private; what plugin and host authors use is re-exported here:
//!
//! | Side | Items |
//! |---|---|
//! | both | [`HandshakeConfig`], [`HandshakeLine`], [`Network`], [`Protocol`], [`ReattachConfig`], [`ReattachAddr`], [`Broker`], [`BrokeredServer`] (stop one brokered server; drop stops it too), [`BrokerListener`], [`BrokerIncoming`], [`BrokerError`], [`hclog`] |
//! | plugin (feature `plugin`) | [`PluginServer`], [`ServeContext`], [`ServeError`] |
//! | host (feature `host`) | [`PluginClient`], [`PluginChannel`] (fail-fast: a dead plugin's calls answer `Unavailable` with its exit status), [`ClientConfig`], [`AttachOptions`], [`ExitInfo`], [`StartError`], [`PluginManager`], [`PluginSpec`], [`PluginHandle`], [`RestartPolicy`], [`PluginState`], [`PluginExited`], [`ExitCause`], [`ManagerError`] |
//! | errors of both | [`ServeError`], [`StartError`], [`BrokerError`], [`ListenError`] ([`SocketPathTooLong`], limit [`MAX_UNIX_SOCKET_PATH`]), [`DialError`], [`TlsError`] |
//!
//! A plugin (feature `plugin`):
//!
//! ```no_run
//! use spire_plugin_sdk::goplugin::{HandshakeConfig, PluginServer};
//! # async fn run() {
//! let handshake = HandshakeConfig::new(1, "MY_PLUGIN", "hello");
//! PluginServer::new(handshake)
//!     .version(1, |_ctx| vec![/* MyServiceBridge::bridged(MyImpl) */])
//!     .serve_or_exit()
//!     .await;
//! # }
//! ```
//!
//! A host (feature `host`):
//!
//! ```no_run
//! # #[cfg(feature = "host")]
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use spire_plugin_sdk::goplugin::{ClientConfig, HandshakeConfig, PluginClient};
//!
//! let handshake = HandshakeConfig::new(1, "MY_PLUGIN", "hello");
//! let plugin = PluginClient::start(ClientConfig::new(handshake, [1], "./my-plugin")).await?;
//! let channel = plugin.channel(); // build generated clients on it
//! # let _ = channel;
//! plugin.kill().await;
//! # Ok(())
//! # }
//! ```

// The shared modules hold both sides' halves (the environment a host writes and a plugin reads,
// listening and dialing, ...); with one side's feature off, the other half is unused.
#[cfg_attr(not(all(feature = "plugin", feature = "host")), allow(dead_code))]
pub(crate) mod broker;
#[cfg_attr(not(all(feature = "plugin", feature = "host")), allow(dead_code))]
pub(crate) mod env;
#[cfg_attr(not(all(feature = "plugin", feature = "host")), allow(dead_code))]
pub(crate) mod handshake;
pub mod hclog;
#[cfg(feature = "host")]
pub(crate) mod host;
#[cfg(feature = "host")]
pub(crate) mod manager;
#[cfg_attr(not(all(feature = "plugin", feature = "host")), allow(dead_code))]
pub(crate) mod mux;
#[cfg_attr(not(all(feature = "plugin", feature = "host")), allow(dead_code))]
pub(crate) mod panic;
pub(crate) mod reattach;
#[cfg(feature = "plugin")]
pub(crate) mod server;
#[cfg(feature = "plugin")]
pub(crate) mod stdio;
#[cfg_attr(not(all(feature = "plugin", feature = "host")), allow(dead_code))]
pub(crate) mod tls;
#[cfg_attr(not(all(feature = "plugin", feature = "host")), allow(dead_code))]
pub(crate) mod transport;

pub use self::broker::{
    Broker, BrokerError, BrokerIncoming, BrokerListener, BrokeredServer,
    DIAL_TIMEOUT as BROKER_DIAL_TIMEOUT, STOP_GRACE,
};
pub use self::handshake::{HandshakeConfig, HandshakeError, HandshakeLine, Network, Protocol};
#[cfg(feature = "host")]
pub use self::host::{
    AttachOptions, BoxError, ClientConfig, ExitCause, ExitInfo, PluginChannel, PluginClient,
    PluginExited, SocketDirTooLong, StartError, SyncWriter,
};
#[cfg(feature = "host")]
pub use self::manager::{
    ConfigFactory, ManagerError, PluginHandle, PluginManager, PluginSpec, PluginState,
    RestartPolicy,
};
pub use self::reattach::{ReattachAddr, ReattachConfig};
#[cfg(feature = "plugin")]
pub use self::server::{PluginServer, ServeContext, ServeError};
pub use self::tls::{TlsError, TlsErrorKind};
pub use self::transport::{DialError, ListenError, MAX_UNIX_SOCKET_PATH, SocketPathTooLong};

/// Internals that this repository's integration tests exercise against real Go peers (the
/// AutoMTLS certificate and TLS configs, dialing a plugin directly, go-plugin's texts).
/// **Not public API**: hidden from the docs, no semver promise, may change in any release.
#[doc(hidden)]
pub mod __private {
    pub use super::handshake::NOT_A_PLUGIN_MESSAGE;
    pub use super::tls::{Identity, PinnedCert, client_config, server_config, server_name};
    pub use super::transport::dial;
}
