//! Why a configuration file was refused, and the helpers that name the field at fault.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use thiserror::Error;

/// Why a configuration file was refused.
///
/// ```
/// use qlb_lb::config::{ConfigError, LbConfig};
///
/// let err = LbConfig::from_toml("listen = [\"nowhere\"]", ".".as_ref()).unwrap_err();
/// assert!(matches!(&err, ConfigError::Invalid { field, .. } if field == "listen[0]"));
/// ```
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file, or a file it names, could not be read.
    #[error("{field}: cannot read {}: {cause}", path.display())]
    Read {
        /// The field naming the file (`config` for the configuration file itself).
        field: String,
        /// The path as resolved.
        path: PathBuf,
        /// What the operating system said. Part of the message, so deliberately not
        /// `source()` too: error chains would print it twice.
        cause: std::io::Error,
    },
    /// Not valid TOML, or a key of the wrong type or an unknown key. The message is the
    /// parser's without the quoted source line, which may hold a secret.
    #[error("{}{message}", line.map(|l| format!("line {l}: ")).unwrap_or_default())]
    Syntax {
        /// The line at fault, from 1, when the parser says.
        line: Option<usize>,
        /// What is wrong.
        message: String,
    },
    /// A field with a value that is not allowed.
    #[error("{field}: {problem}")]
    Invalid {
        /// The field, as `section[index].key`.
        field: String,
        /// What is wrong with it.
        problem: String,
    },
}

impl ConfigError {
    pub(super) fn invalid(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            problem: problem.into(),
        }
    }

    /// A field of the cluster's record on etcd is wrong.
    pub(crate) fn etcd_record(field: &str, problem: impl Into<String>) -> Self {
        Self::invalid(format!("etcd fleet/cluster: {field}"), problem)
    }
}

/// `text` as the raw schema `T`, or the parser's complaint with its line.
pub(super) fn parse<T: DeserializeOwned>(text: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Syntax {
        line: e.span().map(|span| {
            1 + text
                .get(..span.start)
                .map_or(0, |t| t.matches('\n').count())
        }),
        message: e.message().trim().to_owned(),
    })
}

/// quic-lb's and qlb-router's errors start with the field they concern ("field: problem");
/// this makes one ours, its field placed under `table` (e.g. `quic_lb[0]`) when given, and
/// named `whole` when the message names no field.
pub(super) fn field_error(message: &str, table: Option<&str>, whole: &str) -> ConfigError {
    match (message.split_once(": "), table) {
        (Some((field, problem)), Some(table)) => {
            ConfigError::invalid(format!("{table}.{field}"), problem)
        }
        (Some((field, problem)), None) => ConfigError::invalid(field, problem),
        (None, _) => ConfigError::invalid(whole, message),
    }
}

/// The text of the file at `path`, which `field` names.
pub(super) fn read_file(field: &str, path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|cause| ConfigError::Read {
        field: field.to_owned(),
        path: path.to_owned(),
        cause,
    })
}
