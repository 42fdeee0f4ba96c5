//! `server-bundle-publisher`: a SPIRE server/BundlePublisher plugin. Publishes the trust bundle of
//! the SPIRE server wherever others fetch it.
//!
//! [`plugin()`] assembles what the binary serves: the BundlePublisher service
//! ([`ServerBundlePublisher`], in [`mod@plugin`]), SPIRE's Config service with the typed
//! configuration ([`ServerBundlePublisherConfig`], in [`config`]), the host services the plugin may
//! call (optional: the plugin also runs where SPIRE does not offer them), and a close hook.

pub mod config;
pub mod plugin;

use spire_plugin_sdk::proto::spire::hostservice::common::metrics::v1::MetricsBridge;
use spire_plugin_sdk::proto::spire::plugin::server::bundlepublisher::v1::BundlePublisherBridge;
use spire_plugin_sdk::proto::spire::service::common::config::v1::ConfigBridge;
use spire_plugin_sdk::spire::plugin::{Plugin, Requirement};

pub use crate::config::ServerBundlePublisherConfig;
pub use crate::plugin::ServerBundlePublisher;

/// The plugin as SPIRE loads it. `Init` reports the BundlePublisher and Config services;
/// the host services are bound when SPIRE offers them;
/// `Deinit` runs [`ServerBundlePublisher::close`].
pub fn plugin() -> Plugin {
    plugin_with(ServerBundlePublisher::default())
}

/// [`plugin()`] around `plugin`: tests keep a clone of `plugin` to look at its state.
pub fn plugin_with(plugin: ServerBundlePublisher) -> Plugin {
    Plugin::new(BundlePublisherBridge::bridged(plugin.clone()))
        .service(ConfigBridge::bridged(plugin.clone()))
        .host_service::<MetricsBridge>(Requirement::Optional)
        .host_services(plugin.host_services())
        .on_close(move || async move { plugin.close().await })
}
