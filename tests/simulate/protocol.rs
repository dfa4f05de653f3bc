//! The simulator speaks vLLM 0.33's realtime protocol: shapes, the validated flag, the FIFO
//! queue semantics, error codes and messages over the wire, HTTP routes, auth and TLS.

use crate::support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::SinkExt;
use rtprobe::config::Secret;
use rtprobe::simulate::{ClientFrameKind, SimConfig, SimHandle, TlsFiles};
use support::sim::*;
use tokio_tungstenite::tungstenite::Message;

const FULL: &str = " Mary had a little lamb, its fleece was white as snow.";

/// The quick simulator and a client past `session.update`.
async fn ready() -> (SimHandle, Client) {
    let sim = start(quick()).await;
    let c = Client::ready(sim.addr()).await;
    (sim, c)
}

/// [`quick`] with the API key `s3cret`.
fn guarded() -> SimConfig {
    SimConfig {
        api_key: Some(Secret::new("s3cret")),
        ..quick()
    }
}

fn quick() -> SimConfig {
    SimConfig {
        first_text_delay: Duration::from_millis(20),
        token_interval: Duration::from_millis(5),
        tail_delay: Duration::from_millis(10),
        done_delay: Duration::from_millis(5),
        ..SimConfig::default()
    }
}

#[tokio::test]
async fn session_created_comes_first_with_the_vllm_shape() {
    let sim = start(quick()).await;
    let mut c = Client::connect(sim.addr()).await;
    let (_, v, raw) = c.event().await;
    assert!(
        raw.starts_with(r#"{"type":"session.created","id":"sess-"#),
        "{raw}"
    );
    let id = v["id"].as_str().unwrap();
    let hex = id.strip_prefix("sess-").unwrap();
    assert_eq!(hex.len(), 16);
    assert!(
        hex.chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(now.abs_diff(v["created"].as_u64().unwrap()) <= 2);
    assert_eq!(v.as_object().unwrap().len(), 3);
    finish(c, sim).await;
}

#[tokio::test]
async fn error_codes_and_messages_over_the_wire() {
    let sim = start(quick()).await;
    let mut c = Client::greeted(sim.addr()).await;
    c.send("{not json").await;
    c.expect_error("Invalid JSON", "invalid_json").await;
    c.send("[1]").await;
    c.expect_error("'list' object has no attribute 'get'", "processing_error")
        .await;
    c.send(r#"{"type":"input_audio_buffer.clear"}"#).await;
    c.expect_error(
        "Unknown event type: input_audio_buffer.clear",
        "unknown_event",
    )
    .await;
    c.send(START).await;
    c.expect_error(
        "Model not validated. Make sure to validate the model by sending a session.update event.",
        "model_not_validated",
    )
    .await;
    c.send(r#"{"type":"session.update","session":{"model":"demo-realtime"}}"#)
        .await;
    c.expect_error("Missing required field: model", "invalid_event")
        .await;
    c.send(r#"{"type":"session.update","model":"nope"}"#).await;
    c.expect_error("The model `nope` does not exist.", "model_not_found")
        .await;
    c.send(r#"{"type":"input_audio_buffer.append","audio":"AAA"}"#)
        .await;
    c.expect_error("Invalid audio data", "invalid_audio").await;
    c.send(r#"{"type":"input_audio_buffer.append","audio":"AAAA"}"#)
        .await;
    c.expect_error("Invalid audio data", "invalid_audio").await;
    c.send(r#"{"type":"input_audio_buffer.append"}"#).await;
    let (_, v, _) = c.event().await;
    assert_eq!(v["code"], "processing_error");
    c.send(UPDATE).await;
    c.send(r#"{"type":"input_audio_buffer.commit","final":null}"#)
        .await;
    let (_, v, raw) = c.event().await;
    assert_eq!(v["code"], "processing_error", "{raw}");
    assert!(raw.starts_with(r#"{"type":"error","error":"#), "{raw}");
    // Every error left the session usable: a full utterance still works.
    c.send(UPDATE).await;
    c.expect_silence(Duration::from_millis(100)).await;
    let (_, _, done) = c.utterance(3).await;
    assert_eq!(done["text"], FULL);
    finish(c, sim).await;
}

#[tokio::test]
async fn utterance_then_no_close_after_done() {
    let sim = start(quick()).await;
    let mut c =
        Client::connect_url(&format!("ws://{}/v1/realtime?model=x&intent=y", sim.addr())).await;
    c.hello().await;
    c.send(UPDATE).await;
    let (deltas, _, done) = c.utterance(5).await;
    let text: String = deltas.iter().map(|(_, d)| d.as_str()).collect();
    assert_eq!(text, FULL);
    assert_eq!(deltas.len(), 11);
    assert!(deltas.iter().all(|(_, d)| d.starts_with(' ')));
    assert_eq!(done["text"], FULL);
    assert_eq!(done["usage"]["prompt_tokens"], 39);
    assert_eq!(done["usage"]["completion_tokens"], 11);
    assert_eq!(done["usage"]["total_tokens"], 50);
    assert!(done["usage"]["prompt_tokens_details"].is_null());
    // The server never closes after done: it waits for the client.
    c.expect_silence(Duration::from_millis(300)).await;
    finish(c, sim).await;
}

#[tokio::test]
async fn done_json_is_byte_exact() {
    let sim = start(SimConfig {
        transcript: "hi there".into(),
        empty_deltas_per_word: 2,
        ..quick()
    })
    .await;
    let mut c = Client::ready(sim.addr()).await;
    c.send_all(&[START, &append(1600), END]).await;
    let mut raws = Vec::new();
    loop {
        let (_, v, raw) = c.event().await;
        raws.push(raw);
        if v["type"] == "transcription.done" {
            break;
        }
    }
    assert_eq!(
        raws,
        [
            r#"{"type":"transcription.delta","delta":" hi"}"#,
            r#"{"type":"transcription.delta","delta":""}"#,
            r#"{"type":"transcription.delta","delta":""}"#,
            r#"{"type":"transcription.delta","delta":" there"}"#,
            r#"{"type":"transcription.done","text":" hi there","usage":{"prompt_tokens":39,"total_tokens":43,"completion_tokens":4,"prompt_tokens_details":null,"completion_tokens_details":null}}"#,
        ]
    );
    finish(c, sim).await;
}

#[tokio::test]
async fn second_start_is_ignored() {
    let (sim, mut c) = ready().await;
    c.send_all(&[START, &append(1600), START, &append(1600), END])
        .await;
    let (_, _, done) = c.until_done().await;
    assert_eq!(done["text"], FULL);
    c.expect_silence(Duration::from_millis(300)).await;
    let rec = &sim.records()[0];
    assert_eq!(rec.utterances.len(), 1, "one generation only");
    finish(c, sim).await;
}

#[tokio::test]
async fn end_before_start_ends_the_next_generation_at_once() {
    let (sim, mut c) = ready().await;
    c.send(END).await; // the pitfall: END sits in the queue
    c.expect_silence(Duration::from_millis(100)).await;
    c.send(START).await;
    let (deltas, _, done) = c.until_done().await;
    assert!(deltas.is_empty());
    assert_eq!(done["text"], "");
    assert_eq!(done["usage"]["completion_tokens"], 0);
    assert_eq!(done["usage"]["total_tokens"], 39);
    finish(c, sim).await;
}

#[tokio::test]
async fn queue_is_drained_after_done() {
    let (sim, mut c) = ready().await;
    c.send_all(&[START, &append(1600), END]).await;
    // Audio for a next utterance sent before done: it sits behind END and is discarded.
    for _ in 0..3 {
        c.send(&append(1600)).await;
    }
    let (_, _, done) = c.until_done().await;
    assert_eq!(done["text"], FULL);
    c.send_all(&[START, END]).await;
    let (deltas, _, done) = c.until_done().await;
    assert!(deltas.is_empty(), "the queued audio was drained");
    assert_eq!(done["text"], "");
    finish(c, sim).await;
}

#[tokio::test]
async fn two_utterances_on_one_connection() {
    let (sim, mut c) = ready().await;
    let (_, _, d1) = c.utterance(2).await;
    let (_, _, d2) = c.utterance(2).await;
    assert_eq!(d1["text"], FULL);
    assert_eq!(d2["text"], FULL);
    finish(c, sim).await;
}

#[tokio::test]
async fn records_hold_both_utterances_and_client_frames() {
    let sim = start(quick()).await;
    let store = sim.record_store();
    let mut c = Client::ready(sim.addr()).await;
    c.utterance(2).await;
    c.utterance(1).await;
    finish(c, sim).await;
    let recs = store.realtime_sessions();
    assert_eq!(recs.len(), 1);
    let r = &recs[0];
    assert_eq!(r.utterances.len(), 2);
    assert_eq!(r.deltas(0).len(), 11);
    assert_eq!(r.deltas(1).len(), 11);
    assert!(r.done_at(0).unwrap() < r.done_at(1).unwrap());
    let kinds: Vec<&ClientFrameKind> = r.client_frames.iter().map(|f| &f.kind).collect();
    assert_eq!(kinds[0], &ClientFrameKind::SessionUpdate);
    assert_eq!(
        kinds[1],
        &ClientFrameKind::Commit {
            final_: Some(false)
        }
    );
    assert_eq!(kinds[2], &ClientFrameKind::Append { bytes: Some(3200) });
    assert_eq!(kinds.last().unwrap(), &&ClientFrameKind::Close);
    assert!(r.session_created_at.unwrap() >= r.upgraded_at.unwrap());
    assert!(r.ended_at.is_some());
}

#[tokio::test]
async fn binary_frame_drops_tcp_without_close() {
    let sim = start(quick()).await;
    let mut c = Client::greeted(sim.addr()).await;
    c.ws.send(Message::Binary(vec![1, 2, 3].into()))
        .await
        .unwrap();
    let got = c.next(WAIT).await;
    assert!(is_reset(&got), "{got:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn oversized_inbound_message_is_closed_with_1009() {
    let sim = start(quick()).await;
    let mut c = Client::greeted(sim.addr()).await;
    let big = format!(
        r#"{{"type":"input_audio_buffer.append","audio":"{}"}}"#,
        "A".repeat(17 * 1024 * 1024)
    );
    let _ = c.ws.send(Message::Text(big.into())).await;
    c.expect_close(1009).await;
    sim.shutdown().await;
}

#[tokio::test]
async fn http_routes() {
    let sim = start(quick()).await;
    let health = raw_http(sim.addr(), "GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(health.starts_with("HTTP/1.1 200 "), "{health}");
    assert!(health.ends_with("\r\n\r\n"), "empty body: {health}");
    let models = raw_http(sim.addr(), "GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(models.starts_with("HTTP/1.1 200 "), "{models}");
    let body = models.split("\r\n\r\n").nth(1).unwrap();
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][0]["id"], "demo-realtime");
    assert_eq!(v["data"][0]["object"], "model");
    assert_eq!(v["data"][0]["owned_by"], "vllm");
    assert_eq!(v["data"][0]["root"], "demo-realtime");
    assert!(v["data"][0]["parent"].is_null());
    assert!(v["data"][0]["created"].is_u64());
    assert!(v["data"][0]["max_model_len"].is_u64());
    let missing = raw_http(sim.addr(), "GET /nope HTTP/1.1\r\n\r\n").await;
    assert!(missing.starts_with("HTTP/1.1 404 "), "{missing}");
    let wrong_path = raw_http(sim.addr(), &upgrade_request("/v1/other", "")).await;
    assert!(wrong_path.starts_with("HTTP/1.1 403 "), "{wrong_path}");
    let garbage = raw_http(sim.addr(), "HELLO\r\n\r\n").await;
    assert!(garbage.starts_with("HTTP/1.1 400 "), "{garbage}");
    let huge = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20_000));
    let huge = raw_http(sim.addr(), &huge).await;
    assert!(huge.starts_with("HTTP/1.1 431 "), "{huge}");
    // The accept loop survived all of that.
    let c = Client::greeted(sim.addr()).await;
    finish(c, sim).await;
}

#[tokio::test]
async fn api_key_guards_the_upgrade_and_v1_only() {
    let sim = start(guarded()).await;
    let none = raw_http(sim.addr(), &upgrade_request("/v1/realtime", "")).await;
    assert!(none.starts_with("HTTP/1.1 401 "), "{none}");
    assert!(none.ends_with(r#"{"error":"Unauthorized"}"#), "{none}");
    let wrong = raw_http(
        sim.addr(),
        &upgrade_request("/v1/realtime", "Authorization: Bearer nope\r\n"),
    )
    .await;
    assert!(wrong.starts_with("HTTP/1.1 401 "), "{wrong}");
    let ok = raw_head(
        sim.addr(),
        &upgrade_request("/v1/realtime", "Authorization: Bearer s3cret\r\n"),
    )
    .await;
    assert!(ok.starts_with("HTTP/1.1 101 "), "{ok}");
    assert!(
        ok.to_ascii_lowercase()
            .contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{ok}"
    );
    let models = raw_http(sim.addr(), "GET /v1/models HTTP/1.1\r\n\r\n").await;
    assert!(models.starts_with("HTTP/1.1 401 "), "{models}");
    let health = raw_http(sim.addr(), "GET /health HTTP/1.1\r\n\r\n").await;
    assert!(
        health.starts_with("HTTP/1.1 200 "),
        "/health is never guarded"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn api_key_accepted_by_a_websocket_client() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let sim = start(guarded()).await;
    let mut req = format!("ws://{}/v1/realtime", sim.addr())
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", "Bearer s3cret".parse().unwrap());
    let (ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let mut c = Client { ws };
    c.hello().await;
    c.close().await;
    let err = tokio_tungstenite::connect_async(format!("ws://{}/v1/realtime", sim.addr()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
    sim.shutdown().await;
}

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/tls/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A `wss://` client of `url` trusting only the fixture CA `ca`.
async fn wss(url: &str, ca: &str) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
    let connector = tokio_tungstenite::Connector::Rustls(tls_client(&fixture(ca)));
    let (ws, _) =
        tokio_tungstenite::connect_async_tls_with_config(url, None, true, Some(connector)).await?;
    Ok(Client { ws })
}

#[tokio::test]
async fn tls_with_the_test_ca() {
    let sim = start(SimConfig {
        tls: Some(TlsFiles {
            cert_pem: fixture("server.pem").into(),
            key_pem: fixture("server.key").into(),
        }),
        ..quick()
    })
    .await;
    let url = format!("wss://localhost:{}/v1/realtime", sim.addr().port());
    let mut c = wss(&url, "ca.pem").await.expect("wss with the test CA");
    c.hello().await;
    c.send(UPDATE).await;
    let (_, _, done) = c.utterance(2).await;
    assert_eq!(done["text"], FULL);
    c.close().await;

    let by_ip = format!("wss://127.0.0.1:{}/v1/realtime", sim.addr().port());
    let c = wss(&by_ip, "ca.pem").await;
    c.expect("the certificate also names 127.0.0.1")
        .close()
        .await;

    let Err(err) = wss(&url, "other-ca.pem").await else {
        panic!("a certificate of another CA was accepted");
    };
    assert!(err.to_string().to_lowercase().contains("issuer"), "{err}");
    sim.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_live_sessions_with_1012() {
    let sim = start(quick()).await;
    let mut c = Client::greeted(sim.addr()).await;
    let stop = tokio::spawn(sim.shutdown());
    c.expect_close(1012).await;
    drop(c);
    tokio::time::timeout(WAIT, stop).await.unwrap().unwrap();
}

#[tokio::test]
async fn keepalive_pings_and_closes_1011_without_pongs() {
    let sim = start(SimConfig {
        keepalive: Some(Duration::from_millis(100)),
        ..quick()
    })
    .await;
    // A client that stops reading never pongs, so the server gives up with 1011.
    let mut deaf = Client::greeted(sim.addr()).await;
    tokio::time::sleep(Duration::from_millis(450)).await;
    deaf.expect_close(1011).await;
    drop(deaf);
    // A client that keeps reading answers the pings and stays connected.
    let mut alive = Client::greeted(sim.addr()).await;
    alive.expect_silence(Duration::from_millis(450)).await;
    alive.close().await;
    let pongs = pongs(&sim.records()[1]);
    assert!(pongs >= 3, "{pongs} pongs");
    sim.shutdown().await;
}

/// `GET /debug/records` hands the ground truth to a client in another process (the accuracy
/// bench); times are nanoseconds on the simulator's clock. Without records it is a plain 404.
#[tokio::test]
async fn debug_records_serve_the_ground_truth_as_json() {
    let sim = start(SimConfig {
        max_records: 16,
        ..SimConfig::default()
    })
    .await;
    let mut c = Client::connect_url(&format!("{}?stream=9", sim.ws_url())).await;
    c.hello().await;
    c.send(UPDATE).await;
    c.utterance(3).await;
    c.close().await;
    let reply = raw_http(sim.addr(), "GET /debug/records HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(reply.starts_with("HTTP/1.1 200 "), "{reply}");
    let body: serde_json::Value =
        serde_json::from_str(reply.split_once("\r\n\r\n").unwrap().1).unwrap();
    let sessions = body["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1, "only WebSocket sessions: {body}");
    let s = &sessions[0];
    assert_eq!(s["target"], "/v1/realtime?stream=9");
    let frames = s["client_frames"].as_array().unwrap();
    let appends = frames.iter().filter(|f| f["kind"].get("append").is_some());
    assert_eq!(appends.count(), 3);
    let words = SimConfig::default().words().len();
    let emits = s["emissions"].as_array().unwrap();
    let deltas = emits.iter().filter(|e| e["kind"]["delta"] == true).count();
    assert_eq!(deltas, words);
    let at = |v: &serde_json::Value| v["at_ns"].as_u64().unwrap();
    assert!(frames.windows(2).all(|w| at(&w[0]) <= at(&w[1])));
    assert!(at(&frames[0]) > 0);
    sim.shutdown().await;

    let off = start(SimConfig {
        max_records: 0,
        ..SimConfig::default()
    })
    .await;
    let reply = raw_http(off.addr(), "GET /debug/records HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(reply.starts_with("HTTP/1.1 404 "), "{reply}");
    off.shutdown().await;
}
