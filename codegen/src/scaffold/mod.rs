//! Starter projects for plugin types: one set of askama templates under `templates/plugin/`
//! rendered for any `[[plugin]]` service of a [`Model`] into a complete crate (manifest, the
//! plugin's services, typed configuration, tests, README). Like the rest of the library it
//! only returns files; `cargo xtask new` and `cargo xtask gen` write them (and run rustfmt over
//! the Rust ones).
//!
//! ```
//! # use spire_plugin_codegen::{ProtoTree, model};
//! # use spire_plugin_codegen::scaffold::{self, Project, SdkSource};
//! # let mut tree = ProtoTree::default();
//! # tree.file("echo/v1/echo.proto", "syntax = \"proto3\";\npackage echo.v1;\nmessage Ping {}\nservice Echo { rpc Say(Ping) returns (Ping); }")
//! #     .manifest("services.toml", "[[plugin]]\nservice = \"echo.v1.Echo\"\ntype = \"Echo\"\n");
//! let model = model(&tree).unwrap();
//! let target = scaffold::find_target(&model, "echo").unwrap();
//! let project = Project::new(target, "my-echo", SdkSource::Path("../sdk".into())).unwrap();
//! let files = scaffold::render(&model, &project).unwrap();
//! assert!(files.iter().any(|file| file.path == "src/plugin.rs"));
//! ```

mod hints;

use askama::Template;
use heck::{ToKebabCase, ToSnakeCase, ToUpperCamelCase};

use crate::GeneratedFile;
use crate::model::{Method, Model, Role, Service};
use crate::names;

use self::hints::{Check, Hints};

/// Why a project cannot be rendered. Messages name the input at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScaffoldError {
    /// The requested plugin type is not a `[[plugin]]` of the tree.
    #[error("unknown plugin type \"{given}\"; valid types: {}", valid.join(", "))]
    UnknownType {
        /// What was asked for.
        given: String,
        /// Every `<side>/<Type>` (or `<Type>`) of the tree.
        valid: Vec<String>,
    },
    /// A bare type name that more than one side has.
    #[error("ambiguous plugin type \"{given}\": say which one of {}", candidates.join(", "))]
    AmbiguousType {
        /// What was asked for.
        given: String,
        /// The `<side>/<Type>` it could mean.
        candidates: Vec<String>,
    },
    /// The project name cannot be a crate name.
    #[error("invalid crate name \"{name}\": {reason}")]
    InvalidName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A template failed to render (a bug in the templates).
    #[error("template {file} failed to render: {message}")]
    Template {
        /// The output file.
        file: String,
        /// askama's error.
        message: String,
    },
    /// A rendered Rust file does not parse (a bug in the templates or their data).
    #[error("rendered {file} is not valid Rust: {message}")]
    InvalidRust {
        /// The output file.
        file: String,
        /// syn's error.
        message: String,
    },
}

/// A plugin type of a tree: its `[[plugin]]` service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginTarget {
    /// The namespace, e.g. `agent` (SPIRE) or none.
    pub side: Option<String>,
    /// The type name, e.g. `WorkloadAttestor`.
    pub plugin_type: String,
    /// The service's full gRPC name.
    pub service: String,
}

impl PluginTarget {
    /// `side/Type`, or `Type` without a side: the spelling `cargo xtask new` and
    /// `plugin-check` take.
    pub fn qualified(&self) -> String {
        match &self.side {
            Some(side) => format!("{side}/{}", self.plugin_type),
            None => self.plugin_type.clone(),
        }
    }

    /// `side-type` in lower case, e.g. `agent-workloadattestor`: directory names.
    pub fn slug(&self) -> String {
        self.qualified().replace('/', "-").to_lowercase()
    }
}

/// Every plugin type of the tree, sorted by [`PluginTarget::qualified`].
pub fn targets(model: &Model) -> Vec<PluginTarget> {
    let mut targets: Vec<PluginTarget> = model
        .services()
        .filter_map(|service| match &service.role {
            Role::Plugin { plugin_type, side } => Some(PluginTarget {
                side: side.clone(),
                plugin_type: plugin_type.clone(),
                service: service.full_name.clone(),
            }),
            _ => None,
        })
        .collect();
    targets.sort_by_key(PluginTarget::qualified);
    targets
}

/// The plugin type `given` names: `side/Type` compared without regard to case, `-` or `_`
/// (`agent/workloadattestor`, `agent/workload-attestor`), or a bare type that only one side has.
///
/// # Errors
///
/// [`ScaffoldError::UnknownType`] listing the valid types, or [`ScaffoldError::AmbiguousType`].
pub fn find_target(model: &Model, given: &str) -> Result<PluginTarget, ScaffoldError> {
    let fold = |text: &str| text.replace(['-', '_'], "").to_lowercase();
    let all = targets(model);
    let wanted = fold(given);
    let exact: Vec<&PluginTarget> = all
        .iter()
        .filter(|target| fold(&target.qualified()) == wanted)
        .collect();
    let bare: Vec<&PluginTarget> = all
        .iter()
        .filter(|target| !given.contains('/') && fold(&target.plugin_type) == wanted)
        .collect();
    match (exact.as_slice(), bare.as_slice()) {
        ([one], _) | ([], [one]) => Ok((*one).clone()),
        ([], [_, _, ..]) => Err(ScaffoldError::AmbiguousType {
            given: given.to_owned(),
            candidates: bare.iter().map(|target| target.qualified()).collect(),
        }),
        _ => Err(ScaffoldError::UnknownType {
            given: given.to_owned(),
            valid: all.iter().map(PluginTarget::qualified).collect(),
        }),
    }
}

/// Where the new project takes `spire-plugin-sdk` from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SdkSource {
    /// A path dependency (relative to the project directory, or absolute).
    Path(String),
    /// A registry version requirement, e.g. `0.1`.
    Version(String),
}

/// Versions of the other dependencies a project declares; [`Default`] is what this workspace
/// builds with (`cargo xtask` reads them from the workspace manifest, and a test keeps the two
/// equal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versions {
    /// `tokio`.
    pub tokio: String,
    /// `tokio-stream` (streaming RPCs and tests).
    pub tokio_stream: String,
    /// `serde`.
    pub serde: String,
    /// `tracing`.
    pub tracing: String,
}

impl Default for Versions {
    fn default() -> Self {
        Versions {
            tokio: "1".to_owned(),
            tokio_stream: "0.1".to_owned(),
            serde: "1".to_owned(),
            tracing: "0.1".to_owned(),
        }
    }
}

/// What to render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    /// The plugin type.
    pub target: PluginTarget,
    /// The crate (and binary) name, kebab-case.
    pub crate_name: String,
    /// Where `spire-plugin-sdk` comes from.
    pub sdk: SdkSource,
    /// The other dependencies' versions.
    pub versions: Versions,
    /// Whether the manifest gets an empty `[workspace]` table, so the project builds on its own
    /// even below another workspace's directory (true for [`Project::new`]; false for projects
    /// that are members of a workspace).
    pub standalone: bool,
}

impl Project {
    /// A standalone project named after `name`, cased with heck (`MyAttestor` → `my-attestor`).
    ///
    /// # Errors
    ///
    /// [`ScaffoldError::InvalidName`] (see [`crate_name`]).
    pub fn new(target: PluginTarget, name: &str, sdk: SdkSource) -> Result<Self, ScaffoldError> {
        Ok(Project {
            target,
            crate_name: crate_name(name)?,
            sdk,
            versions: Versions::default(),
            standalone: true,
        })
    }
}

/// The kebab-case crate name for `name`: ASCII letters, digits, `-` and `_`, starting with a
/// letter, at most 64 characters, and not a name Cargo or Rust reserves.
///
/// # Errors
///
/// [`ScaffoldError::InvalidName`] saying which rule is broken.
pub fn crate_name(name: &str) -> Result<String, ScaffoldError> {
    let invalid = |reason: String| ScaffoldError::InvalidName {
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() {
        return Err(invalid("the name is empty".to_owned()));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return Err(invalid(format!(
            "{bad:?} is not allowed (use ASCII letters, digits, `-` and `_`)"
        )));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err(invalid("it must start with an ASCII letter".to_owned()));
    }
    if name.len() > 64 {
        return Err(invalid(format!(
            "it is {} characters long; at most 64 are allowed",
            name.len()
        )));
    }
    let kebab = name.to_kebab_case();
    let snake = kebab.to_snake_case();
    if RESERVED.contains(&snake.as_str()) || names::is_keyword(&snake) {
        return Err(invalid(format!(
            "`{snake}` is a Rust keyword or a name Cargo reserves"
        )));
    }
    Ok(kebab)
}

/// Crate names Cargo refuses or that shadow the standard crates.
const RESERVED: &[&str] = &[
    "alloc",
    "core",
    "std",
    "test",
    "proc_macro",
    "build",
    "deps",
    "examples",
    "incremental",
    "spire_plugin_sdk",
];

/// Renders `project`: every file of the starter project, paths relative to its directory.
/// Rust files are valid (syn-parsed) but not yet rustfmt-formatted.
///
/// # Errors
///
/// [`ScaffoldError::UnknownType`] when the target's service is not a plugin of `model`, or a
/// template/Rust error (bugs).
pub fn render(model: &Model, project: &Project) -> Result<Vec<GeneratedFile>, ScaffoldError> {
    let service = model
        .service(&project.target.service)
        .filter(|service| matches!(service.role, Role::Plugin { .. }))
        .ok_or_else(|| ScaffoldError::UnknownType {
            given: project.target.qualified(),
            valid: targets(model).iter().map(PluginTarget::qualified).collect(),
        })?;
    let view = View::new(model, project, service);
    let mut files = Vec::new();
    let mut add = |path: &str, rendered: Result<String, askama::Error>| {
        let mut text = rendered.map_err(|err| ScaffoldError::Template {
            file: path.to_owned(),
            message: err.to_string(),
        })?;
        if !text.ends_with('\n') {
            text.push('\n');
        }
        if path.ends_with(".rs") {
            syn::parse_file(&text).map_err(|err| ScaffoldError::InvalidRust {
                file: path.to_owned(),
                message: err.to_string(),
            })?;
        }
        files.push(GeneratedFile::text(path, text));
        Ok::<(), ScaffoldError>(())
    };
    add("Cargo.toml", CargoToml { p: &view }.render())?;
    add(".gitignore", Ok("/target\n".to_owned()))?;
    add("README.md", Readme { p: &view }.render())?;
    add("plugin.hcl", PluginHcl { p: &view }.render())?;
    add("spire-declaration.sh", Declaration { p: &view }.render())?;
    add("src/main.rs", MainRs { p: &view }.render())?;
    add("src/lib.rs", LibRs { p: &view }.render())?;
    add("src/plugin.rs", PluginRs { p: &view }.render())?;
    add("src/config.rs", ConfigRs { p: &view }.render())?;
    add("tests/common/mod.rs", CommonRs { p: &view }.render())?;
    add("tests/in_process.rs", InProcessRs { p: &view }.render())?;
    add("tests/binary.rs", BinaryRs { p: &view }.render())?;
    Ok(files)
}

/// Everything the templates print, computed once.
#[derive(Debug)]
struct View {
    crate_name: String,
    lib_name: String,
    /// The plugin's struct, e.g. `MyAttestor`.
    plugin_struct: String,
    /// Its configuration struct, e.g. `MyAttestorConfig`.
    config_struct: String,
    qualified_type: String,
    plugin_type: String,
    /// `agent` or `server` for SPIRE (the host services plugin-check offers); empty otherwise.
    side: String,
    /// SPIRE's daemon and configuration file for the side.
    daemon: String,
    conf_file: String,
    summary: String,
    /// The `//!` opening of `src/lib.rs` and of `src/plugin.rs`.
    lib_doc: String,
    plugin_doc: String,
    service: ServiceView,
    methods: Vec<MethodView>,
    host_services: Vec<HostServiceView>,
    fields: Vec<FieldView>,
    any_streaming_response: bool,
    any_streaming_request: bool,
    sdk_dependency: String,
    /// The same source with the host side on, for `[dev-dependencies]`.
    sdk_dev_dependency: String,
    versions: Versions,
    standalone: bool,
}

#[derive(Debug)]
struct ServiceView {
    name: String,
    /// The Rust name of the server trait (`SvidStore` for `SVIDStore`).
    trait_name: String,
    full_name: String,
    /// The Rust module of the service's package, e.g.
    /// `spire_plugin_sdk::proto::spire::plugin::agent::keymanager::v1`.
    module: String,
    bridge: String,
    server_module: String,
    client_module: String,
}

#[derive(Debug)]
struct MethodView {
    proto: String,
    rust: String,
    request: String,
    response: String,
    client_streaming: bool,
    server_streaming: bool,
    doc: Vec<String>,
}

#[derive(Debug)]
struct HostServiceView {
    name: String,
    module: String,
    bridge: String,
    client_module: String,
    /// The accessor on the plugin struct, e.g. `metrics`.
    accessor: String,
    /// Its doc comment.
    doc: String,
}

#[derive(Debug)]
struct FieldView {
    name: String,
    rust_type: String,
    doc: String,
    example: String,
    invalid: String,
    problem: String,
    check: String,
}

impl View {
    fn new(model: &Model, project: &Project, service: &Service) -> View {
        let target = &project.target;
        let hints = hints::spire(target.side.as_deref(), &target.plugin_type)
            .unwrap_or_else(hints::generic);
        let summary = match hints.summary {
            "" => first_sentence(&service.doc),
            known => known.to_owned(),
        };
        let plugin_struct = project.crate_name.to_upper_camel_case();
        let service_module = rust_module(&service.package);
        let methods = service
            .methods
            .iter()
            .map(|method| MethodView::new(method, &service.package))
            .collect::<Vec<_>>();
        let (daemon, conf_file) = match target.side.as_deref() {
            Some("server") => ("SPIRE Server", "server.conf"),
            _ => ("SPIRE Agent", "agent.conf"),
        };
        View {
            lib_name: project.crate_name.to_snake_case(),
            config_struct: format!("{plugin_struct}Config"),
            plugin_struct,
            crate_name: project.crate_name.clone(),
            qualified_type: target.qualified(),
            plugin_type: target.plugin_type.clone(),
            side: target.side.clone().unwrap_or_default(),
            daemon: daemon.to_owned(),
            conf_file: conf_file.to_owned(),
            lib_doc: wrap(
                "//! ",
                &format!(
                    "`{}`: a SPIRE {} plugin. {summary}",
                    project.crate_name,
                    target.qualified()
                ),
            ),
            plugin_doc: wrap(
                "//! ",
                &format!(
                    "The {} service of `{}`. {summary}",
                    service.name, project.crate_name
                ),
            ),
            summary,
            any_streaming_response: methods.iter().any(|m| m.server_streaming),
            any_streaming_request: methods.iter().any(|m| m.client_streaming),
            methods,
            service: ServiceView {
                name: service.name.clone(),
                trait_name: names::service_type(&service.name),
                full_name: service.full_name.clone(),
                module: service_module,
                bridge: names::bridge_type(&service.name),
                server_module: names::server_module(&service.name),
                client_module: names::client_module(&service.name),
            },
            host_services: host_services(model, &hints),
            fields: hints.fields.iter().map(FieldView::new).collect(),
            sdk_dependency: match &project.sdk {
                SdkSource::Path(path) => format!("{{ path = {} }}", toml_string(path)),
                SdkSource::Version(version) => toml_string(version),
            },
            sdk_dev_dependency: match &project.sdk {
                SdkSource::Path(path) => {
                    format!(
                        "{{ path = {}, features = [\"spire-host\"] }}",
                        toml_string(path)
                    )
                }
                SdkSource::Version(version) => {
                    format!(
                        "{{ version = {}, features = [\"spire-host\"] }}",
                        toml_string(version)
                    )
                }
            },
            versions: project.versions.clone(),
            standalone: project.standalone,
        }
    }
}

impl MethodView {
    fn new(method: &Method, package: &str) -> MethodView {
        MethodView {
            proto: method.name.clone(),
            rust: names::prost_snake(&method.name),
            request: message_path(&method.input_type, package),
            response: message_path(&method.output_type, package),
            client_streaming: method.client_streaming,
            server_streaming: method.server_streaming,
            doc: doc_lines(&method.doc),
        }
    }

    /// The associated stream type tonic's trait declares for a streaming response.
    fn stream_type(&self) -> String {
        format!("{}Stream", self.proto)
    }

    /// An empty request value, for the tests.
    fn empty_request(&self) -> String {
        match self.request.as_str() {
            "()" => "()".to_owned(),
            request => format!("{request}::default()"),
        }
    }

    /// The request message's Rust name without its path.
    fn request_name(&self) -> &str {
        last_segment(&self.request)
    }

    /// The response message's Rust name without its path.
    fn response_name(&self) -> &str {
        last_segment(&self.response)
    }
}

fn last_segment(path: &str) -> &str {
    path.rsplit("::").next().unwrap_or(path)
}

impl View {
    /// The field the bad-configuration tests spoil.
    fn first_field(&self) -> &FieldView {
        &self.fields[0]
    }

    /// Whether `config.rs` needs `std::path::Path`.
    fn has_path_check(&self) -> bool {
        self.fields
            .iter()
            .any(|field| field.check == "absolute_path")
    }
}

impl FieldView {
    fn new(field: &hints::Field) -> FieldView {
        FieldView {
            name: field.name.to_owned(),
            rust_type: field.rust_type().to_owned(),
            doc: field.doc.to_owned(),
            example: field.example.to_owned(),
            invalid: field.invalid.to_owned(),
            problem: field.problem().to_owned(),
            check: match field.check {
                Check::NonEmpty => "non_empty",
                Check::AbsolutePath => "absolute_path",
                Check::PositiveSeconds => "positive_seconds",
            }
            .to_owned(),
        }
    }
}

fn host_services(model: &Model, hints: &Hints) -> Vec<HostServiceView> {
    hints
        .host_services
        .iter()
        .filter_map(|full_name| model.service(full_name))
        .filter(|service| service.role == Role::HostService)
        .map(|service| HostServiceView {
            name: service.name.clone(),
            module: rust_module(&service.package),
            bridge: names::bridge_type(&service.name),
            client_module: names::client_module(&service.name),
            accessor: names::prost_snake(&service.name),
            doc: wrap(
                "    /// ",
                &format!(
                    "A client for SPIRE's {} host service (`{}`), or `None` when SPIRE did not \
                     offer it at `Init` (as in tests that offer no host services).",
                    service.name, service.full_name
                ),
            ),
        })
        .collect()
}

/// `spire_plugin_sdk::proto::a::b::v1` for package `a.b.v1`.
fn rust_module(package: &str) -> String {
    let mut path = vec!["spire_plugin_sdk".to_owned(), "proto".to_owned()];
    path.extend(names::package_modules(package));
    path.join("::")
}

/// `api::Name` for a message of the service's own package (imported as `api`), else the full
/// path into the SDK's generated modules.
fn message_path(full_type: &str, package: &str) -> String {
    let full = full_type.trim_start_matches('.');
    let (message_package, name) = full.rsplit_once('.').unwrap_or(("", full));
    let rust_name = names::prost_camel(name);
    if message_package == "google.protobuf" {
        // prost maps the well-known types to `()` and `prost_types`.
        return match name {
            "Empty" => "()".to_owned(),
            _ => format!("::prost_types::{rust_name}"),
        };
    }
    if message_package == package {
        format!("api::{rust_name}")
    } else {
        format!("{}::{rust_name}", rust_module(message_package))
    }
}

/// A proto comment as doc-comment lines, without the one space after `//` every proto line
/// keeps.
fn doc_lines(doc: &str) -> Vec<String> {
    doc.lines()
        .map(|line| line.strip_prefix(' ').unwrap_or(line).trim_end().to_owned())
        .collect()
}

/// `text` as lines of at most 100 columns, each starting with `prefix`, joined by newlines.
fn wrap(prefix: &str, text: &str) -> String {
    const WIDTH: usize = 100;
    let mut lines = Vec::new();
    let mut line = prefix.trim_end().to_owned();
    for word in text.split_whitespace() {
        let bare = line.len() == prefix.trim_end().len();
        if !bare && line.len() + 1 + word.len() > WIDTH {
            lines.push(std::mem::replace(&mut line, prefix.trim_end().to_owned()));
        }
        line.push(' ');
        line.push_str(word);
    }
    lines.push(line);
    lines.join("\n")
}

fn first_sentence(doc: &str) -> String {
    let flat = doc.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.find(". ") {
        Some(end) => flat[..=end].to_owned(),
        None => flat,
    }
}

/// A TOML basic string.
fn toml_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

macro_rules! templates {
    ($($name:ident => $path:literal,)*) => {$(
        #[derive(Template)]
        #[template(path = $path, escape = "none")]
        struct $name<'a> {
            p: &'a View,
        }
    )*};
}

templates! {
    CargoToml => "plugin/Cargo.toml.askama",
    Readme => "plugin/README.md.askama",
    PluginHcl => "plugin/plugin.hcl.askama",
    Declaration => "plugin/spire-declaration.sh.askama",
    MainRs => "plugin/src/main.rs.askama",
    LibRs => "plugin/src/lib.rs.askama",
    PluginRs => "plugin/src/plugin.rs.askama",
    ConfigRs => "plugin/src/config.rs.askama",
    CommonRs => "plugin/tests/common/mod.rs.askama",
    InProcessRs => "plugin/tests/in_process.rs.askama",
    BinaryRs => "plugin/tests/binary.rs.askama",
}

#[cfg(test)]
mod tests;
