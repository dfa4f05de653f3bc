//! Tests whose figures depend on time or that drive a whole stack (timing against the
//! simulator, the fault soak, a real Prometheus, a real browser). Each file's tests take
//! `support::gate::alone(module_path!())` first, so no two files run at once: every file keeps the
//! process to itself, as it did when it was its own binary, while the tests within a file still
//! run in parallel as before.
//!
//! One binary per area, so a test build links the dependency tree (OTel, tonic, rustls) a
//! few times rather than once per file.

// The support tree is shared by every test binary and each uses a different part of it, so
// an item one binary does not use is not dead code.
#[allow(dead_code)]
#[path = "../support/mod.rs"]
mod support;

mod browser;
mod probe_openai;
mod probe_session;
mod probe_sim;
mod prometheus_e2e;
mod simulate_timing;
mod soak;
