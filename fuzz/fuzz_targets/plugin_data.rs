//! Fuzz target: the plugin's decoding of the `plugin_data` SPIRE sends to Configure (see `spire_plugin_sdk::__fuzz::plugin_data`).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| spire_plugin_sdk::__fuzz::plugin_data(data));
