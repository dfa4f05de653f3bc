//! The realtime protocol client. Returns a `Timeline`; knows nothing of metrics.

pub mod error;
pub mod timeline;

pub use error::{ErrorType, ProbeError, ServerCode};
pub use timeline::Timeline;
