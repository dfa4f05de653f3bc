//! Export tests: rendering `/metrics`, native histograms, the series budget, reconfiguration,
//! no negative values, and OTLP metrics and traces against the real receiver in `support::metrics`.
//!
//! One binary per area, so a test build links the dependency tree (OTel, tonic, rustls) a
//! few times rather than once per file.

// The support tree is shared by every test binary and each uses a different part of it, so
// an item one binary does not use is not dead code.
#[allow(dead_code)]
#[path = "../support/mod.rs"]
mod support;

mod budget;
mod native;
mod no_negative;
mod otlp_identity;
mod otlp_receiver;
mod otlp_traces;
mod reconfigure;
mod render;
