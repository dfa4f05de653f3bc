//! Run traces (`otlp.traces: true`) from `serve` with the production backend against the
//! simulator, decoded by a real OTLP/gRPC receiver: one client span per run with children for
//! the connection phases and the stream, events for commits, first text and `done`, at the
//! instants of the run; `error.type` on a failed run; the trace id on the run page.

use crate::support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::trace::v1::{Span, span, status};
use rtprobe::simulate::{Fault, SimConfig, SimHandle};
use support::metrics::receiver::{attr, s};
use support::metrics::traces::grpc_trace_receiver;

async fn sim(fault: Fault) -> SimHandle {
    let cfg = SimConfig {
        token_interval: Duration::from_millis(40),
        fault,
        ..SimConfig::default()
    };
    crate::support::sim::start(cfg).await
}

fn config_text(otlp: &str, good: SocketAddr, bad: SocketAddr) -> String {
    let clip = crate::support::clip();
    let mut text = format!(
        "server: {{listen: 127.0.0.1:0}}\notlp: {{endpoint: '{otlp}', protocol: grpc, interval: 1s, timeout: 2s, traces: true}}\nprobes:\n"
    );
    for (name, addr) in [("good", good), ("bad", bad)] {
        text += &format!(
            "  - {{name: {name}, target: 'http://{addr}', model: demo-realtime, audio: '{}', interval: 5s, jitter: 0}}\n",
            clip.display()
        );
    }
    text
}

fn probe_of(span: &Span) -> Option<&str> {
    match attr(&span.attributes, "rtprobe.probe") {
        Some(any_value::Value::StringValue(v)) => Some(v),
        _ => None,
    }
}

/// The first complete run of `probe`: its root span and the children that name it as parent.
fn run_of(spans: &[Span], probe: &str) -> Option<(Span, Vec<Span>)> {
    let root = spans
        .iter()
        .find(|s| s.parent_span_id.is_empty() && probe_of(s) == Some(probe))?;
    let children: Vec<Span> = spans
        .iter()
        .filter(|s| s.parent_span_id == root.span_id)
        .cloned()
        .collect();
    children
        .iter()
        .any(|c| c.name == "stream" || c.name == "connect")
        .then(|| (root.clone(), children))
}

fn hex(id: &[u8]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_run_is_a_trace_with_phase_and_stream_spans() {
    let (endpoint, received) = grpc_trace_receiver().await;
    let good = sim(Fault::None).await;
    let bad = sim(Fault::HttpStatus(503)).await;
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(&endpoint, good.addr(), bad.addr());
    let serve = support::serve::start_production(dir.path(), &text).await;

    let deadline = Instant::now() + Duration::from_secs(30);
    let ((root, children), (bad_root, bad_children)) = loop {
        let spans: Vec<Span> = received.all().into_iter().map(|(_, s)| s).collect();
        if let (Some(g), Some(b)) = (run_of(&spans, "good"), run_of(&spans, "bad")) {
            break (g, b);
        }
        assert!(
            Instant::now() < deadline,
            "no run traces: {} spans",
            spans.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        received
            .all()
            .iter()
            .all(|(svc, _)| svc.contains("rtprobe")),
        "resource service.name"
    );

    // The run span: a GenAI client span with the probe's attributes.
    assert_eq!(root.name, "speech_to_text demo-realtime");
    assert_eq!(root.kind, span::SpanKind::Client as i32);
    assert_eq!(
        attr(&root.attributes, "gen_ai.operation.name"),
        Some(&s("speech_to_text"))
    );
    assert_eq!(
        attr(&root.attributes, "gen_ai.provider.name"),
        Some(&s("vllm"))
    );
    assert_eq!(
        attr(&root.attributes, "server.port"),
        Some(&any_value::Value::IntValue(i64::from(good.addr().port())))
    );
    assert!(attr(&root.attributes, "gen_ai.usage.output_tokens").is_some());
    assert!(attr(&root.attributes, "error.type").is_none());
    let mut names: Vec<&str> = children.iter().map(|c| c.name.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "connect.connect",
            "connect.session",
            "connect.upgrade",
            "stream"
        ]
    );
    for c in &children {
        assert_eq!(c.trace_id, root.trace_id);
        assert!(
            c.start_time_unix_nano >= root.start_time_unix_nano
                && c.end_time_unix_nano <= root.end_time_unix_nano
                && c.start_time_unix_nano <= c.end_time_unix_nano,
            "{} lies within the run",
            c.name
        );
    }
    // The phases follow each other; the stream starts when the session is created.
    let by = |n: &str| children.iter().find(|c| c.name == n).unwrap();
    assert_eq!(
        by("connect.upgrade").start_time_unix_nano,
        by("connect.connect").end_time_unix_nano
    );
    let stream = by("stream");
    assert_eq!(
        stream.start_time_unix_nano,
        by("connect.session").end_time_unix_nano
    );
    assert_eq!(stream.end_time_unix_nano, root.end_time_unix_nano);
    // In time order: the start commit, text while audio still streams, the final commit,
    // done.
    let events: Vec<&str> = stream.events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        events,
        [
            "input_audio_buffer.commit",
            "first_text",
            "input_audio_buffer.commit",
            "transcription.done"
        ]
    );
    assert!(
        stream
            .events
            .windows(2)
            .all(|w| w[0].time_unix_nano <= w[1].time_unix_nano)
    );
    let done = stream.events.last().unwrap().time_unix_nano;
    assert_eq!(done, root.end_time_unix_nano, "done ends the run");

    // The failed run: error status and error.type, and the connect step that failed.
    let status = bad_root.status.as_ref().expect("status");
    assert_eq!(status.code, status::StatusCode::Error as i32);
    assert_eq!(
        attr(&bad_root.attributes, "error.type"),
        Some(&s("http_5xx"))
    );
    let failed = bad_children.iter().find(|c| c.name == "connect").unwrap();
    assert_eq!(attr(&failed.attributes, "error.type"), Some(&s("http_5xx")));
    assert!(bad_children.iter().all(|c| c.name != "stream"));

    // The run page shows the trace id of a kept run, one the collector received.
    let page = support::serve::http(serve.local_addr(), "GET", "/", "")
        .await
        .body;
    let i = page.find("href=\"/runs/good/").expect("a kept run") + "href=\"".len();
    let link = &page[i..i + page[i..].find('"').unwrap()];
    let run_page = support::serve::http(serve.local_addr(), "GET", link, "")
        .await
        .body;
    let j = run_page
        .find("class=\"trace-id\">")
        .expect("trace id shown")
        + 17;
    let shown = &run_page[j..j + 32];
    let roots: Vec<String> = received
        .all()
        .iter()
        .filter(|(_, s)| s.parent_span_id.is_empty())
        .map(|(_, s)| hex(&s.trace_id))
        .collect();
    assert!(
        roots.iter().any(|r| r == shown),
        "{shown} not among {roots:?}"
    );

    serve.run_until(async {}).await;
    good.shutdown().await;
    bad.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_waits_for_queued_runs() {
    use rtprobe::config::model::OtlpProtocol;
    use rtprobe::derive::derive;
    use rtprobe::metrics::ProbeLabels;
    use rtprobe::metrics::traces::{TraceExporter, run_spans};

    let (endpoint, received) = grpc_trace_receiver().await;
    let mut settings =
        support::metrics::receiver::settings(endpoint, OtlpProtocol::Grpc, Duration::from_secs(1));
    settings.traces = true;
    let exporter = TraceExporter::start(&settings).expect("exporter");
    let spec = support::metrics::spec("p");
    let labels = ProbeLabels::new(&spec, "m");
    let mut t = rtprobe::probe::Timeline::new(std::time::SystemTime::now());
    t.phases.tcp_connected = Some(Duration::from_millis(1));
    t.ended = Duration::from_millis(3);
    t.outcome = Err(rtprobe::probe::ProbeError::new(
        rtprobe::probe::ErrorType::Tls,
        "x",
    ));
    let d = derive(&t, None);
    for _ in 0..5 {
        exporter.send(run_spans(&labels, &t, &d));
    }
    exporter.flush(Duration::from_secs(10)).await;
    // Three spans per run: the run, its TCP connect and the TLS step that failed.
    assert_eq!(received.all().len(), 15);
}
