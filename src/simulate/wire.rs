//! What the vLLM-dialect simulator puts on the wire: the JSON of each server event (compact,
//! in vLLM's field order, docs/protocol-vllm.md §4), the `Wire` a generation emits through
//! (vLLM's events or the OpenAI item's), and the shared sink every task of a connection sends
//! through, with the close handshake. Builders are pure; only the sink functions do I/O.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Mutex;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::record::{Emission, EmitKind, RecordHandle};

/// How long to wait for the peer's close reply after we sent a close frame.
const CLOSE_LINGER: Duration = Duration::from_secs(2);

pub(crate) type Sink<S> = Arc<Mutex<SplitSink<WebSocketStream<S>, Message>>>;

#[derive(Serialize)]
struct SessionCreated<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a str,
    created: u64,
}

#[derive(Serialize)]
struct Delta<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    delta: &'a str,
}

#[derive(Serialize)]
struct Usage {
    prompt_tokens: u64,
    total_tokens: u64,
    completion_tokens: u64,
    prompt_tokens_details: Option<()>,
    completion_tokens_details: Option<()>,
}

#[derive(Serialize)]
struct Done<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'a str,
    usage: Usage,
}

#[derive(Serialize)]
struct ErrorEvent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    error: &'a str,
    code: &'a str,
}

pub(crate) fn to_json<T: Serialize>(v: &T) -> String {
    // These shapes hold only strings and integers, which always serialize.
    serde_json::to_string(v).unwrap_or_default()
}

pub(crate) fn session_created_json(id: &str, created: u64) -> String {
    to_json(&SessionCreated {
        kind: "session.created",
        id,
        created,
    })
}

pub(crate) fn delta_json(delta: &str) -> String {
    to_json(&Delta {
        kind: "transcription.delta",
        delta,
    })
}

pub(crate) fn done_json(text: &str, prompt_tokens: u32, completion_tokens: u64) -> String {
    to_json(&Done {
        kind: "transcription.done",
        text,
        usage: Usage {
            prompt_tokens: u64::from(prompt_tokens),
            total_tokens: u64::from(prompt_tokens) + completion_tokens,
            completion_tokens,
            prompt_tokens_details: None,
            completion_tokens_details: None,
        },
    })
}

pub(crate) fn error_json(message: &str, code: &str) -> String {
    to_json(&ErrorEvent {
        kind: "error",
        error: message,
        code,
    })
}

pub(crate) async fn send<S>(sink: &Sink<S>, msg: Message) -> Result<Instant, WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut guard = sink.lock().await;
    guard.send(msg).await?;
    Ok(Instant::now())
}

pub(crate) async fn send_text<S>(sink: &Sink<S>, text: String) -> Result<Instant, WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    send(sink, Message::Text(text.into())).await
}

/// Send a close frame, then read until the peer's reply (or the linger bound) so it is flushed.
pub(crate) async fn close_and_linger<S>(
    sink: &Sink<S>,
    stream: &mut SplitStream<WebSocketStream<S>>,
    code: u16,
    record: &RecordHandle,
    utterance: u32,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: "".into(),
    };
    if let Ok(at) = send(sink, Message::Close(Some(frame))).await {
        record.update(|r| {
            r.emissions.push(Emission {
                utterance,
                kind: EmitKind::Close { code },
                deadline: None,
                jitter_ns: 0,
                at,
            })
        });
        let _ = tokio::time::timeout(CLOSE_LINGER, async {
            while let Some(Ok(_)) = stream.next().await {}
        })
        .await;
    }
}

/// The shape of the events a generation emits.
#[derive(Debug, Clone)]
pub(crate) enum Wire {
    /// `transcription.delta/done`; the rest of the queue is discarded after `done`.
    Vllm,
    /// `conversation.item.input_audio_transcription.*` of this item; the queue is kept for the
    /// next item (super::openai).
    OpenAi { item_id: String },
}

impl Wire {
    pub(crate) fn delta(&self, delta: &str) -> String {
        match self {
            Wire::Vllm => delta_json(delta),
            Wire::OpenAi { item_id } => super::openai::delta_json(item_id, delta),
        }
    }

    pub(crate) fn done(&self, text: &str, prompt_tokens: u32, completion_tokens: u64) -> String {
        match self {
            Wire::Vllm => done_json(text, prompt_tokens, completion_tokens),
            Wire::OpenAi { item_id } => {
                super::openai::completed_json(item_id, text, prompt_tokens, completion_tokens)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_shapes_are_compact_and_ordered() {
        assert_eq!(
            done_json(" a", 39, 3),
            r#"{"type":"transcription.done","text":" a","usage":{"prompt_tokens":39,"total_tokens":42,"completion_tokens":3,"prompt_tokens_details":null,"completion_tokens_details":null}}"#
        );
        assert_eq!(
            delta_json("\"q\""),
            r#"{"type":"transcription.delta","delta":"\"q\""}"#
        );
        assert_eq!(
            error_json("Invalid JSON", "invalid_json"),
            r#"{"type":"error","error":"Invalid JSON","code":"invalid_json"}"#
        );
    }
}
