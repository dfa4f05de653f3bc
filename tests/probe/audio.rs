//! Audio loading end to end: WAV files of every supported sample format, rate and channel
//! layout (written by the minimal writer in `support::wav`), the shipped FLAC clip, chunking and the
//! pre-serialized append frames.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::wav::{Fmt, wav};
use base64::Engine;
use rtprobe::audio::{self, PreparedAudio};

/// `secs` of a 440 Hz tone at amplitude 0.5, the same in every channel.
fn tone(rate: u32, channels: u16, secs: f64) -> Vec<Vec<f32>> {
    let n = (secs * f64::from(rate)).round() as usize;
    (0..n)
        .map(|i| {
            let s = (2.0 * std::f64::consts::PI * 440.0 * i as f64 / f64::from(rate)).sin() * 0.5;
            vec![s as f32; usize::from(channels)]
        })
        .collect()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// All PCM16 samples of a prepared clip, decoded back from the frames.
fn pcm_of(a: &PreparedAudio) -> Vec<i16> {
    let mut out = Vec::new();
    for c in a.chunks.iter() {
        let v: serde_json::Value = serde_json::from_str(&c.frame).expect("frame is JSON");
        assert_eq!(v["type"], "input_audio_buffer.append");
        assert_eq!(v.as_object().unwrap().len(), 2, "only type and audio");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(v["audio"].as_str().unwrap())
            .expect("standard base64 with padding");
        assert_eq!(bytes.len(), c.samples as usize * 2);
        out.extend(
            bytes
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]])),
        );
    }
    out
}

fn rms(s: &[i16]) -> f64 {
    (s.iter()
        .map(|&x| (f64::from(x) / 32767.0).powi(2))
        .sum::<f64>()
        / s.len() as f64)
        .sqrt()
}

#[test]
fn every_format_rate_and_layout_comes_out_16k_mono_of_the_same_length() {
    let dir = tempfile::tempdir().unwrap();
    let secs = 1.25;
    let cases = [
        (Fmt::I16, 16_000, 1),
        (Fmt::I16, 8_000, 1),
        (Fmt::I16, 22_050, 2),
        (Fmt::I24, 44_100, 1),
        (Fmt::I32, 48_000, 2),
        (Fmt::F32, 44_100, 1),
        (Fmt::F32, 16_000, 2),
    ];
    for (i, (fmt, rate, ch)) in cases.into_iter().enumerate() {
        let path = write(
            dir.path(),
            &format!("c{i}.wav"),
            &wav(fmt, rate, ch, &tone(rate, ch, secs)),
        );
        let a = audio::prepare(&path, Duration::from_millis(100)).expect("prepare");
        let expected = secs * 16_000.0;
        assert!(
            (a.total_samples as f64 - expected).abs() <= 4.0,
            "case {i} ({rate} Hz, {ch} ch): {} samples, expected {expected}",
            a.total_samples
        );
        let pcm = pcm_of(&a);
        assert_eq!(pcm.len() as u64, a.total_samples);
        // A 0.5-amplitude sine has RMS 0.354; averaging identical channels keeps it.
        let r = rms(&pcm[800..pcm.len() - 800]);
        assert!((r - 0.3536).abs() < 0.01, "case {i}: rms {r}");
    }
}

#[test]
fn sixteen_k_int16_passes_through_bit_exact() {
    let dir = tempfile::tempdir().unwrap();
    let frames: Vec<Vec<f32>> = (0..3210)
        .map(|i| vec![((i % 200) as f32 - 100.0) / 128.0])
        .collect();
    let path = write(dir.path(), "exact.wav", &wav(Fmt::I16, 16_000, 1, &frames));
    let a = audio::prepare(&path, Duration::from_millis(20)).unwrap();
    let expected: Vec<i16> = frames
        .iter()
        .map(|f| (f[0] * 32768.0).round() as i16)
        .collect();
    assert_eq!(pcm_of(&a), expected);
}

#[test]
fn chunks_have_the_chunk_duration_and_a_shorter_nonempty_tail() {
    let samples: Vec<i16> = (0..16_050).map(|i| i as i16).collect();
    let a = audio::prepare_pcm(&samples, Duration::from_millis(100));
    assert_eq!(a.chunk, Duration::from_millis(100));
    assert_eq!(a.chunks.len(), 11);
    assert!(a.chunks[..10].iter().all(|c| c.samples == 1600));
    assert_eq!(a.chunks[10].samples, 50);
    assert_eq!(a.total_samples, 16_050);
    assert_eq!(a.duration(), Duration::from_secs_f64(16_050.0 / 16_000.0));
    assert_eq!(pcm_of(&a), samples);
    // Exact multiple: no empty tail.
    let b = audio::prepare_pcm(&samples[..3200], Duration::from_millis(100));
    assert_eq!(b.chunks.len(), 2);
    // Known frame text for two samples (1, -1 → 01 00 ff ff).
    let c = audio::prepare_pcm(&[1, -1], Duration::from_millis(100));
    assert_eq!(
        &*c.chunks[0].frame,
        r#"{"type":"input_audio_buffer.append","audio":"AQD//w=="}"#
    );
}

#[test]
fn full_scale_samples_clamp_and_round() {
    let dir = tempfile::tempdir().unwrap();
    let frames = vec![vec![1.5f32], vec![-1.5], vec![0.25], vec![-1.0]];
    let path = write(dir.path(), "clip.wav", &wav(Fmt::F32, 16_000, 1, &frames));
    let a = audio::prepare(&path, Duration::from_millis(100)).unwrap();
    assert_eq!(pcm_of(&a), vec![32767, -32768, 8192, -32768]);
}

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

#[test]
fn shipped_clips_decode_at_their_recorded_length() {
    let fox = audio::prepare(
        &repo("examples/audio/quick-brown-fox.flac"),
        Duration::from_millis(100),
    )
    .expect("flac");
    // soxi: 44555 samples at 16 kHz.
    assert_eq!(fox.total_samples, 49_326);
    assert!(rms(&pcm_of(&fox)) > 0.02, "speech, not silence");
    let mary = audio::prepare(
        &repo("examples/audio/mary-had-a-little-lamb.wav"),
        Duration::from_millis(100),
    )
    .expect("wav");
    assert_eq!(mary.total_samples, 55_682);
    let bytes = std::fs::read(repo("examples/audio/quick-brown-fox.flac")).unwrap();
    let embedded = audio::prepare_bytes(bytes, "flac", Duration::from_millis(100)).unwrap();
    assert_eq!(embedded, fox);
}

#[test]
fn bad_files_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.wav");
    let e = audio::prepare(&missing, Duration::from_millis(100)).unwrap_err();
    assert!(e.to_string().contains("nope.wav"), "{e}");

    let junk = write(
        dir.path(),
        "junk.wav",
        b"this is not audio at all, not even close",
    );
    let e = audio::prepare(&junk, Duration::from_millis(100)).unwrap_err();
    assert!(e.to_string().contains("junk.wav"), "{e}");

    let empty = write(dir.path(), "empty.wav", &wav(Fmt::I16, 16_000, 1, &[]));
    let e = audio::prepare(&empty, Duration::from_millis(100)).unwrap_err();
    assert!(e.to_string().contains("empty.wav"), "{e}");

    let mut cut = wav(Fmt::I16, 16_000, 1, &tone(16_000, 1, 0.5));
    cut.truncate(30);
    let cut = write(dir.path(), "cut.wav", &cut);
    assert!(audio::prepare(&cut, Duration::from_millis(100)).is_err());
}

/// Damaged headers and truncated bodies of the shipped clips are errors, never panics (some
/// corrupt WAV headers make the decoder itself overflow; `decode` contains that).
#[test]
fn damaged_clips_never_panic() {
    let mut rng = rtprobe::rng::SplitMix64::new(5);
    for clip in [
        "examples/audio/mary-had-a-little-lamb.wav",
        "examples/audio/quick-brown-fox.flac",
    ] {
        let original = std::fs::read(repo(clip)).unwrap();
        let ext = if clip.ends_with(".wav") {
            "wav"
        } else {
            "flac"
        };
        for _ in 0..25 {
            let mut b = original.clone();
            for _ in 0..1 + rng.next_u64() % 4 {
                let i = (rng.next_u64() as usize) % 96.min(b.len());
                b[i] = rng.next_u64() as u8;
            }
            if rng.next_u64().is_multiple_of(3) {
                b.truncate((rng.next_u64() as usize) % b.len());
            }
            let _ = audio::prepare_bytes(b, ext, Duration::from_millis(100));
        }
    }
}
