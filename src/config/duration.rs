//! Human durations (`100ms`, `30s`, `5m`, `1h`, `1m30s`) for config values.

/// Serialize a `Duration` as float seconds (for `/config` and `--json`).
pub mod serde_secs {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}
