//! Probe-client tests: the client against the built-in simulator (protocol, faults, TLS,
//! trickled frames, OpenAI-dialect fixtures), audio loading, the waterfall and the `probe` CLI.
//!
//! One binary per area, so a test build links the dependency tree (OTel, tonic, rustls) a
//! few times rather than once per file.

// The support tree is shared by every test binary and each uses a different part of it, so
// an item one binary does not use is not dead code.
#[allow(dead_code)]
#[path = "../support/mod.rs"]
mod support;

mod audio;
mod cli;
mod faults;
mod openai_fixtures;
mod protocol;
mod tls;
mod trickle;
mod waterfall;
