//! Timeline → derived values → OTel instruments; Prometheus rendering; OTLP push.
//!
//! A [`Telemetry`] owns one `SdkMeterProvider` read by `/metrics` through [`Telemetry::render`]
//! (a `ManualReader`; text 0.0.4 or protobuf with native histograms, see `prom`) and, when
//! configured, a second one whose OTLP `PeriodicReader` pushes on its own thread (see `fanout`
//! for why two). Callers record through a [`Recorder`], which is a cheap handle safe to clone
//! into every probe task.

mod fanout;
mod identity;
mod instruments;
mod otlp;
mod prom;
mod prom_labels;
pub mod prom_proto;
mod telemetry;
pub mod traces;

pub use instruments::{ProbeLabels, Recorder};
pub use telemetry::{CARDINALITY_LIMIT, Telemetry};

/// `tracing` targets of the OTel crates' internal logs. The OTLP exporter logs every failed
/// export attempt there (an error per interval, warnings per retry, while a collector is down);
/// rtprobe's own `OTLP export failed` warning already reports failures at most every 5 minutes
/// with a count, and `rtprobe_otlp_export_failures_total` counts each one. The logging setup
/// should therefore cap these targets at `off` by default and open them only at debug verbosity.
/// (The OTLP crate logs under its package name, with hyphens.)
pub const SDK_LOG_TARGETS: [&str; 3] = ["opentelemetry", "opentelemetry_sdk", "opentelemetry-otlp"];

/// Why the metrics pipeline could not be built. Messages never contain header values.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("prometheus exporter: {0}")]
    Prometheus(String),
    #[error("otlp exporter for {endpoint}: {reason}")]
    Otlp { endpoint: String, reason: String },
    #[error("otlp header {name:?}: {reason}")]
    OtlpHeader { name: String, reason: String },
    #[error("invalid histogram boundaries for {histogram}: {reason}")]
    Buckets {
        histogram: &'static str,
        reason: String,
    },
}
