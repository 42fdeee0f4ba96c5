//! `agent-svid-store`: a SPIRE agent/SVIDStore plugin. Writes workload SVIDs the SPIRE agent mints
//! into an external store.
//!
//! [`plugin()`] assembles what the binary serves: the SVIDStore service
//! ([`AgentSvidStore`], in [`mod@plugin`]), SPIRE's Config service with the typed
//! configuration ([`AgentSvidStoreConfig`], in [`config`]), the host services the plugin may
//! call (optional: the plugin also runs where SPIRE does not offer them), and a close hook.

pub mod config;
pub mod plugin;

use spire_plugin_sdk::proto::spire::hostservice::common::metrics::v1::MetricsBridge;
use spire_plugin_sdk::proto::spire::plugin::agent::svidstore::v1::SvidStoreBridge;
use spire_plugin_sdk::proto::spire::service::common::config::v1::ConfigBridge;
use spire_plugin_sdk::spire::plugin::{Plugin, Requirement};

pub use crate::config::AgentSvidStoreConfig;
pub use crate::plugin::AgentSvidStore;

/// The plugin as SPIRE loads it. `Init` reports the SVIDStore and Config services;
/// the host services are bound when SPIRE offers them;
/// `Deinit` runs [`AgentSvidStore::close`].
pub fn plugin() -> Plugin {
    plugin_with(AgentSvidStore::default())
}

/// [`plugin()`] around `plugin`: tests keep a clone of `plugin` to look at its state.
pub fn plugin_with(plugin: AgentSvidStore) -> Plugin {
    Plugin::new(SvidStoreBridge::bridged(plugin.clone()))
        .service(ConfigBridge::bridged(plugin.clone()))
        .host_service::<MetricsBridge>(Requirement::Optional)
        .host_services(plugin.host_services())
        .on_close(move || async move { plugin.close().await })
}
