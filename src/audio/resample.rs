//! Sample-rate conversion to the dialect's rate (16 kHz for vLLM, 24 kHz for OpenAI) with
//! rubato's FFT resampler (the same result as sox to a few samples); a pass-through when the
//! file is already at that rate.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};

use crate::audio::SAMPLE_RATE;

pub fn to_16k(mono: &[f32], rate: u32) -> Result<Vec<f32>, String> {
    to_rate(mono, rate, SAMPLE_RATE)
}

/// Resample mono audio from `rate` to `target` samples per second.
pub fn to_rate(mono: &[f32], rate: u32, target: u32) -> Result<Vec<f32>, String> {
    if rate == target {
        return Ok(mono.to_vec());
    }
    let frames = mono.len();
    let mut r = Fft::<f32>::new(rate as usize, target as usize, 1024, 1, FixedSync::Both)
        .map_err(|e| format!("cannot resample from {rate} Hz: {e}"))?;
    let input = InterleavedSlice::new(mono, 1, frames).map_err(|e| format!("resampling: {e}"))?;
    let out = r
        .process_all(&input, frames, None)
        .map_err(|e| format!("resampling: {e}"))?;
    Ok(out.take_data())
}
