//! Decoding WAV (integer PCM 8–32 bit, 32-bit float) and FLAC with symphonia into mono f32 at
//! the file's own sample rate. Channels are averaged: a probe needs speech, not stereo.

use std::io::Cursor;

use symphonia::core::codecs::audio::AudioDecoderOptions;
use symphonia::core::errors::Error as SymErr;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, TrackType};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;

/// Mono samples in [-1, 1] and their rate.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub samples: Vec<f32>,
    pub rate: u32,
}

/// Decode a whole file held in memory. `ext` (e.g. `wav`, `flac`) is a hint, not a requirement.
pub fn decode(bytes: Vec<u8>, ext: &str) -> Result<Decoded, String> {
    // Some corrupt WAV headers make the decoder overflow and panic; a bad clip must be an
    // error naming the file, never a crash of the exporter.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decode_inner(bytes, ext)))
        .unwrap_or_else(|_| Err("malformed audio file (the decoder failed on it)".into()))
}

fn decode_inner(bytes: Vec<u8>, ext: &str) -> Result<Decoded, String> {
    let mut hint = Hint::new();
    if !ext.is_empty() {
        hint.with_extension(ext);
    }
    let mss = MediaSourceStream::new(Box::new(Cursor::new(bytes)), Default::default());
    let mut format = symphonia::default::get_probe()
        .probe(
            &hint,
            mss,
            FormatOptions::default(),
            MetadataOptions::default(),
        )
        .map_err(|e| format!("not a supported audio file (WAV or FLAC): {e}"))?;
    let track = format
        .default_track(TrackType::Audio)
        .ok_or("no audio track")?;
    let track_id = track.id;
    let params = track
        .codec_params
        .as_ref()
        .and_then(|p| p.audio())
        .ok_or("the audio track has no codec parameters")?
        .clone();
    let mut decoder = symphonia::default::get_codecs()
        .make_audio_decoder(&params, &AudioDecoderOptions::default())
        .map_err(|e| format!("unsupported audio codec: {e}"))?;
    let mut rate = params.sample_rate.unwrap_or(0);
    let mut mono = Vec::new();
    let mut interleaved: Vec<f32> = Vec::new();
    loop {
        let packet = match format.next_packet() {
            Ok(Some(p)) => p,
            Ok(None) => break,
            Err(SymErr::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(format!("reading audio: {e}")),
        };
        if packet.track_id != track_id {
            continue;
        }
        let buf = match decoder.decode(&packet) {
            Ok(b) => b,
            Err(SymErr::DecodeError(e)) => return Err(format!("corrupt audio: {e}")),
            Err(e) => return Err(format!("decoding audio: {e}")),
        };
        rate = buf.spec().rate();
        let channels = buf.spec().channels().count().max(1);
        interleaved.clear();
        buf.copy_to_vec_interleaved(&mut interleaved);
        mono.extend(
            interleaved
                .chunks(channels)
                .map(|frame| frame.iter().sum::<f32>() / channels as f32),
        );
    }
    if rate == 0 {
        return Err("unknown sample rate".into());
    }
    if mono.is_empty() {
        return Err("the file holds no audio samples".into());
    }
    Ok(Decoded {
        samples: mono,
        rate,
    })
}
