//! `server-credential-composer`: a SPIRE server/CredentialComposer plugin. Adjusts the attributes
//! and claims of credentials the SPIRE server mints.
//!
//! [`plugin()`] assembles what the binary serves: the CredentialComposer service
//! ([`ServerCredentialComposer`], in [`mod@plugin`]), SPIRE's Config service with the typed
//! configuration ([`ServerCredentialComposerConfig`], in [`config`]), the host services the plugin may
//! call (optional: the plugin also runs where SPIRE does not offer them), and a close hook.

pub mod config;
pub mod plugin;

use spire_plugin_sdk::proto::spire::hostservice::common::metrics::v1::MetricsBridge;
use spire_plugin_sdk::proto::spire::plugin::server::credentialcomposer::v1::CredentialComposerBridge;
use spire_plugin_sdk::proto::spire::service::common::config::v1::ConfigBridge;
use spire_plugin_sdk::spire::plugin::{Plugin, Requirement};

pub use crate::config::ServerCredentialComposerConfig;
pub use crate::plugin::ServerCredentialComposer;

/// The plugin as SPIRE loads it. `Init` reports the CredentialComposer and Config services;
/// the host services are bound when SPIRE offers them;
/// `Deinit` runs [`ServerCredentialComposer::close`].
pub fn plugin() -> Plugin {
    plugin_with(ServerCredentialComposer::default())
}

/// [`plugin()`] around `plugin`: tests keep a clone of `plugin` to look at its state.
pub fn plugin_with(plugin: ServerCredentialComposer) -> Plugin {
    Plugin::new(CredentialComposerBridge::bridged(plugin.clone()))
        .service(ConfigBridge::bridged(plugin.clone()))
        .host_service::<MetricsBridge>(Requirement::Optional)
        .host_services(plugin.host_services())
        .on_close(move || async move { plugin.close().await })
}
