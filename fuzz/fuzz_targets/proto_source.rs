//! Fuzz target: codegen's loading of `.proto` sources and generation (see `spire_plugin_codegen::__fuzz::proto_source`).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| spire_plugin_codegen::__fuzz::proto_source(data));
