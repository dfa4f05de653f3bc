//! Server → client events of the vLLM realtime dialect, parsed leniently: unknown event types
//! and extra fields are tolerated, `error.error` may be a string or an object (OpenAI's shape),
//! and `code` may be missing. Only a frame that is not a JSON object, or a known event whose
//! known fields have the wrong type, is a protocol error.

use serde::Deserialize;

use crate::probe::timeline::Usage;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerEvent {
    SessionCreated,
    Delta(String),
    Done {
        text: String,
        usage: Option<Usage>,
    },
    Error {
        code: Option<String>,
        message: String,
    },
    /// Any other `type` (e.g. `session.updated` on newer servers); ignored but counted.
    Other,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct EventError(String);

#[derive(Deserialize)]
struct RawUsage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
    #[serde(default)]
    total_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct RawEvent {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    delta: Option<String>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    usage: Option<RawUsage>,
    #[serde(default)]
    error: Option<serde_json::Value>,
    #[serde(default)]
    code: Option<serde_json::Value>,
}

fn short(s: &str) -> String {
    let mut out: String = s.chars().take(120).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

fn code_string(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// Parse one text frame.
pub fn parse(frame: &str) -> Result<ServerEvent, EventError> {
    let raw: RawEvent = serde_json::from_str(frame).map_err(|e| {
        EventError(format!(
            "server frame is not a JSON event object ({e}): {}",
            short(frame)
        ))
    })?;
    let kind = raw.kind.as_deref().unwrap_or("");
    Ok(match kind {
        "session.created" => ServerEvent::SessionCreated,
        "transcription.delta" => ServerEvent::Delta(raw.delta.unwrap_or_default()),
        "transcription.done" => ServerEvent::Done {
            text: raw.text.unwrap_or_default(),
            usage: raw.usage.map(|u| {
                let prompt = u.prompt_tokens.unwrap_or(0);
                let completion = u.completion_tokens.unwrap_or(0);
                Usage {
                    prompt_tokens: prompt,
                    completion_tokens: completion,
                    total_tokens: u.total_tokens.unwrap_or(prompt + completion),
                }
            }),
        },
        "error" => {
            let (message, nested_code) = match raw.error {
                Some(serde_json::Value::String(s)) => (s, None),
                Some(serde_json::Value::Object(o)) => (
                    o.get("message")
                        .and_then(|m| m.as_str())
                        .unwrap_or("")
                        .to_string(),
                    o.get("code").and_then(code_string),
                ),
                Some(other) => (other.to_string(), None),
                None => (String::new(), None),
            };
            let code = raw.code.as_ref().and_then(code_string).or(nested_code);
            ServerEvent::Error {
                code,
                message: short(&message),
            }
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
            parse(
                r#"{"type":"session.created","id":"sess-5f63bce265104dde","created":1795377832}"#
            ),
            Ok(ServerEvent::SessionCreated)
        );
        assert_eq!(
            parse(r#"{"type":"transcription.delta","delta":""}"#),
            Ok(ServerEvent::Delta(String::new()))
        );
        assert_eq!(
            parse(
                r#"{"type":"transcription.done","text":" Mary","usage":{"prompt_tokens":39,"total_tokens":150,"completion_tokens":111,"prompt_tokens_details":null,"completion_tokens_details":null}}"#
            ),
            Ok(ServerEvent::Done {
                text: " Mary".into(),
                usage: Some(Usage {
                    prompt_tokens: 39,
                    completion_tokens: 111,
                    total_tokens: 150
                })
            })
        );
        assert_eq!(
            parse(r#"{"type":"error","error":"Invalid audio data","code":"invalid_audio"}"#),
            Ok(ServerEvent::Error {
                code: Some("invalid_audio".into()),
                message: "Invalid audio data".into()
            })
        );
    }

    #[test]
    fn lenient_shapes() {
        assert_eq!(
            parse(
                r#"{"type":"error","error":{"type":"invalid_request_error","code":"bad","message":"m"}}"#
            ),
            Ok(ServerEvent::Error {
                code: Some("bad".into()),
                message: "m".into()
            })
        );
        assert_eq!(
            parse(r#"{"type":"error","error":"boom"}"#),
            Ok(ServerEvent::Error {
                code: None,
                message: "boom".into()
            })
        );
        assert_eq!(
            parse(r#"{"type":"session.updated","session":{}}"#),
            Ok(ServerEvent::Other)
        );
        assert_eq!(parse(r#"{"delta":"x"}"#), Ok(ServerEvent::Other));
        assert_eq!(
            parse(r#"{"type":"transcription.delta","delta":"a","logprobs":null,"extra":[1,2]}"#),
            Ok(ServerEvent::Delta("a".into()))
        );
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse("not json").is_err());
        assert!(parse("[1,2]").is_err());
        assert!(parse(r#"{"type":"transcription.delta","delta":5}"#).is_err());
        let long = "x".repeat(10_000);
        assert!(parse(&long).unwrap_err().0.len() < 400);
    }
}
