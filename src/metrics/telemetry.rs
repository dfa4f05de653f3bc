//! [`Telemetry`]: owns the meter providers (one read by `/metrics`, one pushed over OTLP when
//! configured: SDK views apply to every reader of a provider, and the two want different
//! histogram aggregations), and hands out [`Recorder`]s. Building, rebuilding on reload (the
//! only way to drop series), rendering (coalesced, see [`Coalesce`]) and a bounded shutdown live
//! here; what is recorded lives in `instruments`.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry::metrics::MeterProvider;
use opentelemetry_sdk::metrics::{
    Aggregation, Instrument, InstrumentKind, ManualReader, SdkMeterProvider, Stream,
};

use crate::config::model::{Buckets, HistogramFormat, MetricsSettings, OtlpSettings};
use crate::metrics::instruments::{Instruments, Recorder, Shared};
use crate::metrics::{MetricsError, identity, otlp, prom};

/// Series per instrument before the SDK folds new attribute sets into one
/// `otel.metric.overflow="true"` series. Labels come from the config only, so this is reached
/// only by configs with thousands of probes (the runs counter has up to 26 series per probe:
/// one success plus one per `error.type`); it bounds memory whatever the config says.
pub const CARDINALITY_LIMIT: usize = 4096;

/// The providers of one config generation and the reader `/metrics` collects from.
struct Pipeline {
    prom: SdkMeterProvider,
    reader: Arc<ManualReader>,
    histograms: HistogramFormat,
    otlp: Option<SdkMeterProvider>,
}

/// The metrics pipeline of one process: providers, the `/metrics` reader, optional OTLP push.
pub struct Telemetry {
    pipeline: Mutex<Pipeline>,
    shared: Arc<Shared>,
    renders: Mutex<Renders>,
}

/// What renders keep between them; one render runs at a time, under this lock.
#[derive(Default)]
struct Renders {
    bodies: Coalesce,
    labels: prom::LabelCache,
}

/// Concurrent scrapes (an HA Prometheus pair) share one render: renders run one at a time, and
/// a scrape that waited for another's render takes its body when that render collected after
/// the scrape arrived, so nobody gets a snapshot older than their request.
#[derive(Default)]
pub(crate) struct Coalesce {
    last: Vec<(prom::Format, Instant, Arc<Vec<u8>>)>,
}

impl Coalesce {
    /// A body of `format` collected at or after `arrived`.
    pub(crate) fn fresh(&self, format: prom::Format, arrived: Instant) -> Option<Arc<Vec<u8>>> {
        self.last
            .iter()
            .find(|(f, at, _)| *f == format && *at >= arrived)
            .map(|(_, _, b)| Arc::clone(b))
    }

    pub(crate) fn store(&mut self, format: prom::Format, collected: Instant, body: Arc<Vec<u8>>) {
        self.last.retain(|(f, _, _)| *f != format);
        self.last.push((format, collected, body));
    }
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

/// The view every provider applies first: bounded cardinality, switched-off histograms dropped
/// (still recorded into, since the recorder does not know the config, but never aggregated),
/// and, on the OTLP provider with `otlp.histograms: exponential`, Base2 exponential buckets.
fn base_view(
    metrics: &MetricsSettings,
    exponential: bool,
) -> impl Fn(&Instrument) -> Option<Stream> + Send + Sync + 'static {
    let metrics = metrics.clone();
    move |i: &Instrument| {
        let stream = Stream::builder().with_cardinality_limit(CARDINALITY_LIMIT);
        let stream = if metrics.is_disabled(i.name()) {
            stream.with_aggregation(Aggregation::Drop)
        } else if exponential && i.kind() == InstrumentKind::Histogram {
            stream.with_aggregation(exponential_aggregation())
        } else {
            stream
        };
        stream.build().ok()
    }
}

/// Base2 exponential buckets: 160 buckets (the OTel default) at a scale capped to Prometheus's
/// finest native schema.
fn exponential_aggregation() -> Aggregation {
    Aggregation::Base2ExponentialHistogram {
        max_size: 160,
        max_scale: prom::MAX_SCHEMA,
        record_min_max: false,
    }
}

/// The Prometheus provider's second view: every enabled histogram also feeds an exponential
/// stream `<name>.native`, the native buckets of `/metrics` (see `prom`).
fn native_view(
    metrics: &MetricsSettings,
) -> impl Fn(&Instrument) -> Option<Stream> + Send + Sync + 'static {
    let metrics = metrics.clone();
    move |i: &Instrument| {
        if i.kind() != InstrumentKind::Histogram || metrics.is_disabled(i.name()) {
            return None;
        }
        Stream::builder()
            .with_name(format!("{}{}", i.name(), prom::NATIVE_SUFFIX))
            .with_aggregation(exponential_aggregation())
            .with_cardinality_limit(CARDINALITY_LIMIT)
            .build()
            .ok()
    }
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

    let resource = identity::resource();
    let reader = prom::PromReader::new();
    let mut prom_builder = SdkMeterProvider::builder()
        .with_resource(resource.clone())
        .with_reader(reader.clone())
        .with_view(base_view(metrics, false));
    if metrics.histograms != HistogramFormat::Classic {
        prom_builder = prom_builder.with_view(native_view(metrics));
    }
    let prom_provider = prom_builder.build();
    let otlp_provider = match otlp {
        Some(settings) => Some(
            SdkMeterProvider::builder()
                .with_resource(resource)
                .with_reader(otlp::reader(settings, Arc::clone(export_failures))?)
                .with_view(base_view(metrics, settings.exponential_histograms))
                .build(),
        ),
        None => None,
    };
    let meters: Vec<_> = std::iter::once(&prom_provider)
        .chain(otlp_provider.as_ref())
        .map(|p| p.meter("rtprobe"))
        .collect();
    let instruments = Instruments::new(&meters, buckets, Arc::clone(export_failures));
    Ok((
        Pipeline {
            prom: prom_provider,
            reader: reader.0,
            histograms: metrics.histograms,
            otlp: otlp_provider,
        },
        instruments,
    ))
}

/// Runs the provider's (blocking) shutdown on a plain OS thread and returns its result channel.
/// A plain thread rather than `spawn_blocking`: a blocking task that outlived its caller's
/// timeout would make the runtime's own drop wait for it.
fn shutdown_in_background(
    pipeline: Pipeline,
    timeout: Duration,
) -> Option<tokio::sync::oneshot::Receiver<opentelemetry_sdk::error::OTelSdkResult>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("rtprobe-metrics-shutdown".into())
        .spawn(move || {
            let _ = pipeline.prom.shutdown_with_timeout(timeout);
            // Only the OTLP provider has anything to flush; its result is the one that matters.
            let result = match pipeline.otlp {
                Some(p) => p.shutdown_with_timeout(timeout),
                None => Ok(()),
            };
            let _ = tx.send(result);
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
            renders: Mutex::new(Renders::default()),
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
            let mut current = crate::sync::lock(&self.pipeline);
            std::mem::replace(&mut *current, pipeline)
        };
        // Nobody waits for the old provider: the SDK bounds its own shutdown waits.
        let _ = shutdown_in_background(old, Duration::from_secs(5));
        Ok(())
    }

    /// A handle to record through; cheap to clone, `Send + Sync`.
    pub fn recorder(&self) -> Recorder {
        Recorder {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Prometheus exposition: `(content type, body)`. `accept` is the request's `Accept` header:
    /// the protobuf format with native histograms when it asks for it, else text 0.0.4 (see
    /// `prom`). Concurrent calls share one render (see [`Coalesce`]).
    pub fn render(&self, accept: Option<&str>) -> (&'static str, Vec<u8>) {
        self.render_arrived(accept, Instant::now())
    }

    /// [`Telemetry::render`] for a scrape that arrived at `arrived`.
    fn render_arrived(&self, accept: Option<&str>, arrived: Instant) -> (&'static str, Vec<u8>) {
        let format = prom::Format::negotiate(accept);
        let mut renders = crate::sync::lock(&self.renders);
        if let Some(body) = renders.bodies.fresh(format, arrived) {
            return (format.content_type(), body.to_vec());
        }
        // The reader is shared; the pipeline lock is held only to clone it.
        let (reader, histograms) = {
            let p = crate::sync::lock(&self.pipeline);
            (Arc::clone(&p.reader), p.histograms)
        };
        let collected = Instant::now();
        let body = Arc::new(prom::render(
            &reader,
            format,
            histograms,
            &mut renders.labels,
        ));
        renders.bodies.store(format, collected, Arc::clone(&body));
        drop(renders);
        (format.content_type(), body.to_vec())
    }

    /// Final OTLP flush, bounded by `timeout`; never hangs.
    ///
    /// The SDK shutdown blocks (the periodic reader exports once more and waits for it), so it
    /// runs on its own thread while this task waits at most `timeout`. The runtime stays free
    /// meanwhile, which the OTLP/HTTP client needs, since its requests run as tasks on it.
    pub async fn shutdown(self, timeout: Duration) {
        let pipeline = crate::sync::into_inner(self.pipeline);
        let Some(rx) = shutdown_in_background(pipeline, timeout) else {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrapes_that_arrived_together_share_one_render() {
        let t = Arc::new(Telemetry::new(&Buckets::default(), None).expect("telemetry"));
        t.recorder().config_reload(true, 1.0);
        let renders = |t: &Telemetry| crate::sync::lock(&t.renders).labels.renders();
        // Both arrived before either rendered (an HA pair scraping at once): whichever locks
        // first renders, the other takes that body, in any interleaving.
        let arrived = Instant::now();
        let scrapes: Vec<_> = (0..2)
            .map(|_| {
                let t = Arc::clone(&t);
                std::thread::spawn(move || t.render_arrived(None, arrived).1)
            })
            .collect();
        let bodies: Vec<Vec<u8>> = scrapes.into_iter().map(|s| s.join().unwrap()).collect();
        assert_eq!(renders(&t), 1);
        assert_eq!(bodies[0], bodies[1]);
        assert!(String::from_utf8_lossy(&bodies[0]).contains("rtprobe_config_reload_success 1"));
        // A scrape that arrives later gets a new render, and another format its own.
        t.render(None);
        assert_eq!(renders(&t), 2);
        t.render_arrived(Some(prom::PROTOBUF), arrived);
        assert_eq!(renders(&t), 3);
    }

    #[test]
    fn a_waiting_scrape_takes_a_render_collected_after_it_arrived() {
        let t0 = Instant::now();
        let later = t0 + Duration::from_millis(5);
        let mut c = Coalesce::default();
        assert!(c.fresh(prom::Format::Text, t0).is_none());
        c.store(prom::Format::Text, later, Arc::new(b"body".to_vec()));
        // Arrived before the collection started: shares it.
        assert_eq!(
            c.fresh(prom::Format::Text, t0).as_deref(),
            Some(&b"body".to_vec())
        );
        // Arrived after it: renders anew.
        assert!(
            c.fresh(prom::Format::Text, later + Duration::from_nanos(1))
                .is_none()
        );
        // Never another format's body.
        assert!(c.fresh(prom::Format::Protobuf, t0).is_none());
        c.store(prom::Format::Text, later, Arc::new(b"newer".to_vec()));
        assert_eq!(c.last.len(), 1);
    }
}
