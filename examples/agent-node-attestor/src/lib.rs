//! `agent-node-attestor`: a SPIRE agent/NodeAttestor plugin. Proves the identity of the node the
//! SPIRE agent runs on to the SPIRE server.
//!
//! [`plugin()`] assembles what the binary serves: the NodeAttestor service
//! ([`AgentNodeAttestor`], in [`mod@plugin`]), SPIRE's Config service with the typed
//! configuration ([`AgentNodeAttestorConfig`], in [`config`]), the host services the plugin may
//! call (optional: the plugin also runs where SPIRE does not offer them), and a close hook.

pub mod config;
pub mod plugin;

use spire_plugin_sdk::proto::spire::hostservice::common::metrics::v1::MetricsBridge;
use spire_plugin_sdk::proto::spire::plugin::agent::nodeattestor::v1::NodeAttestorBridge;
use spire_plugin_sdk::proto::spire::service::common::config::v1::ConfigBridge;
use spire_plugin_sdk::spire::plugin::{Plugin, Requirement};

pub use crate::config::AgentNodeAttestorConfig;
pub use crate::plugin::AgentNodeAttestor;

/// The plugin as SPIRE loads it. `Init` reports the NodeAttestor and Config services;
/// the host services are bound when SPIRE offers them;
/// `Deinit` runs [`AgentNodeAttestor::close`].
pub fn plugin() -> Plugin {
    plugin_with(AgentNodeAttestor::default())
}

/// [`plugin()`] around `plugin`: tests keep a clone of `plugin` to look at its state.
pub fn plugin_with(plugin: AgentNodeAttestor) -> Plugin {
    Plugin::new(NodeAttestorBridge::bridged(plugin.clone()))
        .service(ConfigBridge::bridged(plugin.clone()))
        .host_service::<MetricsBridge>(Requirement::Optional)
        .host_services(plugin.host_services())
        .on_close(move || async move { plugin.close().await })
}
