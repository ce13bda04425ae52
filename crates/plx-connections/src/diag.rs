//! Diagnostics: what validation reports, all at once.

use std::fmt;

use serde::Serialize;

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The input is refused.
    Error,
    /// The input is legal but probably not what was meant.
    Warning,
}

impl Severity {
    /// `error` or `warning`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

macro_rules! codes {
    ($($(#[doc = $doc:literal])* $variant:ident = $name:literal,)*) => {
        /// A stable identifier for a kind of problem; conformance cases and tools match on it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Code {
            $($(#[doc = $doc])* $variant,)*
        }

        impl Code {
            /// Every code.
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            /// The kebab-case id.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Code::$variant => $name,)*
                }
            }
        }
    };
}

codes! {
    /// The document is not valid YAML or JSON.
    InvalidYaml = "invalid-yaml",
    /// A string that must hold JSON does not.
    InvalidJson = "invalid-json",
    /// The document is too large, too deep, or expands too much.
    TooLarge = "too-large",
    /// The document is none of the forms this tool reads.
    UnknownForm = "unknown-form",
    /// `kind` is not one of Polyaxon's kinds.
    UnknownKind = "unknown-kind",
    /// A required field is absent.
    MissingField = "missing-field",
    /// A field that the object does not have.
    UnknownField = "unknown-field",
    /// A value of the wrong type.
    InvalidType = "invalid-type",
    /// A name that is not a DNS-1123 label (or subdomain, for Secrets and ConfigMaps).
    InvalidName = "invalid-name",
    /// Two connections share a name.
    DuplicateName = "duplicate-name",
    /// A bucket URL whose scheme does not fit the connection kind.
    BucketSchemeMismatch = "bucket-scheme-mismatch",
    /// A bucket URL without a valid bucket name.
    InvalidBucket = "invalid-bucket",
    /// A `schema` written for another kind.
    SchemaKindMismatch = "schema-kind-mismatch",
    /// A mount path that is not absolute.
    InvalidMountPath = "invalid-mount-path",
    /// A `defaultMode` that is not a file mode.
    InvalidDefaultMode = "invalid-default-mode",
    /// A Secret or ConfigMap key that Kubernetes refuses.
    InvalidKey = "invalid-key",
    /// An environment variable name that Kubernetes refuses.
    InvalidEnvName = "invalid-env-name",
    /// The artifacts store is not a store kind.
    InvalidArtifactsStore = "invalid-artifacts-store",
    /// A job names a connection the catalog lacks.
    UnknownConnection = "unknown-connection",
    /// An init entry sets more than one of its exclusive fields.
    InitExclusiveFields = "init-exclusive-fields",
    /// An init entry would read or write outside its root.
    PathEscape = "path-escape",
    /// An init entry pulls artifacts from a connection that holds none.
    InitConnectionKind = "init-connection-kind",
    /// A number out of its range.
    OutOfRange = "out-of-range",
    /// `env` as a list of `{name, value}` objects where Polyaxon's agent reads it (it takes a map).
    EnvListForAgent = "env-list-for-agent",
    /// Warning: an s3 connection with no secret, config map or env uses the ambient credential chain.
    AmbientCredentials = "ambient-credentials",
    /// Warning: a credential written in plain text in the connection's `env`.
    SecretInEnv = "secret-in-env",
    /// Warning: the same variable twice in `env`; the last one wins.
    DuplicateEnv = "duplicate-env",
    /// Warning: Polyaxon's init container name for this connection exceeds 63 characters.
    NameTooLongForInit = "name-too-long-for-init",
    /// Warning: two connections mount one Secret or ConfigMap at different paths; Polyaxon keeps the first.
    ConflictingMount = "conflicting-mount",
    /// Warning: Polyaxon's chart renders this `env` into its service pods, where a map is invalid.
    EnvInServicePods = "env-in-service-pods",
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// One problem in the input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// A JSON Pointer into the input document; it goes on inside JSON held in strings.
    pub path: String,
    /// The stable id of the problem.
    pub code: Code,
    /// What is wrong and what to write instead.
    pub message: String,
}

impl Diagnostic {
    /// Whether this is an error.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() {
            "/"
        } else {
            &self.path
        };
        write!(
            f,
            "{}[{}] {}: {}",
            self.severity.as_str(),
            self.code,
            path,
            self.message
        )
    }
}

/// Collects diagnostics during one pass.
#[derive(Debug, Default)]
pub(crate) struct Sink {
    pub(crate) diagnostics: Vec<Diagnostic>,
}

impl Sink {
    pub(crate) fn error(&mut self, path: &Ptr, code: Code, message: impl Into<String>) {
        self.push(Severity::Error, path, code, message.into());
    }

    pub(crate) fn warning(&mut self, path: &Ptr, code: Code, message: impl Into<String>) {
        self.push(Severity::Warning, path, code, message.into());
    }

    fn push(&mut self, severity: Severity, path: &Ptr, code: Code, message: String) {
        self.diagnostics.push(Diagnostic {
            severity,
            path: path.0.clone(),
            code,
            message,
        });
    }

    pub(crate) fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// A JSON Pointer under construction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Ptr(pub(crate) String);

impl Ptr {
    pub(crate) fn key(&self, key: &str) -> Ptr {
        let escaped = key.replace('~', "~0").replace('/', "~1");
        Ptr(format!("{}/{escaped}", self.0))
    }

    pub(crate) fn index(&self, index: usize) -> Ptr {
        Ptr(format!("{}/{index}", self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointer_escapes_tilde_and_slash() {
        assert_eq!(
            Ptr::default().key("a/b").key("c~d").index(3).0,
            "/a~1b/c~0d/3"
        );
    }

    #[test]
    fn codes_are_unique_kebab_case() {
        let mut names: Vec<_> = Code::ALL.iter().map(|code| code.as_str()).collect();
        assert!(
            names
                .iter()
                .all(|name| name.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
        );
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Code::ALL.len());
    }
}
