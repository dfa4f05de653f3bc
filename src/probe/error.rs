//! Why a probe run failed: a closed set of error kinds (the only values `error.type` may take)
//! plus a free-text detail that goes to logs and debug output, never into a label.

use std::fmt;

/// The server's `error.code` values rtprobe knows (docs/protocol-vllm.md §7, §12; for the OpenAI
/// dialect docs/protocol-openai.md, "Errors": several servers' codes share one home; docs/errors.md
/// has the whole `error.type` table). Anything else maps to `Other`, so the label set stays
/// closed whatever a server sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerCode {
    InvalidJson,
    InvalidEvent,
    ModelNotFound,
    ModelNotValidated,
    InvalidAudio,
    ProcessingError,
    UnknownEvent,
    BufferFull,
    /// OpenAI: a commit of less than 100 ms of audio (`input_audio_buffer_commit_empty`).
    CommitEmpty,
    /// OpenAI: the session configuration was refused (`invalid_value`, `unknown_parameter`,
    /// `invalid_session`, `not_supported`, `session_update_error`).
    InvalidSession,
    /// OpenAI: an event the session was not ready for (`invalid_state`, `not_implemented`).
    InvalidState,
    /// OpenAI: `rate_limit_exceeded`, `too_many_sessions`.
    RateLimited,
    /// OpenAI: `conversation.item.input_audio_transcription.failed` (`transcription_error`,
    /// `inference_failed`, `model_load_error`).
    TranscriptionFailed,
    /// OpenAI: `invalid_api_key` as an event after the upgrade.
    InvalidApiKey,
    Other,
}

impl ServerCode {
    pub const ALL: [ServerCode; 15] = [
        ServerCode::InvalidJson,
        ServerCode::InvalidEvent,
        ServerCode::ModelNotFound,
        ServerCode::ModelNotValidated,
        ServerCode::InvalidAudio,
        ServerCode::ProcessingError,
        ServerCode::UnknownEvent,
        ServerCode::BufferFull,
        ServerCode::CommitEmpty,
        ServerCode::InvalidSession,
        ServerCode::InvalidState,
        ServerCode::RateLimited,
        ServerCode::TranscriptionFailed,
        ServerCode::InvalidApiKey,
        ServerCode::Other,
    ];

    /// Classify a code string from the wire; unknown codes become `Other`.
    pub fn from_wire(code: &str) -> ServerCode {
        match code {
            "invalid_json" | "invalid_payload" => ServerCode::InvalidJson,
            "invalid_event" => ServerCode::InvalidEvent,
            "model_not_found" => ServerCode::ModelNotFound,
            "model_not_validated" => ServerCode::ModelNotValidated,
            "invalid_audio"
            | "invalid_audio_format"
            | "invalid_audio_data"
            | "missing_audio_data" => ServerCode::InvalidAudio,
            "processing_error" => ServerCode::ProcessingError,
            "unknown_event" | "unsupported_event" => ServerCode::UnknownEvent,
            "buffer_full" | "buffer_overflow" | "buffer_size_exceeded" => ServerCode::BufferFull,
            "input_audio_buffer_commit_empty" | "commit_empty" => ServerCode::CommitEmpty,
            "invalid_value"
            | "unknown_parameter"
            | "invalid_session"
            | "not_supported"
            | "session_update_error" => ServerCode::InvalidSession,
            "invalid_state" | "not_implemented" => ServerCode::InvalidState,
            "rate_limit_exceeded" | "too_many_sessions" | "rate_limited" => ServerCode::RateLimited,
            "transcription_error"
            | "inference_failed"
            | "model_load_error"
            | "transcription_failed" => ServerCode::TranscriptionFailed,
            "invalid_api_key" => ServerCode::InvalidApiKey,
            _ => ServerCode::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ServerCode::InvalidJson => "invalid_json",
            ServerCode::InvalidEvent => "invalid_event",
            ServerCode::ModelNotFound => "model_not_found",
            ServerCode::ModelNotValidated => "model_not_validated",
            ServerCode::InvalidAudio => "invalid_audio",
            ServerCode::ProcessingError => "processing_error",
            ServerCode::UnknownEvent => "unknown_event",
            ServerCode::BufferFull => "buffer_full",
            ServerCode::CommitEmpty => "commit_empty",
            ServerCode::InvalidSession => "invalid_session",
            ServerCode::InvalidState => "invalid_state",
            ServerCode::RateLimited => "rate_limited",
            ServerCode::TranscriptionFailed => "transcription_failed",
            ServerCode::InvalidApiKey => "invalid_api_key",
            ServerCode::Other => "other",
        }
    }
}

/// The closed set of failure kinds. `as_str` is the `error.type` label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorType {
    /// Name resolution failed.
    Dns,
    /// TCP connect refused or unreachable.
    Connect,
    /// TLS handshake failed (unknown CA, name mismatch, protocol).
    Tls,
    /// Upgrade answered 401 / 403 / other 4xx / 5xx / another non-101 status.
    Http401,
    Http403,
    Http4xx,
    Http5xx,
    HttpOther,
    /// The connect deadline passed before `session.created` (covers dns, tcp, tls, upgrade).
    TimeoutConnect,
    /// No non-empty text within the first-text deadline after the first audio was sent.
    TimeoutFirstText,
    /// The whole-run `timeout` passed while audio was still being sent (before the final
    /// commit): the run could not even deliver its clip in time.
    TimeoutSending,
    /// No `transcription.done` within the done deadline after the final commit.
    TimeoutDone,
    /// The server sent an `error` event that fails the utterance.
    ServerError(ServerCode),
    /// The server broke the protocol: not JSON, binary frame, wrong first event, bad shape.
    Protocol,
    /// The connection closed (or dropped) before `transcription.done`.
    ClosedEarly,
    /// `transcription.done` came before the final commit was sent: the transcript is partial.
    Truncated,
    /// A bound was exceeded: frame size, ignored-event count or transcript length.
    Limit,
    /// The run completed but its transcript's word error rate exceeded the probe's `max_wer`.
    Wer,
    /// The run was cancelled (shutdown, reload) before it finished.
    Cancelled,
    /// rtprobe itself failed during the run (a bug: a panic was caught). Never the target's fault.
    Internal,
}

impl ErrorType {
    /// Every value, for pre-declaring series and for exhaustive tests.
    pub fn all() -> Vec<ErrorType> {
        let mut v = vec![
            ErrorType::Dns,
            ErrorType::Connect,
            ErrorType::Tls,
            ErrorType::Http401,
            ErrorType::Http403,
            ErrorType::Http4xx,
            ErrorType::Http5xx,
            ErrorType::HttpOther,
            ErrorType::TimeoutConnect,
            ErrorType::TimeoutFirstText,
            ErrorType::TimeoutSending,
            ErrorType::TimeoutDone,
            ErrorType::Protocol,
            ErrorType::ClosedEarly,
            ErrorType::Truncated,
            ErrorType::Limit,
            ErrorType::Wer,
            ErrorType::Cancelled,
            ErrorType::Internal,
        ];
        v.extend(ServerCode::ALL.iter().map(|c| ErrorType::ServerError(*c)));
        v
    }

    /// The `error.type` label value. `server_error` carries the known code after a dot, e.g.
    /// `server_error.processing_error`, so dashboards can match `server_error.*`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::Dns => "dns",
            ErrorType::Connect => "connect",
            ErrorType::Tls => "tls",
            ErrorType::Http401 => "http_401",
            ErrorType::Http403 => "http_403",
            ErrorType::Http4xx => "http_4xx",
            ErrorType::Http5xx => "http_5xx",
            ErrorType::HttpOther => "http_other",
            ErrorType::TimeoutConnect => "timeout_connect",
            ErrorType::TimeoutFirstText => "timeout_first_text",
            ErrorType::TimeoutSending => "timeout_sending",
            ErrorType::TimeoutDone => "timeout_done",
            ErrorType::ServerError(c) => match c {
                ServerCode::InvalidJson => "server_error.invalid_json",
                ServerCode::InvalidEvent => "server_error.invalid_event",
                ServerCode::ModelNotFound => "server_error.model_not_found",
                ServerCode::ModelNotValidated => "server_error.model_not_validated",
                ServerCode::InvalidAudio => "server_error.invalid_audio",
                ServerCode::ProcessingError => "server_error.processing_error",
                ServerCode::UnknownEvent => "server_error.unknown_event",
                ServerCode::BufferFull => "server_error.buffer_full",
                ServerCode::CommitEmpty => "server_error.commit_empty",
                ServerCode::InvalidSession => "server_error.invalid_session",
                ServerCode::InvalidState => "server_error.invalid_state",
                ServerCode::RateLimited => "server_error.rate_limited",
                ServerCode::TranscriptionFailed => "server_error.transcription_failed",
                ServerCode::InvalidApiKey => "server_error.invalid_api_key",
                ServerCode::Other => "server_error.other",
            },
            ErrorType::Protocol => "protocol",
            ErrorType::ClosedEarly => "closed_early",
            ErrorType::Truncated => "truncated",
            ErrorType::Limit => "limit",
            ErrorType::Wer => "wer",
            ErrorType::Cancelled => "cancelled",
            ErrorType::Internal => "internal",
        }
    }

    /// Map an HTTP status on the upgrade response to its kind.
    pub fn from_http_status(status: u16) -> ErrorType {
        match status {
            401 => ErrorType::Http401,
            403 => ErrorType::Http403,
            400..=499 => ErrorType::Http4xx,
            500..=599 => ErrorType::Http5xx,
            _ => ErrorType::HttpOther,
        }
    }
}

impl fmt::Display for ErrorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for ErrorType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A failed run: the label-safe kind plus a one-line human detail. The detail never contains a
/// secret (the client never formats headers into it) and never becomes a metric label.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, thiserror::Error)]
#[error("{kind}: {detail}")]
pub struct ProbeError {
    pub kind: ErrorType,
    pub detail: String,
}

impl ProbeError {
    pub fn new(kind: ErrorType, detail: impl Into<String>) -> Self {
        ProbeError {
            kind,
            detail: detail.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_unique_and_snake_case() {
        let all = ErrorType::all();
        let mut seen = std::collections::HashSet::new();
        for e in &all {
            let s = e.as_str();
            assert!(seen.insert(s), "duplicate label {s}");
            assert!(
                s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.'),
                "{s}"
            );
        }
        assert_eq!(all.len(), 34);
    }

    #[test]
    fn unknown_server_codes_stay_bounded() {
        assert_eq!(
            ServerCode::from_wire("model_not_found"),
            ServerCode::ModelNotFound
        );
        assert_eq!(
            ServerCode::from_wire("x".repeat(1000).as_str()),
            ServerCode::Other
        );
        for c in ServerCode::ALL {
            if c != ServerCode::Other {
                assert_eq!(ServerCode::from_wire(c.as_str()), c);
            }
        }
    }

    #[test]
    fn openai_codes_find_a_home() {
        for (wire, code) in [
            ("input_audio_buffer_commit_empty", ServerCode::CommitEmpty),
            ("invalid_value", ServerCode::InvalidSession),
            ("unknown_parameter", ServerCode::InvalidSession),
            ("not_supported", ServerCode::InvalidSession),
            ("invalid_state", ServerCode::InvalidState),
            ("invalid_audio_format", ServerCode::InvalidAudio),
            ("buffer_overflow", ServerCode::BufferFull),
            ("too_many_sessions", ServerCode::RateLimited),
            ("rate_limit_exceeded", ServerCode::RateLimited),
            ("transcription_error", ServerCode::TranscriptionFailed),
            ("inference_failed", ServerCode::TranscriptionFailed),
            ("invalid_payload", ServerCode::InvalidJson),
            ("unsupported_event", ServerCode::UnknownEvent),
            ("invalid_api_key", ServerCode::InvalidApiKey),
        ] {
            assert_eq!(ServerCode::from_wire(wire), code, "{wire}");
        }
    }

    #[test]
    fn http_status_classes() {
        assert_eq!(ErrorType::from_http_status(401), ErrorType::Http401);
        assert_eq!(ErrorType::from_http_status(403), ErrorType::Http403);
        assert_eq!(ErrorType::from_http_status(404), ErrorType::Http4xx);
        assert_eq!(ErrorType::from_http_status(503), ErrorType::Http5xx);
        assert_eq!(ErrorType::from_http_status(302), ErrorType::HttpOther);
    }
}
