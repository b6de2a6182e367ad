//! Why a configuration is refused: [`ConfigError`], and the exit status that goes with it.

use std::fmt;
use std::io;
use std::path::PathBuf;

use cluster::crypto::KEY_LEN;
use cluster::shell::TlsError;

use super::security::HEX_KEY_CHARS;

/// Exit status of `netagent` when its configuration is refused (a [`ConfigError`]), the same
/// status clap uses for a malformed command line.
pub const EXIT_CONFIG: u8 = 2;

/// Why the configuration was refused. Nothing was started; `netagent` exits with
/// [`EXIT_CONFIG`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A value outside its allowed range or form.
    #[error("invalid {field}: {value} (allowed: {allowed})")]
    Invalid {
        /// The field's name as written in the file.
        field: &'static str,
        /// The value given.
        value: String,
        /// What is allowed, in words.
        allowed: String,
    },
    /// A field without a value and without a usable default.
    #[error("missing {field}: {reason}")]
    Missing {
        /// The field's name as written in the file.
        field: &'static str,
        /// Why it is needed and how to give it.
        reason: String,
    },
    /// The configuration file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The configuration file is not valid TOML, has an unknown key or a value of the wrong
    /// type (the message names the key).
    #[error("invalid config file {}: {source}", path.display())]
    Parse {
        /// The file (`<inline>` for text given to
        /// [`AgentConfig::from_sources`](super::AgentConfig::from_sources) without
        /// `--config`).
        path: PathBuf,
        /// The TOML error, with line, column and key.
        source: Box<toml::de::Error>,
    },
    /// Neither the complete security material nor `--insecure` was given.
    #[error(
        "refusing to run without gossip keys and TLS certificates: missing {missing}; give them, or pass --insecure for a test cluster"
    )]
    Insecure {
        /// The missing fields, comma-separated.
        missing: String,
    },
    /// Some but not all of `tls_ca`, `tls_cert` and `tls_key` were given.
    #[error(
        "incomplete TLS material: {given} given but {missing} missing (give all of tls_ca, tls_cert and tls_key)"
    )]
    PartialTls {
        /// The TLS fields given, comma-separated.
        given: String,
        /// The TLS fields missing, comma-separated.
        missing: String,
    },
    /// `insecure` was set together with security material.
    #[error(
        "contradictory security: insecure is set but {given} also given; remove insecure or the security material"
    )]
    Contradiction {
        /// The security fields given, comma-separated.
        given: String,
    },
    /// A host name in `field` could not be resolved.
    #[error("invalid {field}: cannot resolve {value}: {source}")]
    Resolve {
        /// The field's name as written in the file.
        field: &'static str,
        /// The entry given.
        value: String,
        /// The resolver's error.
        source: io::Error,
    },
    /// A line of a key file is not a key. The key text is not repeated here.
    #[error(
        "invalid gossip key on line {line}: {reason} (allowed: {HEX_KEY_CHARS} hex characters or base64 of {KEY_LEN} bytes)"
    )]
    BadKey {
        /// The 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A key file holds no key.
    #[error(
        "no gossip key found (one per line: {HEX_KEY_CHARS} hex characters or base64 of {KEY_LEN} bytes; '#' starts a comment)"
    )]
    NoKeys,
    /// A key or PEM file could not be read or holds nothing usable.
    #[error("cannot load {field} {}: {source}", path.display())]
    Load {
        /// The field naming the file.
        field: &'static str,
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// rustls refused the TLS material (for example a key that does not match the
    /// certificate).
    #[error("invalid TLS material (tls_ca, tls_cert, tls_key): {0}")]
    Tls(#[from] TlsError),
    /// The node core refused the derived configuration (`packet_size` out of range).
    #[error(transparent)]
    Node(#[from] cluster::NodeConfigError),
    /// A `NETAGENT_*` variable holds a value its flag refuses. The message is clap's, naming
    /// the flag, as when the value is given on the command line; `netagent` reports it the way
    /// clap reports a bad flag ([`clap::Error::exit`]).
    #[error(transparent)]
    Env(#[from] clap::Error),
}

/// A [`ConfigError::Invalid`] for `field`.
pub(super) fn invalid(
    field: &'static str,
    value: impl fmt::Display,
    allowed: impl Into<String>,
) -> ConfigError {
    ConfigError::Invalid {
        field,
        value: value.to_string(),
        allowed: allowed.into(),
    }
}
