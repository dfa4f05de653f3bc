//! What the simulator does: the served model, the transcript it "recognises", the injected
//! timing of every emission, and the fault to inject. Tests and benchmarks build a `SimConfig`
//! directly; the CLI builds one through `SimArgs`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::config::{Dialect, Secret};

/// PEM files for serving `wss://`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert_pem: PathBuf,
    pub key_pem: PathBuf,
}

/// A misbehaviour to inject. "After k words" means after the k-th non-empty delta was sent,
/// with k = `SimConfig::fault_after_words` clamped to the number of words in the transcript.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Fault {
    /// Behave like a healthy vLLM 0.33 server.
    #[default]
    None,
    /// After k words: `error processing_error`, and no `transcription.done` ever.
    ErrorMidStream,
    /// All deltas, then silence: no `done` (a hung engine; the next START is ignored).
    NeverDone,
    /// No deltas at all; `done` with the full text at the time the last word was due.
    DoneOnly,
    /// After k words: close the TCP connection without a close frame (client sees 1006).
    DropTcp,
    /// `session.created` only after `SimConfig::slow_session_delay`.
    SlowSession,
    /// `model_not_found` for every `session.update`, whatever the name.
    RejectModel,
    /// After k words: close frame 1011 (internal error).
    Close1011,
    /// After k words: close frame 1012 (service restart, what vLLM sends on shutdown).
    Close1012,
    /// After k words: one text frame of `SimConfig::oversized_frame_bytes` bytes.
    OversizedFrame,
    /// After k words: one text frame that is not JSON.
    MalformedJson,
    /// After k words: one binary frame.
    BinaryFrame,
    /// `SimConfig::flood_events` events of an unknown type before the first delta.
    UnknownEventFlood,
    /// Answer the upgrade with this HTTP status and a JSON body.
    HttpStatus(u16),
    /// Read the upgrade request and never answer anything.
    Silent,
    /// After k words: `done` before the final commit arrives (Voxtral at `max_model_len`).
    Truncate,
}

impl Fault {
    /// The names `FromStr` accepts (`http_status` takes a code: `http_status:503`).
    pub const NAMES: [&'static str; 16] = [
        "none",
        "error_mid_stream",
        "never_done",
        "done_only",
        "drop_tcp",
        "slow_session",
        "reject_model",
        "close_1011",
        "close_1012",
        "oversized_frame",
        "malformed_json",
        "binary_frame",
        "unknown_event_flood",
        "http_status:CODE",
        "silent",
        "truncate",
    ];
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Fault::None => "none",
            Fault::ErrorMidStream => "error_mid_stream",
            Fault::NeverDone => "never_done",
            Fault::DoneOnly => "done_only",
            Fault::DropTcp => "drop_tcp",
            Fault::SlowSession => "slow_session",
            Fault::RejectModel => "reject_model",
            Fault::Close1011 => "close_1011",
            Fault::Close1012 => "close_1012",
            Fault::OversizedFrame => "oversized_frame",
            Fault::MalformedJson => "malformed_json",
            Fault::BinaryFrame => "binary_frame",
            Fault::UnknownEventFlood => "unknown_event_flood",
            Fault::HttpStatus(code) => return write!(f, "http_status:{code}"),
            Fault::Silent => "silent",
            Fault::Truncate => "truncate",
        };
        f.write_str(name)
    }
}

impl FromStr for Fault {
    type Err = String;

    fn from_str(s: &str) -> Result<Fault, String> {
        let fault = match s {
            "none" => Fault::None,
            "error_mid_stream" => Fault::ErrorMidStream,
            "never_done" => Fault::NeverDone,
            "done_only" => Fault::DoneOnly,
            "drop_tcp" => Fault::DropTcp,
            "slow_session" => Fault::SlowSession,
            "reject_model" => Fault::RejectModel,
            "close_1011" => Fault::Close1011,
            "close_1012" => Fault::Close1012,
            "oversized_frame" => Fault::OversizedFrame,
            "malformed_json" => Fault::MalformedJson,
            "binary_frame" => Fault::BinaryFrame,
            "unknown_event_flood" => Fault::UnknownEventFlood,
            "silent" => Fault::Silent,
            "truncate" => Fault::Truncate,
            other => {
                let code = other
                    .strip_prefix("http_status:")
                    .and_then(|c| c.parse::<u16>().ok())
                    .filter(|c| (200..=599).contains(c) && *c != 101);
                match code {
                    Some(code) => Fault::HttpStatus(code),
                    None => {
                        return Err(format!(
                            "unknown fault {other:?}: expected one of {} (CODE: 200..=599)",
                            Fault::NAMES.join(", ")
                        ));
                    }
                }
            }
        };
        Ok(fault)
    }
}

/// Everything the simulator does. `Default` is a healthy server with Voxtral-like cadence.
///
/// Emission timing (all on the monotonic clock, from absolute deadlines so errors never add up):
/// the transcript's words become one non-empty token each (with a leading space, like vLLM),
/// separated by `empty_deltas_per_word` empty tokens. Token i is due at
/// `t_audio + first_text_delay + i·token_interval`, where `t_audio` is the receipt of the first
/// audio chunk the generation consumed. The last `hold_last_words` words (and the empty tokens
/// between them) wait for the end-of-audio sentinel: the first of them is due at
/// `max(t_end + tail_delay, its grid time)` with `t_end` the receipt of the final commit, the rest
/// follow at `token_interval`. `done` is due `done_delay` after the last token (and never before
/// `t_end + tail_delay`). Each emission gets its own uniform offset in `[-jitter, +jitter]`.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// The one served model name; `session.update` must name it (or `""`).
    pub model: String,
    /// The text to "recognise"; split on whitespace into words.
    pub transcript: String,
    /// When set, `/v1/*` requires `Authorization: Bearer <key>` (HTTP 401 otherwise).
    pub api_key: Option<Secret>,
    pub session_created_delay: Duration,
    pub first_text_delay: Duration,
    pub token_interval: Duration,
    pub empty_deltas_per_word: u32,
    pub hold_last_words: usize,
    pub tail_delay: Duration,
    pub done_delay: Duration,
    pub jitter: Duration,
    pub seed: u64,
    pub prompt_tokens: u32,
    /// Reported by `GET /v1/models`.
    pub max_model_len: u32,
    /// Load the server feels: each utterance's first text and its held words come
    /// `load_delay_per_stream × open realtime sessions` later (counted when the utterance's
    /// first audio arrives, this session included). Zero: no load effect.
    pub load_delay_per_stream: Duration,
    /// The fault for every session, unless `faults` is non-empty.
    pub fault: Fault,
    /// Faults cycled over successive `/v1/realtime` upgrade requests (for soak tests).
    pub faults: Vec<Fault>,
    /// k of "after k words" for the faults that fire mid-stream.
    pub fault_after_words: usize,
    /// The 0-based utterance of a connection from which the mid-stream faults (and
    /// `never_done`) fire; earlier utterances are healthy. 0 = every utterance.
    pub fault_from_utterance: u32,
    pub slow_session_delay: Duration,
    pub oversized_frame_bytes: usize,
    pub flood_events: usize,
    pub tls: Option<TlsFiles>,
    /// Per-connection ground-truth records kept (oldest dropped first); 0 disables recording.
    pub max_records: usize,
    /// Deadline for the TLS handshake plus the HTTP request head.
    pub head_timeout: Duration,
    /// The wire dialect served: vLLM's own, or OpenAI's transcription sessions (super::openai).
    pub dialect: Dialect,
    /// OpenAI dialect: the `audio/pcm` rates `session.update` may declare (OpenAI: 24000 only).
    pub openai_rates: Vec<u32>,
    /// uvicorn's keepalive: a ping this often, and close 1011 when the previous ping got no
    /// pong by the next one. `None` disables it.
    pub keepalive: Option<Duration>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            model: "demo-realtime".to_string(),
            transcript: "Mary had a little lamb, its fleece was white as snow.".to_string(),
            api_key: None,
            session_created_delay: Duration::ZERO,
            first_text_delay: Duration::from_millis(300),
            token_interval: Duration::from_millis(80),
            empty_deltas_per_word: 0,
            hold_last_words: 1,
            tail_delay: Duration::from_millis(120),
            done_delay: Duration::from_millis(40),
            jitter: Duration::ZERO,
            seed: 0,
            prompt_tokens: 39,
            max_model_len: 131_072,
            load_delay_per_stream: Duration::ZERO,
            fault: Fault::None,
            faults: Vec::new(),
            fault_after_words: 2,
            fault_from_utterance: 0,
            slow_session_delay: Duration::from_secs(30),
            oversized_frame_bytes: 20 * 1024 * 1024,
            flood_events: 1000,
            tls: None,
            max_records: 4096,
            head_timeout: Duration::from_secs(10),
            keepalive: Some(Duration::from_secs(20)),
            dialect: Dialect::Vllm,
            openai_rates: vec![24_000],
        }
    }
}

impl SimConfig {
    /// The fault for the `index`-th `/v1/realtime` upgrade request (0-based).
    pub fn fault_for(&self, index: u64) -> Fault {
        if self.faults.is_empty() {
            self.fault
        } else {
            self.faults[(index % self.faults.len() as u64) as usize]
        }
    }

    /// The transcript's words as vLLM emits them: each with its leading space.
    pub fn words(&self) -> Vec<String> {
        self.transcript
            .split_whitespace()
            .map(|w| format!(" {w}"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_names_round_trip() {
        for name in Fault::NAMES {
            let name = name.replace("CODE", "503");
            let fault: Fault = name.parse().unwrap();
            assert_eq!(fault.to_string(), name);
        }
        assert!("http_status:101".parse::<Fault>().is_err());
        assert!("http_status:x".parse::<Fault>().is_err());
        let err = "nope".parse::<Fault>().unwrap_err();
        assert!(err.contains("drop_tcp"), "{err}");
    }

    #[test]
    fn faults_cycle_per_upgrade() {
        let cfg = SimConfig {
            faults: vec![Fault::None, Fault::DropTcp],
            ..SimConfig::default()
        };
        assert_eq!(cfg.fault_for(0), Fault::None);
        assert_eq!(cfg.fault_for(1), Fault::DropTcp);
        assert_eq!(cfg.fault_for(2), Fault::None);
        assert_eq!(SimConfig::default().fault_for(7), Fault::None);
    }
}
