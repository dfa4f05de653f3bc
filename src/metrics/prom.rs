//! The Prometheus bridge, kept behind two functions (`reader`, `render`) because the upstream
//! `opentelemetry-prometheus` crate may drop its `prometheus::Registry` API one day; a small
//! renderer over a `ManualReader` would then replace this file and nothing else.
//!
//! Output is the Prometheus text format 0.0.4, whatever the `Accept` header asks for: the
//! `prometheus` 0.14 crate has no OpenMetrics encoder, and a hand-written one would render
//! bucket bounds differently (`1.0` instead of `1`), so alert rules would depend on the format a
//! scraper negotiated. Every Prometheus version accepts 0.0.4.
//!
//! `le` strings are Rust's shortest round-trip `f64` formatting: no trailing `.0`, no exponent.
//! Configured boundaries `0.001, 0.5, 1.0, 2.5, 10.0, 80.0` render as `le="0.001"`, `le="0.5"`,
//! `le="1"`, `le="2.5"`, `le="10"`, `le="80"`, then `le="+Inf"`. Alert rules written against
//! `/metrics` must match these strings exactly (Prometheus 3 normalises stored `le` to `"1.0"`).

use opentelemetry_prometheus::PrometheusExporter;
use prometheus::{Encoder, Registry, TextEncoder};

use crate::metrics::MetricsError;

/// Content type of [`render`]'s body.
pub(crate) const TEXT_0_0_4: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A metric reader for the provider and the registry it fills on every gather.
pub(crate) fn reader() -> Result<(PrometheusExporter, Registry), MetricsError> {
    let registry = Registry::new();
    let exporter = opentelemetry_prometheus::exporter()
        .with_registry(registry.clone())
        // Defaults add a `target_info` series and `otel_scope_*` labels on every series.
        .without_target_info()
        .scope_info_enabled(false)
        .build()
        .map_err(|e| MetricsError::Prometheus(e.to_string()))?;
    Ok((exporter, registry))
}

/// Collects the provider's current state and encodes it as text 0.0.4. `_accept` is read only
/// to document that negotiation was considered (see the module header).
pub(crate) fn render(registry: &Registry, _accept: Option<&str>) -> (&'static str, Vec<u8>) {
    let families = registry.gather();
    let mut body = Vec::with_capacity(16 * 1024);
    if let Err(e) = TextEncoder::new().encode(&families, &mut body) {
        // Only an invalid family (which the bridge does not produce) makes encoding fail;
        // serve what was written rather than nothing.
        tracing::warn!(error = %e, "encoding /metrics failed part-way");
    }
    (TEXT_0_0_4, body)
}
