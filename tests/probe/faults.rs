//! Every simulator fault knob, and the network failures around it, gives a failed run with the
//! right `error.type`, within its deadline plus a margin.

use crate::support;

use std::time::{Duration, Instant};

use rtprobe::audio::PreparedAudio;
use rtprobe::config::{BearerToken, ProbeSpec, Secret, SecretSource};
use rtprobe::derive::derive;
use rtprobe::probe::timeline::SentKind;
use rtprobe::probe::{MAX_IGNORED_EVENTS, Timeline, run};
use rtprobe::simulate::{Fault, SimConfig};
use support::probe::{silence, spec, spec_for};
use support::sim::start;

/// Generous for a loaded 2-core machine, small against the deadlines being checked.
const MARGIN: Duration = Duration::from_secs(2);

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn clip() -> PreparedAudio {
    silence(ms(600), ms(100))
}

/// Run against a simulator with `cfg`, after `adjust` changed the spec; the run must fail with
/// `kind` and return before `bound` + margin.
async fn expect(
    cfg: SimConfig,
    adjust: impl FnOnce(&mut ProbeSpec),
    kind: &str,
    bound: Duration,
) -> Timeline {
    let sim = start(cfg).await;
    let mut spec = spec(&sim);
    adjust(&mut spec);
    let started = Instant::now();
    let tl = run(&spec, &clip()).await;
    let elapsed = started.elapsed();
    let err = tl.outcome.clone().expect_err("the run should fail");
    assert_eq!(err.kind.as_str(), kind, "{err}");
    assert!(elapsed < bound + MARGIN, "{kind}: took {elapsed:?}");
    assert!(tl.ended > Duration::ZERO && tl.ended <= elapsed);
    sim.shutdown().await;
    tl
}

fn fault(fault: Fault) -> SimConfig {
    SimConfig {
        fault,
        ..SimConfig::default()
    }
}

/// Audio (0.6 s) plus the default sim's tail, done and the 2 s done deadline of the test spec.
const AFTER_AUDIO: Duration = Duration::from_millis(600 + 2000);

/// The run ended `lo` to `hi` (exclusive) after the first frame of `kind` the probe sent.
fn assert_waited(tl: &Timeline, kind: SentKind, lo: Duration, hi: Duration) {
    let first = tl.sent.iter().find(|s| s.kind == kind).expect("sent");
    let waited = tl.ended - first.at;
    assert!(waited >= lo && waited < hi, "{waited:?}");
}

#[tokio::test]
async fn error_mid_stream_is_a_server_error() {
    let tl = expect(
        fault(Fault::ErrorMidStream),
        |_| {},
        "server_error.processing_error",
        AFTER_AUDIO,
    )
    .await;
    // What was measured before the failure is still derivable.
    assert!(derive(&tl, None).ttft.is_some());
}

#[tokio::test]
async fn never_done_times_out_after_the_final_commit() {
    let tl = expect(fault(Fault::NeverDone), |_| {}, "timeout_done", AFTER_AUDIO).await;
    assert_waited(&tl, SentKind::FinalCommit, Duration::from_secs(2), ms(2100));
}

#[tokio::test]
async fn done_only_succeeds_with_text_at_done() {
    let sim = start(fault(Fault::DoneOnly)).await;
    let tl = run(&spec(&sim), &clip()).await;
    assert!(tl.succeeded(), "{:?}", tl.outcome);
    assert!(tl.deltas.is_empty());
    let d = derive(&tl, None);
    assert_eq!(d.ttft, Some(tl.done.as_ref().unwrap().at.as_secs_f64()));
    assert!(d.itl_gaps.is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn dropped_tcp_is_closed_early() {
    expect(fault(Fault::DropTcp), |_| {}, "closed_early", AFTER_AUDIO).await;
}

#[tokio::test]
async fn slow_session_times_out_connect() {
    let tl = expect(
        fault(Fault::SlowSession),
        |s| s.deadlines.connect = ms(500),
        "timeout_connect",
        ms(500),
    )
    .await;
    assert!(tl.phases.upgraded.is_some() && tl.phases.session_created.is_none());
}

#[tokio::test]
async fn rejected_model_is_a_setup_error() {
    expect(
        fault(Fault::RejectModel),
        |_| {},
        "server_error.model_not_found",
        ms(500),
    )
    .await;
}

#[tokio::test]
async fn close_1011_and_1012_are_closed_early() {
    for f in [Fault::Close1011, Fault::Close1012] {
        let tl = expect(fault(f), |_| {}, "closed_early", AFTER_AUDIO).await;
        let detail = tl.outcome.unwrap_err().detail;
        let code = if f == Fault::Close1011 {
            "1011"
        } else {
            "1012"
        };
        assert!(detail.contains(code), "{detail}");
    }
}

#[tokio::test]
async fn oversized_frame_hits_the_limit() {
    expect(fault(Fault::OversizedFrame), |_| {}, "limit", AFTER_AUDIO).await;
}

#[tokio::test]
async fn malformed_json_and_binary_frames_are_protocol_errors() {
    expect(fault(Fault::MalformedJson), |_| {}, "protocol", AFTER_AUDIO).await;
    expect(fault(Fault::BinaryFrame), |_| {}, "protocol", AFTER_AUDIO).await;
}

#[tokio::test]
async fn unknown_event_flood_is_tolerated_up_to_the_cap() {
    let sim = start(fault(Fault::UnknownEventFlood)).await;
    let tl = run(&spec(&sim), &clip()).await;
    assert!(tl.succeeded(), "{:?}", tl.outcome);
    assert_eq!(tl.ignored_events, 1000);
    sim.shutdown().await;

    let over = SimConfig {
        flood_events: MAX_IGNORED_EVENTS as usize + 1,
        ..fault(Fault::UnknownEventFlood)
    };
    let tl = expect(over, |_| {}, "limit", AFTER_AUDIO).await;
    assert_eq!(tl.ignored_events, MAX_IGNORED_EVENTS + 1);
}

#[tokio::test]
async fn upgrade_statuses_map_to_http_kinds() {
    for (status, kind) in [
        (401, "http_401"),
        (403, "http_403"),
        (404, "http_4xx"),
        (500, "http_5xx"),
    ] {
        expect(fault(Fault::HttpStatus(status)), |_| {}, kind, ms(500)).await;
    }
}

#[tokio::test]
async fn silent_server_times_out_connect() {
    expect(
        fault(Fault::Silent),
        |s| s.deadlines.connect = ms(500),
        "timeout_connect",
        ms(500),
    )
    .await;
}

#[tokio::test]
async fn truncated_transcript_is_flagged() {
    let cfg = SimConfig {
        fault: Fault::Truncate,
        // Words come fast enough that k words arrive well before the audio ends.
        first_text_delay: ms(50),
        token_interval: ms(20),
        ..SimConfig::default()
    };
    let tl = expect(cfg, |_| {}, "truncated", AFTER_AUDIO).await;
    assert!(tl.truncated);
    assert_eq!(tl.ended, tl.done.as_ref().unwrap().at);
    assert!(derive(&tl, None).truncated);
}

#[tokio::test]
async fn first_text_deadline() {
    let cfg = SimConfig {
        first_text_delay: Duration::from_secs(5),
        ..SimConfig::default()
    };
    let tl = expect(
        cfg,
        |s| s.deadlines.first_text = ms(400),
        "timeout_first_text",
        ms(400),
    )
    .await;
    // Failed while audio was still going out: the deadline counts from the first append.
    assert_waited(&tl, SentKind::Append, ms(400), ms(500));
}

#[tokio::test]
async fn whole_run_timeout_maps_to_the_pending_stage() {
    // Text arrives, done never does: the run bound fires before the done deadline.
    let tl = expect(
        fault(Fault::NeverDone),
        |s| {
            s.timeout = ms(1200);
            s.deadlines.done = Duration::from_secs(20);
        },
        "timeout_done",
        ms(1200),
    )
    .await;
    assert!(tl.outcome.unwrap_err().detail.contains("run timeout"));
    // The bound passes while the 0.6 s clip is still going out: the clip was not delivered.
    let tl = expect(
        SimConfig::default(),
        |s| s.timeout = ms(300),
        "timeout_sending",
        ms(300),
    )
    .await;
    assert!(!tl.sent.iter().any(|s| s.kind == SentKind::FinalCommit));
    // No text ever: the same bound is a first-text timeout.
    let cfg = SimConfig {
        first_text_delay: Duration::from_secs(10),
        ..SimConfig::default()
    };
    expect(
        cfg,
        |s| {
            s.timeout = ms(1200);
            s.deadlines.first_text = Duration::from_secs(20);
        },
        "timeout_first_text",
        ms(1200),
    )
    .await;
}

#[tokio::test]
async fn missing_or_wrong_api_key_is_http_401_without_leaking_it() {
    let cfg = SimConfig {
        api_key: Some(Secret::new("right-key")),
        ..SimConfig::default()
    };
    expect(cfg.clone(), |_| {}, "http_401", ms(500)).await;
    let tl = expect(
        cfg,
        |s| {
            s.bearer = Some(BearerToken {
                source: SecretSource::Env("KEY".into()),
                token: Secret::new("wrong-key-value"),
            });
            s.headers = vec![("X-Extra".into(), Secret::new("header-secret"))];
        },
        "http_401",
        ms(500),
    )
    .await;
    let shown = format!("{:?} {}", tl, tl.outcome.clone().unwrap_err());
    assert!(!shown.contains("wrong-key-value") && !shown.contains("header-secret"));
}

#[tokio::test]
async fn refused_port_is_connect() {
    // Nothing listens on that port.
    let port = crate::support::free_port();
    let started = Instant::now();
    let tl = run(&spec_for("127.0.0.1", port, false), &clip()).await;
    assert_eq!(tl.outcome.unwrap_err().kind.as_str(), "connect");
    assert!(started.elapsed() < Duration::from_secs(2) + MARGIN);
    assert!(tl.phases.tcp_connected.is_none());
}

#[tokio::test]
async fn invalid_host_is_dns() {
    let started = Instant::now();
    let tl = run(&spec_for("no-such-host.invalid", 9, false), &clip()).await;
    let err = tl.outcome.unwrap_err();
    let elapsed = started.elapsed();
    eprintln!("dns failure after {elapsed:?}: {err}");
    assert_eq!(err.kind.as_str(), "dns", "{err}");
    assert!(elapsed < Duration::from_secs(2) + MARGIN);
}

#[tokio::test]
async fn dropping_the_run_cancels_the_session() {
    let sim = start(fault(Fault::NeverDone)).await;
    let spec = spec(&sim);
    let audio = clip();
    let r = tokio::time::timeout(ms(300), run(&spec, &audio)).await;
    assert!(r.is_err(), "the run should still be streaming");
    // The connection went away with the dropped future: the simulator sees its end promptly.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let rec = crate::support::sim::session_record(&sim);
        if rec.ended_at.is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "session still open after the run was dropped"
        );
        tokio::time::sleep(ms(20)).await;
    }
    sim.shutdown().await;
}
