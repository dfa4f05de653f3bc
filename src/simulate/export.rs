//! Ground-truth records as JSON, for a client in another process (`GET /debug/records`, on only
//! with `rtprobe simulate --records N`). `Instant`s mean nothing outside the process, so every
//! time is nanoseconds since the simulator's own epoch (taken at bind): intervals between them
//! are exact on the simulator's clock, which is all a comparison with a client's intervals needs.

use std::time::Instant;

use serde_json::{Value, json};

use super::record::{ClientFrameKind, EmitKind, SessionRecord};

fn ns(epoch: Instant, at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(epoch).as_nanos()).unwrap_or(u64::MAX)
}

fn frame_kind(k: &ClientFrameKind) -> Value {
    match k {
        ClientFrameKind::SessionUpdate => json!("session_update"),
        ClientFrameKind::Append { bytes } => json!({ "append": bytes }),
        ClientFrameKind::Commit { final_ } => json!({ "commit": final_ }),
        other => json!(format!("{other:?}").to_ascii_lowercase()),
    }
}

fn emit_kind(k: &EmitKind) -> Value {
    match k {
        EmitKind::Delta { nonempty } => json!({ "delta": nonempty }),
        EmitKind::Done => json!("done"),
        EmitKind::Error { code } => json!({ "error": code }),
        other => json!(format!("{other:?}").to_ascii_lowercase()),
    }
}

/// The WebSocket sessions among `records` (those answered 101), oldest first.
pub fn records_json(records: &[SessionRecord], epoch: Instant) -> Value {
    let t = |at: Instant| ns(epoch, at);
    let sessions: Vec<Value> = records
        .iter()
        .filter(|r| r.status == Some(101))
        .map(|r| {
            json!({
                "connection": r.connection,
                "target": r.request.as_ref().map(|(_, target)| target),
                "client_frames": r.client_frames.iter().map(|f| json!({
                    "at_ns": t(f.at),
                    "kind": frame_kind(&f.kind),
                })).collect::<Vec<_>>(),
                "emissions": r.emissions.iter().map(|e| json!({
                    "utterance": e.utterance,
                    "kind": emit_kind(&e.kind),
                    "at_ns": t(e.at),
                    "deadline_ns": e.deadline.map(t),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({ "sessions": sessions })
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use super::*;
    use crate::simulate::record::{ClientFrame, Emission};

    #[test]
    fn times_are_nanoseconds_since_the_epoch() {
        let epoch = Instant::now();
        let at = |ms: u64| epoch + Duration::from_millis(ms);
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let rec = SessionRecord {
            connection: 3,
            peer,
            accepted_at: at(1),
            request: Some(("GET".into(), "/v1/realtime?stream=7".into())),
            status: Some(101),
            realtime_index: Some(0),
            fault: None,
            upgraded_at: Some(at(2)),
            session_created_at: Some(at(2)),
            client_frames: vec![
                ClientFrame {
                    at: at(5),
                    kind: ClientFrameKind::Append { bytes: Some(3200) },
                },
                ClientFrame {
                    at: at(6),
                    kind: ClientFrameKind::Commit { final_: Some(true) },
                },
            ],
            utterances: vec![],
            emissions: vec![Emission {
                utterance: 0,
                kind: EmitKind::Delta { nonempty: true },
                deadline: Some(at(300)),
                jitter_ns: 0,
                at: at(301),
            }],
            ended_at: None,
        };
        let mut plain = rec.clone();
        plain.status = Some(200);
        let v = records_json(&[plain, rec], epoch);
        assert_eq!(
            v,
            json!({"sessions": [{
                "connection": 3,
                "target": "/v1/realtime?stream=7",
                "client_frames": [
                    {"at_ns": 5_000_000, "kind": {"append": 3200}},
                    {"at_ns": 6_000_000, "kind": {"commit": true}},
                ],
                "emissions": [{
                    "utterance": 0,
                    "kind": {"delta": true},
                    "at_ns": 301_000_000,
                    "deadline_ns": 300_000_000,
                }],
            }]})
        );
    }
}
