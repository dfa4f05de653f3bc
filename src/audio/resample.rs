//! Sample-rate conversion to 16 kHz with rubato's FFT resampler (the same result as sox to a
//! few samples); a pass-through when the file is already 16 kHz.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};

use crate::audio::SAMPLE_RATE;

pub fn to_16k(mono: &[f32], rate: u32) -> Result<Vec<f32>, String> {
    if rate == SAMPLE_RATE {
        return Ok(mono.to_vec());
    }
    let frames = mono.len();
    let mut r = Fft::<f32>::new(
        rate as usize,
        SAMPLE_RATE as usize,
        1024,
        1,
        FixedSync::Both,
    )
    .map_err(|e| format!("cannot resample from {rate} Hz: {e}"))?;
    let input = InterleavedSlice::new(mono, 1, frames).map_err(|e| format!("resampling: {e}"))?;
    let out = r
        .process_all(&input, frames, None)
        .map_err(|e| format!("resampling: {e}"))?;
    Ok(out.take_data())
}
