//! The realtime protocol client. Returns a `Timeline`; knows nothing of metrics.
//!
//! `client` runs the session, `connect` opens the timed transport, `tls` builds rustls configs,
//! `events` parses server events, `models` resolves `model: auto`, `error` is the closed set of
//! failure kinds, `timeline` the raw record handed back.

mod client;
pub mod connect;
pub mod error;
pub mod events;
mod models;
pub mod pacer;
pub mod timeline;
pub mod tls;

pub use client::{MAX_IGNORED_EVENTS, MAX_TRANSCRIPT_BYTES, ProgressEvent, run, run_observed};
pub use error::{ErrorType, ProbeError, ServerCode};
pub use timeline::Timeline;
