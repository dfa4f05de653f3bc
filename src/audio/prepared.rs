//! Audio ready to stream: mono PCM16 at the dialect's rate (16 kHz for vLLM, 24 kHz for OpenAI) cut into chunks, each already serialized as the
//! complete `input_audio_buffer.append` JSON text frame. Built once at load; the probe's timed
//! path only clones `Arc`s and writes frames, never encodes.

use std::sync::Arc;
use std::time::Duration;

/// Samples per second rtprobe sends in the vLLM dialect (vLLM realtime models run at 16 kHz);
/// other dialects prepare audio at their own rate (`PreparedAudio::rate`).
pub const SAMPLE_RATE: u32 = 16_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// The full `{"type":"input_audio_buffer.append","audio":"<b64>"}` frame text.
    pub frame: Arc<str>,
    /// Samples in this chunk (the last one may be shorter).
    pub samples: u32,
}

impl Chunk {
    /// Audio duration of this chunk at `rate` samples per second.
    pub fn duration(&self, rate: u32) -> Duration {
        Duration::from_secs_f64(f64::from(self.samples) / f64::from(rate))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedAudio {
    /// Nominal chunk duration (the pacing period).
    pub chunk: Duration,
    pub chunks: Arc<[Chunk]>,
    /// Total samples across all chunks.
    pub total_samples: u64,
    /// Samples per second of every chunk.
    pub rate: u32,
}

impl PreparedAudio {
    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.total_samples as f64 / f64::from(self.rate))
    }
}
