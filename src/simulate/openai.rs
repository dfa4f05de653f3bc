//! The simulator's OpenAI dialect: transcription sessions as docs/protocol-openai.md describes
//! them. `session.created` at once, `session.update` validated (type `transcription`, `audio/pcm`
//! at an accepted rate, the served model, `turn_detection` null or `server_vad`) and answered
//! with `session.updated` or an `error` echoing the client's `event_id`; the legacy beta
//! `transcription_session.update` (`pcm16`, i.e. 24 kHz) is validated the same way and answered
//! with a beta-shaped `transcription_session.updated`. The first append opens
//! an item; a commit (or the server VAD hearing `silence_duration_ms` of silence) closes it with
//! `input_audio_buffer.committed{item_id, previous_item_id}` chained to the previous item. Each
//! item's text comes from the same generation task and timing knobs as the vLLM dialect
//! (`generation::Generation` with `wire::Wire::OpenAi`), so injected values and faults are shared.
//! Items are transcribed serially (SGLang's and Dynamo's order).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio_tungstenite::WebSocketStream;

use super::config::{Fault, SimConfig};
use super::connection::{Connection, Dialect, Io, serve};
use super::generation::{AbortOnDrop, Item};
use super::record::{ClientFrame, ClientFrameKind, EmitKind};
use super::schedule::{SplitMix64, utterance_seed};
use super::session::{SessionCtx, decode_audio};
use super::wire::{Wire, send_text};

/// A sample at or above this magnitude is speech to the simulated VAD.
pub(crate) const VAD_THRESHOLD: i32 = 500;
/// OpenAI refuses to commit less audio than this (`input_audio_buffer_commit_empty`).
const MIN_COMMIT: Duration = Duration::from_millis(100);
/// The default server VAD silence (OpenAI's `silence_duration_ms` default).
const DEFAULT_VAD_SILENCE_MS: u64 = 500;

static EVENT_SEQ: AtomicU64 = AtomicU64::new(0);

fn event_id() -> String {
    format!("event_{:012x}", EVENT_SEQ.fetch_add(1, Ordering::Relaxed))
}

pub(crate) fn delta_json(item_id: &str, delta: &str) -> String {
    json!({
        "type": "conversation.item.input_audio_transcription.delta",
        "event_id": event_id(),
        "item_id": item_id,
        "content_index": 0,
        "delta": delta,
    })
    .to_string()
}

pub(crate) fn completed_json(item_id: &str, text: &str, prompt: u32, completion: u64) -> String {
    let prompt = u64::from(prompt);
    json!({
        "type": "conversation.item.input_audio_transcription.completed",
        "event_id": event_id(),
        "item_id": item_id,
        "content_index": 0,
        "transcript": text,
        "usage": {
            "type": "tokens",
            "input_tokens": prompt,
            "output_tokens": completion,
            "total_tokens": prompt + completion,
            "input_token_details": {"audio_tokens": prompt, "text_tokens": 0},
        },
    })
    .to_string()
}

pub(crate) fn failed_json(item_id: &str, message: &str) -> String {
    json!({
        "type": "conversation.item.input_audio_transcription.failed",
        "event_id": event_id(),
        "item_id": item_id,
        "content_index": 0,
        "error": {"type": "transcription_error", "code": "transcription_error", "message": message, "param": null},
    })
    .to_string()
}

/// An `error` event; `client_event_id` echoes the refused event's `event_id`.
pub(crate) fn error_json(
    code: &str,
    message: &str,
    param: Option<&str>,
    client_event_id: Option<&str>,
) -> String {
    json!({
        "type": "error",
        "event_id": event_id(),
        "error": {
            "type": "invalid_request_error",
            "code": code,
            "message": message,
            "param": param,
            "event_id": client_event_id,
        },
    })
    .to_string()
}

/// Who ends a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Turn {
    Manual,
    ServerVad { silence_ms: u64 },
}

/// The session's effective configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Settings {
    pub(crate) rate: u32,
    pub(crate) model: Option<String>,
    pub(crate) turn: Turn,
}

impl Default for Settings {
    /// OpenAI's defaults: 24 kHz PCM, server VAD on.
    fn default() -> Self {
        Settings {
            rate: 24_000,
            model: None,
            turn: Turn::ServerVad {
                silence_ms: DEFAULT_VAD_SILENCE_MS,
            },
        }
    }
}

/// The session's `turn_detection` and transcription settings as both shapes report them.
fn turn_and_transcription(s: &Settings) -> (Value, Value) {
    let turn_detection = match s.turn {
        Turn::Manual => Value::Null,
        Turn::ServerVad { silence_ms } => json!({
            "type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
            "silence_duration_ms": silence_ms,
        }),
    };
    let transcription = match &s.model {
        Some(m) => json!({"model": m, "language": null, "prompt": ""}),
        None => Value::Null,
    };
    (turn_detection, transcription)
}

fn session_json(kind: &str, id: &str, s: &Settings) -> String {
    let (turn_detection, transcription) = turn_and_transcription(s);
    json!({
        "type": kind,
        "event_id": event_id(),
        "session": {
            "type": "transcription",
            "object": "realtime.transcription_session",
            "id": id,
            "audio": {"input": {
                "format": {"type": "audio/pcm", "rate": s.rate},
                "transcription": transcription,
                "turn_detection": turn_detection,
                "noise_reduction": null,
            }},
            "include": null,
        },
    })
    .to_string()
}

/// The legacy beta transcription session object (`transcription_session.updated`).
fn beta_session_json(kind: &str, id: &str, s: &Settings) -> String {
    let (turn_detection, transcription) = turn_and_transcription(s);
    json!({
        "type": kind,
        "event_id": event_id(),
        "session": {
            "object": "realtime.transcription_session",
            "id": id,
            "input_audio_format": "pcm16",
            "input_audio_transcription": transcription,
            "turn_detection": turn_detection,
            "input_audio_noise_reduction": null,
            "include": null,
        },
    })
    .to_string()
}

/// A refusal: (code, message, param).
type Refusal = (&'static str, String, Option<&'static str>);

fn invalid(message: String, param: &'static str) -> Refusal {
    ("invalid_value", message, Some(param))
}

/// The `session` object of either shape of update.
fn session_of(
    event: &serde_json::Map<String, Value>,
) -> Result<&serde_json::Map<String, Value>, Refusal> {
    match event.get("session") {
        Some(Value::Object(session)) => Ok(session),
        _ => Err(invalid(
            "Missing required parameter: 'session'.".into(),
            "session",
        )),
    }
}

/// A transcription update on a connection opened without `?intent=transcription`.
fn conversation_session(param: &'static str) -> Refusal {
    invalid(
        "This is a realtime conversation session; connect with ?intent=transcription for a transcription session.".into(),
        param,
    )
}

/// The transcription model of either shape of update, checked against the served one.
fn check_model(
    transcription: &Value,
    cfg: &SimConfig,
    fault: Fault,
    param: &'static str,
) -> Result<String, Refusal> {
    let model = transcription
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if fault == Fault::RejectModel || model != cfg.model {
        return Err(invalid(
            format!(
                "Invalid model {model:?}: this server transcribes with {:?}.",
                cfg.model
            ),
            param,
        ));
    }
    Ok(model.to_string())
}

/// `turn_detection` of either shape of update: absent keeps `current`, null is manual.
fn check_turn(td: Option<&Value>, current: Turn, param: &'static str) -> Result<Turn, Refusal> {
    match td {
        None => Ok(current),
        Some(Value::Null) => Ok(Turn::Manual),
        Some(td) if td.get("type").and_then(Value::as_str) == Some("server_vad") => {
            let silence_ms = td
                .get("silence_duration_ms")
                .and_then(Value::as_u64)
                .unwrap_or(DEFAULT_VAD_SILENCE_MS);
            Ok(Turn::ServerVad { silence_ms })
        }
        Some(_) => Err(invalid(
            "Only null or server_vad turn detection is supported by this server.".into(),
            param,
        )),
    }
}

/// What both shapes of update share: the transcription model (absent or null keeps the
/// current one) and the turn detection, with the shape's parameter paths for refusals.
fn model_and_turn(
    mut next: Settings,
    (transcription, turn_detection): (Option<&Value>, Option<&Value>),
    cfg: &SimConfig,
    fault: Fault,
    (model_param, turn_param): (&'static str, &'static str),
) -> Result<Settings, Refusal> {
    if let Some(t) = transcription.filter(|t| !t.is_null()) {
        next.model = Some(check_model(t, cfg, fault, model_param)?);
    }
    next.turn = check_turn(turn_detection, next.turn, turn_param)?;
    Ok(next)
}

/// Validate a legacy beta `transcription_session.update`: `pcm16` (24 kHz, which the server
/// must accept), the served model, `turn_detection` as in GA. Fields left out keep their value.
pub(crate) fn validate_beta_update(
    event: &serde_json::Map<String, Value>,
    current: &Settings,
    cfg: &SimConfig,
    intent_transcription: bool,
    fault: Fault,
) -> Result<Settings, Refusal> {
    let session = session_of(event)?;
    if !intent_transcription {
        return Err(conversation_session("type"));
    }
    let format = session.get("input_audio_format").and_then(Value::as_str);
    if format.is_some_and(|f| f != "pcm16") || !cfg.openai_rates.contains(&24_000) {
        return Err(invalid(
            format!(
                "Invalid input_audio_format {format:?}: this server takes 'pcm16' (24000 Hz) only when 24000 is among its rates {:?}.",
                cfg.openai_rates
            ),
            "session.input_audio_format",
        ));
    }
    let mut next = current.clone();
    next.rate = 24_000;
    model_and_turn(
        next,
        (
            session.get("input_audio_transcription"),
            session.get("turn_detection"),
        ),
        cfg,
        fault,
        (
            "session.input_audio_transcription.model",
            "session.turn_detection",
        ),
    )
}

/// Validate a `session.update` against the served model and accepted rates; fields left out
/// keep their current value (as OpenAI does).
pub(crate) fn validate_update(
    event: &serde_json::Map<String, Value>,
    current: &Settings,
    cfg: &SimConfig,
    intent_transcription: bool,
    fault: Fault,
) -> Result<Settings, Refusal> {
    let session = session_of(event)?;
    match session.get("type").and_then(Value::as_str) {
        Some("transcription") if intent_transcription => {}
        Some("transcription") => {
            return Err(conversation_session("session.type"));
        }
        other => {
            return Err(invalid(
                format!("Invalid value: {other:?}. Supported values are: 'transcription'."),
                "session.type",
            ));
        }
    }
    let mut next = current.clone();
    let input = session
        .get("audio")
        .and_then(|a| a.get("input"))
        .and_then(Value::as_object);
    let Some(input) = input else {
        return Ok(next);
    };
    if let Some(format) = input.get("format") {
        if format.get("type").and_then(Value::as_str) != Some("audio/pcm") {
            return Err(invalid(
                "Only 'audio/pcm' is supported by this server.".into(),
                "session.audio.input.format.type",
            ));
        }
        let rate = format.get("rate").and_then(Value::as_u64).unwrap_or(24_000);
        match u32::try_from(rate) {
            Ok(r) if cfg.openai_rates.contains(&r) => next.rate = r,
            _ => {
                return Err(invalid(
                    format!(
                        "Invalid rate {rate}: supported rates are {:?}.",
                        cfg.openai_rates
                    ),
                    "session.audio.input.format.rate",
                ));
            }
        }
    }
    model_and_turn(
        next,
        (input.get("transcription"), input.get("turn_detection")),
        cfg,
        fault,
        (
            "session.audio.input.transcription.model",
            "session.audio.input.turn_detection",
        ),
    )
}

/// The simulated VAD of one item: speech is a sample at or above `VAD_THRESHOLD`; the turn
/// ends after `silence` samples below it that follow speech.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Vad {
    speaking: bool,
    started: bool,
    silence_run: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VadEvent {
    /// Speech began at this sample of the item's audio.
    Started(u64),
    /// Speech ended: `silence` quiet samples were heard; the sample where the silence began.
    Stopped(u64),
}

impl Vad {
    /// Feed `samples` that start at sample `offset` of the item. At most one `Started` and one
    /// `Stopped`; samples after a `Stopped` are the caller's to discard.
    pub(crate) fn feed(&mut self, samples: &[i16], offset: u64, silence: u64) -> Vec<VadEvent> {
        let mut out = Vec::new();
        for (i, s) in samples.iter().enumerate() {
            let at = offset + i as u64;
            if i32::from(*s).abs() >= VAD_THRESHOLD {
                if !self.started {
                    self.started = true;
                    out.push(VadEvent::Started(at));
                }
                self.speaking = true;
                self.silence_run = 0;
            } else if self.speaking {
                self.silence_run += 1;
                if self.silence_run >= silence {
                    self.speaking = false;
                    out.push(VadEvent::Stopped(at + 1 - self.silence_run));
                    return out;
                }
            }
        }
        out
    }
}

/// The item that is receiving audio.
struct OpenItem {
    id: String,
    samples: u64,
    vad: Vad,
}

fn pcm(bytes: &[u8]) -> Vec<i16> {
    bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

fn ms(samples: u64, rate: u32) -> u64 {
    samples * 1000 / u64::from(rate.max(1))
}

struct Session<S> {
    conn: Connection<S>,
    intent_transcription: bool,
    settings: Settings,
    ids: SplitMix64,
    item: Option<OpenItem>,
    previous: Option<String>,
    generations: Vec<AbortOnDrop>,
}

impl<S: Io> Session<S> {
    async fn refuse(&self, (code, message, param): Refusal, client_event_id: Option<&str>) {
        let frame = error_json(code, &message, param, client_event_id);
        let kind = EmitKind::Error {
            code: code.to_string(),
        };
        self.conn.emit(frame, kind).await;
    }

    /// Open an item at the first append after the previous commit and start its generation.
    fn open_item(&mut self, at: Instant) {
        let id = format!("item_{:016x}", self.ids.next_u64());
        let wire = Wire::OpenAi {
            item_id: id.clone(),
        };
        self.generations.push(self.conn.start_generation(at, wire));
        self.item = Some(OpenItem {
            id,
            samples: 0,
            vad: Vad::default(),
        });
    }

    /// Close the open item: `committed`, chained to the previous one; `end` is the instant the
    /// generation counts the end of audio from.
    async fn commit(&mut self, end: Instant) {
        let Some(item) = self.item.take() else { return };
        let _ = self.conn.queue_tx.send(Item::End { at: end });
        let frame = json!({
            "type": "input_audio_buffer.committed",
            "event_id": event_id(),
            "previous_item_id": self.previous,
            "item_id": item.id,
        })
        .to_string();
        self.conn.emit(frame, EmitKind::Committed).await;
        self.previous = Some(item.id);
    }
}

impl<S: Io> Dialect for Session<S> {
    fn stop(&mut self) {
        self.generations.clear();
    }

    type Io = S;

    fn conn(&self) -> &Connection<S> {
        &self.conn
    }

    async fn on_binary(&mut self) -> bool {
        let r = (
            "invalid_payload",
            "Binary frames are not supported.".to_string(),
            None,
        );
        self.refuse(r, None).await;
        true
    }

    fn on_close(&mut self, _at: Instant) {
        self.generations.clear();
    }

    async fn on_text(&mut self, text: &str, at: Instant) {
        let note = |kind: ClientFrameKind| {
            self.conn
                .record
                .update(|r| r.client_frames.push(ClientFrame { at, kind }))
        };
        let event = match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(event)) => event,
            unreadable => {
                let (kind, message) = match unreadable {
                    Err(_) => (ClientFrameKind::InvalidJson, "The event is not valid JSON."),
                    Ok(_) => (
                        ClientFrameKind::NotObject,
                        "The event must be a JSON object.",
                    ),
                };
                note(kind);
                return self
                    .refuse(("invalid_json", message.into(), None), None)
                    .await;
            }
        };
        let client_id = event.get("event_id").and_then(Value::as_str);
        match event.get("type").and_then(Value::as_str) {
            Some(kind @ ("session.update" | "transcription_session.update")) => {
                note(ClientFrameKind::SessionUpdate);
                let beta = kind == "transcription_session.update";
                let validate = if beta {
                    validate_beta_update
                } else {
                    validate_update
                };
                match validate(
                    &event,
                    &self.settings,
                    &self.conn.cfg,
                    self.intent_transcription,
                    self.conn.fault,
                ) {
                    Ok(next) => {
                        self.settings = next;
                        let id = format!("sess_{:016x}", self.conn.realtime_index);
                        let frame = if beta {
                            beta_session_json("transcription_session.updated", &id, &self.settings)
                        } else {
                            session_json("session.updated", &id, &self.settings)
                        };
                        self.conn.emit(frame, EmitKind::SessionUpdated).await;
                    }
                    Err(r) => self.refuse(r, client_id).await,
                }
            }
            Some("input_audio_buffer.append") => {
                let bytes = event
                    .get("audio")
                    .and_then(Value::as_str)
                    .and_then(decode_audio)
                    .filter(|b| !b.is_empty() && b.len() % 2 == 0);
                note(ClientFrameKind::Append {
                    bytes: bytes.as_ref().map(Vec::len),
                });
                let Some(bytes) = bytes else {
                    let r = (
                        "invalid_audio_format",
                        "Audio must be base64 PCM16 with an even, non-zero byte count.".to_string(),
                        Some("audio"),
                    );
                    return self.refuse(r, client_id).await;
                };
                if self.item.is_none() {
                    self.open_item(at);
                }
                let _ = self.conn.queue_tx.send(Item::Audio { at });
                let rate = self.settings.rate;
                let Some(item) = self.item.as_mut() else {
                    return;
                };
                let offset = item.samples;
                item.samples += (bytes.len() / 2) as u64;
                let Turn::ServerVad { silence_ms } = self.settings.turn else {
                    return;
                };
                // Samples are only looked at by the VAD.
                let samples = pcm(&bytes);
                let silence = silence_ms * u64::from(rate) / 1000;
                let events = item.vad.feed(&samples, offset, silence.max(1));
                let id = item.id.clone();
                for e in events {
                    let (kind, key, s, emit) = match e {
                        VadEvent::Started(s) => (
                            "input_audio_buffer.speech_started",
                            "audio_start_ms",
                            s,
                            EmitKind::SpeechStarted,
                        ),
                        VadEvent::Stopped(s) => (
                            "input_audio_buffer.speech_stopped",
                            "audio_end_ms",
                            s,
                            EmitKind::SpeechStopped,
                        ),
                    };
                    let stopped = emit == EmitKind::SpeechStopped;
                    let mut frame = json!({"type": kind, "event_id": event_id(), "item_id": id});
                    frame[key] = ms(s, rate).into();
                    let sent = self.conn.emit(frame.to_string(), emit).await;
                    if stopped {
                        // The server's turn ends when it says so: the commit counts from here.
                        self.commit(sent.unwrap_or(at)).await;
                    }
                }
            }
            Some("input_audio_buffer.commit") => {
                note(ClientFrameKind::Commit { final_: None });
                let min = MIN_COMMIT.as_secs_f64() * f64::from(self.settings.rate);
                let enough = self.item.as_ref().is_some_and(|i| i.samples as f64 >= min);
                if !enough {
                    let buffered = self
                        .item
                        .as_ref()
                        .map_or(0, |i| ms(i.samples, self.settings.rate));
                    let r = (
                        "input_audio_buffer_commit_empty",
                        format!(
                            "Error committing input audio buffer: buffer too small. Expected at least 100ms of audio, but buffer only has {buffered}.00ms of audio."
                        ),
                        None,
                    );
                    return self.refuse(r, client_id).await;
                }
                self.commit(at).await;
            }
            Some("input_audio_buffer.clear") => {
                note(ClientFrameKind::Clear);
                if self.item.take().is_some() {
                    // The cleared item's generation would wait forever for its end.
                    self.generations.pop();
                }
                let frame = json!({"type": "input_audio_buffer.cleared", "event_id": event_id()})
                    .to_string();
                let _ = send_text(&self.conn.sink, frame).await;
            }
            other => {
                note(ClientFrameKind::Unknown(other.map(str::to_owned)));
                let r = (
                    "unknown_event",
                    format!("Unknown event type: {}", other.unwrap_or("None")),
                    Some("type"),
                );
                self.refuse(r, client_id).await;
            }
        }
    }
}

/// Serve one upgraded connection in the OpenAI dialect.
pub(crate) async fn run<S: Io>(ws: WebSocketStream<S>, mut ctx: SessionCtx) {
    let Some((conn, stream, ctl_rx)) = Connection::open(ws, &mut ctx).await else {
        return;
    };
    let mut s = Session {
        conn,
        intent_transcription: ctx.intent_transcription,
        settings: Settings::default(),
        ids: SplitMix64::new(utterance_seed(ctx.cfg.seed, ctx.realtime_index, u32::MAX)),
        item: None,
        previous: None,
        generations: Vec::new(),
    };
    let id = format!("sess_{:016x}", s.ids.next_u64());
    if !s
        .conn
        .hello(session_json("session.created", &id, &s.settings))
        .await
    {
        return;
    }
    serve(stream, ctx, ctl_rx, s).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(v: Value) -> serde_json::Map<String, Value> {
        match v {
            Value::Object(o) => o,
            _ => unreachable!(),
        }
    }

    fn ga(rate: u32, model: &str, td: Value) -> serde_json::Map<String, Value> {
        update(
            json!({"type":"session.update","session":{"type":"transcription","audio":{"input":{
            "format":{"type":"audio/pcm","rate":rate},"transcription":{"model":model},"turn_detection":td}}}}),
        )
    }

    /// What an accepted update for the served model leaves.
    fn served(rate: u32, turn: Turn) -> Result<Settings, Refusal> {
        Ok(Settings {
            rate,
            model: Some("demo-realtime".into()),
            turn,
        })
    }

    #[test]
    fn updates_are_validated() {
        let cfg = SimConfig::default();
        let cur = Settings::default();
        let accept = |frame| validate_update(&frame, &cur, &cfg, true, Fault::None);
        assert_eq!(
            accept(ga(24_000, "demo-realtime", Value::Null)),
            served(24_000, Turn::Manual)
        );
        let vad = json!({"type":"server_vad","silence_duration_ms":300});
        assert_eq!(
            accept(ga(24_000, "demo-realtime", vad)),
            served(24_000, Turn::ServerVad { silence_ms: 300 })
        );
        // Each refusal names the field at fault.
        let plain = |rate, model| ga(rate, model, Value::Null);
        let (m, model) = ("demo-realtime", "session.audio.input.transcription.model");
        for (frame, intent, fault, want) in [
            (
                plain(16_000, m),
                true,
                Fault::None,
                "session.audio.input.format.rate",
            ),
            (plain(24_000, "other"), true, Fault::None, model),
            (plain(24_000, m), true, Fault::RejectModel, model),
            // No ?intent=transcription.
            (plain(24_000, m), false, Fault::None, "session.type"),
            // A vLLM-shaped update.
            (
                update(json!({"type":"session.update","model":"m"})),
                true,
                Fault::None,
                "session",
            ),
        ] {
            let refused = validate_update(&frame, &cur, &cfg, intent, fault);
            assert_eq!(refused.unwrap_err().2, Some(want), "{frame:?} {fault:?}");
        }
        let sixteen = SimConfig {
            openai_rates: vec![16_000, 24_000],
            ..SimConfig::default()
        };
        assert_eq!(
            validate_update(
                &ga(16_000, "demo-realtime", Value::Null),
                &cur,
                &sixteen,
                true,
                Fault::None
            )
            .unwrap()
            .rate,
            16_000
        );
    }

    fn beta(session: Value) -> serde_json::Map<String, Value> {
        update(json!({"type":"transcription_session.update","event_id":"u1","session":session}))
    }

    #[test]
    fn beta_updates_are_validated() {
        let cfg = SimConfig::default();
        // The session starts at a rate other than 24 kHz to show the update sets it.
        let cur = Settings {
            rate: 16_000,
            ..Settings::default()
        };
        let accept = |frame| validate_beta_update(&frame, &cur, &cfg, true, Fault::None);
        assert_eq!(
            accept(beta(json!({"input_audio_format":"pcm16",
                "input_audio_transcription":{"model":"demo-realtime","language":"en"},
                "turn_detection":null}))),
            served(24_000, Turn::Manual)
        );
        assert_eq!(
            accept(beta(
                json!({"input_audio_transcription":{"model":"demo-realtime"},
                "turn_detection":{"type":"server_vad","silence_duration_ms":250}}),
            )),
            served(24_000, Turn::ServerVad { silence_ms: 250 })
        );
        let m = "demo-realtime";
        let body = |format: &str, model: &str, td: Value| {
            beta(json!({"input_audio_format":format,
                "input_audio_transcription":{"model":model},"turn_detection":td}))
        };
        let (fmt, model) = (
            "session.input_audio_format",
            "session.input_audio_transcription.model",
        );
        let no_24k = SimConfig {
            openai_rates: vec![16_000],
            ..SimConfig::default()
        };
        for (frame, cfg, intent, fault, want) in [
            (
                body("g711_ulaw", m, Value::Null),
                &cfg,
                true,
                Fault::None,
                fmt,
            ),
            (
                body("pcm16", m, Value::Null),
                &no_24k,
                true,
                Fault::None,
                fmt,
            ),
            (
                body("pcm16", "other", Value::Null),
                &cfg,
                true,
                Fault::None,
                model,
            ),
            (
                body("pcm16", m, Value::Null),
                &cfg,
                true,
                Fault::RejectModel,
                model,
            ),
            (
                body("pcm16", m, json!({"type":"semantic_vad"})),
                &cfg,
                true,
                Fault::None,
                "session.turn_detection",
            ),
            (
                body("pcm16", m, Value::Null),
                &cfg,
                false,
                Fault::None,
                "type",
            ),
            (
                update(json!({"type":"transcription_session.update"})),
                &cfg,
                true,
                Fault::None,
                "session",
            ),
        ] {
            let refused = validate_beta_update(&frame, &cur, cfg, intent, fault).unwrap_err();
            assert_eq!(refused.0, "invalid_value");
            assert_eq!(refused.2, Some(want), "{frame:?} {fault:?}");
        }
    }

    #[test]
    fn beta_reply_is_a_beta_session() {
        let s = Settings {
            rate: 24_000,
            model: Some("m".into()),
            turn: Turn::Manual,
        };
        let v: Value = serde_json::from_str(&beta_session_json(
            "transcription_session.updated",
            "sess_1",
            &s,
        ))
        .unwrap();
        assert_eq!(v["type"], "transcription_session.updated");
        let session = &v["session"];
        assert_eq!(session["object"], "realtime.transcription_session");
        assert_eq!(session["id"], "sess_1");
        assert_eq!(session["input_audio_format"], "pcm16");
        assert_eq!(session["input_audio_transcription"]["model"], "m");
        assert!(session["turn_detection"].is_null());
        assert!(session.get("audio").is_none(), "no GA fields");
    }

    #[test]
    fn vad_finds_speech_and_the_silence_after_it() {
        let mut v = Vad::default();
        let mut audio = vec![0i16; 100];
        audio.extend(std::iter::repeat_n(1000i16, 50));
        audio.extend(std::iter::repeat_n(10i16, 30));
        assert_eq!(v.feed(&audio, 0, 40), vec![VadEvent::Started(100)]);
        assert_eq!(v.feed(&[0; 5], 180, 40), vec![]);
        assert_eq!(v.feed(&[0; 20], 185, 40), vec![VadEvent::Stopped(150)]);
    }

    #[test]
    fn wire_shapes() {
        let c: Value = serde_json::from_str(&completed_json("item_1", " a b", 39, 2)).unwrap();
        assert_eq!(
            c["type"],
            "conversation.item.input_audio_transcription.completed"
        );
        assert_eq!(c["usage"]["total_tokens"], 41);
        assert_eq!(c["usage"]["type"], "tokens");
        let e: Value =
            serde_json::from_str(&error_json("invalid_value", "m", Some("p"), Some("c1"))).unwrap();
        assert_eq!(e["error"]["event_id"], "c1");
        assert_eq!(e["error"]["param"], "p");
        assert!(e["event_id"].as_str().unwrap().starts_with("event_"));
    }
}
