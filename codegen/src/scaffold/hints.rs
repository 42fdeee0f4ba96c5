//! What the starter projects know about each SPIRE plugin type beyond its proto: a one-line
//! summary, the host services such plugins commonly use, and an example configuration whose
//! fields show each kind of validation. Types not listed (any non-SPIRE tree) get a generic
//! hint built from the service's own comment.

/// How a configuration field is validated after decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// A string that must not be blank.
    NonEmpty,
    /// A string that must be an absolute filesystem path.
    AbsolutePath,
    /// A number of seconds that must be greater than zero.
    PositiveSeconds,
}

/// One field of a starter project's configuration struct.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Field {
    /// The HCL key and Rust field name.
    pub name: &'static str,
    /// What the field means, as its doc comment.
    pub doc: &'static str,
    /// How it is validated.
    pub check: Check,
    /// A valid HCL value, e.g. `"/var/lib/spire/keys"` or `30`.
    pub example: &'static str,
    /// A value of the right type that the validation refuses.
    pub invalid: &'static str,
}

impl Field {
    /// The Rust type of the field.
    pub fn rust_type(&self) -> &'static str {
        match self.check {
            Check::NonEmpty | Check::AbsolutePath => "String",
            Check::PositiveSeconds => "u64",
        }
    }

    /// The message the validation gives for [`invalid`](Self::invalid).
    pub fn problem(&self) -> &'static str {
        match self.check {
            Check::NonEmpty => "must not be empty",
            Check::AbsolutePath => "must be an absolute path",
            Check::PositiveSeconds => "must be greater than zero",
        }
    }
}

/// What a starter project knows about one plugin type.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hints {
    /// What a plugin of the type does, one sentence.
    pub summary: &'static str,
    /// Full names of the host services such plugins commonly use (wired as optional).
    pub host_services: &'static [&'static str],
    /// The example configuration.
    pub fields: &'static [Field],
}

const METRICS: &str = "spire.hostservice.common.metrics.v1.Metrics";
const AGENT_STORE: &str = "spire.hostservice.server.agentstore.v1.AgentStore";
const IDENTITY_PROVIDER: &str = "spire.hostservice.server.identityprovider.v1.IdentityProvider";

const KEY_DIRECTORY: Field = Field {
    name: "key_directory",
    doc: "Where the plugin keeps its keys.",
    check: Check::AbsolutePath,
    example: "\"/var/lib/spire/keys\"",
    invalid: "\"keys\"",
};

/// The hints for `side`/`plugin_type`, if it is one of SPIRE's ten types.
pub(crate) fn spire(side: Option<&str>, plugin_type: &str) -> Option<Hints> {
    let hints = match (side?, plugin_type) {
        ("agent", "KeyManager") => Hints {
            summary: "Creates and holds the private keys of the SPIRE agent and signs with them.",
            host_services: &[METRICS],
            fields: &[KEY_DIRECTORY],
        },
        ("agent", "NodeAttestor") => Hints {
            summary: "Proves the identity of the node the SPIRE agent runs on to the SPIRE server.",
            host_services: &[METRICS],
            fields: &[Field {
                name: "token_path",
                doc: "The file holding the proof of identity sent to the server.",
                check: Check::AbsolutePath,
                example: "\"/var/run/node/token\"",
                invalid: "\"token\"",
            }],
        },
        ("agent", "SVIDStore") => Hints {
            summary: "Writes workload SVIDs the SPIRE agent mints into an external store.",
            host_services: &[METRICS],
            fields: &[Field {
                name: "store",
                doc: "The name of the store the SVIDs are written to.",
                check: Check::NonEmpty,
                example: "\"workload-svids\"",
                invalid: "\"\"",
            }],
        },
        ("agent", "WorkloadAttestor") => Hints {
            summary: "Tells the SPIRE agent which selectors describe a workload process.",
            host_services: &[METRICS],
            fields: &[Field {
                name: "lookup_timeout_seconds",
                doc: "How long to spend finding out about one workload.",
                check: Check::PositiveSeconds,
                example: "5",
                invalid: "0",
            }],
        },
        ("server", "BundlePublisher") => Hints {
            summary: "Publishes the trust bundle of the SPIRE server wherever others fetch it.",
            host_services: &[METRICS],
            fields: &[Field {
                name: "destination",
                doc: "Where the bundle is published.",
                check: Check::NonEmpty,
                example: "\"bundles/example.org.json\"",
                invalid: "\"\"",
            }],
        },
        ("server", "CredentialComposer") => Hints {
            summary: "Adjusts the attributes and claims of credentials the SPIRE server mints.",
            host_services: &[METRICS],
            fields: &[Field {
                name: "organization",
                doc: "The organization written into the subjects of composed certificates.",
                check: Check::NonEmpty,
                example: "\"Example Org\"",
                invalid: "\"  \"",
            }],
        },
        ("server", "KeyManager") => Hints {
            summary: "Creates and holds the signing keys of the SPIRE server and signs with them.",
            host_services: &[METRICS],
            fields: &[KEY_DIRECTORY],
        },
        ("server", "NodeAttestor") => Hints {
            summary: "Verifies the proof of identity an agent's node sends and names the agent.",
            host_services: &[AGENT_STORE, METRICS],
            fields: &[Field {
                name: "cluster",
                doc: "The name of the cluster whose nodes this attestor admits.",
                check: Check::NonEmpty,
                example: "\"production\"",
                invalid: "\"\"",
            }],
        },
        ("server", "Notifier") => Hints {
            summary: "Tells other systems about SPIRE server events such as a changed bundle.",
            host_services: &[IDENTITY_PROVIDER, METRICS],
            fields: &[Field {
                name: "destination",
                doc: "Where bundle updates are pushed.",
                check: Check::NonEmpty,
                example: "\"https://bundles.example.org/notify\"",
                invalid: "\"\"",
            }],
        },
        ("server", "UpstreamAuthority") => Hints {
            summary: "Signs the SPIRE server's CA with an upstream CA and hands out its roots.",
            host_services: &[METRICS],
            fields: &[Field {
                name: "ca_ttl_seconds",
                doc: "The lifetime requested for CA certificates signed upstream.",
                check: Check::PositiveSeconds,
                example: "86400",
                invalid: "0",
            }],
        },
        _ => return None,
    };
    Some(hints)
}

/// The hints for a plugin type SPIRE does not have: no host services, one example setting.
pub(crate) fn generic() -> Hints {
    Hints {
        summary: "",
        host_services: &[],
        fields: &[Field {
            name: "name",
            doc: "An example setting; replace it with the plugin's own.",
            check: Check::NonEmpty,
            example: "\"example\"",
            invalid: "\"\"",
        }],
    }
}
