//! The OTel instruments rtprobe records, their bounded attribute sets, and the [`Recorder`]
//! handle the scheduler records through.
//!
//! Names follow the metric catalogue in docs/metrics.md; units sit on the instrument, so the
//! Prometheus renderer (`prom`) derives the catalogue's Prometheus names (`s` → `_seconds`, `1` → `_ratio`,
//! `{token}/s` → `_per_second`, annotations such as `{token}` → no suffix, counters → `_total`).
//! The `rendered_names_match_the_catalogue` test asserts every rendered name.
//!
//! Instruments beyond the catalogue (documented here because dashboards may use them):
//!
//! | OTel instrument (unit, kind) | Prometheus name | meaning |
//! | --- | --- | --- |
//! | `rtprobe.guidellm.inter_token_latency` (s, histogram) | `rtprobe_guidellm_inter_token_latency_seconds` | guidellm's ITL: (last text − first text) ÷ (completion_tokens − 1), one observation per run |
//! | `rtprobe.scheduler.skipped` ({run}, counter) | `rtprobe_scheduler_skipped_total` | scheduled runs skipped because the previous run of the probe still ran |
//! | `rtprobe.pacing.lateness` (s, histogram) | `rtprobe_pacing_lateness_seconds` | how late each audio append left against its schedule, one observation per append |
//! | `rtprobe.otlp.export.failures` ({export}, counter) | `rtprobe_otlp_export_failures_total` | OTLP exports that failed after the exporter's own retries (0 when OTLP is off) |
//! | `rtprobe.round_trip.mean.negative` ({run}, counter) | `rtprobe_round_trip_mean_negative_total` | successful runs whose Avg RTT was negative (text came back, on average, before the audio it answers was sent: a clip with trailing audio after its last word); their Avg RTT is not a latency and stays out of `rtprobe_round_trip_mean_seconds` |
//!
//! Histograms only ever receive finite, non-negative values (`observe` is the one place that
//! records a float, and asserts it in debug builds): a negative observation would corrupt
//! `_sum` and `histogram_quantile`, and OTel's histogram API expects non-negative values.
//!
//! The two boolean gauges (`rtprobe.probe.success`, `rtprobe.config.reload.success`) carry no
//! unit: the renderer would turn unit `1` into a `_ratio` suffix, and the catalogue's names have none.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use opentelemetry::metrics::{Counter, Gauge, Histogram, Meter, UpDownCounter};
use opentelemetry::{Key, KeyValue, StringValue, Value};

use crate::config::model::{Buckets, ProbeSpec};
use crate::derive::Derived;
use crate::metrics::fanout::on_all;
use crate::probe::error::ErrorType;
use crate::sync::lock;

/// Attribute keys rtprobe sets itself; a static label from the config with one of these keys
/// (or one that sanitises to the same Prometheus label name) is dropped so it cannot merge into
/// or shadow ours.
const RESERVED_KEYS: [&str; 12] = [
    "rtprobe.probe",
    "rtprobe.utterance",
    "server.address",
    "server.port",
    "gen_ai.request.model",
    "gen_ai.operation.name",
    "gen_ai.provider.name",
    "gen_ai.token.type",
    "outcome",
    "error.type",
    "phase",
    "otel.metric.overflow",
];

/// Prometheus label sanitising, as the renderer does it: anything not alphanumeric or `_` → `_`.
fn prom_label(key: &str) -> String {
    key.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// A config string as an attribute value that clones by reference count: the SDK clones every
/// series' attributes on each collect, which with owned strings was a copy per string per scrape.
fn shared(value: &str) -> Value {
    Value::String(StringValue::from(Arc::<str>::from(value)))
}

/// Bounded attribute set of one probe (built once per probe per config generation). Every value
/// comes from the config (or the model name the caller resolved), never from a server reply.
#[derive(Debug, Clone)]
pub struct ProbeLabels {
    /// Identity of the attribute set, for per-series state kept outside the provider.
    key: Arc<str>,
    base: Arc<[KeyValue]>,
    success: Arc<[KeyValue]>,
    input_tokens: Arc<[KeyValue]>,
    output_tokens: Arc<[KeyValue]>,
}

impl ProbeLabels {
    /// The probe's attributes on every series (and on its run traces).
    pub fn attributes(&self) -> &[KeyValue] {
        &self.base
    }

    pub fn new(spec: &ProbeSpec, model: &str) -> ProbeLabels {
        let mut base = vec![
            KeyValue::new("rtprobe.probe", shared(&spec.name)),
            KeyValue::new("server.address", shared(&spec.target.host)),
            KeyValue::new("server.port", i64::from(spec.target.port)),
            KeyValue::new("gen_ai.request.model", shared(model)),
            KeyValue::new("gen_ai.operation.name", "speech_to_text"),
            KeyValue::new("gen_ai.provider.name", shared(&spec.dialect.provider)),
        ];
        let reserved: Vec<String> = RESERVED_KEYS.iter().map(|k| prom_label(k)).collect();
        for (k, v) in &spec.labels {
            if reserved.contains(&prom_label(k)) {
                tracing::warn!(
                    probe = %spec.name,
                    label = %k,
                    "static label clashes with a label rtprobe sets itself; ignored"
                );
                continue;
            }
            base.push(KeyValue::new(
                Key::from(Arc::<str>::from(k.as_str())),
                shared(v),
            ));
        }
        let key: String = base
            .iter()
            .map(|kv| format!("{}={}\u{1f}", kv.key, kv.value))
            .collect();
        ProbeLabels::from_base(key, base)
    }

    /// The same attributes plus `key=value`: a multi-utterance probe's `rtprobe.utterance`
    /// (`first` or `later`; both from a closed set).
    pub fn with(&self, key: &'static str, value: &'static str) -> ProbeLabels {
        let mut base = self.base.to_vec();
        base.push(KeyValue::new(key, value));
        ProbeLabels::from_base(format!("{}{key}={value}\u{1f}", self.key), base)
    }

    fn from_base(key: String, base: Vec<KeyValue>) -> ProbeLabels {
        let with = |extra: KeyValue| -> Arc<[KeyValue]> {
            let mut v = base.clone();
            v.push(extra);
            by_key(v).into()
        };
        ProbeLabels {
            key: key.into(),
            success: with(KeyValue::new("outcome", "success")),
            input_tokens: with(KeyValue::new("gen_ai.token.type", "input")),
            output_tokens: with(KeyValue::new("gen_ai.token.type", "output")),
            base: by_key(base).into(),
        }
    }

    fn failure(&self, error: ErrorType) -> Vec<KeyValue> {
        let mut v = self.base.to_vec();
        v.push(KeyValue::new("outcome", "failure"));
        v.push(KeyValue::new("error.type", error.as_str()));
        by_key(v)
    }

    fn phase(&self, phase: &'static str) -> Vec<KeyValue> {
        let mut v = self.base.to_vec();
        v.push(KeyValue::new("phase", phase));
        by_key(v)
    }
}

/// Attributes in the SDK's own order (by key; keys are unique here). Given any other order, the
/// SDK keeps each series under both orders and walks both on every collect.
fn by_key(mut attrs: Vec<KeyValue>) -> Vec<KeyValue> {
    attrs.sort_unstable_by(|a, b| a.key.cmp(&b.key));
    attrs
}

/// Every instrument of one meter provider. Rebuilt with the provider, never mutated.
pub(crate) struct Instruments {
    duration: Histogram<f64>,
    ttft: Histogram<f64>,
    time_to_first_text: Histogram<f64>,
    time_per_output_chunk: Histogram<f64>,
    guidellm_itl: Histogram<f64>,
    rtt_last: Histogram<f64>,
    rtt_mean: Histogram<f64>,
    rtt_mean_negative: Counter<u64>,
    finalize: Histogram<f64>,
    phase: Histogram<f64>,
    audio_rate: Histogram<f64>,
    output_tokens_rate: Histogram<f64>,
    decode_token_rate: Histogram<f64>,
    token_usage: Histogram<u64>,
    wer: Histogram<f64>,
    pacing_lateness: Histogram<f64>,
    runs: Counter<u64>,
    success: Gauge<u64>,
    in_flight: UpDownCounter<i64>,
    scheduler_delay: Histogram<f64>,
    skipped: Counter<u64>,
    reload_success: Gauge<u64>,
    reload_timestamp: Gauge<f64>,
}

impl Instruments {
    /// Creates every instrument on each of `meters` (one handle records into all; see
    /// `fanout`). `export_failures` backs the observable failure counter, so the count survives
    /// a provider rebuild.
    pub(crate) fn new(
        meters: &[Meter],
        b: &Buckets,
        export_failures: Arc<AtomicU64>,
    ) -> Instruments {
        let hist = |name: &'static str, unit: &'static str, desc: &'static str, bounds: &[f64]| {
            on_all(meters, |meter| {
                meter
                    .f64_histogram(name)
                    .with_unit(unit)
                    .with_description(desc)
                    .with_boundaries(bounds.to_vec())
                    .build()
            })
        };
        let counter = |name: &'static str, unit: &'static str, desc: &'static str| {
            on_all(meters, |meter| {
                meter
                    .u64_counter(name)
                    .with_unit(unit)
                    .with_description(desc)
                    .build()
            })
        };
        let u64_gauge = |name: &'static str, desc: &'static str| {
            on_all(meters, |meter| {
                meter.u64_gauge(name).with_description(desc).build()
            })
        };
        let lat = &b.latency_seconds;
        // Observable instruments live as long as the provider; the handle itself is not needed.
        for meter in meters {
            let failures = Arc::clone(&export_failures);
            let _ = meter
                .u64_observable_counter("rtprobe.otlp.export.failures")
                .with_unit("{export}")
                .with_description("OTLP exports that failed after the exporter's retries")
                .with_callback(move |o| o.observe(failures.load(Ordering::Relaxed), &[]))
                .build();
        }
        Instruments {
            duration: hist(
                "gen_ai.client.operation.duration",
                "s",
                "Connect start to transcription.done",
                lat,
            ),
            ttft: hist(
                "gen_ai.client.operation.time_to_first_chunk",
                "s",
                "First non-empty delta minus connect start (guidellm-compatible TTFT)",
                lat,
            ),
            time_to_first_text: hist(
                "rtprobe.time_to_first_text",
                "s",
                "First non-empty delta minus first audio chunk sent",
                lat,
            ),
            time_per_output_chunk: hist(
                "gen_ai.client.operation.time_per_output_chunk",
                "s",
                "Gap between consecutive non-empty deltas, one observation per gap",
                &b.itl_seconds,
            ),
            guidellm_itl: hist(
                "rtprobe.guidellm.inter_token_latency",
                "s",
                "guidellm ITL: (last text - first text) / (completion_tokens - 1)",
                &b.itl_seconds,
            ),
            rtt_last: hist(
                "rtprobe.round_trip.last",
                "s",
                "Last non-empty delta minus send of the final commit",
                lat,
            ),
            rtt_mean: hist(
                "rtprobe.round_trip.mean",
                "s",
                "Mean receive time of non-empty deltas minus mean send time of all frames",
                lat,
            ),
            rtt_mean_negative: counter(
                "rtprobe.round_trip.mean.negative",
                "{run}",
                "Successful runs whose Avg RTT was negative (text led the audio); not recorded as a latency",
            ),
            finalize: hist(
                "rtprobe.finalize.duration",
                "s",
                "transcription.done minus send of the final commit",
                lat,
            ),
            phase: hist(
                "rtprobe.phase.duration",
                "s",
                "Connection phase durations (connect, tls, upgrade, session)",
                &b.phase_seconds,
            ),
            audio_rate: hist(
                "rtprobe.send_window.audio_rate",
                "1",
                "Audio seconds sent before the last append divided by the send window",
                &b.ratio,
            ),
            output_tokens_rate: hist(
                "rtprobe.send_window.output_tokens",
                "{token}/s",
                "Output tokens divided by the send window",
                &b.tokens_per_second,
            ),
            decode_token_rate: hist(
                "rtprobe.decode.token_rate",
                "{token}/s",
                "(non-empty deltas - 1) / (last - first non-empty delta)",
                &b.tokens_per_second,
            ),
            token_usage: on_all(meters, |meter| {
                meter
                    .u64_histogram("gen_ai.client.token.usage")
                    .with_unit("{token}")
                    .with_description("Token usage reported in transcription.done")
                    .with_boundaries(b.tokens.clone())
                    .build()
            }),
            wer: hist(
                "rtprobe.transcript.word_error_rate",
                "1",
                "Word error rate of the transcript against the reference",
                &b.ratio,
            ),
            pacing_lateness: hist(
                "rtprobe.pacing.lateness",
                "s",
                "How late each audio append was sent against its schedule",
                &b.lateness_seconds,
            ),
            runs: counter(
                "rtprobe.probe.runs",
                "{run}",
                "Probe runs, by outcome and error type",
            ),
            success: u64_gauge(
                "rtprobe.probe.success",
                "1 if the last run of the probe succeeded, else 0",
            ),
            in_flight: on_all(meters, |meter| {
                meter
                    .i64_up_down_counter("rtprobe.probe.in_flight")
                    .with_unit("{stream}")
                    .with_description("Probe streams open now")
                    .build()
            }),
            scheduler_delay: hist(
                "rtprobe.scheduler.delay",
                "s",
                "How late a run started against its schedule",
                &b.lateness_seconds,
            ),
            skipped: counter(
                "rtprobe.scheduler.skipped",
                "{run}",
                "Runs skipped because the previous run still ran",
            ),
            reload_success: u64_gauge(
                "rtprobe.config.reload.success",
                "1 if the last config reload succeeded, else 0",
            ),
            reload_timestamp: on_all(meters, |meter| {
                meter
                    .f64_gauge("rtprobe.config.reload.timestamp")
                    .with_unit("s")
                    .with_description("Unix time of the last config reload attempt")
                    .build()
            }),
        }
    }
}

/// Open streams of one attribute set.
type InFlight = (Arc<[KeyValue]>, i64);

/// State shared by every [`Recorder`] clone and the owning `Telemetry`.
pub(crate) struct Shared {
    /// The instruments of the current provider; swapped whole when the pipeline is rebuilt.
    current: RwLock<Arc<Instruments>>,
    pub(crate) export_failures: Arc<AtomicU64>,
    /// Open streams per attribute set, kept outside the provider so a rebuilt provider starts
    /// from the true count (streams opened before a rebuild close after it). Entries at 0 are
    /// removed, so a probe gone from the config is not replayed.
    in_flight: Mutex<HashMap<Arc<str>, InFlight>>,
    /// Last config reload (success, Unix seconds), replayed into a rebuilt provider.
    last_reload: Mutex<Option<(bool, f64)>>,
}

impl Shared {
    pub(crate) fn new(instruments: Instruments, export_failures: Arc<AtomicU64>) -> Shared {
        Shared {
            current: RwLock::new(Arc::new(instruments)),
            export_failures,
            in_flight: Mutex::new(HashMap::new()),
            last_reload: Mutex::new(None),
        }
    }

    /// Makes `next` current, after replaying the state that must survive a rebuild into it.
    /// Lock order everywhere: `in_flight`, then `last_reload`, then `current`.
    pub(crate) fn swap(&self, next: Instruments) {
        let open = lock(&self.in_flight);
        for (attrs, n) in open.values() {
            next.in_flight.add(*n, attrs);
        }
        let reload = lock(&self.last_reload);
        if let Some((ok, at)) = *reload {
            next.record_reload(ok, at);
        }
        let mut current = crate::sync::write(&self.current);
        *current = Arc::new(next);
    }
}

impl Instruments {
    fn record_reload(&self, success: bool, unix_seconds: f64) {
        self.reload_success.record(u64::from(success), &[]);
        if unix_seconds.is_finite() {
            self.reload_timestamp.record(unix_seconds, &[]);
        }
    }
}

/// Records probe results into the current instruments. Cheap to clone, `Send + Sync`.
#[derive(Clone)]
pub struct Recorder {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder").finish_non_exhaustive()
    }
}

/// The one place a float reaches a histogram. Only finite, non-negative values are recorded:
/// callers pass latencies, rates and ratios that cannot be negative, so anything else is a bug
/// upstream (debug builds stop on it); a release build drops it rather than poison `_sum`.
fn observe(h: &Histogram<f64>, v: f64, attrs: &[KeyValue]) {
    debug_assert!(
        v.is_finite() && v >= 0.0,
        "impossible histogram observation {v}"
    );
    if v.is_finite() && v >= 0.0 {
        h.record(v, attrs);
    }
}

fn observe_opt(h: &Histogram<f64>, v: Option<f64>, attrs: &[KeyValue]) {
    if let Some(v) = v {
        observe(h, v, attrs);
    }
}

impl Recorder {
    fn instruments(&self) -> Arc<Instruments> {
        // A poisoned lock only means a writer panicked mid-swap; the Arc inside is still whole.
        Arc::clone(&crate::sync::read(&self.shared.current))
    }

    /// Records one finished run. A successful run records every `Some` value of `derived`; a
    /// failed run records the runs counter, the success gauge (0) and the phases that completed,
    /// nothing else. `None` is never recorded as 0.
    pub fn record_run(
        &self,
        labels: &ProbeLabels,
        derived: &Derived,
        outcome: Result<(), ErrorType>,
    ) {
        let i = self.instruments();
        for (phase, secs) in &derived.phases {
            observe(&i.phase, *secs, &labels.phase(phase));
        }
        if let Err(e) = outcome {
            i.runs.add(1, &labels.failure(e));
            i.success.record(0, &labels.base);
            // A run failed for its transcript still measured it: the WER histogram keeps the
            // values that crossed `max_wer`, or it would only ever show the good ones.
            if e == ErrorType::Wer {
                observe_opt(&i.wer, derived.wer, &labels.base);
            }
            return;
        }
        i.runs.add(1, &labels.success);
        i.success.record(1, &labels.base);
        Self::record_values(&i, labels, derived);
    }

    /// Records a later utterance of a multi-utterance session (labels carrying
    /// `rtprobe.utterance="later"`): its values only; the session is one run, counted by
    /// `record_run` with the first utterance.
    pub fn record_utterance(&self, labels: &ProbeLabels, derived: &Derived) {
        let i = self.instruments();
        Self::record_values(&i, labels, derived);
    }

    fn record_values(i: &Instruments, labels: &ProbeLabels, derived: &Derived) {
        let base = &labels.base[..];
        observe_opt(&i.duration, derived.e2e, base);
        observe_opt(&i.ttft, derived.ttft, base);
        observe_opt(&i.time_to_first_text, derived.time_to_first_text, base);
        for gap in &derived.itl_gaps {
            observe(&i.time_per_output_chunk, *gap, base);
        }
        observe_opt(&i.guidellm_itl, derived.itl_guidellm, base);
        observe_opt(&i.rtt_last, derived.rtt_last, base);
        match derived.rtt_mean {
            Some(v) if v < 0.0 => i.rtt_mean_negative.add(1, base),
            v => observe_opt(&i.rtt_mean, v, base),
        }
        observe_opt(&i.finalize, derived.finalize, base);
        observe_opt(&i.audio_rate, derived.send_window_audio_rate, base);
        observe_opt(
            &i.output_tokens_rate,
            derived.send_window_output_tokens,
            base,
        );
        observe_opt(&i.decode_token_rate, derived.decode_token_rate, base);
        if let Some(u) = &derived.usage {
            i.token_usage.record(u.prompt_tokens, &labels.input_tokens);
            i.token_usage
                .record(u.completion_tokens, &labels.output_tokens);
        }
        observe_opt(&i.wer, derived.wer, base);
        for late in &derived.pacing_lateness {
            observe(&i.pacing_lateness, *late, base);
        }
    }

    /// A scheduled run skipped because the previous one still ran.
    pub fn record_skipped(&self, labels: &ProbeLabels) {
        self.instruments().skipped.add(1, &labels.base);
    }

    /// Streams opened (`delta > 0`) or closed (`delta < 0`).
    pub fn in_flight(&self, labels: &ProbeLabels, delta: i64) {
        let mut open = lock(&self.shared.in_flight);
        let entry = open
            .entry(Arc::clone(&labels.key))
            .or_insert_with(|| (Arc::clone(&labels.base), 0));
        entry.1 += delta;
        if entry.1 == 0 {
            open.remove(&labels.key);
        }
        // Still under the map lock, so a concurrent rebuild cannot replay a count that this
        // delta then applies a second time.
        self.instruments().in_flight.add(delta, &labels.base);
    }

    /// Stop tracking a probe's open streams, so a rebuilt pipeline does not replay them: for a
    /// probe removed by a reload whose last run is still going (its events are dropped).
    pub fn forget(&self, labels: &ProbeLabels) {
        lock(&self.shared.in_flight).remove(&labels.key);
    }

    /// How late a run started against its schedule.
    pub fn scheduler_delay(&self, labels: &ProbeLabels, seconds: f64) {
        observe(&self.instruments().scheduler_delay, seconds, &labels.base);
    }

    /// Outcome and time (Unix seconds) of the last config reload attempt.
    pub fn config_reload(&self, success: bool, unix_seconds: f64) {
        let mut last = lock(&self.shared.last_reload);
        *last = Some((success, unix_seconds));
        self.instruments().record_reload(success, unix_seconds);
    }

    /// OTLP exports that failed (after the exporter's own retries) since start. 0 without OTLP.
    pub fn otlp_export_failures(&self) -> u64 {
        self.shared.export_failures.load(Ordering::Relaxed)
    }
}
