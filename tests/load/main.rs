//! Load tests: `rtprobe load` live against a simulator and sweeps.
//!
//! One binary per area, so a test build links the dependency tree (OTel, tonic, rustls) a
//! few times rather than once per file.

// The support tree is shared by every test binary and each uses a different part of it, so
// an item one binary does not use is not dead code.
#[allow(dead_code)]
#[path = "../support/mod.rs"]
mod support;

mod live;
mod sweep;
