//! Timeline → derived values → OTel instruments; Prometheus rendering; OTLP push.
//!
//! One `SdkMeterProvider` per [`Telemetry`] feeds two kinds of readers: the Prometheus bridge
//! (pulled by `/metrics` through [`Telemetry::render`]) and, when configured, one OTLP
//! `PeriodicReader` that pushes on its own thread. Callers record through a [`Recorder`], which is
//! a cheap handle safe to clone into every probe task.

pub mod derive;
mod instruments;
mod otlp;
mod prom;
mod telemetry;

pub use instruments::{ProbeLabels, Recorder};
pub use telemetry::Telemetry;

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
