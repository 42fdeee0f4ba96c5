//! `server-notifier`: a SPIRE server/Notifier plugin. Tells other systems about SPIRE server events
//! such as a changed bundle.
//!
//! [`plugin()`] assembles what the binary serves: the Notifier service
//! ([`ServerNotifier`], in [`mod@plugin`]), SPIRE's Config service with the typed
//! configuration ([`ServerNotifierConfig`], in [`config`]), the host services the plugin may
//! call (optional: the plugin also runs where SPIRE does not offer them), and a close hook.

pub mod config;
pub mod plugin;

use spire_plugin_sdk::proto::spire::hostservice::common::metrics::v1::MetricsBridge;
use spire_plugin_sdk::proto::spire::hostservice::server::identityprovider::v1::IdentityProviderBridge;
use spire_plugin_sdk::proto::spire::plugin::server::notifier::v1::NotifierBridge;
use spire_plugin_sdk::proto::spire::service::common::config::v1::ConfigBridge;
use spire_plugin_sdk::spire::plugin::{Plugin, Requirement};

pub use crate::config::ServerNotifierConfig;
pub use crate::plugin::ServerNotifier;

/// The plugin as SPIRE loads it. `Init` reports the Notifier and Config services;
/// the host services are bound when SPIRE offers them;
/// `Deinit` runs [`ServerNotifier::close`].
pub fn plugin() -> Plugin {
    plugin_with(ServerNotifier::default())
}

/// [`plugin()`] around `plugin`: tests keep a clone of `plugin` to look at its state.
pub fn plugin_with(plugin: ServerNotifier) -> Plugin {
    Plugin::new(NotifierBridge::bridged(plugin.clone()))
        .service(ConfigBridge::bridged(plugin.clone()))
        .host_service::<IdentityProviderBridge>(Requirement::Optional)
        .host_service::<MetricsBridge>(Requirement::Optional)
        .host_services(plugin.host_services())
        .on_close(move || async move { plugin.close().await })
}
