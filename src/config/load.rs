//! Layering with figment: built-in defaults → TOML file → `TIERWISE_*` env (`__` nests).

use std::fmt;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;

use super::raw::RawConfig;
use super::validate::{validate, Problem};
use super::{defaults, Config};

/// Top-level sections an env var may set; any other `TIERWISE_*` var (such as
/// `TIERWISE_CONFIG` or a client key named by `key_env`) is not config.
const ENV_SECTIONS: [&str; 9] =
    ["server", "upstreams", "models", "tasks", "profiles", "auth", "detect", "trail", "audit"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    File(PathBuf),
    /// No file: a local upstream at 127.0.0.1:8080, plus OpenAI when `OPENAI_API_KEY` is set.
    BuiltIn,
    /// Inline text (tests, `load_from_str`).
    Inline,
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigSource::File(path) => write!(f, "{}", path.display()),
            ConfigSource::BuiltIn => f.write_str("built-in default"),
            ConfigSource::Inline => f.write_str("inline config"),
        }
    }
}

#[derive(Debug)]
pub enum ConfigError {
    /// The named file does not exist or cannot be read.
    Unreadable { source: ConfigSource, reason: String },
    /// The file is not valid TOML or has unknown keys or wrong types.
    Syntax { source: ConfigSource, errors: Vec<String> },
    /// It parsed, but makes no sense: every problem found.
    Invalid { source: ConfigSource, problems: Vec<Problem> },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Unreadable { source, reason } => {
                write!(f, "cannot read config {source}: {reason}")
            }
            ConfigError::Syntax { source, errors } => {
                write!(f, "config {source} cannot be parsed:")?;
                for e in errors {
                    write!(f, "\n  - {e}")?;
                }
                Ok(())
            }
            ConfigError::Invalid { source, problems } => {
                let n = problems.len();
                write!(f, "config {source} has {n} problem{}:", if n == 1 { "" } else { "s" })?;
                for p in problems {
                    write!(f, "\n  - {p}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// Loads the config from `path`, or the built-in default when `path` is `None`, with
/// `TIERWISE_*` environment overrides on top. `env` reads the environment (API keys and
/// the built-in default's `OPENAI_API_KEY`).
pub fn load(path: Option<&Path>, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    load_with(path, env, None)
}

/// As [`load`], with `overrides` (TOML text) merged over the file and the environment:
/// how `tierwise eval --sweep` changes one setting.
pub fn load_with(
    path: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
    overrides: Option<&str>,
) -> Result<Config, ConfigError> {
    let (source, base, digest) = match path {
        Some(path) => {
            let source = ConfigSource::File(path.to_path_buf());
            let bytes = match std::fs::read(path) {
                Ok(bytes) => bytes,
                Err(err) => return Err(ConfigError::Unreadable { source, reason: err.to_string() }),
            };
            (source, Figment::from(Toml::file(path)), Some(super::sha256(&bytes)))
        }
        None => (ConfigSource::BuiltIn, Figment::from(Serialized::defaults(defaults::raw(env))), None),
    };
    let mut figment = base.merge(env_provider());
    if let Some(overrides) = overrides {
        figment = figment.merge(Toml::string(overrides));
    }
    let mut config = extract(figment, source, env)?;
    config.file_digest = digest;
    Ok(config)
}

/// Loads inline TOML text with no environment overrides (tests, examples).
pub fn load_from_str(toml: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    extract(Figment::from(Toml::string(toml)), ConfigSource::Inline, env)
}

fn env_provider() -> Env {
    Env::prefixed("TIERWISE_")
        .filter(|key| {
            let section = key.as_str().split("__").next().unwrap_or_default();
            ENV_SECTIONS.iter().any(|s| section.eq_ignore_ascii_case(s))
        })
        .split("__")
}

fn extract(
    figment: Figment,
    source: ConfigSource,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let raw: RawConfig = figment.extract().map_err(|err| ConfigError::Syntax {
        source: source.clone(),
        errors: err.into_iter().map(|e| e.to_string()).collect(),
    })?;
    validate(&raw, source.clone(), env).map_err(|problems| ConfigError::Invalid { source, problems })
}
