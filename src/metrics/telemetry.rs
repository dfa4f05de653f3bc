//! [`Telemetry`]: owns the meter provider, the Prometheus registry and the OTLP reader, and hands
//! out [`Recorder`]s. Building, rendering and a bounded shutdown live here; what is recorded
//! lives in `instruments`.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use opentelemetry::metrics::MeterProvider;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{Instrument, SdkMeterProvider, Stream};

use crate::config::model::{Buckets, OtlpSettings};
use crate::metrics::instruments::{Instruments, Recorder, Shared};
use crate::metrics::{MetricsError, otlp, prom};

/// Series per instrument before the SDK folds new attribute sets into one
/// `otel.metric.overflow="true"` series. Labels come from the config only, so this is reached
/// only by configs with thousands of probes (the runs counter has up to 26 series per probe:
/// one success plus one per `error.type`); it bounds memory whatever the config says.
pub const CARDINALITY_LIMIT: usize = 4096;

/// The metrics pipeline of one process: provider, Prometheus registry, optional OTLP reader.
pub struct Telemetry {
    provider: SdkMeterProvider,
    registry: prometheus::Registry,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry").finish_non_exhaustive()
    }
}

fn check_bounds(histogram: &'static str, bounds: &[f64]) -> Result<(), MetricsError> {
    let bad = |reason: String| MetricsError::Buckets { histogram, reason };
    if let Some(b) = bounds.iter().find(|b| !b.is_finite()) {
        return Err(bad(format!("{b} is not a finite number")));
    }
    if let Some(w) = bounds.windows(2).find(|w| w[0] >= w[1]) {
        return Err(bad(format!(
            "{} is followed by {}: boundaries must increase strictly",
            w[0], w[1]
        )));
    }
    Ok(())
}

impl Telemetry {
    /// Builds the provider with the Prometheus reader and, if `otlp` is given, one OTLP periodic
    /// reader. Must be called inside a tokio runtime (the tonic exporter needs it).
    pub fn new(buckets: &Buckets, otlp: Option<&OtlpSettings>) -> Result<Telemetry, MetricsError> {
        check_bounds("latency_seconds", &buckets.latency_seconds)?;
        check_bounds("itl_seconds", &buckets.itl_seconds)?;
        check_bounds("ratio", &buckets.ratio)?;
        check_bounds("tokens_per_second", &buckets.tokens_per_second)?;
        check_bounds("tokens", &buckets.tokens)?;

        let export_failures = Arc::new(AtomicU64::new(0));
        let (prom_reader, registry) = prom::reader()?;
        let mut builder = SdkMeterProvider::builder()
            .with_resource(
                Resource::builder()
                    .with_service_name("rtprobe")
                    .with_attribute(opentelemetry::KeyValue::new(
                        "service.version",
                        env!("CARGO_PKG_VERSION"),
                    ))
                    .build(),
            )
            .with_reader(prom_reader)
            .with_view(|_: &Instrument| {
                Stream::builder()
                    .with_cardinality_limit(CARDINALITY_LIMIT)
                    .build()
                    .ok()
            });
        if let Some(settings) = otlp {
            builder = builder.with_reader(otlp::reader(settings, export_failures.clone())?);
        }
        let provider = builder.build();
        let meter = provider.meter("rtprobe");
        let instruments = Instruments::new(&meter, buckets, export_failures.clone());
        Ok(Telemetry {
            provider,
            registry,
            shared: Arc::new(Shared {
                current: RwLock::new(Arc::new(instruments)),
                export_failures,
            }),
        })
    }

    /// A handle to record through; cheap to clone, `Send + Sync`.
    pub fn recorder(&self) -> Recorder {
        Recorder {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Prometheus exposition: `(content type, body)`. `accept` is the request's `Accept` header;
    /// the body is always text format 0.0.4 (see `prom` for why OpenMetrics is not offered).
    pub fn render(&self, accept: Option<&str>) -> (&'static str, Vec<u8>) {
        prom::render(&self.registry, accept)
    }

    /// Final OTLP flush, bounded by `timeout`; never hangs.
    ///
    /// The SDK shutdown blocks (the periodic reader exports once more and waits for it), so it
    /// runs on a plain OS thread: a `spawn_blocking` task that outlived `timeout` would make the
    /// runtime's own drop wait for it. The runtime stays free meanwhile, which the OTLP/HTTP
    /// client needs, since its requests run as tasks on it.
    pub async fn shutdown(self, timeout: Duration) {
        let provider = self.provider;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name("rtprobe-metrics-shutdown".into())
            .spawn(move || {
                let _ = tx.send(provider.shutdown_with_timeout(timeout));
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "could not start the metrics shutdown thread; skipping the final OTLP flush");
            return;
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(Ok(()))) => tracing::debug!("metrics pipeline shut down"),
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "final OTLP flush failed"),
            Ok(Err(_)) => tracing::warn!("metrics shutdown thread ended without a result"),
            Err(_) => tracing::warn!(
                ?timeout,
                "final OTLP flush did not finish in time; abandoned"
            ),
        }
    }
}
