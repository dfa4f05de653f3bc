//! Server → client events, parsed leniently: unknown types and extra fields are tolerated (newer
//! vLLM adds `logprobs`, `segments`, `session.updated`), and `error.error` may be a string (vLLM)
//! or an object `{message, code, …}` (OpenAI, older vLLM).

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::Value;

use crate::probe::timeline::Usage;

/// One server event, borrowing from the frame text where no unescaping was needed.
#[derive(Debug, PartialEq)]
pub enum ServerEvent<'a> {
    SessionCreated,
    Delta(Cow<'a, str>),
    Done {
        text: String,
        usage: Option<Usage>,
    },
    Error {
        message: String,
        /// The server's code, when it sent one (top level, or inside an error object).
        code: Option<String>,
    },
    /// Any other type (kept for debug counts only).
    Other,
}

/// Why a text frame could not be read as an event. The detail never echoes the frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("text frame is not JSON: {0}")]
    NotJson(String),
    #[error("event has no string \"type\"")]
    NoType,
    #[error("{0} event lacks a string {1:?}")]
    MissingField(&'static str, &'static str),
}

#[derive(Deserialize)]
struct Raw<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    delta: Option<Cow<'a, str>>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    usage: Option<RawUsage>,
    #[serde(default)]
    error: Option<Value>,
    #[serde(default)]
    code: Option<Value>,
}

#[derive(Deserialize)]
struct RawUsage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
    #[serde(default)]
    total_tokens: Option<u64>,
}

/// A frame that is not JSON, named by the parser's category and position only: the frame
/// itself may be large or sensitive.
pub(crate) fn not_json(e: &serde_json::Error) -> EventError {
    EventError::NotJson(format!(
        "{:?} at line {} column {}",
        e.classify(),
        e.line(),
        e.column()
    ))
}

/// Message and code of an error object (or a bare string, as vLLM sends).
pub(crate) fn error_parts(
    error: Option<Value>,
    top_code: Option<Value>,
) -> (String, Option<String>) {
    let (message, inner) = match error {
        Some(Value::String(s)) => (s, None),
        Some(Value::Object(o)) => (
            o.get("message")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            o.get("code").and_then(Value::as_str).map(str::to_owned),
        ),
        _ => (String::new(), None),
    };
    let code = top_code
        .as_ref()
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or(inner);
    (message, code)
}

/// Parse one text frame.
pub fn parse(frame: &str) -> Result<ServerEvent<'_>, EventError> {
    let raw: Raw<'_> = serde_json::from_str(frame).map_err(|e| not_json(&e))?;
    let kind = raw.kind.ok_or(EventError::NoType)?;
    Ok(match kind.as_ref() {
        "session.created" => ServerEvent::SessionCreated,
        "transcription.delta" => ServerEvent::Delta(
            raw.delta
                .ok_or(EventError::MissingField("transcription.delta", "delta"))?,
        ),
        "transcription.done" => ServerEvent::Done {
            text: raw.text.unwrap_or_default(),
            usage: raw.usage.map(|u| {
                let prompt = u.prompt_tokens.unwrap_or(0);
                let completion = u.completion_tokens.unwrap_or(0);
                Usage {
                    prompt_tokens: prompt,
                    completion_tokens: completion,
                    // Saturating: a hostile server may send counts near u64::MAX.
                    total_tokens: u.total_tokens.unwrap_or(prompt.saturating_add(completion)),
                }
            }),
        },
        "error" => {
            let (message, code) = error_parts(raw.error, raw.code);
            ServerEvent::Error { message, code }
        }
        _ => ServerEvent::Other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vllm_events() {
        assert_eq!(
            parse(r#"{"type":"session.created","id":"sess-0123456789abcdef","created":1}"#),
            Ok(ServerEvent::SessionCreated)
        );
        assert_eq!(
            parse(r#"{"type":"transcription.delta","delta":" Mary","logprobs":null}"#),
            Ok(ServerEvent::Delta(" Mary".into()))
        );
        assert_eq!(
            parse(r#"{"type":"transcription.delta","delta":""}"#),
            Ok(ServerEvent::Delta("".into()))
        );
        assert_eq!(
            parse(
                r#"{"type":"transcription.done","text":" a","usage":{"prompt_tokens":39,"total_tokens":50,"completion_tokens":11,"prompt_tokens_details":null}}"#
            ),
            Ok(ServerEvent::Done {
                text: " a".into(),
                usage: Some(Usage {
                    prompt_tokens: 39,
                    completion_tokens: 11,
                    total_tokens: 50
                })
            })
        );
        assert_eq!(
            parse(r#"{"type":"transcription.done","text":"","usage":null}"#),
            Ok(ServerEvent::Done {
                text: String::new(),
                usage: None
            })
        );
    }

    #[test]
    fn error_as_string_or_object_with_optional_code() {
        assert_eq!(
            parse(
                r#"{"type":"error","error":"The model `x` does not exist.","code":"model_not_found"}"#
            ),
            Ok(ServerEvent::Error {
                message: "The model `x` does not exist.".into(),
                code: Some("model_not_found".into())
            })
        );
        assert_eq!(
            parse(
                r#"{"type":"error","event_id":"e1","error":{"type":"invalid_request_error","code":"buffer_full","message":"full","param":null}}"#
            ),
            Ok(ServerEvent::Error {
                message: "full".into(),
                code: Some("buffer_full".into())
            })
        );
        assert_eq!(
            parse(r#"{"type":"error","error":"boom"}"#),
            Ok(ServerEvent::Error {
                message: "boom".into(),
                code: None
            })
        );
    }

    #[test]
    fn huge_usage_counts_do_not_overflow() {
        let max = u64::MAX;
        let frame = format!(
            r#"{{"type":"transcription.done","text":"","usage":{{"prompt_tokens":{max},"completion_tokens":{max}}}}}"#
        );
        match parse(&frame) {
            Ok(ServerEvent::Done { usage: Some(u), .. }) => assert_eq!(u.total_tokens, max),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_types_and_bad_shapes() {
        assert_eq!(
            parse(r#"{"type":"session.updated","session":{}}"#),
            Ok(ServerEvent::Other)
        );
        assert_eq!(parse(r#"{"delta":"x"}"#), Err(EventError::NoType));
        assert!(matches!(parse("not json"), Err(EventError::NotJson(_))));
        assert!(matches!(parse("[1,2]"), Err(EventError::NotJson(_))));
        assert_eq!(
            parse(r#"{"type":"transcription.delta"}"#),
            Err(EventError::MissingField("transcription.delta", "delta"))
        );
        assert!(matches!(
            parse(r#"{"type":"transcription.delta","delta":5}"#),
            Err(EventError::NotJson(_))
        ));
    }
}
