//! The generator's knobs, as a builder with documented defaults.

/// How [`generate`](crate::generate) renders a proto tree.
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
}

impl Default for Config {
    fn default() -> Self {
        Config {
            sdk_path: "::spire_plugin_sdk".to_owned(),
            generated_by: "spire-plugin-codegen".to_owned(),
            build_client: true,
            build_server: true,
            descriptor_set: true,
        }
    }
}

impl Config {
    /// The path generated bridge code uses to reach the SDK's `__codegen` surface.
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
}
