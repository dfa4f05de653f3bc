//! Serve tests: the scheduler on a paused clock, HTTP routes and the admin token, serve's
//! lifecycle, run pages, dialects, end to end, and secrets that must never come out.
//!
//! One binary per area, so a test build links the dependency tree (OTel, tonic, rustls) a
//! few times rather than once per file.

// The support tree is shared by every test binary and each uses a different part of it, so
// an item one binary does not use is not dead code.
#[allow(dead_code)]
#[path = "../support/mod.rs"]
mod support;

mod admin_token;
mod dialects;
mod end_to_end;
mod lifecycle;
mod routes;
mod run_pages;
mod schedule;
mod secrets;
