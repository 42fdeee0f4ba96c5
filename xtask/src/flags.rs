//! The whole command line of `cargo xtask`, declared in one place.

use clap::{Args, Parser, Subcommand};

/// Project tasks for the Rust go-plugin / SPIRE plugin SDK.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
pub(crate) struct Xtask {
    #[command(subcommand)]
    pub(crate) task: Task,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Task {
    /// Generate Rust from `proto/` into `sdk/src/proto/` (committed code).
    Gen(Gen),
    /// Measure tasks side by side with their Go/other-tool equivalents and print ratios.
    Bench(Bench),
    /// Check that the proto tree stays compatible with an earlier version (git ref or directory).
    ///
    /// Compares the previous side (`--against`) with the current one (`--head`, default: the
    /// working tree's `<repo>/<root>`) and prints one `file:line:col: RULE_ID: message` line per
    /// break in the enforced categories, then the number of findings in every category.
    /// A side is a directory when one exists at that path (it is then the proto root itself),
    /// otherwise a git ref of `--repo`, read from git objects without a checkout. Relative paths
    /// are taken from the workspace root.
    ///
    /// Categories, strictest proto level first: `file` (generated code per file), `package`
    /// (generated code per package), `wire-json` (binary and JSON encoding), `wire` (binary
    /// encoding); and `source`, the Rust API our codegen generates (renamed fields, moved types).
    ///
    /// Version policy (`--policy`, what CI runs against the newest tag): a package whose last
    /// segment is `vN` is released, and a break inside it fails unless the current tree
    /// introduces a newer `vM` of that package; breaks in unstable packages (`v1alpha1`,
    /// `v1beta1`, `v1test`) are reported but pass; packages without a version (`plugin`,
    /// `spire.plugin.types`) have no version to move to, so any break in them fails. Without `--category`, the policy enforces
    /// `package` and `source`: our Go and Rust consumers both see one API per package.
    ///
    /// Exit status: 0 compatible, 1 breaking findings, 2 usage or load error.
    Compat(Compat),
    /// Load one SPIRE plugin binary (Go or Rust) as SPIRE would and check it step by step.
    ///
    /// Steps: type, config, checksum, launch (go-plugin handshake), init (with the host
    /// services SPIRE offers on that side, answering safely in-process), services, configure,
    /// validate (Unimplemented tolerated), rpc (one harmless call where the type has one:
    /// KeyManager GetPublicKeys, WorkloadAttestor Attest of this process, server NodeAttestor
    /// Attest with an empty stream, CredentialComposer ComposeServerX509CA of default
    /// attributes; others skipped; an `Unimplemented` answer is a warning, not a
    /// failure), unload (Deinit and exit).
    ///
    /// `--config`: when the file has a top-level `plugin_data` block or attribute, the plugin
    /// is configured with that body (re-printed as SPIRE does); otherwise with the whole file,
    /// as with `plugin_data_file`. Relative paths are taken from the current directory.
    ///
    /// Exit status: 0 every step passed, 1 a step failed, 2 usage error.
    PluginCheck(PluginCheck),
    /// Create a plugin project of one SPIRE plugin type: a crate that builds, serves every RPC
    /// of the type (answering `Unimplemented` until written), has a typed, validated HCL
    /// configuration, tests (in-process and through the built binary, plus the plugin-check
    /// conformance check) and a README with the SPIRE configuration to load it.
    ///
    /// Outside this workspace the project is a workspace of its own (built against this
    /// checkout's sdk, it also gets this checkout's Cargo.lock, so it builds offline); inside
    /// it, it is added to the workspace's members. Relative paths are taken from the current directory.
    ///
    /// Exit status: 0 created, 1 refused (unknown type, invalid name, non-empty directory).
    New(New),
}

#[derive(Debug, Args)]
pub(crate) struct Gen {
    /// Regenerate in memory and fail, naming every stale, missing or extra file, instead of
    /// writing.
    #[arg(long)]
    pub(crate) check: bool,
}

#[derive(Debug, Args)]
pub(crate) struct Bench {
    /// Which benchmark to run.
    #[command(subcommand)]
    pub(crate) which: BenchWhich,
}

#[derive(Debug, Subcommand)]
pub(crate) enum BenchWhich {
    /// `cargo xtask gen` and `gen --check` against protoc + protoc-gen-go + protoc-gen-go-grpc.
    Gen(BenchGen),
    /// `cargo xtask compat` against `buf breaking` over the `tests/compat` corpus.
    Compat(BenchCompat),
}

#[derive(Debug, Args)]
pub(crate) struct BenchGen {
    /// Runs of each command (after one warm-up run); the median is reported.
    #[arg(long, default_value_t = 10)]
    pub(crate) runs: usize,
}

#[derive(Debug, Args)]
pub(crate) struct Compat {
    /// The previous side: a git ref or a proto root directory.
    #[arg(
        long,
        value_name = "REF_OR_DIR",
        required_unless_present = "against_newest_tag"
    )]
    pub(crate) against: Option<String>,
    /// Use the repository's newest tag (in version order) as the previous side; passes with a
    /// note when the repository has no tag.
    #[arg(long, conflicts_with = "against")]
    pub(crate) against_newest_tag: bool,
    /// The current side: a git ref or a proto root directory [default: the working tree].
    #[arg(long, value_name = "REF_OR_DIR")]
    pub(crate) head: Option<String>,
    /// The git repository refs are read from [default: this workspace].
    #[arg(long, value_name = "PATH")]
    pub(crate) repo: Option<std::path::PathBuf>,
    /// The proto root inside the repository, for git refs and the working tree.
    #[arg(long, value_name = "DIR", default_value = "proto")]
    pub(crate) root: String,
    /// A category to enforce; repeat for several [default: file, or package and source with
    /// --policy].
    #[arg(long = "category", value_name = "CATEGORY", value_enum)]
    pub(crate) categories: Vec<CompatCategory>,
    /// How to print the findings.
    #[arg(long, value_enum, default_value_t = CompatFormat::Text)]
    pub(crate) format: CompatFormat,
    /// Apply the version policy: breaks in released `vN` packages fail unless a newer version
    /// package is introduced.
    #[arg(long)]
    pub(crate) policy: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum CompatCategory {
    File,
    Package,
    WireJson,
    Wire,
    Source,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum CompatFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub(crate) struct BenchCompat {
    /// Runs over the whole corpus for each tool (after one warm-up run); the median is reported.
    #[arg(long, default_value_t = 3)]
    pub(crate) runs: usize,
}

#[derive(Debug, Args)]
pub(crate) struct PluginCheck {
    /// The plugin type as `<side>/<Type>`, e.g. `agent/KeyManager`, `server/NodeAttestor`.
    #[arg(long = "type", value_name = "SIDE/TYPE")]
    pub(crate) plugin_type: spire_plugin_sdk::spire::PluginType,
    /// The plugin binary (`plugin_cmd`).
    #[arg(long, value_name = "PATH")]
    pub(crate) cmd: std::path::PathBuf,
    /// Arguments for the plugin (`plugin_args`). Put it last: it takes the rest of the command
    /// line, flags included.
    #[arg(long, num_args = 1.., allow_hyphen_values = true, value_name = "ARG")]
    pub(crate) args: Vec<String>,
    /// An HCL file: its `plugin_data` body, or its whole content, configures the plugin.
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<std::path::PathBuf>,
    /// The expected SHA-256 of the binary as hex (`plugin_checksum`).
    #[arg(long, value_name = "HEX")]
    pub(crate) checksum: Option<String>,
    /// The trust domain sent in Configure and Validate.
    #[arg(long, value_name = "NAME", default_value = "example.org")]
    pub(crate) trust_domain: String,
    /// Limit in seconds for the handshake and for each call.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub(crate) timeout: u64,
    /// How to print the report.
    #[arg(long, value_enum, default_value_t = CompatFormat::Text)]
    pub(crate) format: CompatFormat,
}

#[derive(Debug, Args)]
pub(crate) struct New {
    /// The plugin type, `<side>/<Type>`: agent/KeyManager, agent/NodeAttestor, agent/SVIDStore,
    /// agent/WorkloadAttestor, server/BundlePublisher, server/CredentialComposer,
    /// server/KeyManager, server/NodeAttestor, server/Notifier, server/UpstreamAuthority (case,
    /// `-` and `_` do not matter: `agent/workload-attestor` works). A bare type is enough when
    /// only one side has it (`WorkloadAttestor`, not `KeyManager`).
    pub(crate) target: String,
    /// The crate name; cased to kebab-case (`MyAttestor` → `my-attestor`), which also names the
    /// binary.
    pub(crate) name: String,
    /// The directory to create (default: `./<name>`); it must not exist or be empty.
    #[arg(long)]
    pub(crate) dir: Option<std::path::PathBuf>,
    /// Depend on spire-plugin-sdk at this path (default: this checkout's `sdk/`).
    #[arg(long, conflicts_with = "sdk_version")]
    pub(crate) sdk_path: Option<std::path::PathBuf>,
    /// Depend on this version of spire-plugin-sdk from the registry instead of a path.
    #[arg(long)]
    pub(crate) sdk_version: Option<String>,
}
