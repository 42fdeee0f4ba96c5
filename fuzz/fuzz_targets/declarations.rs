//! Fuzz target: the host's reading of SPIRE plugin declarations (`plugins { … }`) (see `spire_plugin_sdk::__fuzz::declarations`).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| spire_plugin_sdk::__fuzz::declarations(data));
