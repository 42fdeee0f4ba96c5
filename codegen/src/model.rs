//! The plugin-level model the emitters work from: services with their role, plugin type and
//! methods. Built from the compiled descriptors plus the role manifest; emitters never look at
//! raw descriptors.

use std::collections::BTreeMap;

use prost_types::{FileDescriptorProto, FileDescriptorSet};

use crate::error::{Error, Location};
use crate::manifest::Manifest;

/// The role a gRPC service plays between a host and its plugins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// The main service of a plugin type; a plugin binary of that type implements it.
    Plugin {
        /// The type name, used as go-plugin cookie key and value (e.g. `KeyManager`).
        plugin_type: String,
        /// An optional namespace that keeps equal type names apart (SPIRE: `agent`, `server`).
        side: Option<String>,
    },
    /// A service a plugin may serve beside its plugin service (e.g. SPIRE's Config).
    Service,
    /// A service the host serves and plugins dial through the broker.
    HostService,
    /// Protocol plumbing that plugin authors do not implement by hand.
    Private,
}

impl Role {
    /// The manifest section that declares this role.
    pub fn section(&self) -> &'static str {
        match self {
            Role::Plugin { .. } => "plugin",
            Role::Service => "service",
            Role::HostService => "host_service",
            Role::Private => "private",
        }
    }
}

/// Every service of a proto tree, grouped by package.
#[derive(Debug, Clone, Default)]
pub struct Model {
    /// Packages in name order; packages without services are listed too.
    pub packages: Vec<Package>,
}

/// One proto package.
#[derive(Debug, Clone)]
pub struct Package {
    /// The dotted package name, e.g. `spire.plugin.agent.keymanager.v1`.
    pub name: String,
    /// The files that declare this package, in path order.
    pub files: Vec<String>,
    /// Its services in declaration order.
    pub services: Vec<Service>,
}

/// One gRPC service and its role.
#[derive(Debug, Clone)]
pub struct Service {
    /// The proto name, e.g. `KeyManager`.
    pub name: String,
    /// The fully-qualified gRPC name, e.g. `spire.plugin.agent.keymanager.v1.KeyManager`.
    pub full_name: String,
    /// The dotted package name.
    pub package: String,
    /// The `.proto` file that declares the service.
    pub file: String,
    /// What the manifest says the service is.
    pub role: Role,
    /// The leading comment on the service, as written in the proto.
    pub doc: String,
    /// The RPCs in declaration order.
    pub methods: Vec<Method>,
}

/// One RPC of a service.
#[derive(Debug, Clone)]
pub struct Method {
    /// The proto name, e.g. `SignData`.
    pub name: String,
    /// Fully-qualified request type, e.g. `.spire.plugin.agent.keymanager.v1.SignDataRequest`.
    pub input_type: String,
    /// Fully-qualified response type.
    pub output_type: String,
    /// The request side is a stream.
    pub client_streaming: bool,
    /// The response side is a stream.
    pub server_streaming: bool,
    /// The leading comment on the RPC.
    pub doc: String,
}

impl Model {
    /// All services of all packages, in package then declaration order.
    pub fn services(&self) -> impl Iterator<Item = &Service> {
        self.packages.iter().flat_map(|package| &package.services)
    }

    /// Looks a service up by its fully-qualified name.
    pub fn service(&self, full_name: &str) -> Option<&Service> {
        self.services()
            .find(|service| service.full_name == full_name)
    }
}

/// Field number of `service` in `FileDescriptorProto`, and of `method` in `ServiceDescriptorProto`.
const FILE_SERVICE: i32 = 6;
const SERVICE_METHOD: i32 = 2;

/// Builds the model, requiring that every service has exactly one role and every manifest entry
/// names a service of the tree.
pub(crate) fn build(fds: &FileDescriptorSet, manifest: &Manifest) -> Result<Model, Error> {
    check_entries_exist(fds, manifest)?;
    let mut packages: BTreeMap<String, Package> = BTreeMap::new();
    for file in &fds.file {
        let package = packages
            .entry(file.package().to_owned())
            .or_insert_with(|| Package {
                name: file.package().to_owned(),
                files: Vec::new(),
                services: Vec::new(),
            });
        package.files.push(file.name().to_owned());
        for (index, service) in file.service.iter().enumerate() {
            let full_name = qualify(file.package(), service.name());
            let Some(entry) = manifest
                .entries
                .iter()
                .find(|entry| entry.service == full_name)
            else {
                return Err(Error::manifest(
                    service_location(file, index),
                    format!(
                        "service `{full_name}` has no role: declare it in {} under one of \
                         [[plugin]], [[service]], [[host_service]] or [[private]]",
                        manifest.name
                    ),
                ));
            };
            let path = [FILE_SERVICE, index as i32];
            let methods = service
                .method
                .iter()
                .enumerate()
                .map(|(m, method)| Method {
                    name: method.name().to_owned(),
                    input_type: method.input_type().to_owned(),
                    output_type: method.output_type().to_owned(),
                    client_streaming: method.client_streaming(),
                    server_streaming: method.server_streaming(),
                    doc: leading_comment(file, &[path[0], path[1], SERVICE_METHOD, m as i32]),
                })
                .collect();
            package.services.push(Service {
                name: service.name().to_owned(),
                full_name,
                package: file.package().to_owned(),
                file: file.name().to_owned(),
                role: entry.role.clone(),
                doc: leading_comment(file, &path),
                methods,
            });
        }
    }
    Ok(Model {
        packages: packages.into_values().collect(),
    })
}

/// Every manifest entry must name a service of the tree. Checked before missing roles, so a
/// misspelt name is reported as itself, with the services still lacking a role as a hint.
fn check_entries_exist(fds: &FileDescriptorSet, manifest: &Manifest) -> Result<(), Error> {
    let defined: Vec<String> = fds
        .file
        .iter()
        .flat_map(|file| {
            file.service
                .iter()
                .map(|service| qualify(file.package(), service.name()))
        })
        .collect();
    let Some(unknown) = manifest
        .entries
        .iter()
        .find(|entry| !defined.contains(&entry.service))
    else {
        return Ok(());
    };
    let unassigned: Vec<&str> = defined
        .iter()
        .filter(|name| !manifest.entries.iter().any(|entry| &entry.service == *name))
        .map(String::as_str)
        .collect();
    let hint = match unassigned.as_slice() {
        [] => String::new(),
        names => format!(" (services without a role: {})", names.join(", ")),
    };
    Err(Error::manifest(
        manifest.location(&unknown.span),
        format!(
            "[[{}]] names service `{}`, which no .proto file of the tree defines{hint}",
            unknown.role.section(),
            unknown.service
        ),
    ))
}

fn qualify(package: &str, name: &str) -> String {
    if package.is_empty() {
        name.to_owned()
    } else {
        format!("{package}.{name}")
    }
}

fn source_location<'a>(
    file: &'a FileDescriptorProto,
    path: &[i32],
) -> Option<&'a prost_types::source_code_info::Location> {
    file.source_code_info
        .as_ref()?
        .location
        .iter()
        .find(|location| location.path == path)
}

fn service_location(file: &FileDescriptorProto, index: usize) -> Location {
    match source_location(file, &[FILE_SERVICE, index as i32]) {
        Some(location) if location.span.len() >= 2 => Location {
            file: file.name().to_owned(),
            line_col: Some((location.span[0] as usize + 1, location.span[1] as usize + 1)),
        },
        _ => Location::file(file.name()),
    }
}

fn leading_comment(file: &FileDescriptorProto, path: &[i32]) -> String {
    source_location(file, path)
        .and_then(|location| location.leading_comments.as_deref())
        .map(|comment| comment.trim().to_owned())
        .unwrap_or_default()
}
