//! The role manifest: a TOML file, controlled by the user, that says which role each gRPC
//! service of the tree plays. Parsing and structural checks live here; matching the entries
//! against the compiled services happens in [`crate::model`].
//!
//! ```toml
//! [[plugin]]                      # a plugin type: the service a plugin binary implements
//! service = "spire.plugin.agent.keymanager.v1.KeyManager"
//! type = "KeyManager"             # go-plugin cookie and dispense name
//! side = "agent"                  # optional namespace; (side, type) must be unique
//!
//! [[service]]                     # a service any plugin may also serve (e.g. Config)
//! service = "spire.service.common.config.v1.Config"
//!
//! [[host_service]]                # served by the host, dialled by plugins through the broker
//! service = "spire.hostservice.common.metrics.v1.Metrics"
//!
//! [[private]]                     # protocol plumbing (go-plugin broker, SPIRE Init)
//! service = "plugin.GRPCBroker"
//! ```

use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use crate::error::{Error, Location};
use crate::model::Role;

/// One manifest entry, resolved to a role and located in the manifest text.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) service: String,
    pub(crate) role: Role,
    /// Byte span of the `service = "..."` value, for error messages.
    pub(crate) span: Range<usize>,
}

/// The parsed manifest: its name, its text (to turn spans into lines) and its entries.
#[derive(Debug, Clone)]
pub(crate) struct Manifest {
    pub(crate) name: String,
    pub(crate) source: String,
    pub(crate) entries: Vec<Entry>,
}

impl Manifest {
    pub(crate) fn location(&self, span: &Range<usize>) -> Location {
        Location::at_offset(self.name.as_str(), &self.source, span.start)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    #[serde(default)]
    plugin: Vec<RawPlugin>,
    #[serde(default)]
    service: Vec<RawEntry>,
    #[serde(default)]
    host_service: Vec<RawEntry>,
    #[serde(default)]
    private: Vec<RawEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlugin {
    service: Spanned<String>,
    #[serde(rename = "type")]
    plugin_type: Spanned<String>,
    side: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    service: Spanned<String>,
}

/// Parses the manifest text and checks what can be checked without the protos: every entry is
/// well formed, no service is declared twice and no two services claim one plugin type.
pub(crate) fn parse(name: &str, source: &str) -> Result<Manifest, Error> {
    let raw: RawManifest = toml::from_str(source).map_err(|err| {
        let location = match err.span() {
            Some(span) => Location::at_offset(name, source, span.start),
            None => Location::file(name),
        };
        Error::manifest(location, err.message().trim_end().to_owned())
    })?;
    let mut manifest = Manifest {
        name: name.to_owned(),
        source: source.to_owned(),
        entries: Vec::new(),
    };

    for plugin in raw.plugin {
        let plugin_type = plugin.plugin_type.get_ref();
        if !is_type_name(plugin_type) {
            let location = manifest.location(&plugin.plugin_type.span());
            return Err(Error::manifest(
                location,
                format!("plugin type `{plugin_type}` must be an identifier such as `KeyManager`"),
            ));
        }
        let role = Role::Plugin {
            plugin_type: plugin_type.clone(),
            side: plugin.side,
        };
        manifest.push(plugin.service, role)?;
    }
    let simple = [
        (raw.service, Role::Service),
        (raw.host_service, Role::HostService),
        (raw.private, Role::Private),
    ];
    for (entries, role) in simple {
        for entry in entries {
            manifest.push(entry.service, role.clone())?;
        }
    }
    manifest.entries.sort_by_key(|entry| entry.span.start);
    manifest.check_plugin_types_unique()?;
    Ok(manifest)
}

impl Manifest {
    fn push(&mut self, service: Spanned<String>, role: Role) -> Result<(), Error> {
        let span = service.span();
        let service = service.into_inner();
        if let Some(first) = self.entries.iter().find(|entry| entry.service == service) {
            let first = self.location(&first.span);
            return Err(Error::manifest(
                self.location(&span),
                format!("service `{service}` is declared more than once (first at {first})"),
            ));
        }
        self.entries.push(Entry {
            service,
            role,
            span,
        });
        Ok(())
    }

    fn check_plugin_types_unique(&self) -> Result<(), Error> {
        let plugins = self.entries.iter().filter_map(|entry| match &entry.role {
            Role::Plugin { plugin_type, side } => Some((entry, plugin_type, side)),
            _ => None,
        });
        let mut seen: Vec<(&Entry, &String, &Option<String>)> = Vec::new();
        for (entry, plugin_type, side) in plugins {
            if let Some((first, ..)) = seen
                .iter()
                .find(|(_, t, s)| *t == plugin_type && *s == side)
            {
                let qualified = match side {
                    Some(side) => format!("{side}/{plugin_type}"),
                    None => plugin_type.clone(),
                };
                return Err(Error::manifest(
                    self.location(&entry.span),
                    format!(
                        "services `{}` and `{}` both claim plugin type `{qualified}`",
                        first.service, entry.service
                    ),
                ));
            }
            seen.push((entry, plugin_type, side));
        }
        Ok(())
    }
}

fn is_type_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
