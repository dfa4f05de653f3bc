//! The seam between the one realtime client and the wire dialects it speaks, as
//! blackbox_exporter has one prober per protocol behind one module interface. A dialect does two
//! pure things: it builds the client's session frames (`Frames`, before any timed send), and it
//! reads a server text frame into a dialect-neutral `Event`. Everything timed (pacing, reading,
//! deadlines, the `Timeline`) stays in `client.rs`, so both dialects are measured by the same code.

pub mod openai;
pub mod vllm;

use std::borrow::Cow;
use std::time::Duration;

use crate::config::{Dialect, ProbeSpec};
use crate::probe::error::ServerCode;
use crate::probe::events::EventError;
use crate::probe::timeline::Usage;

/// A server event in terms the client acts on, whatever the dialect's wire names.
#[derive(Debug, PartialEq)]
pub enum Event<'a> {
    /// `session.created` (the first event of every dialect).
    SessionCreated,
    /// The server acknowledged the session configuration (`session.updated`).
    SessionUpdated,
    /// A piece of transcript (`transcription.delta`, `…input_audio_transcription.delta`).
    Delta(Cow<'a, str>),
    /// The utterance's final text (`transcription.done`, `…input_audio_transcription.completed`).
    Done { text: String, usage: Option<Usage> },
    /// The server closed the utterance's audio buffer (`input_audio_buffer.committed`).
    Committed,
    /// Server VAD heard speech begin (`input_audio_buffer.speech_started`).
    SpeechStarted,
    /// Server VAD heard speech end (`input_audio_buffer.speech_stopped`): the end of the
    /// utterance when the server decides turns.
    SpeechStopped,
    /// The server gave up on the utterance (`…input_audio_transcription.failed`).
    Failed { code: ServerCode, message: String },
    /// An `error` event: its code (top level or inside the error object) and message.
    Error {
        message: String,
        code: Option<String>,
    },
    /// Anything else (counted, never acted on).
    Other,
}

/// The client frames of one session, built once per run before the first timed send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frames {
    pub update: String,
    /// Sent before the audio (realtime pacing) or after it (burst): vLLM's `commit final:false`.
    pub start_commit: Option<String>,
    /// The commit that ends the utterance; `None` when the server commits (server VAD).
    pub end_commit: Option<String>,
    /// Silence streamed after the clip so a server VAD can hear the turn end.
    pub vad_tail: Duration,
}

/// The session frames of `spec`'s dialect, for the resolved `model` name.
pub fn frames(spec: &ProbeSpec, model: &str) -> Frames {
    match spec.dialect.kind {
        Dialect::Vllm => vllm::frames(model),
        Dialect::OpenAi => openai::frames(&spec.dialect, model),
    }
}

/// Read one server text frame in `dialect`.
pub fn parse(dialect: Dialect, frame: &str) -> Result<Event<'_>, EventError> {
    match dialect {
        Dialect::Vllm => vllm::parse(frame),
        Dialect::OpenAi => openai::parse(frame),
    }
}

/// Whether an `error` event with this code fails the run. vLLM's errors are often non-fatal (an
/// unknown event): before the start commit only a setup failure or rejected audio counts (the
/// server drops a rejected chunk, so the run would "succeed" with a gap in its audio; see
/// docs/exact-values.md). In the
/// OpenAI dialect every `error` is about an event this probe sent (an update, an append, a
/// commit), so each one fails the run.
pub fn error_fails(dialect: Dialect, code: ServerCode, start_sent: bool) -> bool {
    match dialect {
        Dialect::Vllm => {
            start_sent
                || matches!(
                    code,
                    ServerCode::ModelNotFound
                        | ServerCode::InvalidEvent
                        | ServerCode::ModelNotValidated
                        | ServerCode::InvalidAudio
                )
        }
        Dialect::OpenAi => true,
    }
}
