//! Per-run traces over OTLP (`otlp.traces: true`): one span per probe run with a child span per
//! connection phase and one for the streaming phase, span events for the commits, the first
//! text and `done`, GenAI/HTTP semantic-convention attributes, and `error.type` with an error
//! status on failure.
//!
//! The probe knows nothing of telemetry, so spans are built after the run from the `Timeline`'s
//! raw offsets, with explicit start and end times (`Timeline::started` + offset), and handed
//! to the OTLP span exporter as finished `SpanData` — no tracer, no span processor, no context
//! propagation. Exports run on one task fed by a bounded queue: a collector that is down costs
//! at most `QUEUE` runs' spans of memory, and further runs' spans are dropped (and counted in
//! the log), never waited for.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::tonic_types::transport::ClientTlsConfig;
use opentelemetry_otlp::{SpanExporter, WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::trace::{
    IdGenerator, RandomIdGenerator, SpanData, SpanEvents, SpanExporter as _, SpanLinks,
};
use tokio::sync::mpsc;

use crate::config::model::{OtlpProtocol, OtlpSettings};
use crate::derive::{Derived, phase_spans};
use crate::metrics::otlp::{header_map, http_exporter, otlp_err};
use crate::metrics::{MetricsError, ProbeLabels};
use crate::probe::Timeline;
use crate::probe::timeline::SentKind;

/// Runs whose spans may wait for export at once.
const QUEUE: usize = 64;

/// The HTTP/protobuf URL for a configured endpoint: as for metrics, a URL already ending in
/// `/v1/traces` is used verbatim, any other is a base.
pub(crate) fn http_traces_url(endpoint: &str) -> String {
    let trimmed = endpoint.trim_end_matches('/');
    if trimmed.ends_with("/v1/traces") {
        return trimmed.to_owned();
    }
    format!("{trimmed}/v1/traces")
}

/// Sends finished runs' spans to the collector.
#[derive(Debug)]
pub struct TraceExporter {
    queue: mpsc::Sender<Vec<SpanData>>,
    dropped: Arc<AtomicU64>,
    /// Runs queued or being exported.
    pending: Arc<AtomicU64>,
}

impl TraceExporter {
    /// Build the exporter for `settings` and start its export task. Must run inside a tokio
    /// runtime.
    pub fn start(settings: &OtlpSettings) -> Result<TraceExporter, MetricsError> {
        let endpoint = settings.endpoint.as_str();
        let https = endpoint.starts_with("https://");
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| otlp_err(endpoint, "must be built inside a tokio runtime"))?;
        let headers = header_map(settings)?;
        let mut exporter = match settings.protocol {
            OtlpProtocol::Grpc => {
                let _guard = handle.enter();
                let mut b = SpanExporter::builder()
                    .with_tonic()
                    .with_endpoint(endpoint)
                    .with_timeout(settings.timeout)
                    .with_metadata(
                        opentelemetry_otlp::tonic_types::metadata::MetadataMap::from_headers(
                            headers,
                        ),
                    );
                if https {
                    b = b.with_tls_config(ClientTlsConfig::new().with_enabled_roots());
                }
                b.build().map_err(|e| otlp_err(endpoint, e))?
            }
            OtlpProtocol::HttpProtobuf => {
                let url = http_traces_url(endpoint);
                let builder = SpanExporter::builder().with_http();
                http_exporter(builder, settings, &headers, &url, handle.clone())?
                    .build()
                    .map_err(|e| otlp_err(&url, e))?
            }
        };
        // The same identity as the metrics: a fleet's traces name their replica too.
        opentelemetry_sdk::trace::SpanExporter::set_resource(
            &mut exporter,
            &crate::metrics::identity::resource(),
        );
        let (queue, mut rx) = mpsc::channel::<Vec<SpanData>>(QUEUE);
        let timeout = settings.timeout + Duration::from_secs(1);
        let pending = Arc::new(AtomicU64::new(0));
        let done = pending.clone();
        handle.spawn(async move {
            while let Some(spans) = rx.recv().await {
                match tokio::time::timeout(timeout, exporter.export(spans)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::debug!(error = %e, "OTLP trace export failed"),
                    Err(_) => tracing::debug!("OTLP trace export timed out"),
                }
                done.fetch_sub(1, Ordering::AcqRel);
            }
        });
        Ok(TraceExporter {
            queue,
            dropped: Arc::new(AtomicU64::new(0)),
            pending,
        })
    }

    /// Queue one run's spans; dropped when the queue is full (a collector that is away).
    pub fn send(&self, spans: Vec<SpanData>) {
        self.pending.fetch_add(1, Ordering::AcqRel);
        if self.queue.try_send(spans).is_err() {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(
                    dropped_runs = n,
                    "OTLP trace queue full; dropping run traces"
                );
            }
        }
    }
}

impl TraceExporter {
    /// Wait until every queued run was exported (or failed), at most `timeout`: the last runs
    /// before a shutdown are not lost.
    pub async fn flush(&self, timeout: Duration) {
        let end = tokio::time::Instant::now() + timeout;
        while self.pending.load(Ordering::Acquire) > 0 && tokio::time::Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The spans of one run: the run span first, then its children. `labels` are the probe's
/// metric attributes (`rtprobe.probe`, `server.*`, `gen_ai.*`, static labels).
pub fn run_spans(labels: &ProbeLabels, t: &Timeline, d: &Derived) -> Vec<SpanData> {
    let ids = RandomIdGenerator::default();
    let trace_id = ids.new_trace_id();
    let at = |off: Duration| t.started + off;
    let scope = InstrumentationScope::builder("rtprobe")
        .with_version(env!("CARGO_PKG_VERSION"))
        .build();
    let root_id = ids.new_span_id();
    let context = |id: SpanId| {
        SpanContext::new(
            trace_id,
            id,
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        )
    };
    let span = |id: SpanId,
                parent: SpanId,
                name: String,
                kind: SpanKind,
                (start, end): (SystemTime, SystemTime),
                attributes: Vec<KeyValue>,
                events: Vec<opentelemetry::trace::Event>,
                status: Status| SpanData {
        span_context: context(id),
        parent_span_id: parent,
        parent_span_is_remote: false,
        span_kind: kind,
        name: Cow::Owned(name),
        start_time: start,
        end_time: end,
        attributes,
        dropped_attributes_count: 0,
        events: {
            let mut e = SpanEvents::default();
            e.events = events;
            e
        },
        links: SpanLinks::default(),
        status,
        instrumentation_scope: scope.clone(),
    };
    let error = t.outcome.as_ref().err();
    let status = |failed: bool| match error {
        Some(e) if failed => Status::error(e.kind.as_str()),
        _ => Status::Unset,
    };
    let error_attr = || {
        error
            .map(|e| KeyValue::new("error.type", e.kind.as_str()))
            .into_iter()
    };

    let mut attrs: Vec<KeyValue> = labels.attributes().to_vec();
    attrs.extend(error_attr());
    if let Some(u) = d.usage {
        attrs.push(KeyValue::new(
            "gen_ai.usage.input_tokens",
            u.prompt_tokens as i64,
        ));
        attrs.push(KeyValue::new(
            "gen_ai.usage.output_tokens",
            u.completion_tokens as i64,
        ));
    }
    if let Some(v) = d.ttft {
        attrs.push(KeyValue::new("rtprobe.ttft", v));
    }
    if let Some(v) = d.rtt_last {
        attrs.push(KeyValue::new("rtprobe.round_trip.last", v));
    }
    let model = labels
        .attributes()
        .iter()
        .find(|kv| kv.key.as_str() == "gen_ai.request.model")
        .map(|kv| kv.value.to_string())
        .unwrap_or_default();
    let mut out = vec![span(
        root_id,
        SpanId::INVALID,
        format!("speech_to_text {model}"),
        SpanKind::Client,
        (at(Duration::ZERO), at(t.ended)),
        attrs,
        Vec::new(),
        status(true),
    )];

    // Connection phases. A failed connect fails the phase that was under way: the one after
    // the last recorded.
    let phases = phase_spans(t);
    for (name, start, end) in &phases {
        out.push(span(
            ids.new_span_id(),
            root_id,
            format!("connect.{name}"),
            SpanKind::Internal,
            (at(*start), at(*end)),
            vec![KeyValue::new("rtprobe.phase", *name)],
            Vec::new(),
            Status::Unset,
        ));
    }
    let connected = t.phases.session_created;
    if connected.is_none() && error.is_some() {
        let start = phases.last().map_or(Duration::ZERO, |p| p.2);
        out.push(span(
            ids.new_span_id(),
            root_id,
            "connect".into(),
            SpanKind::Internal,
            (at(start), at(t.ended.max(start))),
            error_attr().collect(),
            Vec::new(),
            status(true),
        ));
    }

    // Streaming: from session.created to the end of the run.
    if let Some(start) = connected {
        let mut events = Vec::new();
        let mut event = |name: &'static str, off: Duration, attrs: Vec<KeyValue>| {
            events.push(opentelemetry::trace::Event::new(name, at(off), attrs, 0));
        };
        for s in &t.sent {
            match s.kind {
                SentKind::StartCommit => event("input_audio_buffer.commit", s.at, vec![]),
                SentKind::FinalCommit => event(
                    "input_audio_buffer.commit",
                    s.at,
                    vec![KeyValue::new("rtprobe.final", true)],
                ),
                _ => {}
            }
        }
        if let Some(first) = t.deltas.iter().find(|x| x.nonempty) {
            event("first_text", first.at, vec![]);
        }
        if let Some(done) = &t.done {
            event("transcription.done", done.at, vec![]);
        }
        events.sort_by_key(|e| e.timestamp);
        let appends = t.sent.iter().filter(|s| s.kind == SentKind::Append).count();
        let mut attrs = vec![
            KeyValue::new("rtprobe.audio.appends", appends as i64),
            KeyValue::new("rtprobe.audio.seconds", t.audio_sent.as_secs_f64()),
            KeyValue::new("rtprobe.text_deltas", d.text_deltas as i64),
        ];
        attrs.extend(error_attr());
        out.push(span(
            ids.new_span_id(),
            root_id,
            "stream".into(),
            SpanKind::Internal,
            (at(start), at(t.ended.max(start))),
            attrs,
            events,
            status(true),
        ));
    }
    out
}

/// The trace id of a run's spans, as shown on its page (32 hex digits).
pub fn trace_id(spans: &[SpanData]) -> Option<String> {
    spans
        .first()
        .map(|s| s.span_context.trace_id())
        .filter(|id| *id != TraceId::INVALID)
        .map(|id| id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::derive::derive;
    use crate::probe::error::{ErrorType, ProbeError};
    use crate::probe::timeline::fixtures::ms;
    use crate::probe::timeline::{Delta, Done, Sent};

    fn labels() -> ProbeLabels {
        let spec = crate::config::ProbeSpec {
            model: crate::config::ModelChoice::Named("m".into()),
            ..crate::config::ProbeSpec::example("p")
        };
        ProbeLabels::new(&spec, "m")
    }

    fn timeline() -> Timeline {
        let mut t = Timeline::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1000));
        t.phases.tcp_connected = Some(ms(2));
        t.phases.upgraded = Some(ms(5));
        t.phases.session_created = Some(ms(6));
        let sent = |kind, at| Sent {
            kind,
            at: ms(at),
            scheduled: None,
            audio_end: None,
        };
        t.sent = vec![
            sent(SentKind::StartCommit, 7),
            sent(SentKind::Append, 8),
            sent(SentKind::FinalCommit, 110),
        ];
        t.deltas = vec![Delta {
            at: ms(300),
            nonempty: true,
            text_end: 3,
        }];
        t.delta_text = " hi".into();
        t.done = Some(Done {
            at: ms(350),
            text: " hi".into(),
            usage: None,
        });
        t.ended = ms(350);
        t
    }

    #[test]
    fn a_run_is_a_span_with_phase_and_stream_children_at_the_timeline_instants() {
        let t = timeline();
        let spans = run_spans(&labels(), &t, &derive(&t, None));
        let names: Vec<&str> = spans.iter().map(|s| s.name.as_ref()).collect();
        assert_eq!(
            names,
            [
                "speech_to_text m",
                "connect.connect",
                "connect.upgrade",
                "connect.session",
                "stream"
            ]
        );
        let root = &spans[0];
        assert_eq!(root.parent_span_id, SpanId::INVALID);
        assert_eq!(root.start_time, t.started);
        assert_eq!(root.end_time, t.started + ms(350));
        for s in &spans[1..] {
            assert_eq!(s.parent_span_id, root.span_context.span_id());
            assert_eq!(s.span_context.trace_id(), root.span_context.trace_id());
        }
        assert_eq!(spans[2].start_time, t.started + ms(2));
        assert_eq!(spans[2].end_time, t.started + ms(5));
        let stream = &spans[4];
        let events: Vec<(&str, SystemTime)> = stream
            .events
            .iter()
            .map(|e| (e.name.as_ref(), e.timestamp))
            .collect();
        assert_eq!(
            events,
            [
                ("input_audio_buffer.commit", t.started + ms(7)),
                ("input_audio_buffer.commit", t.started + ms(110)),
                ("first_text", t.started + ms(300)),
                ("transcription.done", t.started + ms(350)),
            ]
        );
        assert_eq!(root.status, Status::Unset);
        assert_eq!(trace_id(&spans).unwrap().len(), 32);
    }

    #[test]
    fn failures_carry_error_type() {
        let mut t = timeline();
        t.phases.upgraded = None;
        t.phases.session_created = None;
        t.sent.clear();
        t.deltas.clear();
        t.done = None;
        t.ended = ms(40);
        t.outcome = Err(ProbeError::new(ErrorType::Http5xx, "503"));
        let spans = run_spans(&labels(), &t, &derive(&t, None));
        let names: Vec<&str> = spans.iter().map(|s| s.name.as_ref()).collect();
        assert_eq!(names, ["speech_to_text m", "connect.connect", "connect"]);
        for s in [&spans[0], &spans[2]] {
            assert_eq!(s.status, Status::error("http_5xx"));
            assert!(
                s.attributes
                    .contains(&KeyValue::new("error.type", "http_5xx"))
            );
        }
        assert_eq!(spans[2].start_time, t.started + ms(2));
        assert_eq!(spans[2].end_time, t.started + ms(40));
    }

    #[test]
    fn http_endpoint_gets_the_traces_path_once() {
        assert_eq!(http_traces_url("http://c:4318"), "http://c:4318/v1/traces");
        assert_eq!(
            http_traces_url("http://c:4318/v1/traces"),
            "http://c:4318/v1/traces"
        );
    }
}
