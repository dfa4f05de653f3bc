//! Shared set-up for the probe's integration tests: a `ProbeSpec` aimed at a simulator and
//! silent PCM audio already cut into append frames.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use rtprobe::audio::{Chunk, PreparedAudio};
use rtprobe::config::{Deadlines, ModelChoice, Pacing, ProbeSpec, Target, TlsSettings};

pub fn spec(addr: SocketAddr, secure: bool) -> ProbeSpec {
    let (ws, http) = if secure {
        ("wss", "https")
    } else {
        ("ws", "http")
    };
    let host = if secure {
        "localhost".to_string()
    } else {
        addr.ip().to_string()
    };
    ProbeSpec {
        name: "test".into(),
        target: Target {
            ws_url: format!("{ws}://{host}:{}/v1/realtime", addr.port()),
            http_base: format!("{http}://{host}:{}", addr.port()),
            host,
            port: addr.port(),
            secure,
        },
        model: ModelChoice::Named("demo-realtime".into()),
        audio: PathBuf::from("unused.wav"),
        reference: None,
        chunk: Duration::from_millis(100),
        pacing: Pacing::Realtime,
        deadlines: Deadlines {
            connect: Duration::from_secs(2),
            first_text: Duration::from_secs(3),
            done: Duration::from_secs(3),
        },
        headers: Vec::new(),
        bearer: None,
        tls: TlsSettings::default(),
        labels: BTreeMap::new(),
        interval: Duration::from_secs(30),
        timeout: Duration::from_secs(20),
        concurrency: 1,
        jitter: 0.0,
    }
}

/// `seconds` of silence at 16 kHz in `chunk_ms` chunks, as append frames.
pub fn silence(seconds: f64, chunk_ms: u64) -> PreparedAudio {
    let total = (seconds * 16_000.0).round() as usize;
    let per = (16 * chunk_ms) as usize;
    let mut chunks = Vec::new();
    let mut left = total;
    while left > 0 {
        let n = left.min(per);
        let b64 = base64::engine::general_purpose::STANDARD.encode(vec![0u8; n * 2]);
        chunks.push(Chunk {
            frame: Arc::from(format!(
                r#"{{"type":"input_audio_buffer.append","audio":"{b64}"}}"#
            )),
            samples: n as u32,
        });
        left -= n;
    }
    PreparedAudio {
        chunk: Duration::from_millis(chunk_ms),
        chunks: chunks.into(),
        total_samples: total as u64,
    }
}

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name)
}
