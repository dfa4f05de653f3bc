//! A peer that keeps the connection busy without progressing cannot hold a run past its
//! deadlines: pings forever before `session.created`, or pings and empty deltas forever after.

use crate::support;

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use rtprobe::probe::{ErrorType, run};
use support::probe::{silence, spec_for};
use tokio_tungstenite::tungstenite::Message;

/// A WebSocket server that optionally sends `session.created`, then trickles `frame()` every
/// 50 ms forever while draining what the client sends.
async fn trickler(created: bool, frame: fn() -> Message) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                let (mut tx, mut rx) = ws.split();
                tokio::spawn(async move { while rx.next().await.is_some() {} });
                if created {
                    let _ = tx.send(Message::text(r#"{"type":"session.created","id":"sess-0000000000000000","created":1}"#)).await;
                }
                loop {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    if tx.send(frame()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

/// The probe against a server that, once the session is set up, sends `transcription.delta`s
/// forever: empty ones, or with a word each when `words`.
async fn deltas_forever(words: bool) -> (ErrorType, Duration) {
    let frame: fn() -> Message = if words {
        || Message::text(r#"{"type":"transcription.delta","delta":" a"}"#)
    } else {
        || Message::text(r#"{"type":"transcription.delta","delta":""}"#)
    };
    run_against(trickler(true, frame).await).await
}

async fn run_against(port: u16) -> (ErrorType, Duration) {
    let mut spec = spec_for("127.0.0.1", port, false);
    spec.deadlines.connect = Duration::from_millis(600);
    spec.deadlines.first_text = Duration::from_millis(700);
    spec.deadlines.done = Duration::from_millis(500);
    spec.timeout = Duration::from_secs(5);
    let started = Instant::now();
    let tl = run(
        &spec,
        &silence(Duration::from_millis(400), Duration::from_millis(100)),
    )
    .await;
    (
        tl.outcome.expect_err("a trickling peer fails the run").kind,
        started.elapsed(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_before_session_created_end_at_the_connect_deadline() {
    let (kind, took) = run_against(trickler(false, || Message::Ping(vec![1].into())).await).await;
    assert_eq!(kind, ErrorType::TimeoutConnect);
    assert!(took < Duration::from_millis(600 + 500), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_deltas_forever_end_at_the_first_text_deadline() {
    let (kind, took) = deltas_forever(false).await;
    assert_eq!(kind, ErrorType::TimeoutFirstText);
    // First append at ~t0, deadline 700 ms later.
    assert!(took < Duration::from_millis(700 + 600), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_without_done_ends_at_the_done_deadline() {
    let (kind, took) = deltas_forever(true).await;
    assert_eq!(kind, ErrorType::TimeoutDone);
    // 0.4 s of audio, then the final commit, then 500 ms.
    assert!(took < Duration::from_millis(400 + 500 + 600), "{took:?}");
}
