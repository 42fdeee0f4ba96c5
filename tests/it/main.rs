//! The single integration-test binary: each module covers one area against real inputs.

mod autotls;
mod compat;
mod external_crate;
mod fuzz_replay;
mod goplugin_matrix;
mod handler_panics;
mod host_errors;
mod host_lifecycle;
mod host_matrix;
mod parent_death;
mod plugin_check;
mod plugin_errors;
mod plugintest;
mod quiet_unload;
mod reattach;
mod spire_catalog;
mod spire_plugins;
mod support;
mod tidy;
mod wire_identity;
