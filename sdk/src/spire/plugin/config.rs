//! Decoding what SPIRE sends to `Config.Configure`/`Validate`: the core configuration (trust
//! domain) and the plugin's own HCL (`hcl_configuration`) into a `serde::Deserialize` struct.
//!
//! SPIRE re-prints a `plugin_data { … }` block with the HCL v1 printer, so keys may arrive
//! quoted (`"foo" = "bar"`), which HCL 2 (what hcl-rs parses) does not allow in a body. Before
//! parsing, quoted keys that are plain identifiers are unquoted; nothing else is touched, so
//! line numbers in errors are those of the text SPIRE sent. An empty configuration (no
//! `plugin_data`) decodes as an empty body: a struct whose fields all have defaults accepts it.
//!
//! Unknown keys are rejected when the struct says `#[serde(deny_unknown_fields)]`.
//!
//! ```
//! use spire_plugin_sdk::spire::plugin::parse_config;
//!
//! #[derive(Debug, serde::Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct MyConfig {
//!     selectors: Vec<String>,
//! }
//!
//! let parsed: MyConfig = parse_config("\"selectors\" = [\"a:b\"]").unwrap();
//! assert_eq!(parsed.selectors, ["a:b"]);
//! let err = parse_config::<MyConfig>("selectors = []\nbogus = 1").unwrap_err();
//! assert_eq!(err.key(), Some("bogus"));
//! assert_eq!(err.line(), Some(2));
//! ```

use std::borrow::Cow;

use serde::de::DeserializeOwned;
use tonic::Status;

use crate::proto::spire::service::common::config::v1::{
    ConfigureRequest, CoreConfiguration, ValidateRequest,
};

/// Why a plugin configuration was refused. Becomes `InvalidArgument` (see the `From` impl).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The text is not HCL.
    #[error("plugin configuration: syntax error at line {line}, column {column}: {message}")]
    Syntax {
        /// 1-based line in the text SPIRE sent.
        line: usize,
        /// 1-based column in the (normalized) text.
        column: usize,
        /// What hcl-rs reported.
        message: String,
    },
    /// A key is unknown, missing, or has a value of the wrong shape.
    #[error("plugin configuration: {}{message}", describe_key(key.as_deref(), *line))]
    Key {
        /// The offending key as a path (`outer.inner`, `list[2]`) when known.
        key: Option<String>,
        /// 1-based line where the key's top-level entry starts, when it is in the text.
        line: Option<usize>,
        /// What serde reported.
        message: String,
    },
    /// `core_configuration` or its trust domain is missing.
    #[error("core configuration: the trust domain is missing")]
    MissingTrustDomain,
}

fn describe_key(key: Option<&str>, line: Option<usize>) -> String {
    match (key, line) {
        (Some(key), Some(line)) => format!("key `{key}` (line {line}): "),
        (Some(key), None) => format!("key `{key}`: "),
        (None, Some(line)) => format!("line {line}: "),
        (None, None) => String::new(),
    }
}

impl ConfigError {
    /// The offending key, when the error is about one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Key { key, .. } => key.as_deref(),
            _ => None,
        }
    }

    /// The 1-based line of the error, when known.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Syntax { line, .. } => Some(*line),
            ConfigError::Key { line, .. } => *line,
            ConfigError::MissingTrustDomain => None,
        }
    }
}

impl From<ConfigError> for Status {
    /// Every configuration error is the caller's: `InvalidArgument` with the error's text.
    fn from(err: ConfigError) -> Status {
        Status::invalid_argument(err.to_string())
    }
}

/// The configuration SPIRE gives every plugin, beside its own HCL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreConfig {
    /// The trust domain's name, bare (`example.org`, no `spiffe://`).
    pub trust_domain: String,
}

impl CoreConfig {
    fn from_proto(core: Option<&CoreConfiguration>) -> Result<CoreConfig, ConfigError> {
        match core {
            Some(core) if !core.trust_domain.is_empty() => Ok(CoreConfig {
                trust_domain: core.trust_domain.clone(),
            }),
            _ => Err(ConfigError::MissingTrustDomain),
        }
    }
}

/// A decoded `Configure`/`Validate` request: the core configuration and the plugin's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Configuration<T> {
    /// What SPIRE sets for every plugin.
    pub core: CoreConfig,
    /// The plugin's `plugin_data`, decoded.
    pub plugin: T,
}

impl<T: DeserializeOwned> Configuration<T> {
    /// Decodes a `Configure` request; the trust domain must be set.
    ///
    /// # Errors
    ///
    /// [`ConfigError`]; `?` turns it into an `InvalidArgument` status.
    pub fn from_configure(request: &ConfigureRequest) -> Result<Self, ConfigError> {
        Self::decode(
            request.core_configuration.as_ref(),
            &request.hcl_configuration,
        )
    }

    /// Decodes a `Validate` request, like [`from_configure`](Self::from_configure).
    ///
    /// # Errors
    ///
    /// [`ConfigError`].
    pub fn from_validate(request: &ValidateRequest) -> Result<Self, ConfigError> {
        Self::decode(
            request.core_configuration.as_ref(),
            &request.hcl_configuration,
        )
    }

    fn decode(core: Option<&CoreConfiguration>, hcl: &str) -> Result<Self, ConfigError> {
        let core = CoreConfig::from_proto(core)?;
        let plugin = parse(hcl)?;
        Ok(Configuration { core, plugin })
    }
}

/// Decodes `plugin_data` as SPIRE sends it (see the module docs) into `T`.
///
/// # Errors
///
/// [`ConfigError::Syntax`] for text that is not HCL, [`ConfigError::Key`] for unknown (when
/// `T` denies them), missing or ill-typed keys.
pub fn parse<T: DeserializeOwned>(hcl: &str) -> Result<T, ConfigError> {
    let text = unquote_keys(hcl);
    let body = hcl::parse(&text).map_err(|err| syntax(&err))?;
    // Evaluated first: deserializing an unevaluated body into a `String` field would accept any
    // expression (`x = [1]` becomes the string `${[1]}`). There are no variables or functions.
    // hcl-rs's arithmetic asserts (in builds with debug assertions) that results are finite,
    // so `t = 2 / 0` would panic the handler; such a panic is the text's fault, reported as one.
    let evaluated = std::panic::catch_unwind(|| {
        hcl::eval::Evaluate::evaluate(&body, &hcl::eval::Context::new())
    })
    .map_err(|_| ConfigError::Key {
        key: None,
        line: None,
        message: "evaluating an expression failed (a division by zero?)".to_owned(),
    })?;
    let body = evaluated.map_err(|errs| {
        let message = errs.to_string();
        ConfigError::Key {
            key: None,
            line: None,
            message,
        }
    })?;
    let value: hcl::Value = hcl::from_body(body).map_err(|err| syntax(&err))?;
    let deserializer = serde::de::IntoDeserializer::into_deserializer(value);
    serde_path_to_error::deserialize(deserializer).map_err(
        |err: serde_path_to_error::Error<hcl::Error>| {
            let path = err.path().to_string();
            let message = err.inner().to_string();
            let key = field_in_message(&message)
                .map(|field| {
                    if path == "." {
                        field.to_owned()
                    } else if path == field || path.ends_with(&format!(".{field}")) {
                        // serde_path_to_error's path already ends at an unknown field.
                        path.clone()
                    } else {
                        format!("{path}.{field}")
                    }
                })
                .or_else(|| (path != ".").then_some(path));
            let line = key.as_deref().and_then(|key| line_of(&text, key));
            ConfigError::Key { key, line, message }
        },
    )
}

fn syntax(err: &hcl::Error) -> ConfigError {
    match err {
        hcl::Error::Parse(parse) => ConfigError::Syntax {
            line: parse.location().line(),
            column: parse.location().column(),
            message: parse.message().to_owned(),
        },
        other => ConfigError::Key {
            key: None,
            line: None,
            message: other.to_string(),
        },
    }
}

/// The field a serde message names in backticks: ``unknown field `x`, expected …``,
/// ``missing field `x` ``.
fn field_in_message(message: &str) -> Option<&str> {
    let rest = message
        .strip_prefix("unknown field `")
        .or_else(|| message.strip_prefix("missing field `"))?;
    rest.split('`').next()
}

/// The 1-based line where `key`'s first path segment starts a line (bare or quoted).
fn line_of(text: &str, key: &str) -> Option<usize> {
    let first = key
        .split(['.', '['])
        .next()
        .filter(|first| !first.is_empty())?;
    text.lines()
        .position(|line| {
            let line = line.trim_start();
            let rest = line
                .strip_prefix(first)
                .or_else(|| line.strip_prefix(&format!("\"{first}\"")[..]));
            rest.is_some_and(|rest| {
                let rest = rest.trim_start();
                rest.starts_with('=') || rest.starts_with('{') || rest.starts_with('"')
            })
        })
        .map(|index| index + 1)
}

/// HCL's own identifier rule (Unicode ID_Start/ID_Continue, `_`, `-`), from hcl-rs.
fn is_identifier(text: &str) -> bool {
    hcl::Identifier::new(text).is_ok()
}

/// Unquotes HCL v1 style keys (`"foo" = …`, `"foo" {`, `"foo" "label" {`) that are plain identifiers and start a
/// line, or follow `{` or `,`. Strings, comments and everything else are left as they are.
fn unquote_keys(input: &str) -> Cow<'_, str> {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut changed = false;
    let mut key_position = true;
    let mut i = 0;
    let mut copied = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'#' => i = skip_to_newline(bytes, i),
            b'/' if bytes.get(i + 1) == Some(&b'/') => i = skip_to_newline(bytes, i),
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i = input[i + 2..]
                    .find("*/")
                    .map_or(bytes.len(), |end| i + 2 + end + 2);
            }
            b' ' | b'\t' | b'\r' => i += 1,
            b'\n' | b'{' | b',' => {
                key_position = true;
                i += 1;
            }
            b'"' => {
                let (end, closed) = string_end(bytes, i);
                // Only a closed string can be a key; an unclosed one is left for hcl-rs to
                // report. `i + 1` and `end - 1` are next to ASCII quotes, so both are char
                // boundaries.
                if closed && key_position {
                    let content = &input[i + 1..end - 1];
                    if is_identifier(content) && starts_key_value(bytes, end) {
                        out.push_str(&input[copied..i]);
                        out.push_str(content);
                        copied = end;
                        changed = true;
                    }
                }
                key_position = false;
                i = end;
            }
            _ => {
                key_position = false;
                i += 1;
            }
        }
    }
    if !changed {
        return Cow::Borrowed(input);
    }
    out.push_str(&input[copied..]);
    Cow::Owned(out)
}

/// Whether what follows a string ending at `from` makes it a key: `=` (not `==`), or `{`
/// after any number of quoted labels (`"labels" "team" {`, the v1 printer's labelled block).
fn starts_key_value(bytes: &[u8], mut from: usize) -> bool {
    loop {
        while matches!(bytes.get(from), Some(b' ' | b'\t')) {
            from += 1;
        }
        match bytes.get(from) {
            Some(b'=') => return bytes.get(from + 1) != Some(&b'='),
            Some(b'{') => return true,
            Some(b'"') => match string_end(bytes, from) {
                (end, true) => from = end,
                (_, false) => return false,
            },
            _ => return false,
        }
    }
}

fn skip_to_newline(bytes: &[u8], from: usize) -> usize {
    bytes[from..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(bytes.len(), |offset| from + offset)
}

/// Where the string starting at `start` (a `"`) ends, honoring `\` escapes: just past its
/// closing quote (`true`), or, for an unclosed string, at the newline or the end of the text
/// (`false`). Every index returned is a char boundary: it follows an ASCII `"`, or is the
/// position of an ASCII `\n`, or the end. (Stepping over an escape may land `i` inside a
/// multi-byte char, but `i` is only ever compared with ASCII bytes, never used to slice.)
fn string_end(bytes: &[u8], start: usize) -> (usize, bool) {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if bytes.get(i + 1) == Some(&b'\n') => return (i + 1, false),
            b'\\' => i += 2,
            b'"' => return (i + 1, true),
            b'\n' => return (i, false),
            _ => i += 1,
        }
    }
    (bytes.len(), false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        #[serde(default)]
        name: String,
        #[serde(default)]
        count: u32,
        #[serde(default)]
        tags: Vec<String>,
        #[serde(default)]
        inner: Option<Inner>,
    }

    #[derive(Debug, serde::Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        level: u32,
    }

    #[test]
    fn accepts_hcl1_printer_output_with_quoted_keys() {
        let text = "\"name\" = \"x\"\n\"count\" = 3\n\"tags\" = [\"a\", \"b=c\"]\n\"inner\" {\n  \"level\" = 2\n}\n";
        let parsed: Sample = parse(text).unwrap();
        assert_eq!(parsed.name, "x");
        assert_eq!(parsed.count, 3);
        assert_eq!(parsed.tags, ["a", "b=c"]);
        assert_eq!(parsed.inner, Some(Inner { level: 2 }));
    }

    #[test]
    fn accepts_hcl1_printer_output_of_labelled_blocks() {
        // Found by the declarations fuzz target's seeds: SPIRE re-prints `labels "team" { … }`
        // inside plugin_data as `"labels" "team" {`.
        let value: hcl::Value =
            parse("\"labels\" \"team\" \"x\" {\n\t\"allow\" = true\n}\n").unwrap();
        assert_eq!(
            value,
            hcl::Value::from_iter([(
                "labels",
                hcl::Value::from_iter([(
                    "team",
                    hcl::Value::from_iter([("x", hcl::Value::from_iter([("allow", true)]))])
                )])
            )])
        );
        // A string followed by strings and no `{` is not a key.
        assert!(parse::<hcl::Value>("\"a\" \"b\"\n").is_err());
    }

    #[test]
    fn accepts_object_assignment_and_plain_keys() {
        let parsed: Sample =
            parse("name = \"y\" # comment \"k\" = 1\ninner = { \"level\" = 5 }").unwrap();
        assert_eq!(parsed.name, "y");
        assert_eq!(parsed.inner, Some(Inner { level: 5 }));
    }

    #[test]
    fn empty_text_is_an_empty_body() {
        let parsed: Sample = parse("").unwrap();
        assert_eq!(parsed.count, 0);
        assert!(parse::<Sample>("  \n").is_ok());
    }

    #[test]
    fn string_values_that_look_like_keys_are_left_alone() {
        let parsed: Sample = parse("name = \"\\\"q\\\" = 1\"").unwrap();
        assert_eq!(parsed.name, "\"q\" = 1");
    }

    #[test]
    fn unknown_nested_key_names_its_path() {
        let err = parse::<Sample>("inner {\n  level = 1\n  nope = 2\n}\n").unwrap_err();
        assert_eq!(err.key(), Some("inner.nope"));
        assert_eq!(err.line(), Some(1));
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let err = parse::<Sample>("name = \"x\"\n\n\"bogus\" = 1\n").unwrap_err();
        assert_eq!(err.key(), Some("bogus"));
        assert_eq!(err.line(), Some(3));
        assert!(err.to_string().contains("key `bogus` (line 3)"), "{err}");
        let status = Status::from(err);
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
    }

    #[test]
    fn wrong_type_names_the_key_path() {
        let err = parse::<Sample>("name = \"x\"\ncount = \"many\"\n").unwrap_err();
        assert_eq!(err.key(), Some("count"));
        assert_eq!(err.line(), Some(2));
        let err = parse::<Sample>("inner {\n level = \"high\"\n}\n").unwrap_err();
        assert_eq!(err.key(), Some("inner.level"));
        assert_eq!(err.line(), Some(1));
    }

    #[test]
    fn values_keep_their_types() {
        for text in [
            "name = [\"a\"]",
            "name = { a = 1 }",
            "name = true",
            "name = 5",
            "name { a = 1 }",
        ] {
            let err = parse::<Sample>(text).unwrap_err();
            assert_eq!(err.key(), Some("name"), "{text}: {err}");
            assert_eq!(err.line(), Some(1), "{text}: {err}");
        }
        let err = parse::<Sample>("name = var.x").unwrap_err();
        assert!(err.to_string().contains("var"), "{err}");
    }

    #[test]
    fn syntax_error_has_line_and_column() {
        let err = parse::<Sample>("name = \"x\"\ncount = = 3\n").unwrap_err();
        assert!(
            matches!(err, ConfigError::Syntax { line: 2, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn unclosed_string_with_multibyte_text_is_a_syntax_error() {
        // Found by the plugin_data fuzz target: this used to slice inside 'é' and panic.
        for text in ["k = \"é", "name = \"café", "\"k\" = \"é\n", "a = 1\n\"é"] {
            let err = parse::<hcl::Value>(text).unwrap_err();
            assert!(
                matches!(err, ConfigError::Syntax { .. }),
                "{text:?}: {err:?}"
            );
            assert!(err.line().is_some(), "{text:?}: {err}");
        }
        let err = parse::<Sample>("name = \"café").unwrap_err();
        assert_eq!(err.line(), Some(1), "{err}");
        assert_eq!(Status::from(err).code(), tonic::Code::InvalidArgument);
    }

    #[test]
    fn quoted_keys_with_combining_marks_are_unquoted() {
        // Found by the declarations fuzz target: U+059B is an identifier char in HCL but not
        // alphanumeric, so the key stayed quoted and hcl-rs refused it.
        let value: hcl::Value = parse("\"a\u{59b}_b\" = 1\n").unwrap();
        assert_eq!(value, hcl::Value::from_iter([("a\u{59b}_b", 1)]));
    }

    #[test]
    fn division_by_zero_is_a_config_error() {
        // Found by the plugin_data fuzz target: hcl-rs debug-asserts finite results.
        for text in ["t = 2 /0\n", "t = 0 / 0", "t = 1 % 0"] {
            let err = parse::<hcl::Value>(text).map(|_| ()).err();
            if let Some(err) = err {
                assert_eq!(Status::from(err).code(), tonic::Code::InvalidArgument);
            }
        }
    }

    #[test]
    fn every_prefix_of_multibyte_text_decodes_or_fails_cleanly() {
        let text = "\"名前\" = \"café ☕\" # ü\n\"inner\" {\n  \"level\" = 2 /* ß */\n}\n\"tags\" = [\"\\é\"]\n";
        for (end, _) in text.char_indices().chain([(text.len(), ' ')]) {
            let _ = parse::<hcl::Value>(&text[..end]);
            let _ = parse::<Sample>(&text[..end]);
        }
        let parsed: Sample = parse("\"name\" = \"café\"\n").unwrap();
        assert_eq!(parsed.name, "café");
    }

    #[test]
    fn missing_required_field_is_named() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code, reason = "only decoding is tested")]
        struct Needs {
            must: String,
        }
        let err = parse::<Needs>("").unwrap_err();
        assert_eq!(err.key(), Some("must"));
        assert_eq!(err.line(), None);
    }

    #[test]
    fn trust_domain_is_required() {
        let request = ConfigureRequest {
            core_configuration: None,
            hcl_configuration: String::new(),
        };
        assert_eq!(
            Configuration::<Sample>::from_configure(&request).unwrap_err(),
            ConfigError::MissingTrustDomain
        );
        let request = ConfigureRequest {
            core_configuration: Some(CoreConfiguration {
                trust_domain: "example.org".into(),
            }),
            hcl_configuration: "\"count\" = 7".into(),
        };
        let config = Configuration::<Sample>::from_configure(&request).unwrap();
        assert_eq!(config.core.trust_domain, "example.org");
        assert_eq!(config.plugin.count, 7);
    }
}
