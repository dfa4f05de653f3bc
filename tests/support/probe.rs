//! Shared set-up for the probe client's tests: a simulator on loopback, a `ProbeSpec` aimed at
//! it, and `PreparedAudio` of PCM16 zeros built the way the audio loader frames it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use rtprobe::audio::{Chunk, PreparedAudio, SAMPLE_RATE};
use rtprobe::config::ProbeSpec;
use rtprobe::simulate::{SimConfig, SimHandle};

/// `PreparedAudio` of `total` of silence cut into `chunk`-long append frames.
pub fn silence(total: Duration, chunk: Duration) -> PreparedAudio {
    let total_samples = (total.as_secs_f64() * f64::from(SAMPLE_RATE)).round() as u64;
    let per_chunk = (chunk.as_secs_f64() * f64::from(SAMPLE_RATE)).round() as u64;
    let mut chunks = Vec::new();
    let mut left = total_samples;
    while left > 0 {
        let n = left.min(per_chunk);
        let b64 = base64::engine::general_purpose::STANDARD.encode(vec![0u8; n as usize * 2]);
        let frame = format!(r#"{{"type":"input_audio_buffer.append","audio":"{b64}"}}"#);
        chunks.push(Chunk {
            frame: Arc::from(frame),
            samples: n as u32,
        });
        left -= n;
    }
    PreparedAudio {
        chunk,
        chunks: chunks.into(),
        total_samples,
        rate: SAMPLE_RATE,
    }
}

/// `PreparedAudio` at `rate`, framed by the audio loader's own chunker: `total` of a constant
/// `level` (0 = silence; above the simulator's VAD threshold = "speech").
pub fn constant_at(total: Duration, chunk: Duration, rate: u32, level: i16) -> PreparedAudio {
    let n = (total.as_secs_f64() * f64::from(rate)).round() as usize;
    rtprobe::audio::prepare_pcm_at(&vec![level; n], chunk, rate)
}

/// A spec for the OpenAI dialect against a simulator serving it (URL through the config's
/// own rules, so it carries `?intent=transcription`).
pub fn openai_spec(sim: &SimHandle) -> ProbeSpec {
    let mut s = spec(sim);
    s.dialect = rtprobe::config::DialectSpec::of(rtprobe::config::Dialect::OpenAi);
    s.target = rtprobe::config::parse_target_for(
        &format!("http://127.0.0.1:{}", sim.addr().port()),
        rtprobe::config::Dialect::OpenAi,
    )
    .expect("target");
    s
}

/// A spec for `host:port` over ws:// (or wss:// when `secure`), with short deadlines.
pub fn spec_for(host: &str, port: u16, secure: bool) -> ProbeSpec {
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let scheme = if secure { "https" } else { "http" };
    super::probe_spec(&format!(
        "name: test\ntarget: {scheme}://{authority}\nmodel: demo-realtime\naudio: {}\n\
         deadlines: {{connect: 2s, first_text: 2s, done: 2s}}\ninterval: 60s\ntimeout: 30s\njitter: 0",
        super::CLIP
    ))
}

pub fn spec(sim: &SimHandle) -> ProbeSpec {
    spec_for("127.0.0.1", sim.addr().port(), false)
}

/// `instant` as an offset from `t0` (the probe's origin), in seconds, signed.
pub fn since(t0: Instant, instant: Instant) -> f64 {
    if instant >= t0 {
        (instant - t0).as_secs_f64()
    } else {
        -(t0 - instant).as_secs_f64()
    }
}

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name)
}

/// The simulator the timing tests measure against in `dialect`: slow enough that every phase
/// (first text, inter-token gaps, the held tail, done) is far above scheduling noise.
pub fn timed_sim(dialect: rtprobe::config::Dialect) -> SimConfig {
    SimConfig {
        dialect,
        first_text_delay: Duration::from_millis(300),
        token_interval: Duration::from_millis(80),
        tail_delay: Duration::from_millis(150),
        done_delay: Duration::from_millis(40),
        empty_deltas_per_word: 1,
        hold_last_words: 2,
        ..SimConfig::default()
    }
}

/// Every error against the simulator's ground truth (name, measured − truth in s) is within
/// 10× `tolerance`: the bound a run that lost the CPU for a moment still keeps.
pub fn assert_within_10x(errors: &[(impl std::fmt::Display, f64)], tolerance: f64) {
    for (name, e) in errors {
        assert!(
            e.abs() < 10.0 * tolerance,
            "{name} off by {:.3} ms",
            e * 1e3
        );
    }
}

/// Print how many errors there were and the worst, for the log of a timing test.
pub fn log_worst(what: &str, errors: &[(impl std::fmt::Display, f64)]) {
    let worst = errors.iter().map(|e| e.1.abs()).fold(0.0, f64::max);
    eprintln!(
        "{what}: {} values, worst error {:.3} ms",
        errors.len(),
        worst * 1e3
    );
}

/// A spec of `dialect` against `sim` and `length` of constant `level` at the dialect's rate, in
/// 100 ms chunks.
pub fn dialect_run(
    sim: &SimHandle,
    dialect: rtprobe::config::Dialect,
    length: Duration,
    level: i16,
) -> (ProbeSpec, PreparedAudio) {
    let (spec, rate) = match dialect {
        rtprobe::config::Dialect::Vllm => (spec(sim), 16_000),
        rtprobe::config::Dialect::OpenAi => (openai_spec(sim), 24_000),
    };
    let clip = constant_at(length, Duration::from_millis(100), rate, level);
    (spec, clip)
}
