//! Fuzz target: reattach JSON, decoded and printed back (see `spire_plugin_sdk::__fuzz::reattach_json`).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| spire_plugin_sdk::__fuzz::reattach_json(data));
