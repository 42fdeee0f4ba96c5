//! Plugin declarations as SPIRE reads them from `agent.conf`/`server.conf` (`plugins { <Type>
//! "<name>" { ... } }`, parsed with hcl-rs), the data each plugin is configured with, and the
//! checksum and data-hash rules (`docs/protocol.md` "Plugin declaration").

use std::collections::BTreeSet;
use std::path::PathBuf;

use sha2::{Digest, Sha256, Sha512};

/// The keys SPIRE accepts inside a plugin declaration.
const KNOWN_KEYS: &[&str] = &[
    "plugin_cmd",
    "plugin_args",
    "plugin_checksum",
    "plugin_data",
    "plugin_data_file",
    "enabled",
];

/// Where a plugin's configuration data comes from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum PluginData {
    /// No data: the plugin is configured with `""`.
    #[default]
    None,
    /// Inline data, already in the form the plugin receives (a `plugin_data` block re-printed as
    /// HCL, or a quoted string).
    Inline(String),
    /// `plugin_data_file`: the file's raw content, re-read on every (re)configure.
    File(PathBuf),
}

/// One `<Type> "<name>" { ... }` declaration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginDeclaration {
    /// The plugin type, e.g. `KeyManager` (with the host's side it selects the plugin service).
    pub plugin_type: String,
    /// The plugin's name, e.g. `disk`.
    pub name: String,
    /// `plugin_cmd`: the binary; resolved to an absolute path against the current directory,
    /// never looked up in `PATH`.
    pub cmd: PathBuf,
    /// `plugin_args`.
    pub args: Vec<String>,
    /// `plugin_checksum`: the expected SHA-256 of the binary as hex, validated at load time.
    pub checksum: Option<String>,
    /// `plugin_data` / `plugin_data_file`.
    pub data: PluginData,
    /// `enabled` (default true); disabled plugins are skipped by SPIRE.
    pub enabled: bool,
}

impl PluginDeclaration {
    /// A declaration of an enabled plugin with no arguments, checksum or data.
    pub fn new(
        plugin_type: impl Into<String>,
        name: impl Into<String>,
        cmd: impl Into<PathBuf>,
    ) -> Self {
        PluginDeclaration {
            plugin_type: plugin_type.into(),
            name: name.into(),
            cmd: cmd.into(),
            args: Vec::new(),
            checksum: None,
            data: PluginData::None,
            enabled: true,
        }
    }
}

/// Why the `plugins` configuration could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The text is not HCL.
    #[error("failed to parse plugin configuration: {0}")]
    Syntax(String),
    /// A plugin was declared twice (SPIRE's text).
    #[error("plugin \"{plugin_type}\"/\"{name}\" declared more than once")]
    Duplicate {
        /// The plugin type.
        plugin_type: String,
        /// The plugin name.
        name: String,
    },
    /// A key SPIRE does not know.
    #[error("plugin \"{plugin_type}\"/\"{name}\": unknown key \"{key}\"")]
    UnknownKey {
        /// The plugin type.
        plugin_type: String,
        /// The plugin name.
        name: String,
        /// The key.
        key: String,
    },
    /// Both `plugin_data` and `plugin_data_file` are set.
    #[error(
        "plugin \"{plugin_type}\"/\"{name}\": plugin_data and plugin_data_file are mutually exclusive"
    )]
    BothData {
        /// The plugin type.
        plugin_type: String,
        /// The plugin name.
        name: String,
    },
    /// A key has a value of the wrong kind, or the declaration is malformed.
    #[error("plugin \"{plugin_type}\"/\"{name}\": {message}")]
    Invalid {
        /// The plugin type.
        plugin_type: String,
        /// The plugin name.
        name: String,
        /// What is wrong.
        message: String,
    },
}

/// Reads plugin declarations from HCL: either a document with a top-level `plugins { ... }`
/// block (other top-level content is ignored) or the body of such a block. Both
/// `Type "name" { ... }` and `Type { name { ... } }` nestings are accepted. Declarations are
/// returned in file order, disabled ones included (check [`PluginDeclaration::enabled`]).
pub fn parse_plugins(text: &str) -> Result<Vec<PluginDeclaration>, ConfigError> {
    let body = hcl::parse(text).map_err(|e| ConfigError::Syntax(e.to_string()))?;
    let plugins_blocks: Vec<&hcl::Block> = body
        .blocks()
        .filter(|block| block.identifier() == "plugins")
        .collect();
    let mut declarations = Vec::new();
    let mut seen = BTreeSet::new();
    let bodies: Vec<&hcl::Body> = if plugins_blocks.is_empty() {
        vec![&body]
    } else {
        plugins_blocks.iter().map(|block| block.body()).collect()
    };
    for plugins in bodies {
        for block in plugins.blocks() {
            let plugin_type = block.identifier();
            let invalid = |name: &str, message: String| ConfigError::Invalid {
                plugin_type: plugin_type.to_owned(),
                name: name.to_owned(),
                message,
            };
            let mut found: Vec<(String, &hcl::Body)> = Vec::new();
            match block.labels() {
                [name] => found.push((name.as_str().to_owned(), block.body())),
                [] => {
                    // `Type { name { ... } }`
                    if let Some(attr) = block.body().attributes().next() {
                        return Err(invalid("", format!("unexpected key \"{}\"", attr.key())));
                    }
                    for inner in block.body().blocks() {
                        if !inner.labels().is_empty() {
                            return Err(invalid(inner.identifier(), "unexpected labels".into()));
                        }
                        found.push((inner.identifier().to_owned(), inner.body()));
                    }
                }
                _ => return Err(invalid("", "expected one plugin name label".into())),
            }
            for (name, body) in found {
                if !seen.insert((plugin_type.to_owned(), name.clone())) {
                    return Err(ConfigError::Duplicate {
                        plugin_type: plugin_type.to_owned(),
                        name,
                    });
                }
                declarations.push(declaration(plugin_type, &name, body)?);
            }
        }
    }
    Ok(declarations)
}

fn declaration(
    plugin_type: &str,
    name: &str,
    body: &hcl::Body,
) -> Result<PluginDeclaration, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid {
        plugin_type: plugin_type.to_owned(),
        name: name.to_owned(),
        message,
    };
    let mut decl = PluginDeclaration::new(plugin_type, name, PathBuf::new());
    let mut inline = None;
    let mut file = None;
    for structure in body.iter() {
        let key = match structure {
            hcl::Structure::Attribute(attr) => attr.key(),
            hcl::Structure::Block(block) => block.identifier(),
        };
        if !KNOWN_KEYS.contains(&key) {
            return Err(ConfigError::UnknownKey {
                plugin_type: plugin_type.to_owned(),
                name: name.to_owned(),
                key: key.to_owned(),
            });
        }
        match structure {
            hcl::Structure::Block(block) => {
                if key != "plugin_data" || !block.labels().is_empty() {
                    return Err(invalid(format!("\"{key}\" must be an attribute")));
                }
                inline = Some(print_body(block.body()));
            }
            hcl::Structure::Attribute(attr) => {
                let expr = attr.expr();
                let string = || match expr {
                    hcl::Expression::String(s) => Ok(s.clone()),
                    _ => Err(invalid(format!("\"{key}\" must be a string"))),
                };
                match key {
                    "plugin_cmd" => decl.cmd = PathBuf::from(string()?),
                    "plugin_checksum" => decl.checksum = Some(string()?),
                    "plugin_data_file" => file = Some(PathBuf::from(string()?)),
                    "enabled" => match expr {
                        hcl::Expression::Bool(b) => decl.enabled = *b,
                        _ => return Err(invalid("\"enabled\" must be a bool".into())),
                    },
                    "plugin_args" => match expr {
                        hcl::Expression::Array(items) => {
                            decl.args = items
                                .iter()
                                .map(|item| match item {
                                    hcl::Expression::String(s) => Ok(s.clone()),
                                    _ => Err(invalid("\"plugin_args\" must be strings".into())),
                                })
                                .collect::<Result<_, _>>()?;
                        }
                        _ => return Err(invalid("\"plugin_args\" must be a list".into())),
                    },
                    _ => {
                        // plugin_data as an attribute: an object is the block form; anything else
                        // is re-printed as is (a string keeps its quotes).
                        inline = Some(match expr {
                            hcl::Expression::Object(object) => print_object(object, 0),
                            other => print_expr(other),
                        });
                    }
                }
            }
        }
    }
    decl.data = match (inline, file) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::BothData {
                plugin_type: plugin_type.to_owned(),
                name: name.to_owned(),
            });
        }
        (Some(text), None) if text.is_empty() => PluginData::None,
        (Some(text), None) => PluginData::Inline(text),
        (None, Some(path)) => PluginData::File(path),
        (None, None) => PluginData::None,
    };
    Ok(decl)
}

/// Prints an expression on one line where it can (`[1, 2]`, as the HCL v1 printer does for lists).
fn print_expr(expr: &hcl::Expression) -> String {
    use hcl::format::{Format, Formatter};
    let mut formatter = Formatter::builder().compact_arrays(true).build_vec();
    expr.format_string(&mut formatter).unwrap_or_default()
}

/// `text` as a quoted HCL string, escaped by hcl-rs's printer (a label or key may hold quotes,
/// backslashes, newlines or `${`, which must not be written raw).
fn quoted(text: &str) -> String {
    print_expr(&hcl::Expression::String(text.to_owned()))
}

fn indent(level: usize) -> String {
    "\t".repeat(level)
}

/// One printed item of a body: an assignment (`key`, `value`) or a block (already printed).
enum Item {
    Assign(String, String),
    Block(String),
}

/// Joins items one per line at `level`, aligning the `=` of consecutive single-line
/// assignments as the HCL v1 printer does.
fn join_items(items: Vec<Item>, level: usize) -> String {
    let single = |item: &Item| matches!(item, Item::Assign(_, value) if !value.contains('\n'));
    let mut lines = Vec::new();
    let mut index = 0;
    while index < items.len() {
        let run_end = (index..items.len())
            .find(|&i| !single(&items[i]))
            .unwrap_or(items.len());
        let width = items[index..run_end]
            .iter()
            .map(|item| match item {
                Item::Assign(key, _) => key.len(),
                Item::Block(_) => 0,
            })
            .max()
            .unwrap_or(0);
        for item in &items[index..run_end.max(index + 1)] {
            lines.push(match item {
                Item::Assign(key, value) if single(item) => {
                    format!("{}{key:<width$} = {value}", indent(level))
                }
                Item::Assign(key, value) => format!("{}{key} = {value}", indent(level)),
                Item::Block(text) => text.clone(),
            });
        }
        index = run_end.max(index + 1);
    }
    lines.join("\n")
}

/// Re-prints a `plugin_data` body the way SPIRE's HCL v1 printer shapes it: one item per line,
/// keys quoted (`foo = "bar"` becomes `"foo" = "bar"`), `=` aligned across consecutive
/// single-line assignments, tabs for nesting, nested blocks as quoted identifiers and labels.
/// An empty body prints as `""` (no data). Best effort: the v1 printer's blank-line placement is
/// not reproduced.
fn print_body(body: &hcl::Body) -> String {
    print_body_at(body, 0)
}

fn print_body_at(body: &hcl::Body, level: usize) -> String {
    let mut items = Vec::new();
    for structure in body.iter() {
        match structure {
            hcl::Structure::Attribute(attr) => {
                let value = match attr.expr() {
                    hcl::Expression::Object(object) => {
                        format!(
                            "{{\n{}\n{}}}",
                            print_object(object, level + 1),
                            indent(level)
                        )
                    }
                    other => print_expr(other),
                };
                items.push(Item::Assign(format!("\"{}\"", attr.key()), value));
            }
            hcl::Structure::Block(block) => {
                let mut head = format!("{}\"{}\"", indent(level), block.identifier());
                for label in block.labels() {
                    head.push(' ');
                    head.push_str(&quoted(label.as_str()));
                }
                let inner = print_body_at(block.body(), level + 1);
                items.push(Item::Block(if inner.is_empty() {
                    format!("{head} {{}}")
                } else {
                    format!("{head} {{\n{inner}\n{}}}", indent(level))
                }));
            }
        }
    }
    join_items(items, level)
}

fn print_object(object: &hcl::Object<hcl::ObjectKey, hcl::Expression>, level: usize) -> String {
    let items = object
        .iter()
        .map(|(key, value)| {
            let key = match key {
                hcl::ObjectKey::Identifier(ident) => quoted(ident.as_str()),
                hcl::ObjectKey::Expression(hcl::Expression::String(s)) => quoted(s),
                hcl::ObjectKey::Expression(other) => quoted(&print_expr(other)),
                _ => quoted(""),
            };
            let value = match value {
                hcl::Expression::Object(inner) => {
                    format!(
                        "{{\n{}\n{}}}",
                        print_object(inner, level + 1),
                        indent(level)
                    )
                }
                other => print_expr(other),
            };
            Item::Assign(key, value)
        })
        .collect();
    join_items(items, level)
}

/// Why a `plugin_checksum` value is unusable (SPIRE's texts).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChecksumError {
    /// Not hex.
    #[error("checksum is not a valid hex string")]
    NotHex,
    /// Hex, but not 32 bytes.
    #[error("expected checksum of length 64; got {0}")]
    WrongLength(usize),
}

/// Decodes a `plugin_checksum` value (hex SHA-256).
pub fn parse_checksum(text: &str) -> Result<[u8; 32], ChecksumError> {
    let bytes = decode_hex(text).ok_or(ChecksumError::NotHex)?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| ChecksumError::WrongLength(text.len()))
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    text.as_bytes()
        .chunks(2)
        .map(|pair| {
            let digits = std::str::from_utf8(pair).ok()?;
            u8::from_str_radix(digits, 16).ok()
        })
        .collect()
}

fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 of `bytes` as hex: what `plugin_checksum` must hold for a binary.
pub fn sha256_hex(bytes: &[u8]) -> String {
    encode_hex(&Sha256::digest(bytes))
}

/// SPIRE's hash of plugin data for change detection: SHA-512 truncated to 16 bytes, as hex.
pub fn data_hash(data: &str) -> String {
    encode_hex(&Sha512::digest(data.as_bytes())[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_data_is_reprinted_with_quoted_keys() {
        let decls = parse_plugins(
            r#"plugins {
                KeyManager "disk" {
                    plugin_cmd = "./km"
                    plugin_args = ["-a", "b"]
                    plugin_data {
                        foo = "bar"
                        n = 3
                    }
                }
                WorkloadAttestor "s" {
                    plugin_cmd = "./wa"
                    plugin_data = "X"
                    enabled = false
                }
                NodeAttestor {
                    empty {
                        plugin_cmd = "./na"
                        plugin_data {}
                    }
                }
            }"#,
        )
        .unwrap();
        assert_eq!(decls.len(), 3);
        assert_eq!(decls[0].args, ["-a", "b"]);
        assert_eq!(
            decls[0].data,
            PluginData::Inline("\"foo\" = \"bar\"\n\"n\"   = 3".into())
        );
        assert_eq!(decls[1].data, PluginData::Inline("\"X\"".into()));
        assert!(!decls[1].enabled);
        assert_eq!(decls[2].name, "empty");
        assert_eq!(decls[2].data, PluginData::None);
    }

    #[test]
    fn nested_data_is_reprinted_with_tabs() {
        let decls = parse_plugins(
            r#"KeyManager "k" {
                 plugin_data {
                   a = 1
                   inner "x" {
                     bb = "c"
                     d  = [1, 2]
                   }
                 }
               }"#,
        )
        .unwrap();
        assert_eq!(
            decls[0].data,
            PluginData::Inline(
                "\"a\" = 1\n\"inner\" \"x\" {\n\t\"bb\" = \"c\"\n\t\"d\"  = [1, 2]\n}".into()
            )
        );
    }

    #[test]
    fn labels_and_keys_are_reprinted_escaped() {
        // Found by the declarations fuzz target: a label holding a newline or a quote was
        // printed raw, so the plugin could not parse its own plugin_data.
        let decls = parse_plugins(
            "KeyManager \"k\" {\n plugin_data {\n  b \"x\\\"y\\nz\" { c = 1 }\n  o = { \"p\\\"q\" = 2 }\n }\n}",
        )
        .unwrap();
        assert_eq!(
            decls[0].data,
            PluginData::Inline(
                "\"b\" \"x\\\"y\\nz\" {\n\t\"c\" = 1\n}\n\"o\" = {\n\t\"p\\\"q\" = 2\n}".into()
            )
        );
    }

    #[test]
    fn declaration_errors_have_spire_texts() {
        let dup = parse_plugins(
            r#"KeyManager "a" { plugin_cmd = "x" }
               KeyManager "a" { plugin_cmd = "y" }"#,
        );
        assert_eq!(
            dup.unwrap_err().to_string(),
            r#"plugin "KeyManager"/"a" declared more than once"#
        );
        let unknown = parse_plugins(r#"KeyManager "a" { tags = ["x"] }"#);
        assert!(matches!(unknown, Err(ConfigError::UnknownKey { ref key, .. }) if key == "tags"));
        let both = parse_plugins(
            r#"KeyManager "a" {
                 plugin_data { a = 1 }
                 plugin_data_file = "f"
               }"#,
        );
        assert!(matches!(both, Err(ConfigError::BothData { .. })));
    }

    #[test]
    fn checksum_rules() {
        assert_eq!(parse_checksum("zz"), Err(ChecksumError::NotHex));
        assert_eq!(
            parse_checksum(&"ab".repeat(20)).unwrap_err().to_string(),
            "expected checksum of length 64; got 40"
        );
        assert!(parse_checksum(&sha256_hex(b"x")).is_ok());
        assert_eq!(data_hash("").len(), 32);
    }
}
