//! `server-key-manager`: a SPIRE server/KeyManager plugin. Creates and holds the signing keys of
//! the SPIRE server and signs with them.
//!
//! [`plugin()`] assembles what the binary serves: the KeyManager service
//! ([`ServerKeyManager`], in [`mod@plugin`]), SPIRE's Config service with the typed
//! configuration ([`ServerKeyManagerConfig`], in [`config`]), the host services the plugin may
//! call (optional: the plugin also runs where SPIRE does not offer them), and a close hook.

pub mod config;
pub mod plugin;

use spire_plugin_sdk::proto::spire::hostservice::common::metrics::v1::MetricsBridge;
use spire_plugin_sdk::proto::spire::plugin::server::keymanager::v1::KeyManagerBridge;
use spire_plugin_sdk::proto::spire::service::common::config::v1::ConfigBridge;
use spire_plugin_sdk::spire::plugin::{Plugin, Requirement};

pub use crate::config::ServerKeyManagerConfig;
pub use crate::plugin::ServerKeyManager;

/// The plugin as SPIRE loads it. `Init` reports the KeyManager and Config services;
/// the host services are bound when SPIRE offers them;
/// `Deinit` runs [`ServerKeyManager::close`].
pub fn plugin() -> Plugin {
    plugin_with(ServerKeyManager::default())
}

/// [`plugin()`] around `plugin`: tests keep a clone of `plugin` to look at its state.
pub fn plugin_with(plugin: ServerKeyManager) -> Plugin {
    Plugin::new(KeyManagerBridge::bridged(plugin.clone()))
        .service(ConfigBridge::bridged(plugin.clone()))
        .host_service::<MetricsBridge>(Requirement::Optional)
        .host_services(plugin.host_services())
        .on_close(move || async move { plugin.close().await })
}
