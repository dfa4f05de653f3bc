//! One WebSocket session, faithful to vLLM 0.33 (docs/protocol-vllm.md §3, §5, §7): the
//! validated flag, one FIFO queue of audio chunks and end-of-audio sentinels, START/END commit
//! semantics, at most one generation, the drain after `done`, exact error codes and messages.
//! The generation runs as its own task so its emissions keep their deadlines while client
//! events are handled; both write through one shared sink. This file is the interpretation:
//! client frames → `Action`s (pure, `interpret`) and the vLLM `Dialect` that acts on them; the
//! connection loop both dialects share is `connection.rs`, the event JSON and the sink
//! `wire.rs`, the timed token task `generation.rs`.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde_json::Value;
use tokio::sync::watch;
use tokio_tungstenite::WebSocketStream;

use super::config::{Fault, SimConfig};
use super::connection::{Connection, Dialect, Io, serve};
use super::generation::{AbortOnDrop, Item};
use super::record::{ClientFrame, ClientFrameKind, EmitKind, RecordHandle};
use super::schedule::{SplitMix64, utterance_seed};
use super::wire::{Wire, error_json, session_created_json};

const NOT_VALIDATED: &str =
    "Model not validated. Make sure to validate the model by sending a session.update event.";

pub(crate) struct SessionCtx {
    pub(crate) cfg: Arc<SimConfig>,
    /// The upgrade asked for a transcription session (`?intent=transcription`; OpenAI dialect).
    pub(crate) intent_transcription: bool,
    pub(crate) fault: Fault,
    pub(crate) record: RecordHandle,
    pub(crate) shutdown: watch::Receiver<bool>,
    pub(crate) realtime_index: u64,
    /// Realtime sessions open on the whole simulator now (the load knob's multiplier).
    pub(crate) open_sessions: Arc<std::sync::atomic::AtomicU64>,
}

/// What a client text frame asks for, decided without touching the socket.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Action {
    Nothing,
    Error { message: String, code: &'static str },
    Audio,
    End,
    Start,
}

fn error(message: impl Into<String>, code: &'static str) -> Action {
    Action::Error {
        message: message.into(),
        code,
    }
}

/// Python's `str()` of a JSON value, as vLLM formats it into messages.
fn py_str(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn py_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

/// pydantic's lax boolean: absent means false; null, 2 or "maybe" are validation errors.
fn lax_bool(v: Option<&Value>) -> Option<bool> {
    match v {
        None => Some(false),
        Some(Value::Bool(b)) => Some(*b),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(0.0) => Some(false),
            Some(1.0) => Some(true),
            _ => None,
        },
        Some(Value::String(s)) => match s.to_ascii_lowercase().as_str() {
            "0" | "off" | "f" | "false" | "n" | "no" => Some(false),
            "1" | "on" | "t" | "true" | "y" | "yes" => Some(true),
            _ => None,
        },
        Some(_) => None,
    }
}

const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical)
        .with_decode_allow_trailing_bits(true),
);

/// Non-validating standard base64, as pybase64 decodes: characters outside the alphabet are
/// dropped, padding must still be right.
pub(crate) fn decode_audio(s: &str) -> Option<Vec<u8>> {
    // Strict decoding accepts exactly the bytes the filter keeps, so where it succeeds the filter
    // would change nothing. It is the path of every well-formed append, and it must be cheap: the
    // session reads (and stamps) the next client frame only after this one is handled, and the
    // byte-by-byte filter took ~0.5 ms per 100 ms of 24 kHz audio in a debug build, which the
    // ground-truth end of audio of a commit sent right behind the last append inherited.
    if let Ok(bytes) = B64.decode(s) {
        return Some(bytes);
    }
    let kept: Vec<u8> = s
        .bytes()
        .filter(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
        .collect();
    B64.decode(kept).ok()
}

/// Interpret one client text frame against the session state (§3, §5, §7).
pub(crate) fn interpret(
    text: &str,
    validated: &mut bool,
    cfg: &SimConfig,
    fault: Fault,
) -> (ClientFrameKind, Action) {
    let Ok(value) = serde_json::from_str::<Value>(text) else {
        return (
            ClientFrameKind::InvalidJson,
            error("Invalid JSON", "invalid_json"),
        );
    };
    let Value::Object(event) = value else {
        let msg = format!("'{}' object has no attribute 'get'", py_type(&value));
        return (ClientFrameKind::NotObject, error(msg, "processing_error"));
    };
    match event.get("type") {
        Some(Value::String(t)) if t == "session.update" => {
            let action = match event.get("model") {
                None | Some(Value::Null) => error("Missing required field: model", "invalid_event"),
                Some(Value::String(m))
                    if fault != Fault::RejectModel && (m.is_empty() || *m == cfg.model) =>
                {
                    *validated = true;
                    Action::Nothing
                }
                Some(m) => error(
                    format!("The model `{}` does not exist.", py_str(m)),
                    "model_not_found",
                ),
            };
            (ClientFrameKind::SessionUpdate, action)
        }
        Some(Value::String(t)) if t == "input_audio_buffer.append" => match event.get("audio") {
            None => (
                ClientFrameKind::Append { bytes: None },
                error(
                    "1 validation error for InputAudioBufferAppend\naudio\n  Field required",
                    "processing_error",
                ),
            ),
            Some(Value::String(b64)) => match decode_audio(b64) {
                Some(bytes) if !bytes.is_empty() && bytes.len() % 2 == 0 => (
                    ClientFrameKind::Append {
                        bytes: Some(bytes.len()),
                    },
                    Action::Audio,
                ),
                _ => (
                    ClientFrameKind::Append { bytes: None },
                    error("Invalid audio data", "invalid_audio"),
                ),
            },
            Some(_) => (
                ClientFrameKind::Append { bytes: None },
                error(
                    "1 validation error for InputAudioBufferAppend\naudio\n  Input should be a valid string",
                    "processing_error",
                ),
            ),
        },
        Some(Value::String(t)) if t == "input_audio_buffer.commit" => {
            // vLLM checks the flag before it parses the event.
            if !*validated {
                return (
                    ClientFrameKind::Commit { final_: None },
                    error(NOT_VALIDATED, "model_not_validated"),
                );
            }
            match lax_bool(event.get("final")) {
                Some(true) => (ClientFrameKind::Commit { final_: Some(true) }, Action::End),
                Some(false) => (
                    ClientFrameKind::Commit {
                        final_: Some(false),
                    },
                    Action::Start,
                ),
                None => (
                    ClientFrameKind::Commit { final_: None },
                    error(
                        "1 validation error for InputAudioBufferCommit\nfinal\n  Input should be a valid boolean",
                        "processing_error",
                    ),
                ),
            }
        }
        other => {
            let name = other.map_or_else(|| "None".to_string(), py_str);
            let kind = ClientFrameKind::Unknown(other.map(py_str));
            (
                kind,
                error(format!("Unknown event type: {name}"), "unknown_event"),
            )
        }
    }
}

/// The vLLM dialect's state on one connection.
struct Vllm<S> {
    conn: Connection<S>,
    validated: bool,
    generation: Option<AbortOnDrop>,
}

impl<S: Io> Dialect for Vllm<S> {
    fn stop(&mut self) {
        drop(self.generation.take());
    }

    type Io = S;

    fn conn(&self) -> &Connection<S> {
        &self.conn
    }

    async fn on_binary(&mut self) -> bool {
        // vLLM's receive loop dies on a binary frame: TCP drops, no close frame.
        false
    }

    fn on_close(&mut self, at: Instant) {
        let _ = self.conn.queue_tx.send(Item::End { at });
        drop(self.generation.take());
    }

    async fn on_text(&mut self, text: &str, at: Instant) {
        let c = &mut self.conn;
        let (kind, action) = interpret(text, &mut self.validated, &c.cfg, c.fault);
        c.record
            .update(|r| r.client_frames.push(ClientFrame { at, kind }));
        match action {
            Action::Nothing => {}
            Action::Error { message, code } => {
                let kind = EmitKind::Error {
                    code: code.to_string(),
                };
                c.emit(error_json(&message, code), kind).await;
            }
            Action::Audio => {
                let _ = c.queue_tx.send(Item::Audio { at });
            }
            Action::End => {
                let _ = c.queue_tx.send(Item::End { at });
            }
            Action::Start => {
                let running = self.generation.as_ref().is_some_and(|g| !g.0.is_finished());
                if !running {
                    self.generation = Some(c.start_generation(at, Wire::Vllm));
                }
            }
        }
    }
}

/// Serve one upgraded connection in the vLLM dialect.
pub(crate) async fn run<S: Io>(ws: WebSocketStream<S>, mut ctx: SessionCtx) {
    let Some((conn, stream, ctl_rx)) = Connection::open(ws, &mut ctx).await else {
        return;
    };
    let mut ids = SplitMix64::new(utterance_seed(ctx.cfg.seed, ctx.realtime_index, u32::MAX));
    let id = format!("sess-{:016x}", ids.next_u64());
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if !conn.hello(session_created_json(&id, created)).await {
        return;
    }
    let vllm = Vllm {
        conn,
        validated: false,
        generation: None,
    };
    serve(stream, ctx, ctl_rx, vllm).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(texts: &[&str], fault: Fault) -> Vec<(ClientFrameKind, Action)> {
        let cfg = SimConfig::default();
        let mut validated = false;
        texts
            .iter()
            .map(|t| interpret(t, &mut validated, &cfg, fault))
            .collect()
    }

    fn err(a: &Action) -> (&str, &str) {
        match a {
            Action::Error { message, code } => (message.as_str(), code),
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn validation_flag_and_messages() {
        let r = run(
            &[
                r#"{"type":"input_audio_buffer.commit"}"#,
                r#"{"type":"session.update"}"#,
                r#"{"type":"session.update","model":null}"#,
                r#"{"type":"session.update","model":"other"}"#,
                r#"{"type":"input_audio_buffer.commit","final":false}"#,
                r#"{"type":"session.update","model":"demo-realtime"}"#,
                r#"{"type":"session.update","model":"other"}"#,
                r#"{"type":"input_audio_buffer.commit","final":false}"#,
            ],
            Fault::None,
        );
        for (i, want) in [
            // A commit before session.update.
            (NOT_VALIDATED, "model_not_validated"),
            ("Missing required field: model", "invalid_event"),
            ("Missing required field: model", "invalid_event"),
            ("The model `other` does not exist.", "model_not_found"),
        ]
        .into_iter()
        .enumerate()
        {
            assert_eq!(err(&r[i].1), want, "frame {i}");
        }
        assert_eq!(err(&r[4].1).1, "model_not_validated");
        assert_eq!(r[5].1, Action::Nothing);
        assert_eq!(err(&r[6].1).1, "model_not_found");
        assert_eq!(r[7].1, Action::Start, "a later failure keeps the flag");
        let empty = run(
            &[
                r#"{"type":"session.update","model":""}"#,
                r#"{"type":"input_audio_buffer.commit","final":true}"#,
            ],
            Fault::None,
        );
        assert_eq!(empty[1].1, Action::End);
        let rejected = run(
            &[r#"{"type":"session.update","model":"demo-realtime"}"#],
            Fault::RejectModel,
        );
        assert_eq!(
            err(&rejected[0].1),
            (
                "The model `demo-realtime` does not exist.",
                "model_not_found"
            )
        );
    }

    #[test]
    fn lax_final() {
        for (v, want) in [
            ("true", Some(Action::End)),
            ("1", Some(Action::End)),
            ("\"true\"", Some(Action::End)),
            ("\"yes\"", Some(Action::End)),
            ("\"On\"", Some(Action::End)),
            ("false", Some(Action::Start)),
            ("0", Some(Action::Start)),
            ("\"no\"", Some(Action::Start)),
            ("null", None),
            ("2", None),
            ("\"maybe\"", None),
            ("[]", None),
        ] {
            let frame = format!(r#"{{"type":"input_audio_buffer.commit","final":{v}}}"#);
            let r = run(
                &[r#"{"type":"session.update","model":""}"#, &frame],
                Fault::None,
            );
            match want {
                Some(a) => assert_eq!(r[1].1, a, "final:{v}"),
                None => assert_eq!(err(&r[1].1).1, "processing_error", "final:{v}"),
            }
        }
    }

    #[test]
    fn audio_decoding() {
        let ok = |s: &str| {
            let frame =
                serde_json::json!({"type":"input_audio_buffer.append","audio":s}).to_string();
            run(&[&frame], Fault::None).remove(0)
        };
        assert_eq!(ok("AAAAAA==").1, Action::Audio);
        assert_eq!(ok("AAAAAA==").0, ClientFrameKind::Append { bytes: Some(4) });
        assert_eq!(ok("AAAA AA==\n").1, Action::Audio, "whitespace dropped");
        assert_eq!(ok("AA*AA%AA==").1, Action::Audio, "junk dropped");
        assert_eq!(
            err(&ok("AAAA").1),
            ("Invalid audio data", "invalid_audio"),
            "3 bytes"
        );
        assert_eq!(err(&ok("AAAAAA").1).1, "invalid_audio", "bad padding");
        assert_eq!(err(&ok("").1).1, "invalid_audio", "empty");
        // A well-formed 100 ms chunk at 24 kHz takes the strict path; with a line break in it,
        // the filtering one; both give the same samples.
        let pcm: Vec<u8> = (0..4800u32).map(|i| (i * 7 % 251) as u8).collect();
        let b64 = B64.encode(&pcm);
        assert_eq!(decode_audio(&b64).as_deref(), Some(&pcm[..]));
        let wrapped = format!("{}\n{}", &b64[..76], &b64[76..]);
        assert_eq!(decode_audio(&wrapped).as_deref(), Some(&pcm[..]));
        let missing = run(&[r#"{"type":"input_audio_buffer.append"}"#], Fault::None);
        assert_eq!(err(&missing[0].1).1, "processing_error");
        let wrong = run(
            &[r#"{"type":"input_audio_buffer.append","audio":5}"#],
            Fault::None,
        );
        assert_eq!(err(&wrong[0].1).1, "processing_error");
    }

    #[test]
    fn junk_and_unknown_events() {
        for (frame, want) in [
            ("not json", ("Invalid JSON", "invalid_json")),
            (
                "[1,2]",
                ("'list' object has no attribute 'get'", "processing_error"),
            ),
            (
                r#""s""#,
                ("'str' object has no attribute 'get'", "processing_error"),
            ),
            (
                r#"{"type":"input_audio_buffer.clear"}"#,
                (
                    "Unknown event type: input_audio_buffer.clear",
                    "unknown_event",
                ),
            ),
            (
                r#"{"no":"type"}"#,
                ("Unknown event type: None", "unknown_event"),
            ),
            (r#"{"type":7}"#, ("Unknown event type: 7", "unknown_event")),
        ] {
            let r = run(&[frame], Fault::None);
            assert_eq!(err(&r[0].1), want, "{frame}");
        }
    }
}
