//! `server-upstream-authority`: a SPIRE server/UpstreamAuthority plugin. Signs the SPIRE server's
//! CA with an upstream CA and hands out its roots.
//!
//! [`plugin()`] assembles what the binary serves: the UpstreamAuthority service
//! ([`ServerUpstreamAuthority`], in [`mod@plugin`]), SPIRE's Config service with the typed
//! configuration ([`ServerUpstreamAuthorityConfig`], in [`config`]), the host services the plugin may
//! call (optional: the plugin also runs where SPIRE does not offer them), and a close hook.

pub mod config;
pub mod plugin;

use spire_plugin_sdk::proto::spire::hostservice::common::metrics::v1::MetricsBridge;
use spire_plugin_sdk::proto::spire::plugin::server::upstreamauthority::v1::UpstreamAuthorityBridge;
use spire_plugin_sdk::proto::spire::service::common::config::v1::ConfigBridge;
use spire_plugin_sdk::spire::plugin::{Plugin, Requirement};

pub use crate::config::ServerUpstreamAuthorityConfig;
pub use crate::plugin::ServerUpstreamAuthority;

/// The plugin as SPIRE loads it. `Init` reports the UpstreamAuthority and Config services;
/// the host services are bound when SPIRE offers them;
/// `Deinit` runs [`ServerUpstreamAuthority::close`].
pub fn plugin() -> Plugin {
    plugin_with(ServerUpstreamAuthority::default())
}

/// [`plugin()`] around `plugin`: tests keep a clone of `plugin` to look at its state.
pub fn plugin_with(plugin: ServerUpstreamAuthority) -> Plugin {
    Plugin::new(UpstreamAuthorityBridge::bridged(plugin.clone()))
        .service(ConfigBridge::bridged(plugin.clone()))
        .host_service::<MetricsBridge>(Requirement::Optional)
        .host_services(plugin.host_services())
        .on_close(move || async move { plugin.close().await })
}
