//! Log set-up: `tracing` to stderr as text or JSON, filtered by `--log-level` directives.
//! The OTel SDK's own targets are silenced unless asked for by name or the default level is
//! `debug`/`trace`, because the OTLP exporter logs every failed export attempt and rtprobe
//! already reports those, rate-limited, itself (see `metrics::SDK_LOG_TARGETS`).

use std::str::FromStr;

use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::cli::LogFormat;
use crate::metrics::SDK_LOG_TARGETS;

#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error(
        "invalid --log-level {spec:?}: {reason} (expected e.g. `info` or `rtprobe=debug,warn`)"
    )]
    Filter { spec: String, reason: String },
    #[error("a global logger is already installed")]
    AlreadySet,
}

/// Parse the filter directives, adding the SDK silencing described in the module header.
pub fn filter(spec: &str) -> Result<Targets, LoggingError> {
    let mut targets = Targets::from_str(spec).map_err(|e| LoggingError::Filter {
        spec: spec.to_string(),
        reason: e.to_string(),
    })?;
    let verbose = targets
        .default_level()
        .is_some_and(|l| l >= LevelFilter::DEBUG);
    if !verbose {
        for t in SDK_LOG_TARGETS {
            let named = spec.split(',').any(|d| d.trim().starts_with(t));
            if !named {
                targets = targets.with_target(t, LevelFilter::OFF);
            }
        }
    }
    Ok(targets)
}

/// Install the global subscriber. Logs go to stderr so `rtprobe probe --json` keeps stdout clean.
pub fn init(spec: &str, format: LogFormat) -> Result<(), LoggingError> {
    let targets = filter(spec)?;
    let registry = tracing_subscriber::registry().with(targets);
    let res = match format {
        LogFormat::Text => registry
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    res.map_err(|_| LoggingError::AlreadySet)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    #[test]
    fn sdk_targets_are_silenced_at_info() {
        let t = filter("info").unwrap();
        assert!(t.would_enable("rtprobe::probe", &Level::INFO));
        assert!(!t.would_enable("opentelemetry-otlp", &Level::ERROR));
    }

    #[test]
    fn sdk_targets_open_at_debug_or_by_name() {
        assert!(
            filter("debug")
                .unwrap()
                .would_enable("opentelemetry_sdk", &Level::DEBUG)
        );
        let t = filter("info,opentelemetry-otlp=warn").unwrap();
        assert!(t.would_enable("opentelemetry-otlp", &Level::WARN));
    }

    #[test]
    fn bad_filter_is_a_clear_error() {
        let e = filter("rtprobe=loud").unwrap_err().to_string();
        assert!(e.contains("rtprobe=loud"), "{e}");
    }
}
