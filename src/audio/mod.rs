//! Audio loading: decode (WAV, FLAC) → mono → 16 kHz (rubato) → PCM16 → append frames, once at
//! load. The probe's timed path only writes the frames built here.

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

/// Decode, resample and chunk an audio file.
pub fn prepare(path: &Path, chunk: Duration) -> Result<PreparedAudio, AudioError> {
    let bytes = std::fs::read(path).map_err(|e| AudioError {
        file: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    prepare_bytes(bytes, ext, chunk).map_err(|e| AudioError {
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
    let err = |reason: String| AudioError {
        file: format!("<{ext} bytes>"),
        reason,
    };
    let decoded = decode::decode(bytes, ext).map_err(err)?;
    let mono16k = resample::to_16k(&decoded.samples, decoded.rate).map_err(err)?;
    // ×32768 is the exact inverse of the decoder's i16 → f32 (÷32768): a 16 kHz PCM16 file
    // passes through bit for bit (×32767 would shave one LSB off every positive sample).
    let pcm: Vec<i16> = mono16k
        .iter()
        .map(|s| (s * 32768.0).round().clamp(-32768.0, 32767.0) as i16)
        .collect();
    if pcm.is_empty() {
        return Err(err("no samples after resampling".into()));
    }
    Ok(prepare_pcm(&pcm, chunk))
}

/// Chunk 16 kHz mono PCM16 into pre-serialized append frames. The last chunk may be shorter;
/// every chunk is whole samples (an even byte count), as vLLM requires.
pub fn prepare_pcm(samples: &[i16], chunk: Duration) -> PreparedAudio {
    let per_chunk = ((chunk.as_secs_f64() * f64::from(SAMPLE_RATE)).round() as usize).max(1);
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
    }
}
