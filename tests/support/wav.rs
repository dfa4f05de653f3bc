//! WAV files written by the tests: one canonical RIFF/WAVE writer for every sample format the
//! audio loader reads, and the short 16 kHz mono clip the probe and load tests stream (the
//! simulator does not listen to it, so any tone will do).

use std::path::Path;

#[derive(Clone, Copy)]
pub enum Fmt {
    I16,
    I24,
    I32,
    F32,
}

/// A canonical RIFF/WAVE file: `fmt ` (PCM = 1, IEEE float = 3) and `data`.
pub fn wav(fmt: Fmt, rate: u32, channels: u16, frames: &[Vec<f32>]) -> Vec<u8> {
    let (tag, bits): (u16, u16) = match fmt {
        Fmt::I16 => (1, 16),
        Fmt::I24 => (1, 24),
        Fmt::I32 => (1, 32),
        Fmt::F32 => (3, 32),
    };
    let mut data = Vec::new();
    for frame in frames {
        assert_eq!(frame.len(), usize::from(channels));
        for &s in frame {
            match fmt {
                Fmt::I16 => data.extend(((s * 32768.0).round().min(32767.0) as i16).to_le_bytes()),
                Fmt::I24 => data.extend(&((s * 8_388_607.0).round() as i32).to_le_bytes()[..3]),
                Fmt::I32 => {
                    data.extend(((f64::from(s) * 2_147_483_647.0).round() as i32).to_le_bytes())
                }
                Fmt::F32 => data.extend(s.to_le_bytes()),
            }
        }
    }
    let block = channels * bits / 8;
    let mut out = Vec::new();
    out.extend(b"RIFF");
    out.extend((36 + data.len() as u32).to_le_bytes());
    out.extend(b"WAVEfmt ");
    out.extend(16u32.to_le_bytes());
    out.extend(tag.to_le_bytes());
    out.extend(channels.to_le_bytes());
    out.extend(rate.to_le_bytes());
    out.extend((rate * u32::from(block)).to_le_bytes());
    out.extend(block.to_le_bytes());
    out.extend(bits.to_le_bytes());
    out.extend(b"data");
    out.extend((data.len() as u32).to_le_bytes());
    out.extend(data);
    out
}

/// `seconds` of 16 kHz mono PCM16: a quiet 440 Hz tone (amplitude 2000 of 32768).
pub fn write_wav(path: &Path, seconds: f64) {
    let n = (16_000.0 * seconds) as u32;
    let frames: Vec<Vec<f32>> = (0..n)
        .map(|i| {
            let t = f64::from(i) / 16_000.0;
            vec![(2_000.0 / 32_768.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as f32]
        })
        .collect();
    std::fs::write(path, wav(Fmt::I16, 16_000, 1, &frames)).expect("write wav");
}
