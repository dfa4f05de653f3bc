//! The realtime protocol client. Returns a `Timeline`; knows nothing of metrics.

mod client;
mod connect;
pub mod dialect;
pub mod error;
pub mod events;
mod models;
pub mod pacer;
pub mod timeline;
mod tls;

pub use client::{
    MAX_DELTAS, MAX_IGNORED_EVENTS, MAX_TRANSCRIPT, ProgressEvent, run, run_observed, run_session,
};
pub use connect::MAX_INBOUND;
pub use error::{ErrorType, ProbeError, ServerCode};
pub use timeline::Timeline;
