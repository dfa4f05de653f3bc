//! The built-in vLLM 0.33-compatible realtime server, for demos, dashboards and tests.
