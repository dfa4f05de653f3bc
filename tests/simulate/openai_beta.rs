//! The simulator's OpenAI dialect over the wire for the legacy beta update: a
//! `transcription_session.update` is answered with a beta-shaped `transcription_session.updated`,
//! and a refusal is an `invalid_value` error echoing the client's `event_id`.

use crate::support;

use rtprobe::config::Dialect;
use rtprobe::simulate::SimConfig;
use support::sim::*;

async fn greeted_openai(sim: &rtprobe::simulate::SimHandle) -> Client {
    let url = format!("ws://{}/v1/realtime?intent=transcription", sim.addr());
    let mut c = Client::connect_url(&url).await;
    let (_, v, _) = c.event().await;
    assert_eq!(v["type"], "session.created", "{v}");
    c
}

#[tokio::test]
async fn beta_update_is_answered_in_kind() {
    let sim = start(SimConfig {
        dialect: Dialect::OpenAi,
        ..SimConfig::default()
    })
    .await;
    let mut c = greeted_openai(&sim).await;
    c.send(
        r#"{"type":"transcription_session.update","event_id":"u1","session":{"input_audio_format":"pcm16","input_audio_transcription":{"model":"demo-realtime","language":"en"},"turn_detection":{"type":"server_vad","silence_duration_ms":350}}}"#,
    )
    .await;
    let (_, v, _) = c.event().await;
    assert_eq!(v["type"], "transcription_session.updated", "{v}");
    let s = &v["session"];
    assert_eq!(s["object"], "realtime.transcription_session");
    assert_eq!(s["input_audio_format"], "pcm16");
    assert_eq!(s["input_audio_transcription"]["model"], "demo-realtime");
    assert_eq!(s["turn_detection"]["type"], "server_vad");
    assert_eq!(s["turn_detection"]["silence_duration_ms"], 350);

    c.send(
        r#"{"type":"transcription_session.update","event_id":"u2","session":{"input_audio_transcription":{"model":"whisper-1"}}}"#,
    )
    .await;
    let (_, v, _) = c.event().await;
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["error"]["code"], "invalid_value");
    assert_eq!(
        v["error"]["param"],
        "session.input_audio_transcription.model"
    );
    assert_eq!(v["error"]["event_id"], "u2");

    c.send(
        r#"{"type":"transcription_session.update","event_id":"u3","session":{"input_audio_format":"g711_ulaw"}}"#,
    )
    .await;
    let (_, v, _) = c.event().await;
    assert_eq!(v["error"]["code"], "invalid_value", "{v}");
    assert_eq!(v["error"]["param"], "session.input_audio_format");
    assert_eq!(v["error"]["event_id"], "u3");
    finish(c, sim).await;
}
