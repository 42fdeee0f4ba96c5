//! Fuzz target: codegen's role manifest (`services.toml`) parsing (see `spire_plugin_codegen::__fuzz::manifest`).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| spire_plugin_codegen::__fuzz::manifest(data));
