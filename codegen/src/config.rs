//! The generator's knobs, as a builder with documented defaults.

/// How [`generate`](crate::generate) renders a proto tree.
///
/// By default generated code names no crate but the SDK: the bridges use `<sdk>::__codegen`
/// (see [`sdk_path`](Config::sdk_path)), and prost messages and tonic clients/servers reach
/// tonic, prost, tonic-prost and prost-types through the SDK's re-exports
/// (`<sdk>::__codegen::tonic::…`, `<sdk>::__codegen::prost::…`, …), so the crate that includes
/// the code needs `spire-plugin-sdk` as its only dependency for it, always at the SDK's versions
/// of those crates (see [`runtime_via_sdk`](Config::runtime_via_sdk)).
///
/// ```
/// let mut config = spire_plugin_codegen::Config::default();
/// config.sdk_path("::my_sdk").generated_by("cargo xtask gen");
/// ```
#[derive(Debug, Clone)]
pub struct Config {
    pub(crate) sdk_path: String,
    pub(crate) generated_by: String,
    pub(crate) build_client: bool,
    pub(crate) build_server: bool,
    pub(crate) descriptor_set: bool,
    pub(crate) runtime_via_sdk: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            sdk_path: "::spire_plugin_sdk".to_owned(),
            generated_by: "spire-plugin-codegen".to_owned(),
            build_client: true,
            build_server: true,
            descriptor_set: true,
            runtime_via_sdk: true,
        }
    }
}

impl Config {
    /// The path generated code uses to reach the SDK's `__codegen` surface: the bridges' SDK
    /// types and (with [`runtime_via_sdk`](Config::runtime_via_sdk)) tonic, prost, tonic-prost
    /// and prost-types.
    ///
    /// Default: `::spire_plugin_sdk`. Code generated into the SDK itself works too, because the
    /// SDK names itself with `extern crate self as spire_plugin_sdk`.
    pub fn sdk_path(&mut self, path: impl Into<String>) -> &mut Self {
        self.sdk_path = path.into();
        self
    }

    /// The command named in every file's `@generated` header, so readers know how to refresh it.
    ///
    /// Default: `spire-plugin-codegen`.
    pub fn generated_by(&mut self, command: impl Into<String>) -> &mut Self {
        self.generated_by = command.into();
        self
    }

    /// Whether to emit tonic clients (and the bridge's `client` constructor). Default: true.
    pub fn build_client(&mut self, enable: bool) -> &mut Self {
        self.build_client = enable;
        self
    }

    /// Whether to emit tonic servers (and the bridge's `server`/`register`). Default: true.
    pub fn build_server(&mut self, enable: bool) -> &mut Self {
        self.build_server = enable;
        self
    }

    /// Whether to emit `file_descriptor_set.bin` (for gRPC reflection) and the
    /// `FILE_DESCRIPTOR_SET` constant that embeds it. Default: true.
    pub fn descriptor_set(&mut self, enable: bool) -> &mut Self {
        self.descriptor_set = enable;
        self
    }

    /// Whether prost messages and tonic clients/servers reach their runtime crates through the
    /// SDK. Default: true.
    ///
    /// When true, every path to `tonic`, `prost`, `tonic_prost` or `prost_types` in the output
    /// (prost's derives and `#[prost(prost_path = …)]`, tonic's `use tonic::codegen::*;`, the
    /// codec, well-known types) is `<sdk>::__codegen::<crate>::…`, and the including crate needs
    /// none of those crates. When false, the output names them as prost-build and
    /// tonic-prost-build do (`::prost::…`, `tonic::…`), and the including crate must depend on
    /// versions matching the SDK's.
    pub fn runtime_via_sdk(&mut self, enable: bool) -> &mut Self {
        self.runtime_via_sdk = enable;
        self
    }
}
