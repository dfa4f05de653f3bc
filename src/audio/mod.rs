//! Audio loading: decode (WAV, FLAC) → 16 kHz mono PCM16 → chunks, once at load.

pub mod prepared;

pub use prepared::{Chunk, PreparedAudio, SAMPLE_RATE};
