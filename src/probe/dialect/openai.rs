//! The OpenAI GA Realtime API in transcription mode (docs/protocol-openai.md): one
//! `session.update{session:{type:"transcription",audio:{input:{…}}}}` (or, with
//! `session_update: beta`, the legacy `transcription_session.update` that older servers and
//! OpenAI's beta API read; everything after it is the same), plain
//! `input_audio_buffer.commit` to end the utterance (or server VAD), and
//! `conversation.item.input_audio_transcription.delta/completed/failed` keyed by `item_id`.
//! Parsing is lenient like the vLLM reader: unknown types and extra fields are tolerated, a
//! `delta` may be absent or null, `usage` may count tokens or seconds.

use std::borrow::Cow;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::config::{DialectSpec, SessionUpdate, TurnDetection};
use crate::probe::dialect::{Event, Frames};
use crate::probe::error::ServerCode;
use crate::probe::events::{EventError, error_parts, not_json};
use crate::probe::timeline::Usage;

/// `event_id`s rtprobe sets, so a server's `error.event_id` points at the frame it refused.
pub const UPDATE_EVENT_ID: &str = "rtprobe_update";
pub const COMMIT_EVENT_ID: &str = "rtprobe_commit";
/// Silence streamed after the clip beyond the VAD's own silence duration, so a server whose
/// VAD needs a little more than it was told still hears the turn end.
const VAD_MARGIN: Duration = Duration::from_millis(500);

pub fn frames(d: &DialectSpec, model: &str) -> Frames {
    let mut transcription = serde_json::json!({ "model": model });
    if let Some(l) = &d.language {
        transcription["language"] = l.clone().into();
    }
    if let Some(p) = &d.prompt {
        transcription["prompt"] = p.clone().into();
    }
    let (turn_detection, end_commit, vad_tail) = match d.turn_detection {
        TurnDetection::Manual => (
            Value::Null,
            Some(serde_json::json!({"type": "input_audio_buffer.commit", "event_id": COMMIT_EVENT_ID}).to_string()),
            Duration::ZERO,
        ),
        TurnDetection::ServerVad { silence } => (
            serde_json::json!({
                "type": "server_vad",
                "silence_duration_ms": silence.as_millis() as u64,
            }),
            None,
            silence + VAD_MARGIN,
        ),
    };
    let update = match d.session_update {
        SessionUpdate::Ga => serde_json::json!({
            "type": "session.update",
            "event_id": UPDATE_EVENT_ID,
            "session": {
                "type": "transcription",
                "audio": {
                    "input": {
                        "format": { "type": "audio/pcm", "rate": d.sample_rate },
                        "transcription": transcription,
                        "turn_detection": turn_detection,
                    }
                }
            }
        }),
        // `pcm16` names no rate: it is 24 kHz, which config validation holds `sample_rate` to.
        SessionUpdate::Beta => serde_json::json!({
            "type": "transcription_session.update",
            "event_id": UPDATE_EVENT_ID,
            "session": {
                "input_audio_format": "pcm16",
                "input_audio_transcription": transcription,
                "turn_detection": turn_detection,
            }
        }),
    };
    Frames {
        update: update.to_string(),
        start_commit: None,
        end_commit,
        vad_tail,
    }
}

#[derive(Deserialize)]
struct Raw<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    delta: Option<Cow<'a, str>>,
    #[serde(default)]
    transcript: Option<String>,
    #[serde(default)]
    usage: Option<Value>,
    #[serde(default)]
    error: Option<Value>,
    #[serde(default)]
    code: Option<Value>,
}

/// `{type:"tokens",input_tokens,output_tokens,total_tokens}` → token counts; the
/// `{type:"duration",seconds}` form (SGLang) counts no tokens.
fn usage(v: Option<Value>) -> Option<Usage> {
    let o = v?;
    let n = |k: &str| o.get(k).and_then(Value::as_u64);
    let (input, output) = (n("input_tokens")?, n("output_tokens").unwrap_or(0));
    Some(Usage {
        prompt_tokens: input,
        completion_tokens: output,
        total_tokens: n("total_tokens").unwrap_or(input.saturating_add(output)),
    })
}

pub fn parse(frame: &str) -> Result<Event<'_>, EventError> {
    let raw: Raw<'_> = serde_json::from_str(frame).map_err(|e| not_json(&e))?;
    let kind = raw.kind.ok_or(EventError::NoType)?;
    Ok(match kind.as_ref() {
        // The legacy beta name, where a server still sends it.
        "session.created" | "transcription_session.created" => Event::SessionCreated,
        "session.updated" | "transcription_session.updated" => Event::SessionUpdated,
        "conversation.item.input_audio_transcription.delta" => {
            Event::Delta(raw.delta.unwrap_or(Cow::Borrowed("")))
        }
        "conversation.item.input_audio_transcription.completed" => Event::Done {
            text: raw.transcript.unwrap_or_default(),
            usage: usage(raw.usage),
        },
        "conversation.item.input_audio_transcription.failed" => {
            let (message, _) = error_parts(raw.error, None);
            // Whatever the server's code, the utterance failed in transcription.
            Event::Failed {
                code: ServerCode::TranscriptionFailed,
                message,
            }
        }
        "error" => {
            let (message, code) = error_parts(raw.error, raw.code);
            Event::Error { message, code }
        }
        "input_audio_buffer.committed" => Event::Committed,
        "input_audio_buffer.speech_started" => Event::SpeechStarted,
        "input_audio_buffer.speech_stopped" => Event::SpeechStopped,
        _ => Event::Other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Dialect;

    #[test]
    fn manual_update_and_commit() {
        let mut d = DialectSpec::of(Dialect::OpenAi);
        d.language = Some("en".into());
        let f = frames(&d, "gpt-4o-transcribe");
        let v: Value = serde_json::from_str(&f.update).unwrap();
        assert_eq!(v["type"], "session.update");
        assert_eq!(v["event_id"], UPDATE_EVENT_ID);
        let input = &v["session"]["audio"]["input"];
        assert_eq!(v["session"]["type"], "transcription");
        assert_eq!(
            input["format"],
            serde_json::json!({"type":"audio/pcm","rate":24000})
        );
        assert_eq!(
            input["transcription"],
            serde_json::json!({"model":"gpt-4o-transcribe","language":"en"})
        );
        assert!(input["turn_detection"].is_null());
        assert!(
            input.get("turn_detection").is_some(),
            "null is sent, not omitted"
        );
        assert_manual_commit(&f);
    }

    /// Manual turns: one plain commit with rtprobe's event id ends the utterance, no tail.
    fn assert_manual_commit(f: &Frames) {
        assert_eq!(
            f.end_commit.as_deref(),
            Some(r#"{"event_id":"rtprobe_commit","type":"input_audio_buffer.commit"}"#)
        );
        assert_eq!(f.start_commit, None);
        assert_eq!(f.vad_tail, Duration::ZERO);
    }

    #[test]
    fn server_vad_update_has_no_commit() {
        let mut d = DialectSpec::of(Dialect::OpenAi);
        d.turn_detection = TurnDetection::ServerVad {
            silence: Duration::from_millis(400),
        };
        d.sample_rate = 16_000;
        let f = frames(&d, "m");
        let v: Value = serde_json::from_str(&f.update).unwrap();
        let input = &v["session"]["audio"]["input"];
        assert_eq!(
            input["turn_detection"],
            serde_json::json!({"type":"server_vad","silence_duration_ms":400})
        );
        assert_eq!(input["format"]["rate"], 16000);
        assert_eq!(f.end_commit, None);
        assert_eq!(f.vad_tail, Duration::from_millis(900));
    }

    #[test]
    fn beta_update_manual() {
        let mut d = DialectSpec::of(Dialect::OpenAi);
        d.session_update = SessionUpdate::Beta;
        d.language = Some("en".into());
        d.prompt = Some("nursery rhymes".into());
        let f = frames(&d, "gpt-4o-transcribe");
        let v: Value = serde_json::from_str(&f.update).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "type": "transcription_session.update",
                "event_id": "rtprobe_update",
                "session": {
                    "input_audio_format": "pcm16",
                    "input_audio_transcription": {
                        "model": "gpt-4o-transcribe", "language": "en", "prompt": "nursery rhymes"
                    },
                    "turn_detection": null,
                }
            })
        );
        // The rest of the session is GA's.
        assert_manual_commit(&f);
    }

    #[test]
    fn beta_update_server_vad() {
        let mut d = DialectSpec::of(Dialect::OpenAi);
        d.session_update = SessionUpdate::Beta;
        d.turn_detection = TurnDetection::ServerVad {
            silence: Duration::from_millis(700),
        };
        let f = frames(&d, "m");
        let v: Value = serde_json::from_str(&f.update).unwrap();
        assert_eq!(v["type"], "transcription_session.update");
        assert_eq!(
            v["session"],
            serde_json::json!({
                "input_audio_format": "pcm16",
                "input_audio_transcription": {"model": "m"},
                "turn_detection": {"type": "server_vad", "silence_duration_ms": 700},
            })
        );
        assert_eq!(f.end_commit, None);
        assert_eq!(f.vad_tail, Duration::from_millis(1200));
    }

    #[test]
    fn events() {
        assert_eq!(
            parse(
                r#"{"type":"conversation.item.input_audio_transcription.delta","event_id":"e","item_id":"i","content_index":0,"delta":" Hi"}"#
            ),
            Ok(Event::Delta(" Hi".into()))
        );
        assert_eq!(
            parse(
                r#"{"type":"conversation.item.input_audio_transcription.delta","item_id":"i","delta":null}"#
            ),
            Ok(Event::Delta("".into()))
        );
        assert_eq!(
            parse(
                r#"{"type":"conversation.item.input_audio_transcription.completed","item_id":"i","content_index":0,"transcript":"Hi.","usage":{"type":"tokens","input_tokens":12,"output_tokens":3,"total_tokens":15,"input_token_details":{"audio_tokens":12,"text_tokens":0}}}"#
            ),
            Ok(Event::Done {
                text: "Hi.".into(),
                usage: Some(Usage {
                    prompt_tokens: 12,
                    completion_tokens: 3,
                    total_tokens: 15
                })
            })
        );
        assert_eq!(
            parse(
                r#"{"type":"conversation.item.input_audio_transcription.completed","item_id":"i","transcript":"","usage":{"type":"duration","seconds":2.5}}"#
            ),
            Ok(Event::Done {
                text: String::new(),
                usage: None
            })
        );
        assert_eq!(
            parse(
                r#"{"type":"conversation.item.input_audio_transcription.failed","item_id":"i","error":{"code":"transcription_error","message":"boom"}}"#
            ),
            Ok(Event::Failed {
                code: ServerCode::TranscriptionFailed,
                message: "boom".into()
            })
        );
        assert_eq!(
            parse(
                r#"{"type":"error","event_id":"e","error":{"type":"invalid_request_error","code":"input_audio_buffer_commit_empty","message":"buffer too small","param":null,"event_id":"rtprobe_commit"}}"#
            ),
            Ok(Event::Error {
                message: "buffer too small".into(),
                code: Some("input_audio_buffer_commit_empty".into())
            })
        );
        for (t, e) in [
            ("session.created", Event::SessionCreated),
            ("transcription_session.created", Event::SessionCreated),
            ("session.updated", Event::SessionUpdated),
            ("transcription_session.updated", Event::SessionUpdated),
            ("input_audio_buffer.committed", Event::Committed),
            ("input_audio_buffer.speech_started", Event::SpeechStarted),
            ("input_audio_buffer.speech_stopped", Event::SpeechStopped),
            ("conversation.item.added", Event::Other),
            ("transcription.delta", Event::Other),
        ] {
            assert_eq!(parse(&format!(r#"{{"type":"{t}"}}"#)), Ok(e), "{t}");
        }
        assert_eq!(parse(r#"{"x":1}"#), Err(EventError::NoType));
        assert!(matches!(parse("{"), Err(EventError::NotJson(_))));
    }
}
