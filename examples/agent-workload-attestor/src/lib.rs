//! `agent-workload-attestor`: a SPIRE agent/WorkloadAttestor plugin. Tells the SPIRE agent which
//! selectors describe a workload process.
//!
//! [`plugin()`] assembles what the binary serves: the WorkloadAttestor service
//! ([`AgentWorkloadAttestor`], in [`mod@plugin`]), SPIRE's Config service with the typed
//! configuration ([`AgentWorkloadAttestorConfig`], in [`config`]), the host services the plugin may
//! call (optional: the plugin also runs where SPIRE does not offer them), and a close hook.

pub mod config;
pub mod plugin;

use spire_plugin_sdk::proto::spire::hostservice::common::metrics::v1::MetricsBridge;
use spire_plugin_sdk::proto::spire::plugin::agent::workloadattestor::v1::WorkloadAttestorBridge;
use spire_plugin_sdk::proto::spire::service::common::config::v1::ConfigBridge;
use spire_plugin_sdk::spire::plugin::{Plugin, Requirement};

pub use crate::config::AgentWorkloadAttestorConfig;
pub use crate::plugin::AgentWorkloadAttestor;

/// The plugin as SPIRE loads it. `Init` reports the WorkloadAttestor and Config services;
/// the host services are bound when SPIRE offers them;
/// `Deinit` runs [`AgentWorkloadAttestor::close`].
pub fn plugin() -> Plugin {
    plugin_with(AgentWorkloadAttestor::default())
}

/// [`plugin()`] around `plugin`: tests keep a clone of `plugin` to look at its state.
pub fn plugin_with(plugin: AgentWorkloadAttestor) -> Plugin {
    Plugin::new(WorkloadAttestorBridge::bridged(plugin.clone()))
        .service(ConfigBridge::bridged(plugin.clone()))
        .host_service::<MetricsBridge>(Requirement::Optional)
        .host_services(plugin.host_services())
        .on_close(move || async move { plugin.close().await })
}
