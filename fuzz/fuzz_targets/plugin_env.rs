//! Fuzz target: the plugin's reading of the protocol environment the host sets (see `spire_plugin_sdk::__fuzz::plugin_env`).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| spire_plugin_sdk::__fuzz::plugin_env(data));
