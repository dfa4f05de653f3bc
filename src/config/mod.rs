//! Raw YAML → validated `Config`. The only module that reads YAML (`serde_norway`, the
//! maintained serde_yaml fork). `check-config`, `serve` start-up and every reload go through
//! `load`, so a config is judged by one set of rules.

pub mod adhoc;
pub mod duration;
mod locate;
pub mod model;
pub mod raw;
pub mod validate;

use std::path::Path;

pub use duration::{format_duration, parse_duration};
pub use model::*;
pub use validate::{expand_env, parse_target, parse_target_for};

/// Why a config was rejected. One line: file, field path, message, line and column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read the config: {reason}")]
    Read { file: String, reason: String },
    #[error("{file}: {message}")]
    Invalid {
        file: String,
        message: String,
        line: Option<usize>,
    },
}

impl ConfigError {
    /// The 1-based line of the offending field, when known.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Invalid { line, .. } => *line,
        }
    }
}

/// Read and validate a config file, with the process environment for `${VAR}` and tokens.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        file: path.display().to_string(),
        reason: e.to_string(),
    })?;
    parse(&text, path)
}

/// Validate config text; `origin` is where it came from (relative paths resolve against its
/// directory, and messages name it).
pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
    parse_with_env(text, origin, &|k| std::env::var(k).ok())
}

/// As `parse`, with an explicit environment.
pub fn parse_with_env(
    text: &str,
    origin: &Path,
    env: validate::EnvLookup<'_>,
) -> Result<Config, ConfigError> {
    let file = origin.display().to_string();
    let raw: raw::RawConfig = if text.trim().is_empty() {
        raw::RawConfig::default()
    } else {
        serde_norway::from_str(text).map_err(|e| ConfigError::Invalid {
            file: file.clone(),
            line: e.location().map(|l| l.line()),
            message: e.to_string(),
        })?
    };
    validate::validate(raw, text, origin, env).map_err(|p| {
        let message = match p.pos {
            Some((line, col)) => format!("{}: {} at line {line} column {col}", p.field, p.message),
            None => format!("{}: {}", p.field, p.message),
        };
        ConfigError::Invalid {
            file,
            message,
            line: p.pos.map(|p| p.0),
        }
    })
}
