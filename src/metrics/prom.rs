//! `/metrics`: one rendering function over the SDK's collected metrics (a `ManualReader`), in the
//! Prometheus text format 0.0.4 or, when the scraper negotiates it, the protobuf format with
//! native histograms. This replaced the `opentelemetry-prometheus` bridge, which drops
//! exponential histograms and has no protobuf encoder.
//!
//! **Where native buckets come from: two streams of one recording.** Every histogram instrument
//! gets two SDK views on the Prometheus provider (see `telemetry`): the explicit-bucket stream
//! under the instrument's name (classic buckets, exact SLO boundaries) and, unless
//! `metrics.histograms` is `classic`, a Base2 exponential stream named `<name>.native`
//! ([`NATIVE_SUFFIX`]). A measurement is recorded once and the SDK feeds it to both
//! aggregators. At render time the two streams of a series merge into one Prometheus histogram:
//! classic buckets from the first, schema/zero bucket/spans/deltas from the second. OTel's
//! exponential scale *is* Prometheus's schema (both are base `2^(2^-scale)`); OTel bucket `i`
//! covers `(base^i, base^(i+1)]` and Prometheus bucket `i` covers `(base^(i-1), base^i]`, so the
//! Prometheus index is the OTel index plus one. The exponential stream's scale is capped at 8,
//! Prometheus's finest schema. Computing native buckets from the classic ones instead is not
//! possible (they are too coarse), and classic buckets from an exponential stream would lose the
//! exact SLO boundaries (1.5 s is not a power of two).
//!
//! **Text format** stays as the bridge rendered it, so rules and dashboards keep matching: names
//! from the OTel name and unit (`s` → `_seconds`, `1` → `_ratio`, `{token}/s` → `_per_second`,
//! annotations such as `{token}` → no suffix, counters → `_total`), families sorted by name,
//! series by label count then label values, labels sorted, `le` strings and values as Rust's
//! shortest round-trip `f64` (`le="0.5"`, `le="1"`, then `le="+Inf"`). Prometheus 3 normalises
//! stored `le` to `"1.0"`; keep SLO thresholds non-integer.
//!
//! **Protobuf** (`application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily;
//! encoding=delimited`): length-delimited `MetricFamily` messages (see `prom_proto`). Histograms
//! carry the classic buckets (`classic`, `both`) and the native fields (`native`, `both`).
//! Note that Prometheus ingests only the native part of a histogram that has both unless its
//! scrape config sets `scrape_classic_histograms: true`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Weak};
use std::time::Duration;

use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::{
    AggregatedMetrics, ExponentialBucket, ExponentialHistogramDataPoint, HistogramDataPoint,
    MetricData, ResourceMetrics,
};
use opentelemetry_sdk::metrics::reader::MetricReader;
use opentelemetry_sdk::metrics::{InstrumentKind, ManualReader, Pipeline, Temporality};
use prost::Message;

use crate::config::model::HistogramFormat;
pub(crate) use crate::metrics::prom_labels::LabelCache;
use crate::metrics::prom_labels::{Fx, LabelSet, escape_into};
use crate::metrics::prom_proto as pb;

/// Content type of the text body.
pub(crate) const TEXT_0_0_4: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Content type of the protobuf body.
pub(crate) const PROTOBUF: &str =
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";
/// Name suffix of the exponential stream that backs a histogram's native buckets.
pub(crate) const NATIVE_SUFFIX: &str = ".native";
/// Prometheus's finest native schema; the exponential streams are capped at this scale.
pub(crate) const MAX_SCHEMA: i8 = 8;
/// Prometheus's coarsest native schema.
const MIN_SCHEMA: i8 = -4;

/// The Prometheus provider's reader. `ManualReader` cannot be cloned, so the provider gets this
/// handle and `/metrics` keeps the other one.
#[derive(Debug, Clone)]
pub(crate) struct PromReader(pub(crate) Arc<ManualReader>);

impl PromReader {
    pub(crate) fn new() -> PromReader {
        PromReader(Arc::new(
            ManualReader::builder()
                .with_temporality(Temporality::Cumulative)
                .build(),
        ))
    }
}

impl MetricReader for PromReader {
    fn register_pipeline(&self, pipeline: Weak<Pipeline>) {
        self.0.register_pipeline(pipeline)
    }
    fn collect(&self, rm: &mut ResourceMetrics) -> OTelSdkResult {
        self.0.collect(rm)
    }
    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }
    fn temporality(&self, _kind: InstrumentKind) -> Temporality {
        // Prometheus only understands cumulative values.
        Temporality::Cumulative
    }
}

/// Output formats of [`render`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Format {
    Text,
    Protobuf,
}

impl Format {
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Format::Text => TEXT_0_0_4,
            Format::Protobuf => PROTOBUF,
        }
    }

    /// The protobuf format when some media range of `accept` asks for delimited
    /// `io.prometheus.client.MetricFamily` (and not with `q=0`); text otherwise.
    pub(crate) fn negotiate(accept: Option<&str>) -> Format {
        let wants = |range: &str| {
            let mut params = range.split(';').map(|p| p.trim().to_ascii_lowercase());
            let media = params.next().unwrap_or_default();
            let params: Vec<String> = params.map(|p| p.replace(' ', "")).collect();
            media == "application/vnd.google.protobuf"
                && params
                    .iter()
                    .any(|p| p == "proto=io.prometheus.client.metricfamily")
                && params.iter().any(|p| p == "encoding=delimited")
                && !params
                    .iter()
                    .any(|p| p.strip_prefix("q=").and_then(|q| q.parse::<f64>().ok()) == Some(0.0))
        };
        match accept {
            Some(a) if a.split(',').any(wants) => Format::Protobuf,
            _ => Format::Text,
        }
    }
}

/// Native buckets of one sign: Prometheus index of `counts[0]`, then consecutive counts.
#[derive(Debug, Clone, Default, PartialEq)]
struct NativeBuckets {
    first_index: i32,
    counts: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq)]
struct Native {
    schema: i32,
    zero_threshold: f64,
    zero_count: u64,
    positive: NativeBuckets,
    negative: NativeBuckets,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct Hist {
    count: u64,
    sum: f64,
    /// `(upper bound, cumulative count)`, without `+Inf`.
    classic: Option<Vec<(f64, u64)>>,
    native: Option<Native>,
}

#[derive(Debug, Clone, PartialEq)]
enum Sample {
    Counter(f64),
    Gauge(f64),
    Histogram(Hist),
}

#[derive(Debug, Default)]
struct Family {
    help: String,
    series: Vec<(Arc<LabelSet>, Sample)>,
    /// Index into `series` by label set (one set per distinct label content).
    index: HashMap<*const LabelSet, usize, Fx>,
}

impl Family {
    fn sample(&mut self, set: Arc<LabelSet>, new: impl FnOnce() -> Sample) -> &mut Sample {
        let i = *self.index.entry(Arc::as_ptr(&set)).or_insert_with(|| {
            self.series.push((set, new()));
            self.series.len() - 1
        });
        &mut self.series[i].1
    }

    /// Sets a counter's or gauge's value (a data point replaces what the series had; a new
    /// series' placeholder is overwritten at once).
    fn put(&mut self, set: Arc<LabelSet>, sample: Sample) {
        *self.sample(set, || Sample::Gauge(0.0)) = sample;
    }

    /// Series in the order the bridge wrote them (see `LabelSet::order`).
    fn sorted(&self) -> Vec<&(Arc<LabelSet>, Sample)> {
        let mut series: Vec<_> = self.series.iter().collect();
        series.sort_unstable_by_key(|(set, _)| set.rank());
        series
    }
}

/// Everything collected, by Prometheus family name.
#[derive(Debug, Default)]
pub(crate) struct Families(BTreeMap<String, Family>);

/// Metric name sanitising: invalid characters → `_`, a leading digit gets a `_` prefix.
fn metric_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 16);
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        out.push('_');
    }
    out.extend(name.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            c
        } else {
            '_'
        }
    }));
    out
}

fn unit_word(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" | "B" => "bytes",
        "1" => "ratio",
        "%" => "percent",
        _ => return None,
    })
}

fn per_unit_word(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        "w" => "week",
        "mo" => "month",
        "y" => "year",
        _ => return None,
    })
}

/// The unit suffix: `s` → `seconds`, `{token}/s` → `per_second`, `{token}` → none.
fn unit_suffix(unit: &str) -> Option<String> {
    if let Some(w) = unit_word(unit) {
        return Some(w.to_owned());
    }
    let (first, second) = unit.split_once('/')?;
    let per = per_unit_word(second)?;
    const PLAIN: [&str; 8] = ["1", "d", "h", "min", "s", "ms", "us", "ns"];
    match unit_word(first) {
        Some(w) if !PLAIN.contains(&first) => Some(format!("{w}_per_{per}")),
        _ => Some(format!("per_{per}")),
    }
}

/// The Prometheus family name of an OTel metric.
fn family_name(otel_name: &str, unit: &str, counter: bool) -> String {
    let mut name = metric_name(otel_name);
    if let Some(suffix) = unit_suffix(unit) {
        name.push('_');
        name.push_str(&suffix);
    }
    if counter {
        name.push_str("_total");
    }
    name
}

trait Num: Copy {
    fn f(self) -> f64;
}
impl Num for f64 {
    fn f(self) -> f64 {
        self
    }
}
impl Num for u64 {
    fn f(self) -> f64 {
        self as f64
    }
}
impl Num for i64 {
    fn f(self) -> f64 {
        self as f64
    }
}

/// One sign's OTel buckets as Prometheus buckets at `target` scale (`scale >= target`):
/// merging `2^(scale-target)` neighbours per bucket, then shifting the index by one.
fn native_buckets(b: &ExponentialBucket, scale: i8, target: i8) -> NativeBuckets {
    let shift = u32::try_from(i32::from(scale) - i32::from(target)).unwrap_or(0);
    let mut out = NativeBuckets::default();
    let mut current: Option<i32> = None;
    for (i, count) in b.counts().enumerate() {
        let otel_index = b.offset() + i as i32;
        let index = (otel_index >> shift) + 1;
        match current {
            None => {
                out.first_index = index;
                out.counts.push(count);
            }
            Some(c) if c == index => *out.counts.last_mut().expect("pushed") += count,
            Some(c) => {
                // Consecutive OTel indices map to the same or the next coarser index.
                for _ in c + 1..index {
                    out.counts.push(0);
                }
                out.counts.push(count);
            }
        }
        current = Some(index);
    }
    // Leading and trailing empty buckets carry nothing.
    while out.counts.last() == Some(&0) {
        out.counts.pop();
    }
    let lead = out.counts.iter().take_while(|c| **c == 0).count();
    out.counts.drain(..lead);
    out.first_index += lead as i32;
    out
}

fn native_of<T: Num>(dp: &ExponentialHistogramDataPoint<T>) -> Option<Native> {
    let scale = dp.scale();
    if scale < MIN_SCHEMA {
        // Wider than Prometheus can store: the classic buckets still carry the series.
        return None;
    }
    let target = scale.min(MAX_SCHEMA);
    Some(Native {
        schema: i32::from(target),
        zero_threshold: dp.zero_threshold(),
        zero_count: dp.zero_count(),
        positive: native_buckets(dp.positive_bucket(), scale, target),
        negative: native_buckets(dp.negative_bucket(), scale, target),
    })
}

fn classic_of<T: Num>(dp: &HistogramDataPoint<T>) -> Vec<(f64, u64)> {
    let mut cumulative = 0;
    dp.bounds()
        .zip(dp.bucket_counts())
        .map(|(bound, count)| {
            cumulative += count;
            (bound, cumulative)
        })
        .collect()
}

/// What a render converts: the text format has no native buckets, so it skips the exponential
/// streams (their data points are still collected: the SDK reads every stream of a reader).
#[derive(Debug, Clone, Copy)]
struct Wanted {
    native: bool,
}

impl Families {
    fn add<T: Num>(
        &mut self,
        metric: (&str, &str, &str),
        data: &MetricData<T>,
        wanted: Wanted,
        cache: &mut LabelCache,
    ) {
        let (name, help, unit) = metric;
        let (base, native) = match name.strip_suffix(NATIVE_SUFFIX) {
            Some(base) => (base, true),
            None => (name, false),
        };
        if native && !wanted.native {
            return;
        }
        let counter = matches!(data, MetricData::Sum(s) if s.is_monotonic());
        let family = self.0.entry(family_name(base, unit, counter)).or_default();
        if !native && family.help.is_empty() {
            family.help = help.to_owned();
        }
        match data {
            MetricData::Sum(s) => {
                for dp in s.data_points() {
                    let v = dp.value().f();
                    let sample = if s.is_monotonic() {
                        Sample::Counter(v)
                    } else {
                        Sample::Gauge(v)
                    };
                    family.put(cache.get(dp.attributes()), sample);
                }
            }
            MetricData::Gauge(g) => {
                for dp in g.data_points() {
                    family.put(cache.get(dp.attributes()), Sample::Gauge(dp.value().f()));
                }
            }
            MetricData::Histogram(h) => {
                for dp in h.data_points() {
                    let entry = family.sample(cache.get(dp.attributes()), || {
                        Sample::Histogram(Hist::default())
                    });
                    if let Sample::Histogram(hist) = entry {
                        hist.count = dp.count();
                        hist.sum = dp.sum().f();
                        hist.classic = Some(classic_of(dp));
                    }
                }
            }
            MetricData::ExponentialHistogram(h) => {
                for dp in h.data_points() {
                    let entry = family.sample(cache.get(dp.attributes()), || {
                        Sample::Histogram(Hist::default())
                    });
                    if let Sample::Histogram(hist) = entry {
                        hist.count = dp.count() as u64;
                        hist.sum = dp.sum().f();
                        hist.native = native_of(dp);
                    }
                }
            }
        }
    }

    /// Reads everything the SDK aggregated since start (cumulative), with each data point's
    /// labels from `cache`.
    fn collect(reader: &ManualReader, wanted: Wanted, cache: &mut LabelCache) -> Families {
        let mut rm = ResourceMetrics::default();
        if let Err(e) = reader.collect(&mut rm) {
            tracing::warn!(error = %e, "collecting metrics for /metrics failed");
        }
        let mut families = Families::default();
        cache.start();
        for sm in rm.scope_metrics() {
            for m in sm.metrics() {
                let metric = (m.name(), m.description(), m.unit());
                match m.data() {
                    AggregatedMetrics::F64(d) => families.add(metric, d, wanted, cache),
                    AggregatedMetrics::U64(d) => families.add(metric, d, wanted, cache),
                    AggregatedMetrics::I64(d) => families.add(metric, d, wanted, cache),
                }
            }
        }
        // Ranks every set before any family sorts its series.
        cache.finish();
        families
    }

    fn text(&self) -> Vec<u8> {
        let mut out = String::with_capacity(64 * 1024);
        // `le="…"` of each classic bound, formatted once per family: its series share bounds.
        let mut les: Vec<(f64, String)> = Vec::new();
        for (name, family) in &self.0 {
            let Some((_, kind)) = family.series.first() else {
                continue;
            };
            if !family.help.is_empty() {
                out.push_str("# HELP ");
                out.push_str(name);
                out.push(' ');
                escape_into(&mut out, &family.help, false);
                out.push('\n');
            }
            let kind = match kind {
                Sample::Counter(_) => "counter",
                Sample::Gauge(_) => "gauge",
                Sample::Histogram(_) => "histogram",
            };
            out.push_str("# TYPE ");
            out.push_str(name);
            out.push(' ');
            out.push_str(kind);
            out.push('\n');
            les.clear();
            for (set, sample) in family.sorted() {
                let labels = set.text();
                match sample {
                    Sample::Counter(v) | Sample::Gauge(v) => {
                        line(&mut out, name, "", labels, None, Number::Float(*v))
                    }
                    Sample::Histogram(h) => {
                        for (i, (bound, count)) in h.classic.iter().flatten().enumerate() {
                            if les.get(i).map(|(b, _)| b) != Some(bound) {
                                les.truncate(i);
                                les.push((*bound, format!("le=\"{bound}\"")));
                            }
                            let le = Some(les[i].1.as_str());
                            line(&mut out, name, "_bucket", labels, le, Number::Count(*count));
                        }
                        let inf = Some("le=\"+Inf\"");
                        line(
                            &mut out,
                            name,
                            "_bucket",
                            labels,
                            inf,
                            Number::Count(h.count),
                        );
                        line(&mut out, name, "_sum", labels, None, Number::Float(h.sum));
                        line(
                            &mut out,
                            name,
                            "_count",
                            labels,
                            None,
                            Number::Count(h.count),
                        );
                    }
                }
            }
        }
        out.into_bytes()
    }

    /// Length-delimited `MetricFamily` messages. Each `Metric` is encoded by hand around its
    /// label set's pre-encoded `label` fields (a message's fields may be concatenated, and these
    /// come first, as prost would write them), so no label string is copied per series.
    fn protobuf(&self, histograms: HistogramFormat) -> Vec<u8> {
        use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};
        let mut out = Vec::with_capacity(64 * 1024);
        let mut metrics = Vec::new();
        for (name, family) in &self.0 {
            let Some((_, first)) = family.series.first() else {
                continue;
            };
            let kind = match first {
                Sample::Counter(_) => pb::MetricType::Counter,
                Sample::Gauge(_) => pb::MetricType::Gauge,
                Sample::Histogram(_) => pb::MetricType::Histogram,
            };
            metrics.clear();
            for (set, sample) in family.sorted() {
                let mut m = pb::Metric::default();
                match sample {
                    Sample::Counter(v) => m.counter = Some(pb::Counter { value: Some(*v) }),
                    Sample::Gauge(v) => m.gauge = Some(pb::Gauge { value: Some(*v) }),
                    Sample::Histogram(h) => m.histogram = Some(histogram_pb(h, histograms)),
                }
                let len = set.proto().len() + m.encoded_len();
                encode_key(4, WireType::LengthDelimited, &mut metrics);
                encode_varint(len as u64, &mut metrics);
                metrics.extend_from_slice(set.proto());
                m.encode_raw(&mut metrics);
            }
            let head = pb::MetricFamily {
                name: Some(name.clone()),
                help: (!family.help.is_empty()).then(|| family.help.clone()),
                r#type: Some(kind as i32),
                metric: Vec::new(),
            };
            let len = head.encoded_len() + metrics.len();
            out.reserve(encoded_len_varint(len as u64) + len);
            encode_varint(len as u64, &mut out);
            head.encode_raw(&mut out);
            out.extend_from_slice(&metrics);
        }
        out
    }
}

/// Spans and deltas of one sign, as Prometheus wants them: one span per run of buckets (empty
/// buckets inside a run are cheaper as zero deltas than as a new span).
fn spans(b: &NativeBuckets) -> (Vec<pb::BucketSpan>, Vec<i64>) {
    if b.counts.is_empty() {
        return (Vec::new(), Vec::new());
    }
    let span = pb::BucketSpan {
        offset: Some(b.first_index),
        length: Some(b.counts.len() as u32),
    };
    let mut prev = 0i64;
    let deltas = b
        .counts
        .iter()
        .map(|c| {
            let c = *c as i64;
            let d = c - prev;
            prev = c;
            d
        })
        .collect();
    (vec![span], deltas)
}

fn histogram_pb(h: &Hist, format: HistogramFormat) -> pb::Histogram {
    let mut out = pb::Histogram {
        sample_count: Some(h.count),
        sample_sum: Some(h.sum),
        ..Default::default()
    };
    let classic = format != HistogramFormat::Native || h.native.is_none();
    if classic {
        out.bucket = h
            .classic
            .iter()
            .flatten()
            .map(|(bound, count)| pb::Bucket {
                cumulative_count: Some(*count),
                upper_bound: Some(*bound),
            })
            .collect();
    }
    if let (Some(n), true) = (&h.native, format != HistogramFormat::Classic) {
        out.schema = Some(n.schema);
        out.zero_threshold = Some(n.zero_threshold);
        out.zero_count = Some(n.zero_count);
        (out.positive_span, out.positive_delta) = spans(&n.positive);
        (out.negative_span, out.negative_delta) = spans(&n.negative);
        if out.positive_span.is_empty() && out.negative_span.is_empty() {
            // An empty span marks the histogram native even with no (non-zero) observation.
            out.positive_span.push(pb::BucketSpan {
                offset: Some(0),
                length: Some(0),
            });
        }
    }
    out
}

/// A sample value as the text format writes it: counts as integers (exact beyond 2^53, and
/// what `f64` prints for smaller ones), everything else as Rust's shortest round-trip `f64`.
#[derive(Clone, Copy)]
enum Number {
    Float(f64),
    Count(u64),
}

/// One sample line; `le` is the whole `le="…"` label of a bucket line.
fn line(out: &mut String, name: &str, suffix: &str, labels: &str, le: Option<&str>, v: Number) {
    use std::fmt::Write;
    out.push_str(name);
    out.push_str(suffix);
    if !labels.is_empty() || le.is_some() {
        out.push('{');
        out.push_str(labels);
        if let Some(le) = le {
            if !labels.is_empty() {
                out.push(',');
            }
            out.push_str(le);
        }
        out.push('}');
    }
    out.push(' ');
    match v {
        Number::Float(v) => {
            let _ = write!(out, "{v}");
        }
        Number::Count(v) => push_count(out, v),
    }
    out.push('\n');
}

/// Decimal digits of a count without the formatting machinery: bucket counts are most of a
/// text body's lines.
fn push_count(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.push_str(std::str::from_utf8(&digits[i..]).expect("ASCII digits"));
}

/// Collects once and encodes in `format`, converting labels through `labels` (kept by the
/// caller across renders, see `prom_labels`).
pub(crate) fn render(
    reader: &ManualReader,
    format: Format,
    histograms: HistogramFormat,
    labels: &mut LabelCache,
) -> Vec<u8> {
    let wanted = Wanted {
        native: format == Format::Protobuf && histograms != HistogramFormat::Classic,
    };
    let families = Families::collect(reader, wanted, labels);
    match format {
        Format::Text => families.text(),
        Format::Protobuf => families.protobuf(histograms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_units() {
        for (otel, unit, counter, prom) in [
            (
                "rtprobe.round_trip.last",
                "s",
                false,
                "rtprobe_round_trip_last_seconds",
            ),
            (
                "rtprobe.decode.token_rate",
                "{token}/s",
                false,
                "rtprobe_decode_token_rate_per_second",
            ),
            (
                "gen_ai.client.token.usage",
                "{token}",
                false,
                "gen_ai_client_token_usage",
            ),
            (
                "rtprobe.probe.runs",
                "{run}",
                true,
                "rtprobe_probe_runs_total",
            ),
            (
                "rtprobe.transcript.word_error_rate",
                "1",
                false,
                "rtprobe_transcript_word_error_rate_ratio",
            ),
            ("a.b", "By/s", false, "a_b_bytes_per_second"),
            ("9x", "", false, "_9x"),
        ] {
            assert_eq!(family_name(otel, unit, counter), prom, "{otel} in {unit}");
        }
    }

    #[test]
    fn negotiation_picks_protobuf_only_when_asked_for() {
        // What Prometheus sends with native histograms on.
        let prom = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.8,application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prom)), Format::Protobuf);
        assert_eq!(Format::negotiate(Some(PROTOBUF)), Format::Protobuf);
        assert_eq!(Format::negotiate(None), Format::Text);
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text; version=1.0.0")),
            Format::Text
        );
        // Text-delimited protobuf, or refused with q=0: not ours.
        assert_eq!(
            Format::negotiate(Some(
                "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=text"
            )),
            Format::Text
        );
        assert_eq!(
            Format::negotiate(Some(&format!("{PROTOBUF}; q=0, text/plain"))),
            Format::Text
        );
    }

    #[test]
    fn sample_lines() {
        let mut out = String::new();
        let labels = "a=\"x\"";
        line(
            &mut out,
            "m",
            "_bucket",
            labels,
            Some("le=\"0.5\""),
            Number::Count(3),
        );
        line(
            &mut out,
            "m",
            "_bucket",
            "",
            Some("le=\"+Inf\""),
            Number::Count(4),
        );
        line(&mut out, "m", "_count", "", None, Number::Count(3));
        line(
            &mut out,
            "m",
            "_sum",
            labels,
            None,
            Number::Float(0.1 + 0.2),
        );
        line(&mut out, "g", "", "", None, Number::Float(2.0));
        line(&mut out, "c", "", "", None, Number::Count(0));
        line(&mut out, "c", "", "", None, Number::Count(u64::MAX));
        assert_eq!(
            out,
            "m_bucket{a=\"x\",le=\"0.5\"} 3\nm_bucket{le=\"+Inf\"} 4\nm_count 3\n\
             m_sum{a=\"x\"} 0.30000000000000004\ng 2\nc 0\nc 18446744073709551615\n"
        );
    }

    #[test]
    fn deltas_and_one_span_per_run() {
        let b = NativeBuckets {
            first_index: -3,
            counts: vec![2, 0, 5, 1],
        };
        let (s, d) = spans(&b);
        assert_eq!(
            s,
            vec![pb::BucketSpan {
                offset: Some(-3),
                length: Some(4)
            }]
        );
        assert_eq!(d, vec![2, -2, 5, -4]);
    }
}
