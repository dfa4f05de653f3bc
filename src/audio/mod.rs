//! Audio loading: decode (WAV, FLAC) → mono → the dialect's rate (rubato; 16 kHz for vLLM,
//! 24 kHz for OpenAI) → PCM16 → append frames, once at load. The probe's timed path only writes the frames built here.

pub mod decode;
pub mod prepared;
pub mod resample;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;

pub use prepared::{Chunk, PreparedAudio, SAMPLE_RATE};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audio {file}: {reason}")]
pub struct AudioError {
    pub file: String,
    pub reason: String,
}

/// Decode, resample to 16 kHz and chunk an audio file.
pub fn prepare(path: &Path, chunk: Duration) -> Result<PreparedAudio, AudioError> {
    prepare_at(path, chunk, SAMPLE_RATE)
}

/// Decode, resample to `rate` and chunk an audio file.
pub fn prepare_at(path: &Path, chunk: Duration, rate: u32) -> Result<PreparedAudio, AudioError> {
    let bytes = std::fs::read(path).map_err(|e| AudioError {
        file: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    prepare_bytes_at(bytes, ext, chunk, rate).map_err(|e| AudioError {
        file: path.display().to_string(),
        reason: e.reason,
    })
}

/// As `prepare`, from bytes in memory (`ext` is a format hint such as `wav` or `flac`).
pub fn prepare_bytes(
    bytes: Vec<u8>,
    ext: &str,
    chunk: Duration,
) -> Result<PreparedAudio, AudioError> {
    prepare_bytes_at(bytes, ext, chunk, SAMPLE_RATE)
}

/// As `prepare_at`, from bytes in memory.
pub fn prepare_bytes_at(
    bytes: Vec<u8>,
    ext: &str,
    chunk: Duration,
    rate: u32,
) -> Result<PreparedAudio, AudioError> {
    let err = |reason: String| AudioError {
        file: format!("<{ext} bytes>"),
        reason,
    };
    let decoded = decode::decode(bytes, ext).map_err(err)?;
    let mono = resample::to_rate(&decoded.samples, decoded.rate, rate).map_err(err)?;
    // ×32768 is the exact inverse of the decoder's i16 → f32 (÷32768): a PCM16 file at the
    // target rate passes through bit for bit (×32767 would shave one LSB off every positive
    // sample).
    let pcm: Vec<i16> = mono
        .iter()
        .map(|s| (s * 32768.0).round().clamp(-32768.0, 32767.0) as i16)
        .collect();
    if pcm.is_empty() {
        return Err(err("no samples after resampling".into()));
    }
    Ok(prepare_pcm_at(&pcm, chunk, rate))
}

/// Chunk 16 kHz mono PCM16 into pre-serialized append frames. The last chunk may be shorter;
/// every chunk is whole samples (an even byte count), as vLLM requires.
pub fn prepare_pcm(samples: &[i16], chunk: Duration) -> PreparedAudio {
    prepare_pcm_at(samples, chunk, SAMPLE_RATE)
}

/// `prepare_pcm` for samples at `rate`.
pub fn prepare_pcm_at(samples: &[i16], chunk: Duration, rate: u32) -> PreparedAudio {
    let per_chunk = ((chunk.as_secs_f64() * f64::from(rate)).round() as usize).max(1);
    let mut bytes = Vec::with_capacity(per_chunk * 2);
    let chunks: Vec<Chunk> = samples
        .chunks(per_chunk)
        .map(|c| {
            bytes.clear();
            bytes.extend(c.iter().flat_map(|s| s.to_le_bytes()));
            let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
            Chunk {
                frame: Arc::from(format!(
                    r#"{{"type":"input_audio_buffer.append","audio":"{b64}"}}"#
                )),
                samples: c.len() as u32,
            }
        })
        .collect();
    PreparedAudio {
        chunk,
        chunks: chunks.into(),
        total_samples: samples.len() as u64,
        rate,
    }
}
