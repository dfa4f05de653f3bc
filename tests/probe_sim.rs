//! The probe client against the built-in simulator on 127.0.0.1:0: measured values against
//! the simulator's recorded ground truth (same process, same monotonic clock), pacing against
//! its own schedule, and every fault knob mapped to its `error.type` within its deadline.

mod probe_support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use probe_support::{fixture, silence, spec};
use rtprobe::config::{BearerToken, ModelChoice, Pacing, Secret, SecretSource};
use rtprobe::metrics::derive::derive;
use rtprobe::probe::{self, ErrorType, ServerCode};
use rtprobe::simulate::{ClientFrameKind, EmitKind, SessionRecord};
use rtprobe::simulate::{Fault, SimConfig, SimHandle, Simulator, TlsFiles};

/// How close a measured interval must be to the same interval on the simulator's clock.
const TOLERANCE: f64 = 0.002;

async fn start(cfg: SimConfig) -> SimHandle {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    Simulator::bind(addr, cfg)
        .await
        .expect("bind simulator")
        .spawn()
}

fn timed_config() -> SimConfig {
    SimConfig {
        transcript: "mary had a little lamb its fleece was white".into(),
        first_text_delay: Duration::from_millis(300),
        token_interval: Duration::from_millis(80),
        empty_deltas_per_word: 1,
        tail_delay: Duration::from_millis(150),
        done_delay: Duration::from_millis(40),
        ..SimConfig::default()
    }
}

fn secs_between(a: Instant, b: Instant) -> f64 {
    b.duration_since(a).as_secs_f64()
}

fn final_commit_at(rec: &SessionRecord) -> Instant {
    rec.client_frames
        .iter()
        .find(|f| f.kind == ClientFrameKind::Commit { final_: Some(true) })
        .expect("final commit received")
        .at
}

fn first_append_at(rec: &SessionRecord) -> Instant {
    rec.client_frames
        .iter()
        .find(|f| matches!(f.kind, ClientFrameKind::Append { .. }))
        .expect("append received")
        .at
}

fn assert_close(what: &str, measured: f64, truth: f64) {
    let err = (measured - truth).abs();
    assert!(
        err <= TOLERANCE,
        "{what}: measured {measured:.6} s, ground truth {truth:.6} s, error {err:.6} s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measured_values_match_the_simulators_clock() {
    let sim = start(timed_config()).await;
    let spec = spec(sim.addr(), false);
    let audio = silence(2.0, 100);
    let before = Instant::now();
    let tl = probe::run(&spec, &audio).await;
    assert!(tl.outcome.is_ok(), "{:?}", tl.outcome);
    let d = derive(&tl, Some("Mary had a little lamb, its fleece was white."));
    let rec = sim
        .records()
        .into_iter()
        .find(|r| r.upgraded_at.is_some())
        .expect("session record");

    let texts: Vec<Instant> = rec
        .deltas(0)
        .into_iter()
        .filter(|(_, ne)| *ne)
        .map(|(at, _)| at)
        .collect();
    assert_eq!(texts.len(), 9);
    assert_eq!(d.text_deltas, 9);
    assert_eq!(d.deltas, rec.deltas(0).len());
    // ITL: every gap against the simulator's emit gap.
    assert_eq!(d.itl_gaps.len(), 8);
    for (k, gap) in d.itl_gaps.iter().enumerate() {
        assert_close(
            &format!("ITL gap {k}"),
            *gap,
            secs_between(texts[k], texts[k + 1]),
        );
    }
    // TTFT: from before `run` (≤ t0 by microseconds) to the first text's emit.
    assert_close("TTFT", d.ttft.unwrap(), secs_between(before, texts[0]));
    assert_close(
        "time to first text",
        d.time_to_first_text.unwrap(),
        secs_between(first_append_at(&rec), texts[0]),
    );
    let fin = final_commit_at(&rec);
    assert_close(
        "last round trip",
        d.rtt_last.unwrap(),
        secs_between(fin, *texts.last().unwrap()),
    );
    assert_close(
        "finalize",
        d.finalize.unwrap(),
        secs_between(fin, rec.done_at(0).unwrap()),
    );
    // Against the injected values, with the simulator's own emit lateness removed.
    let lateness = |kind_pred: &dyn Fn(&EmitKind) -> bool| {
        rec.emissions
            .iter()
            .filter(|e| kind_pred(&e.kind))
            .filter_map(|e| {
                e.deadline
                    .map(|dl| e.at.saturating_duration_since(dl).as_secs_f64())
            })
            .collect::<Vec<_>>()
    };
    let text_lateness = lateness(&|k| matches!(k, EmitKind::Delta { nonempty: true }));
    assert_close(
        "time to first text vs injected 300 ms",
        d.time_to_first_text.unwrap(),
        0.300 + text_lateness[0],
    );
    assert_close(
        "last round trip vs injected 150 ms",
        d.rtt_last.unwrap(),
        0.150 + text_lateness[8],
    );
    // Pacing: every append within 2 ms of its schedule.
    let worst = d.pacing_lateness.iter().copied().fold(0.0_f64, f64::max);
    eprintln!(
        "pacing lateness (ms): {:?}",
        d.pacing_lateness
            .iter()
            .map(|x| (x * 1e4).round() / 10.0)
            .collect::<Vec<_>>()
    );
    assert_eq!(d.pacing_lateness.len(), 20);
    assert!(worst <= TOLERANCE, "worst pacing lateness {worst:.6} s");
    assert!((d.send_window_audio_rate.unwrap() - 2.0 / 1.9).abs() < 0.01);
    assert_eq!(d.wer, Some(0.0));
    assert_eq!(
        tl.transcript(),
        " mary had a little lamb its fleece was white"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_pacing_sends_in_guidellm_order() {
    let sim = start(SimConfig {
        first_text_delay: Duration::from_millis(20),
        ..timed_config()
    })
    .await;
    let mut spec = spec(sim.addr(), false);
    spec.pacing = Pacing::Burst;
    let tl = probe::run(&spec, &silence(1.0, 200)).await;
    assert!(tl.outcome.is_ok(), "{:?}", tl.outcome);
    let kinds: Vec<_> = tl.sent.iter().map(|s| format!("{:?}", s.kind)).collect();
    assert_eq!(
        kinds,
        [
            "SessionUpdate",
            "Append",
            "Append",
            "Append",
            "Append",
            "Append",
            "StartCommit",
            "FinalCommit"
        ]
    );
    let d = derive(&tl, None);
    assert!(
        d.send_window_audio_rate.unwrap() > 10.0,
        "burst sends far faster than real time"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_auto_and_bearer_token() {
    let key = "s3cret-token-value";
    let sim = start(SimConfig {
        api_key: Some(Secret::new(key)),
        model: "voxtral-sim".into(),
        ..timed_config()
    })
    .await;
    let mut spec = spec(sim.addr(), false);
    spec.model = ModelChoice::Auto;
    let audio = silence(0.5, 100);
    let denied = probe::run(&spec, &audio).await;
    assert_eq!(
        denied.outcome.as_ref().unwrap_err().kind,
        ErrorType::Http401
    );
    assert!(!format!("{:?}", denied).contains(key));
    spec.bearer = Some(BearerToken {
        source: SecretSource::Env("TOKEN".into()),
        token: Secret::new(key),
    });
    let tl = probe::run(&spec, &audio).await;
    assert!(tl.outcome.is_ok(), "{:?}", tl.outcome);
    assert!(!format!("{tl:?}").contains(key));
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_through_a_test_ca_and_unknown_ca_fails_as_tls() {
    let sim = start(SimConfig {
        tls: Some(TlsFiles {
            cert_pem: fixture("server.pem"),
            key_pem: fixture("server.key"),
        }),
        ..timed_config()
    })
    .await;
    let audio = silence(0.5, 100);
    let mut trusted = spec(sim.addr(), true);
    trusted.tls.ca_file = Some(fixture("ca.pem"));
    let tl = probe::run(&trusted, &audio).await;
    assert!(tl.outcome.is_ok(), "{:?}", tl.outcome);
    assert!(tl.phases.tls_done.is_some());
    assert_eq!(
        derive(&tl, None)
            .phases
            .iter()
            .map(|p| p.0)
            .collect::<Vec<_>>(),
        ["dns", "connect", "tls", "upgrade", "session"]
    );

    let mut other = spec(sim.addr(), true);
    other.tls.ca_file = Some(fixture("other-ca.pem"));
    assert_eq!(
        probe::run(&other, &audio).await.outcome.unwrap_err().kind,
        ErrorType::Tls
    );
    let system_only = spec(sim.addr(), true);
    assert_eq!(
        probe::run(&system_only, &audio)
            .await
            .outcome
            .unwrap_err()
            .kind,
        ErrorType::Tls
    );
    let mut insecure = spec(sim.addr(), true);
    insecure.tls.insecure_skip_verify = true;
    assert!(probe::run(&insecure, &audio).await.outcome.is_ok());
    sim.shutdown().await;
}

/// Each fault knob: the run fails with the expected kind, well within its deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_knob_maps_to_its_error_type() {
    let cases: Vec<(Fault, ErrorType)> = vec![
        (
            Fault::ErrorMidStream,
            ErrorType::ServerError(ServerCode::ProcessingError),
        ),
        (Fault::NeverDone, ErrorType::TimeoutDone),
        (Fault::DropTcp, ErrorType::ClosedEarly),
        (Fault::SlowSession, ErrorType::TimeoutConnect),
        (
            Fault::RejectModel,
            ErrorType::ServerError(ServerCode::ModelNotFound),
        ),
        (Fault::Close1011, ErrorType::ClosedEarly),
        (Fault::Close1012, ErrorType::ClosedEarly),
        (Fault::OversizedFrame, ErrorType::Limit),
        (Fault::MalformedJson, ErrorType::Protocol),
        (Fault::BinaryFrame, ErrorType::Protocol),
        (Fault::HttpStatus(401), ErrorType::Http401),
        (Fault::HttpStatus(403), ErrorType::Http403),
        (Fault::HttpStatus(404), ErrorType::Http4xx),
        (Fault::HttpStatus(500), ErrorType::Http5xx),
        (Fault::Silent, ErrorType::TimeoutConnect),
        (Fault::Truncate, ErrorType::Truncated),
    ];
    let mut cfg = timed_config();
    cfg.first_text_delay = Duration::from_millis(50);
    cfg.token_interval = Duration::from_millis(20);
    cfg.faults = cases.iter().map(|c| c.0).collect();
    let sim = start(cfg).await;
    let mut spec = spec(sim.addr(), false);
    spec.deadlines.connect = Duration::from_millis(800);
    spec.deadlines.first_text = Duration::from_secs(1);
    spec.deadlines.done = Duration::from_millis(800);
    let audio = silence(0.6, 100);
    for (fault, expected) in cases {
        let started = Instant::now();
        let tl = probe::run(&spec, &audio).await;
        let took = started.elapsed();
        let err = tl
            .outcome
            .as_ref()
            .expect_err(&format!("{fault:?} should fail"));
        assert_eq!(err.kind, expected, "{fault:?}: {err}");
        // The longest legitimate run: 0.6 s of audio + the largest deadline, plus margin.
        assert!(
            took < Duration::from_millis(3_500),
            "{fault:?} took {took:?}"
        );
        assert!(tl.ended <= took);
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn done_only_and_tolerated_floods_succeed() {
    let sim = start(SimConfig {
        faults: vec![Fault::DoneOnly, Fault::UnknownEventFlood],
        ..timed_config()
    })
    .await;
    let spec = spec(sim.addr(), false);
    let audio = silence(0.8, 100);
    let tl = probe::run(&spec, &audio).await;
    assert!(tl.outcome.is_ok(), "{:?}", tl.outcome);
    let d = derive(&tl, None);
    assert_eq!(
        d.ttft,
        Some(tl.done.as_ref().unwrap().at.as_secs_f64()),
        "done-only: text at t_done"
    );
    let flooded = probe::run(&spec, &audio).await;
    assert!(flooded.outcome.is_ok(), "{:?}", flooded.outcome);
    assert_eq!(flooded.ignored_events, 1000);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_floods_past_the_cap_end_as_limit() {
    let sim = start(SimConfig {
        fault: Fault::UnknownEventFlood,
        flood_events: 20_000,
        ..timed_config()
    })
    .await;
    let tl = probe::run(&spec(sim.addr(), false), &silence(0.5, 100)).await;
    assert_eq!(tl.outcome.unwrap_err().kind, ErrorType::Limit);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_and_unresolvable_targets() {
    // A port that was just free: bind, read the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let refused = probe::run(
        &spec(SocketAddr::from(([127, 0, 0, 1], port)), false),
        &silence(0.2, 100),
    )
    .await;
    assert_eq!(refused.outcome.unwrap_err().kind, ErrorType::Connect);

    let mut bad = spec(SocketAddr::from(([127, 0, 0, 1], 9)), false);
    bad.target.host = "no-such-host.invalid".into();
    bad.target.ws_url = "ws://no-such-host.invalid:9/v1/realtime".into();
    let tl = probe::run(&bad, &silence(0.2, 100)).await;
    let kind = tl.outcome.unwrap_err().kind;
    assert!(
        kind == ErrorType::Dns || kind == ErrorType::TimeoutConnect,
        "{kind}"
    );
}
