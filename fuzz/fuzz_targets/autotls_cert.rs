//! Fuzz target: the AutoMTLS certificate field of a handshake line, and PEM certificates (see `spire_plugin_sdk::__fuzz::autotls_cert`).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| spire_plugin_sdk::__fuzz::autotls_cert(data));
