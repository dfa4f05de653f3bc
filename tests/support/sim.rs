//! A minimal raw WebSocket client for the simulator's tests: just enough of the protocol to
//! drive a session frame by frame and look at exactly what comes back.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use rtprobe::simulate::{SessionRecord, SimConfig, SimHandle, Simulator};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const WAIT: Duration = Duration::from_secs(5);

/// The built-in simulator on a free loopback port, running until its handle shuts it down.
pub async fn start(cfg: SimConfig) -> SimHandle {
    Simulator::bind("127.0.0.1:0".parse().unwrap(), cfg)
        .await
        .expect("bind")
        .spawn()
}

/// The record of the first connection `sim` upgraded to a session.
pub fn session_record(sim: &SimHandle) -> SessionRecord {
    upgraded(sim.records())
}

/// As [`session_record`], taking every record out (the next run's session is then the first).
pub fn take_session_record(sim: &SimHandle) -> SessionRecord {
    upgraded(sim.take_records())
}

/// How many pongs the client sent in a session.
pub fn pongs(rec: &SessionRecord) -> usize {
    rec.client_frames
        .iter()
        .filter(|f| f.kind == rtprobe::simulate::ClientFrameKind::Pong)
        .count()
}

fn upgraded(records: Vec<SessionRecord>) -> SessionRecord {
    records
        .into_iter()
        .find(|r| r.status == Some(101))
        .expect("a connection upgraded to a session")
}

/// The default simulator but a word every 40 ms, so a real-time run ends soon after its clip.
pub async fn start_brisk() -> SimHandle {
    start(SimConfig {
        token_interval: Duration::from_millis(40),
        ..SimConfig::default()
    })
    .await
}

/// `{"type":"input_audio_buffer.append"}` with `samples` PCM16 zeros.
pub fn append(samples: usize) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(vec![0u8; samples * 2]);
    format!(r#"{{"type":"input_audio_buffer.append","audio":"{b64}"}}"#)
}

pub const UPDATE: &str = r#"{"type":"session.update","model":"demo-realtime"}"#;
pub const START: &str = r#"{"type":"input_audio_buffer.commit","final":false}"#;
pub const END: &str = r#"{"type":"input_audio_buffer.commit","final":true}"#;

pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// What arrived: a text frame (parsed when JSON) or another kind of frame, with receive time.
#[derive(Debug)]
pub enum Got {
    Json(Instant, Value, String),
    Text(Instant, String),
    Binary(Instant, usize),
    Close(Instant, Option<u16>),
    /// The stream ended or failed (e.g. reset without closing handshake).
    Gone(Option<String>),
    Timeout,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        Self::connect_url(&format!("ws://{addr}/v1/realtime")).await
    }

    /// Connect and read `session.created`.
    pub async fn greeted(addr: SocketAddr) -> Client {
        let mut c = Self::connect(addr).await;
        c.hello().await;
        c
    }

    /// The opening of most session tests: connect, read `session.created`, send `session.update`.
    pub async fn ready(addr: SocketAddr) -> Client {
        let mut c = Self::greeted(addr).await;
        c.send(UPDATE).await;
        c
    }

    pub async fn connect_url(url: &str) -> Client {
        let (ws, resp) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
            .await
            .expect("connect timed out")
            .expect("connect");
        assert_eq!(resp.status(), 101);
        Client { ws }
    }

    pub async fn send(&mut self, text: &str) -> Instant {
        self.ws
            .send(Message::Text(text.into()))
            .await
            .expect("send");
        Instant::now()
    }

    /// Send each of `frames` in order.
    pub async fn send_all(&mut self, frames: &[&str]) {
        for f in frames {
            self.send(f).await;
        }
    }

    /// The next frame is a close with `code`.
    pub async fn expect_close(&mut self, code: u16) {
        match self.next(WAIT).await {
            Got::Close(_, got) => assert_eq!(got, Some(code)),
            other => panic!("expected close {code}, got {other:?}"),
        }
    }

    /// The next frame other than ping/pong (which tungstenite answers by itself).
    pub async fn next(&mut self, within: Duration) -> Got {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match self.next_frame(deadline).await {
                Some(got) => return got,
                None => continue,
            }
        }
    }

    async fn next_frame(&mut self, deadline: tokio::time::Instant) -> Option<Got> {
        Some(
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => Got::Timeout,
                Ok(None) => Got::Gone(None),
                Ok(Some(Err(e))) => Got::Gone(Some(e.to_string())),
                Ok(Some(Ok(msg))) => {
                    let at = Instant::now();
                    match msg {
                        Message::Text(t) => match serde_json::from_str::<Value>(t.as_str()) {
                            Ok(v) => Got::Json(at, v, t.to_string()),
                            Err(_) => Got::Text(at, t.to_string()),
                        },
                        Message::Binary(b) => Got::Binary(at, b.len()),
                        Message::Close(f) => Got::Close(at, f.map(|f| u16::from(f.code))),
                        Message::Ping(_) | Message::Pong(_) => return None,
                        Message::Frame(_) => panic!("raw frame"),
                    }
                }
            },
        )
    }

    /// The next event, which must be JSON; returns the raw text too.
    pub async fn event(&mut self) -> (Instant, Value, String) {
        match self.next(WAIT).await {
            Got::Json(at, v, raw) => (at, v, raw),
            other => panic!("expected a JSON event, got {other:?}"),
        }
    }

    pub async fn expect_error(&mut self, message: &str, code: &str) {
        let (_, v, _) = self.event().await;
        assert_eq!(v["type"], "error", "{v}");
        assert_eq!(v["code"], code, "{v}");
        assert_eq!(v["error"], message, "{v}");
    }

    /// Nothing at all arrives for `quiet`.
    pub async fn expect_silence(&mut self, quiet: Duration) {
        match self.next(quiet).await {
            Got::Timeout => {}
            other => panic!("expected silence, got {other:?}"),
        }
    }

    pub async fn hello(&mut self) -> Value {
        let (_, v, _) = self.event().await;
        assert_eq!(v["type"], "session.created", "{v}");
        v
    }

    /// Read deltas until `done`: returns (receive time, delta) pairs and the done event.
    pub async fn until_done(&mut self) -> (Vec<(Instant, String)>, Instant, Value) {
        let mut deltas = Vec::new();
        loop {
            let (at, v, _) = self.event().await;
            match v["type"].as_str() {
                Some("transcription.delta") => {
                    deltas.push((at, v["delta"].as_str().unwrap().to_string()))
                }
                Some("transcription.done") => return (deltas, at, v),
                _ => panic!("unexpected event {v}"),
            }
        }
    }

    /// One full utterance: start, `chunks` appends of 100 ms, end.
    pub async fn utterance(&mut self, chunks: usize) -> (Vec<(Instant, String)>, Instant, Value) {
        self.send(START).await;
        for _ in 0..chunks {
            self.send(&append(1600)).await;
        }
        self.send(END).await;
        self.until_done().await
    }

    /// Close with 1000 and expect the server's echo.
    pub async fn close(mut self) {
        self.ws.close(None).await.expect("close");
        loop {
            match self.next(WAIT).await {
                Got::Close(_, code) => {
                    assert!(matches!(code, Some(1000) | None), "{code:?}");
                    return;
                }
                Got::Gone(None) => return,
                Got::Json(..) => continue,
                other => panic!("expected the close echo, got {other:?}"),
            }
        }
    }
}

/// A client's close, then the simulator's shutdown: the end of most session tests.
pub async fn finish(c: Client, sim: SimHandle) {
    c.close().await;
    sim.shutdown().await;
}

/// Was the connection dropped without a close frame?
pub fn is_reset(got: &Got) -> bool {
    matches!(got, Got::Gone(Some(e)) if e.contains("without closing handshake"))
}

pub fn ws_error_is_reset(e: &WsError) -> bool {
    e.to_string().contains("without closing handshake")
}

/// One raw HTTP/1.1 exchange; returns the whole response text.
pub async fn raw_http(addr: SocketAddr, request: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, tcp.read_to_end(&mut out))
        .await
        .expect("response timed out")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

pub fn upgrade_request(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
    )
}

/// A rustls client config trusting only the given CA file.
pub fn tls_client(ca_pem: &str) -> Arc<rustls::ClientConfig> {
    let pem = std::fs::read(ca_pem).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(cfg)
}

/// Send a request and read only the response head (for a 101, whose connection stays open).
pub async fn raw_head(addr: SocketAddr, request: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    while !out.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(WAIT, tcp.read(&mut buf))
            .await
            .expect("response timed out")
            .unwrap();
        assert!(n > 0, "closed before the head ended");
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}
