//! Every fault knob does what it says, at the point it says, and nothing else; faults cycle per
//! upgrade request; a faulty connection never disturbs the next one.

use crate::support;

use std::time::{Duration, Instant};

use rtprobe::simulate::{EmitKind, Fault, SimConfig};
use support::sim::*;

const MS: Duration = Duration::from_millis(1);
const WORDS: [&str; 5] = [" one", " two", " three", " four", " five"];

fn with(fault: Fault) -> SimConfig {
    SimConfig {
        transcript: "one two three four five".into(),
        first_text_delay: 20 * MS,
        token_interval: 5 * MS,
        tail_delay: 10 * MS,
        done_delay: 5 * MS,
        fault,
        fault_after_words: 2,
        ..SimConfig::default()
    }
}

/// Connect, set up, start, send audio and (optionally) the final commit.
async fn session(sim: &rtprobe::simulate::SimHandle, send_end: bool) -> Client {
    let mut c = Client::ready(sim.addr()).await;
    c.send_all(&[START, &append(1600), &append(1600)]).await;
    if send_end {
        c.send(END).await;
    }
    c
}

/// The simulator with `fault` and a [`session`] on it.
async fn faulty(fault: Fault, send_end: bool) -> (rtprobe::simulate::SimHandle, Client) {
    let sim = start(with(fault)).await;
    let c = session(&sim, send_end).await;
    (sim, c)
}

async fn expect_words(c: &mut Client, n: usize) {
    for want in &WORDS[..n] {
        let (_, v, _) = c.event().await;
        assert_eq!(v["type"], "transcription.delta", "{v}");
        assert_eq!(v["delta"], *want);
    }
}

#[tokio::test]
async fn error_mid_stream_then_no_done() {
    let (sim, mut c) = faulty(Fault::ErrorMidStream, true).await;
    expect_words(&mut c, 2).await;
    c.expect_error(
        "EngineCore encountered an issue. See stack trace (above) for the root cause.",
        "processing_error",
    )
    .await;
    c.expect_silence(300 * MS).await;
    finish(c, sim).await;
}

#[tokio::test]
async fn never_done_sends_all_deltas_then_nothing() {
    let (sim, mut c) = faulty(Fault::NeverDone, true).await;
    expect_words(&mut c, 5).await;
    c.expect_silence(400 * MS).await;
    // The hung generation also swallows the next START.
    c.send_all(&[START, END]).await;
    c.expect_silence(200 * MS).await;
    finish(c, sim).await;
}

#[tokio::test]
async fn done_only_has_the_full_text_and_no_deltas() {
    let (sim, mut c) = faulty(Fault::DoneOnly, true).await;
    let (deltas, _, done) = c.until_done().await;
    assert!(deltas.is_empty());
    assert_eq!(done["text"], " one two three four five");
    assert_eq!(done["usage"]["completion_tokens"], 5);
    finish(c, sim).await;
}

#[tokio::test]
async fn drop_tcp_after_k_words() {
    let (sim, mut c) = faulty(Fault::DropTcp, true).await;
    expect_words(&mut c, 2).await;
    let got = c.next(WAIT).await;
    assert!(is_reset(&got), "{got:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn slow_session_created() {
    let sim = start(SimConfig {
        slow_session_delay: 400 * MS,
        ..with(Fault::SlowSession)
    })
    .await;
    let t0 = Instant::now();
    let mut c = Client::connect(sim.addr()).await;
    let (at, v, _) = c.event().await;
    assert_eq!(v["type"], "session.created");
    assert!(at - t0 >= 400 * MS, "{:?}", at - t0);
    c.close().await;
    let rec = &sim.records()[0];
    assert!(rec.session_created_at.unwrap() - rec.upgraded_at.unwrap() >= 400 * MS);
    sim.shutdown().await;
}

#[tokio::test]
async fn reject_model_for_every_name() {
    let sim = start(with(Fault::RejectModel)).await;
    let mut c = Client::ready(sim.addr()).await;
    c.expect_error(
        "The model `demo-realtime` does not exist.",
        "model_not_found",
    )
    .await;
    c.send(r#"{"type":"session.update","model":""}"#).await;
    c.expect_error("The model `` does not exist.", "model_not_found")
        .await;
    c.send(START).await;
    let (_, v, _) = c.event().await;
    assert_eq!(v["code"], "model_not_validated");
    finish(c, sim).await;
}

async fn closes_with(fault: Fault, code: u16) {
    let (sim, mut c) = faulty(fault, true).await;
    expect_words(&mut c, 2).await;
    c.expect_close(code).await;
    let rec = &sim.records()[0];
    assert!(
        rec.emissions
            .iter()
            .any(|e| e.kind == EmitKind::Close { code })
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn close_1011_after_k_words() {
    closes_with(Fault::Close1011, 1011).await;
}

#[tokio::test]
async fn close_1012_after_k_words() {
    closes_with(Fault::Close1012, 1012).await;
}

#[tokio::test]
async fn oversized_frame_after_k_words() {
    let sim = start(SimConfig {
        oversized_frame_bytes: 3 * 1024 * 1024,
        ..with(Fault::OversizedFrame)
    })
    .await;
    let mut c = session(&sim, true).await;
    expect_words(&mut c, 2).await;
    let (_, v, raw) = c.event().await;
    assert_eq!(raw.len(), 3 * 1024 * 1024);
    assert_eq!(v["type"], "transcription.delta");
    // The stream goes on after it.
    expect_words_from(&mut c, 2).await;
    finish(c, sim).await;
}

async fn expect_words_from(c: &mut Client, from: usize) {
    let (deltas, _, done) = c.until_done().await;
    let got: Vec<&str> = deltas.iter().map(|(_, d)| d.as_str()).collect();
    assert_eq!(got, WORDS[from..]);
    assert_eq!(done["text"], " one two three four five");
}

#[tokio::test]
async fn malformed_json_after_k_words() {
    let (sim, mut c) = faulty(Fault::MalformedJson, true).await;
    expect_words(&mut c, 2).await;
    match c.next(WAIT).await {
        Got::Text(_, t) => assert!(t.starts_with(r#"{"type":"transcription.delta""#), "{t}"),
        other => panic!("expected a non-JSON text frame, got {other:?}"),
    }
    expect_words_from(&mut c, 2).await;
    finish(c, sim).await;
}

#[tokio::test]
async fn binary_frame_after_k_words() {
    let (sim, mut c) = faulty(Fault::BinaryFrame, true).await;
    expect_words(&mut c, 2).await;
    assert!(matches!(c.next(WAIT).await, Got::Binary(_, 4)));
    expect_words_from(&mut c, 2).await;
    finish(c, sim).await;
}

#[tokio::test]
async fn unknown_event_flood_before_the_deltas() {
    let sim = start(SimConfig {
        flood_events: 50,
        ..with(Fault::UnknownEventFlood)
    })
    .await;
    let mut c = session(&sim, true).await;
    for seq in 0..50 {
        let (_, v, _) = c.event().await;
        assert_eq!(v["type"], "rtprobe.simulated_noise");
        assert_eq!(v["seq"], seq);
    }
    expect_words_from(&mut c, 0).await;
    finish(c, sim).await;
}

#[tokio::test]
async fn http_status_on_upgrade() {
    let sim = start(with(Fault::HttpStatus(503))).await;
    let resp = raw_http(sim.addr(), &upgrade_request("/v1/realtime", "")).await;
    assert!(resp.starts_with("HTTP/1.1 503 "), "{resp}");
    assert!(
        resp.ends_with(r#"{"error":"Simulated HTTP 503"}"#),
        "{resp}"
    );
    let err = tokio_tungstenite::connect_async(format!("ws://{}/v1/realtime", sim.addr()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("503"), "{err}");
    sim.shutdown().await;
}

#[tokio::test]
async fn silent_never_answers() {
    let sim = start(with(Fault::Silent)).await;
    let attempt = tokio::time::timeout(
        300 * MS,
        tokio_tungstenite::connect_async(format!("ws://{}/v1/realtime", sim.addr())),
    )
    .await;
    assert!(attempt.is_err(), "the upgrade must hang");
    // Shutdown is not held up by the silent connection.
    tokio::time::timeout(WAIT, sim.shutdown()).await.unwrap();
}

#[tokio::test]
async fn truncate_sends_done_before_the_final_commit() {
    let (sim, mut c) = faulty(Fault::Truncate, false).await;
    let (deltas, _, done) = c.until_done().await;
    let got: Vec<&str> = deltas.iter().map(|(_, d)| d.as_str()).collect();
    assert_eq!(got, WORDS[..2]);
    assert_eq!(done["text"], " one two");
    assert_eq!(done["usage"]["completion_tokens"], 2);
    // The late final commit just lands in the queue; nothing more is said.
    c.send(END).await;
    c.expect_silence(200 * MS).await;
    c.close().await;
    let rec = &sim.records()[0];
    assert!(rec.utterances[0].end_at.is_none(), "done came before END");
    sim.shutdown().await;
}

#[tokio::test]
async fn faults_cycle_per_connection() {
    let sim = start(SimConfig {
        faults: vec![Fault::None, Fault::DropTcp, Fault::HttpStatus(500)],
        ..with(Fault::None)
    })
    .await;
    // Plain HTTP requests do not advance the cycle.
    let health = raw_http(sim.addr(), "GET /health HTTP/1.1\r\n\r\n").await;
    assert!(health.starts_with("HTTP/1.1 200 "));
    let mut ok = session(&sim, true).await;
    expect_words_from(&mut ok, 0).await;
    ok.close().await;
    let mut dropped = session(&sim, true).await;
    expect_words(&mut dropped, 2).await;
    assert!(is_reset(&dropped.next(WAIT).await));
    let resp = raw_http(sim.addr(), &upgrade_request("/v1/realtime", "")).await;
    assert!(resp.starts_with("HTTP/1.1 500 "), "{resp}");
    // Back to the start of the cycle, and the earlier faults left the server healthy.
    let mut again = session(&sim, true).await;
    expect_words_from(&mut again, 0).await;
    again.close().await;
    let faults: Vec<Option<Fault>> = sim
        .records()
        .iter()
        .filter(|r| r.realtime_index.is_some())
        .map(|r| r.fault)
        .collect();
    assert_eq!(
        faults,
        [
            Some(Fault::None),
            Some(Fault::DropTcp),
            Some(Fault::HttpStatus(500)),
            Some(Fault::None)
        ]
    );
    sim.shutdown().await;
}
