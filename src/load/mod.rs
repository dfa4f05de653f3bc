//! Time-bound load runs people can watch: `serve --duration` and `rtprobe load` (a sweep over
//! concurrency levels). The measurement is the production path — the scheduler, the probe
//! client, `derive` and the metrics recorder — and this module only adds what a person
//! at a terminal needs on top: running totals with bounded memory (`aggregate`, `sketch`), their
//! rendering (`render`, pure) and the terminal I/O (`display`).

pub mod aggregate;
pub mod chart;
pub mod display;
pub mod render;
pub mod run;
pub mod sketch;
pub mod sweep;

use std::sync::atomic::{AtomicU64, Ordering};

pub use aggregate::{LoadReport, LoadStats};

/// Non-empty text deltas received by every production probe run in this process: the live
/// token rate is its increase per second per open stream.
static TEXT_DELTAS: AtomicU64 = AtomicU64::new(0);

/// Count one non-empty delta (called by the production runner's progress observer).
pub fn count_text_delta() {
    TEXT_DELTAS.fetch_add(1, Ordering::Relaxed);
}

/// Non-empty deltas received so far by this process.
pub fn text_deltas() -> u64 {
    TEXT_DELTAS.load(Ordering::Relaxed)
}
