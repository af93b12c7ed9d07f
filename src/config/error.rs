//! Why a config cannot be used, and where in the file.

/// A config that cannot be used, with where it is wrong when that is known.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{}{message}", location(*.line, *.column))]
    Invalid {
        message: String,
        line: Option<usize>,
        column: Option<usize>,
    },
}

impl ConfigError {
    /// An error found in the text, at a 1-based line and column where known.
    pub(crate) fn at(message: String, line: Option<usize>, column: Option<usize>) -> ConfigError {
        ConfigError::Invalid {
            message,
            line,
            column,
        }
    }

    /// An error with no place in the file (a file it names, say).
    pub(crate) fn invalid(message: String) -> ConfigError {
        ConfigError::at(message, None, None)
    }
}

fn location(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!("line {l} column {c}: "),
        (Some(l), None) => format!("line {l}: "),
        _ => String::new(),
    }
}
