//! [`Telemetry`]: owns the meter provider, the Prometheus registry and the OTLP reader, and hands
//! out [`Recorder`]s. Building, rebuilding on reload (the only way to drop series), rendering and
//! a bounded shutdown live here; what is recorded lives in `instruments`.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry::metrics::MeterProvider;
use opentelemetry_sdk::metrics::{Aggregation, Instrument, SdkMeterProvider, Stream};

use crate::config::model::{Buckets, MetricsSettings, OtlpSettings};
use crate::metrics::instruments::{Instruments, Recorder, Shared};
use crate::metrics::{MetricsError, identity, otlp, prom};

/// Series per instrument before the SDK folds new attribute sets into one
/// `otel.metric.overflow="true"` series. Labels come from the config only, so this is reached
/// only by configs with thousands of probes (the runs counter has up to 26 series per probe:
/// one success plus one per `error.type`); it bounds memory whatever the config says.
pub const CARDINALITY_LIMIT: usize = 4096;

/// One meter provider with its readers, and the registry its Prometheus reader fills.
struct Pipeline {
    provider: SdkMeterProvider,
    registry: prometheus::Registry,
}

/// The metrics pipeline of one process: provider, Prometheus registry, optional OTLP reader.
pub struct Telemetry {
    pipeline: Mutex<Pipeline>,
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

fn build(
    buckets: &Buckets,
    metrics: &MetricsSettings,
    otlp: Option<&OtlpSettings>,
    export_failures: &Arc<AtomicU64>,
) -> Result<(Pipeline, Instruments), MetricsError> {
    check_bounds("latency_seconds", &buckets.latency_seconds)?;
    check_bounds("itl_seconds", &buckets.itl_seconds)?;
    check_bounds("phase_seconds", &buckets.phase_seconds)?;
    check_bounds("lateness_seconds", &buckets.lateness_seconds)?;
    check_bounds("ratio", &buckets.ratio)?;
    check_bounds("tokens_per_second", &buckets.tokens_per_second)?;
    check_bounds("tokens", &buckets.tokens)?;

    let (prom_reader, registry) = prom::reader()?;
    let mut builder = SdkMeterProvider::builder()
        .with_resource(identity::resource())
        .with_reader(prom_reader)
        .with_view({
            let metrics = metrics.clone();
            move |i: &Instrument| {
                let stream = Stream::builder().with_cardinality_limit(CARDINALITY_LIMIT);
                // A switched-off histogram is still recorded into (the recorder does not
                // know the config) but aggregates nothing and is never exported.
                let stream = if metrics.is_disabled(i.name()) {
                    stream.with_aggregation(Aggregation::Drop)
                } else {
                    stream
                };
                stream.build().ok()
            }
        });
    if let Some(settings) = otlp {
        builder = builder.with_reader(otlp::reader(settings, Arc::clone(export_failures))?);
    }
    let provider = builder.build();
    let instruments = Instruments::new(
        &provider.meter("rtprobe"),
        buckets,
        Arc::clone(export_failures),
    );
    Ok((Pipeline { provider, registry }, instruments))
}

/// Runs the provider's (blocking) shutdown on a plain OS thread and returns its result channel.
/// A plain thread rather than `spawn_blocking`: a blocking task that outlived its caller's
/// timeout would make the runtime's own drop wait for it.
fn shutdown_in_background(
    provider: SdkMeterProvider,
    timeout: Duration,
) -> Option<tokio::sync::oneshot::Receiver<opentelemetry_sdk::error::OTelSdkResult>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("rtprobe-metrics-shutdown".into())
        .spawn(move || {
            let _ = tx.send(provider.shutdown_with_timeout(timeout));
        });
    match spawned {
        Ok(_) => Some(rx),
        Err(e) => {
            tracing::warn!(error = %e, "could not start the metrics shutdown thread; skipping the final OTLP flush");
            None
        }
    }
}

impl Telemetry {
    /// Builds the provider with the Prometheus reader and, if `otlp` is given, one OTLP periodic
    /// reader. Must be called inside a tokio runtime (the tonic exporter needs it).
    pub fn new(buckets: &Buckets, otlp: Option<&OtlpSettings>) -> Result<Telemetry, MetricsError> {
        Telemetry::with_settings(buckets, &MetricsSettings::default(), otlp)
    }

    /// [`Telemetry::new`] with the config's `metrics:` section.
    pub fn with_settings(
        buckets: &Buckets,
        metrics: &MetricsSettings,
        otlp: Option<&OtlpSettings>,
    ) -> Result<Telemetry, MetricsError> {
        let export_failures = Arc::new(AtomicU64::new(0));
        let (pipeline, instruments) = build(buckets, metrics, otlp, &export_failures)?;
        Ok(Telemetry {
            pipeline: Mutex::new(pipeline),
            shared: Arc::new(Shared::new(instruments, export_failures)),
        })
    }

    /// Replaces the whole pipeline (new buckets, new OTLP settings) and drops every series: the
    /// OTel SDK cannot delete a series, so this is how a probe removed by a reload stops being
    /// exported. Call it after a config reload changed probes, labels, buckets or OTLP settings,
    /// once the old generation's runs have been recorded (a run recorded later with old labels
    /// would bring its series back). Inside a tokio runtime, like [`Telemetry::new`].
    ///
    /// Effects, like a restart of the metrics side only: counters and histograms restart from
    /// zero (Prometheus `rate()` and OTLP start timestamps treat that as a reset);
    /// `rtprobe_probe_success` of each probe reappears at its next run; open-stream counts and
    /// the last reload outcome carry over; the failed-export count keeps counting. The old
    /// provider is shut down in the background, so its OTLP reader pushes a final export.
    /// On error nothing changes.
    pub fn reconfigure(
        &self,
        buckets: &Buckets,
        otlp: Option<&OtlpSettings>,
    ) -> Result<(), MetricsError> {
        self.reconfigure_with(buckets, &MetricsSettings::default(), otlp)
    }

    /// [`Telemetry::reconfigure`] with the config's `metrics:` section.
    pub fn reconfigure_with(
        &self,
        buckets: &Buckets,
        metrics: &MetricsSettings,
        otlp: Option<&OtlpSettings>,
    ) -> Result<(), MetricsError> {
        let (pipeline, instruments) = build(buckets, metrics, otlp, &self.shared.export_failures)?;
        self.shared.swap(instruments);
        let old = {
            let mut current = self.pipeline.lock().unwrap_or_else(|p| p.into_inner());
            std::mem::replace(&mut *current, pipeline)
        };
        // Nobody waits for the old provider: the SDK bounds its own shutdown waits.
        let _ = shutdown_in_background(old.provider, Duration::from_secs(5));
        Ok(())
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
        // Registry clones share state; the lock is held only for the clone.
        let registry = self
            .pipeline
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .registry
            .clone();
        prom::render(&registry, accept)
    }

    /// Final OTLP flush, bounded by `timeout`; never hangs.
    ///
    /// The SDK shutdown blocks (the periodic reader exports once more and waits for it), so it
    /// runs on its own thread while this task waits at most `timeout`. The runtime stays free
    /// meanwhile, which the OTLP/HTTP client needs, since its requests run as tasks on it.
    pub async fn shutdown(self, timeout: Duration) {
        let pipeline = self
            .pipeline
            .into_inner()
            .unwrap_or_else(|p| p.into_inner());
        let Some(rx) = shutdown_in_background(pipeline.provider, timeout) else {
            return;
        };
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
