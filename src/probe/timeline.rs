//! The raw record of one probe run: monotonic offsets from `t0`, the transcript and the outcome.
//!
//! This is the only thing the probe client hands back (the oha model: the client records raw
//! timestamps, statistics are derived elsewhere, see `metrics::derive`). Every instant is a
//! `Duration` since `t0` (taken just before name resolution/TCP connect), read from a monotonic
//! clock, so derivations are pure arithmetic and unit tests can use exact numbers.

use std::time::{Duration, Instant, SystemTime};

use crate::config::Dialect;
use crate::probe::error::ProbeError;

/// Token counts reported by the server in `transcription.done.usage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
}

/// One `transcription.delta` as received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Delta {
    /// Receive time since `t0`.
    pub at: Duration,
    /// `delta` was not the empty string. Only non-empty deltas count as text (tokens).
    pub nonempty: bool,
}

/// What kind of client frame a send was; every send takes part in Avg RTT (guidellm's
/// `request_sent_sum / request_sent_count`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SentKind {
    SessionUpdate,
    StartCommit,
    Append,
    FinalCommit,
}

/// One client frame, stamped when the WebSocket `send` returned (buffer hand-off, as guidellm).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Sent {
    pub kind: SentKind,
    pub at: Duration,
    /// For appends: when this chunk was scheduled to go out (t_first_append + i·chunk in
    /// real-time pacing; equal to `at`'s schedule origin in burst mode). Pacing lateness is
    /// `at - scheduled`.
    pub scheduled: Option<Duration>,
    /// For appends: cumulative audio sent including this chunk.
    pub audio_end: Option<Duration>,
}

/// Connection phases, each an offset since `t0` at which the phase *ended*.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Phases {
    /// Name resolution finished (None when the host was an IP literal, or it failed).
    pub dns_done: Option<Duration>,
    /// TCP connected.
    pub tcp_connected: Option<Duration>,
    /// TLS handshake finished (wss only).
    pub tls_done: Option<Duration>,
    /// HTTP 101 Switching Protocols received.
    pub upgraded: Option<Duration>,
    /// `session.created` received.
    pub session_created: Option<Duration>,
}

/// `transcription.done` as received.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Done {
    pub at: Duration,
    pub text: String,
    pub usage: Option<Usage>,
}

/// Server acknowledgements that only some dialects send (OpenAI: docs/protocol-openai.md), each
/// the first one received, since `t0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Acks {
    /// `session.updated`.
    pub session_updated: Option<Duration>,
    /// `input_audio_buffer.committed`.
    pub committed: Option<Duration>,
    /// `input_audio_buffer.speech_started` (server VAD).
    pub speech_started: Option<Duration>,
    /// `input_audio_buffer.speech_stopped` (server VAD): the end of the utterance when the
    /// server decides turns; round trips and finalize count from here.
    pub speech_stopped: Option<Duration>,
}

/// The full record of one run. Built by `probe::run`; read by `metrics::derive` and reports.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Timeline {
    /// Wall-clock start, for logs and status pages only (never used in arithmetic).
    #[serde(with = "system_time_secs")]
    pub started: SystemTime,
    pub phases: Phases,
    /// Every client frame in send order.
    pub sent: Vec<Sent>,
    /// Every `transcription.delta` in receive order.
    pub deltas: Vec<Delta>,
    /// Concatenated non-empty delta text (bounded by the client's transcript cap).
    pub delta_text: String,
    pub done: Option<Done>,
    /// Total audio duration streamed (sum of appended chunks).
    pub audio_sent: Duration,
    /// `transcription.done` arrived before the final commit was sent (e.g. Voxtral hit
    /// `max_model_len`). The transcript covers only part of the audio.
    pub truncated: bool,
    /// Server `error` events and ignored unknown events seen (for debug output).
    pub ignored_events: u64,
    /// When the run ended (done received, error, or deadline), since `t0`.
    pub ended: Duration,
    /// `Ok(())` for a complete run; the failure otherwise.
    pub outcome: Result<(), ProbeError>,
    /// The wire dialect the run spoke.
    pub dialect: Dialect,
    /// Dialect acknowledgements (OpenAI dialect; all `None` for vLLM).
    pub acks: Acks,
    /// The monotonic instant every offset above counts from, when the run got that far. Lets
    /// in-process tests compare offsets with another component's `Instant`s (the simulator's
    /// ground truth); never serialized.
    #[serde(skip)]
    pub t0: Option<Instant>,
}

impl Timeline {
    /// An empty timeline starting now; the client fills it in as the run progresses.
    pub fn new(started: SystemTime) -> Self {
        Timeline {
            started,
            phases: Phases::default(),
            sent: Vec::new(),
            deltas: Vec::new(),
            delta_text: String::new(),
            done: None,
            audio_sent: Duration::ZERO,
            truncated: false,
            ignored_events: 0,
            ended: Duration::ZERO,
            outcome: Ok(()),
            dialect: Dialect::Vllm,
            acks: Acks::default(),
            t0: None,
        }
    }

    /// The transcript: `done.text` when the server sent one (it replaces the deltas, as in
    /// guidellm), else the concatenated deltas.
    pub fn transcript(&self) -> &str {
        match &self.done {
            Some(d) if !d.text.is_empty() => &d.text,
            _ => &self.delta_text,
        }
    }

    /// When the utterance's audio ended: `speech_stopped` when the server decides turns, else
    /// the send of the commit that ended it.
    pub fn end_of_audio(&self) -> Option<Duration> {
        self.acks.speech_stopped.or_else(|| {
            self.sent
                .iter()
                .find(|s| s.kind == SentKind::FinalCommit)
                .map(|s| s.at)
        })
    }

    pub fn succeeded(&self) -> bool {
        self.outcome.is_ok()
    }
}

mod system_time_secs {
    use std::time::{SystemTime, UNIX_EPOCH};

    pub fn serialize<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        let secs = t
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        s.serialize_f64(secs)
    }
}
