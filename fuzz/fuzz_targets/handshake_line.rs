//! Fuzz target: the host's parsing of a plugin's handshake line, with the printer round trip (see `spire_plugin_sdk::__fuzz::handshake_line`).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| spire_plugin_sdk::__fuzz::handshake_line(data));
