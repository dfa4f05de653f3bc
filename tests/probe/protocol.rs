//! Protocol edge cases the simulator has no knob for, against a scripted WebSocket server: the
//! first event, OpenAI-style error objects, and the transcript cap.

use crate::support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rtprobe::probe::{MAX_TRANSCRIPT, Timeline, run};
use support::probe::{silence, spec_for};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

/// Serve one connection: send `script` frames at once when `before_start`, else
/// `session.created` at once and `script` when the client's start commit arrived; then keep
/// reading until the client goes.
async fn scripted(script: Vec<Message>, before_start: bool) -> Timeline {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        let mut script = Some(script);
        if before_start {
            for m in script.take().unwrap() {
                ws.send(m).await.unwrap();
            }
        } else {
            ws.send(text(CREATED)).await.unwrap();
        }
        while let Some(Ok(m)) = ws.next().await {
            if let Message::Text(t) = &m
                && t.contains(r#""final":false"#)
                && let Some(frames) = script.take()
            {
                for f in frames {
                    if ws.send(f).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    let mut spec = spec_for("127.0.0.1", port, false);
    spec.deadlines.done = Duration::from_millis(500);
    let audio = silence(Duration::from_millis(200), Duration::from_millis(100));
    let (tl, ()) = tokio::join!(run(&spec, &audio), server);
    tl
}

fn text(s: &str) -> Message {
    Message::Text(s.into())
}

const CREATED: &str = r#"{"type":"session.created","id":"sess-0000000000000000","created":1}"#;

#[tokio::test]
async fn first_event_must_be_session_created() {
    let tl = scripted(
        vec![text(r#"{"type":"transcription.delta","delta":"x"}"#)],
        true,
    )
    .await;
    assert_eq!(tl.outcome.unwrap_err().kind.as_str(), "protocol");
    assert!(tl.phases.upgraded.is_some() && tl.phases.session_created.is_none());
}

#[tokio::test]
async fn ping_before_session_created_is_fine() {
    // Sent before the client's first frame, so everything lands before the final commit.
    let tl = scripted(
        vec![
            Message::Ping(vec![1, 2].into()),
            text(CREATED),
            text(r#"{"type":"session.updated","extra":{"a":1}}"#),
            text(r#"{"type":"transcription.delta","delta":" hi","logprobs":null}"#),
            text(r#"{"type":"transcription.done","text":" hi","usage":null}"#),
        ],
        true,
    )
    .await;
    // done came before the final commit was sent: a complete protocol run, marked truncated.
    assert_eq!(tl.outcome.as_ref().unwrap_err().kind.as_str(), "truncated");
    assert_eq!(tl.ignored_events, 1);
    assert_eq!(tl.transcript(), " hi");
}

#[tokio::test]
async fn openai_style_error_object_after_start_fails_with_its_code() {
    let tl = scripted(
        vec![
            text(r#"{"type":"error","event_id":"e","error":{"type":"invalid_request_error","code":"buffer_full","message":"full"}}"#),
        ],
        false,
    )
    .await;
    let err = tl.outcome.unwrap_err();
    assert_eq!(err.kind.as_str(), "server_error.buffer_full", "{err}");
    assert!(err.detail.contains("full"));
}

#[tokio::test]
async fn error_without_code_is_server_error_other() {
    let tl = scripted(
        vec![text(r#"{"type":"error","error":"engine died"}"#)],
        false,
    )
    .await;
    assert_eq!(tl.outcome.unwrap_err().kind.as_str(), "server_error.other");
}

#[tokio::test]
async fn transcript_cap_is_a_limit() {
    let piece = "x".repeat(MAX_TRANSCRIPT / 2 + 1);
    let delta = format!(r#"{{"type":"transcription.delta","delta":"{piece}"}}"#);
    let tl = scripted(vec![text(&delta), text(&delta)], false).await;
    assert_eq!(tl.outcome.unwrap_err().kind.as_str(), "limit");
    assert_eq!(tl.delta_text.len(), piece.len());
}

/// vLLM drops an append it cannot decode and says `invalid_audio`; in burst mode every append
/// precedes the start commit. The run must fail, not "succeed" with a gap in the audio.
#[tokio::test]
async fn invalid_audio_before_the_start_commit_fails_a_burst_run() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        ws.send(text(CREATED)).await.unwrap();
        let mut rejected = false;
        while let Some(Ok(m)) = ws.next().await {
            let Message::Text(t) = &m else { continue };
            let reply = if t.contains("input_audio_buffer.append") && !rejected {
                rejected = true;
                r#"{"type":"error","error":"Invalid audio data","code":"invalid_audio"}"#
            } else if t.contains(r#""final":true"#) {
                // Everything else as a healthy server would: the run must still fail.
                r#"{"type":"transcription.done","text":" hi","usage":null}"#
            } else if t.contains(r#""final":false"#) {
                r#"{"type":"transcription.delta","delta":" hi"}"#
            } else {
                continue;
            };
            if ws.send(text(reply)).await.is_err() {
                return;
            }
        }
    };
    let mut spec = spec_for("127.0.0.1", port, false);
    spec.pacing = rtprobe::config::Pacing::Burst;
    spec.deadlines.done = Duration::from_millis(500);
    let audio = silence(Duration::from_millis(300), Duration::from_millis(100));
    let (tl, ()) = tokio::join!(run(&spec, &audio), server);
    let err = tl.outcome.unwrap_err();
    assert_eq!(err.kind.as_str(), "server_error.invalid_audio", "{err}");
    // The error came first on the wire, so the run ended there, before `done`.
    assert!(tl.done.is_none());
}
