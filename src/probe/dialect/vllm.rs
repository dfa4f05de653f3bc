//! vLLM's own `/v1/realtime` dialect: a flat `session.update{model}`, `commit final:false` to
//! start and `final:true` to end, `transcription.delta/done` (docs/protocol-openai.md compares it
//! with the OpenAI dialect). Parsing is `probe::events`, which predates the seam and stays the
//! vLLM reader.

use std::time::Duration;

use crate::probe::dialect::{Event, Frames};
use crate::probe::events::{self, EventError, ServerEvent};

pub const START_COMMIT: &str = r#"{"type":"input_audio_buffer.commit","final":false}"#;
pub const FINAL_COMMIT: &str = r#"{"type":"input_audio_buffer.commit","final":true}"#;

pub fn frames(model: &str) -> Frames {
    Frames {
        update: serde_json::json!({"type": "session.update", "model": model}).to_string(),
        start_commit: Some(START_COMMIT.to_string()),
        end_commit: Some(FINAL_COMMIT.to_string()),
        vad_tail: Duration::ZERO,
    }
}

pub fn parse(frame: &str) -> Result<Event<'_>, EventError> {
    Ok(match events::parse(frame)? {
        ServerEvent::SessionCreated => Event::SessionCreated,
        ServerEvent::Delta(d) => Event::Delta(d),
        ServerEvent::Done { text, usage } => Event::Done { text, usage },
        ServerEvent::Error { message, code } => Event::Error { message, code },
        ServerEvent::Other => Event::Other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_vllm_shaped() {
        let f = frames("m");
        assert_eq!(f.update, r#"{"model":"m","type":"session.update"}"#);
        assert_eq!(f.start_commit.as_deref(), Some(START_COMMIT));
        assert_eq!(f.end_commit.as_deref(), Some(FINAL_COMMIT));
    }

    #[test]
    fn events_map_onto_the_neutral_set() {
        assert_eq!(
            parse(r#"{"type":"transcription.delta","delta":" a"}"#),
            Ok(Event::Delta(" a".into()))
        );
        assert_eq!(
            parse(r#"{"type":"session.updated"}"#),
            Ok(Event::Other),
            "only newer vLLM sends it; it is not needed"
        );
    }
}
