//! rtprobe: scheduled synthetic realtime transcription probes against vLLM `/v1/realtime`,
//! exported as OpenTelemetry histograms on `/metrics` and over OTLP.
//!
//! See ARCHITECTURE.md for the module map and the invariants.

pub mod audio;
pub mod cli;
pub mod config;
pub mod demo;
pub mod derive;
pub mod http;
pub mod load;
pub mod logging;
pub mod metrics;
pub mod oneshot;
pub mod probe;
pub mod render;
pub mod report;
pub mod rng;
pub mod scheduler;
pub mod serve;
pub mod signals;
pub mod simulate;
pub mod stats;
pub mod sync;
