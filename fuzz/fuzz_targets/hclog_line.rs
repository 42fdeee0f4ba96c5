//! Fuzz target: the host's reading and classifying of plugin stderr as hclog (see `spire_plugin_sdk::__fuzz::hclog_line`).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| spire_plugin_sdk::__fuzz::hclog_line(data));
