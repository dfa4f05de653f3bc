//! The config file exactly as written: serde structs with unknown fields rejected, so a typo
//! (`intervall: 30s`) is an error with its line, not a silently ignored key. Nothing here is
//! trusted; `validate` turns it into `model::Config`.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// A duration as written (`100ms`, `30s`); parsed in `validate`, where the field's path and
/// line are known, so a bad one is reported as `probes[0].chunk … at line 6`.
pub type DurationText = String;

/// Top level of `rtprobe.yaml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `server.listen`: address of `/metrics` and the status endpoints (default `0.0.0.0:9464`).
    #[serde(default)]
    pub server: Option<RawServer>,
    /// OTLP push; absent = off unless `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
    #[serde(default)]
    pub otlp: Option<RawOtlp>,
    /// Histogram bucket boundaries per kind of value.
    #[serde(default)]
    pub buckets: Option<RawBuckets>,
    /// What `/metrics` and OTLP export (`disabled` histograms).
    #[serde(default)]
    pub metrics: Option<RawMetrics>,
    /// Values every probe inherits unless it sets its own.
    #[serde(default)]
    pub defaults: Option<RawProbeDefaults>,
    #[serde(default)]
    pub probes: Vec<RawProbe>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<String>,
    /// `{env: VAR}` or `{file: PATH}`: when set, `POST /-/reload`, `/config` and `/probe` need
    /// `Authorization: Bearer <token>`. `/metrics`, `/healthz`, `/readyz` and `/` stay open.
    pub admin_token: Option<RawBearer>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOtlp {
    /// `http://collector:4317` (gRPC) or `http://collector:4318` (HTTP; `/v1/metrics` is appended).
    pub endpoint: Option<String>,
    /// `grpc` (default) or `http/protobuf`.
    pub protocol: Option<String>,
    pub interval: Option<DurationText>,
    pub timeout: Option<DurationText>,
    /// Extra request headers; values may use `${VAR}`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// `cumulative` (default) or `delta`.
    pub temporality: Option<String>,
    /// Also export one trace per probe run (default false).
    pub traces: Option<bool>,
    /// `explicit` (default) or `exponential`.
    pub histograms: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBuckets {
    pub latency_seconds: Option<Vec<f64>>,
    pub itl_seconds: Option<Vec<f64>>,
    pub phase_seconds: Option<Vec<f64>>,
    pub lateness_seconds: Option<Vec<f64>>,
    pub ratio: Option<Vec<f64>>,
    pub tokens_per_second: Option<Vec<f64>>,
    pub tokens: Option<Vec<f64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    /// Prometheus names of histograms to switch off; absent = the defaults.
    pub disabled: Option<Vec<String>>,
    /// `classic`, `native` or `both` (default): histograms in the protobuf format.
    pub histograms: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDeadlines {
    pub connect: Option<DurationText>,
    pub first_text: Option<DurationText>,
    pub done: Option<DurationText>,
}

/// The keys `defaults:` may set (a subset of a probe's).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProbeDefaults {
    pub interval: Option<DurationText>,
    pub timeout: Option<DurationText>,
    pub chunk: Option<DurationText>,
    pub pacing: Option<String>,
    pub deadlines: Option<RawDeadlines>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub concurrency: Option<u32>,
    pub jitter: Option<f64>,
    pub model: Option<String>,
    /// `vllm` (default) or `openai`.
    pub dialect: Option<String>,
    /// `gen_ai.provider.name` (default: the dialect's name).
    pub provider: Option<String>,
    pub max_wer: Option<f64>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBearer {
    /// Name of an environment variable holding the token.
    pub env: Option<String>,
    /// Path of a file holding the token (a Kubernetes Secret mount); one trailing newline is trimmed.
    pub file: Option<PathBuf>,
    /// Rejected with a pointer to `env`/`file`: a token inline in YAML ends up in ConfigMaps and logs.
    pub value: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub ca_file: Option<PathBuf>,
    pub server_name: Option<String>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// One probe.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProbe {
    pub name: Option<String>,
    pub target: Option<String>,
    pub model: Option<String>,
    pub audio: Option<PathBuf>,
    pub reference: Option<String>,
    pub reference_file: Option<PathBuf>,
    pub max_wer: Option<f64>,
    pub chunk: Option<DurationText>,
    pub pacing: Option<String>,
    pub interval: Option<DurationText>,
    pub timeout: Option<DurationText>,
    pub concurrency: Option<u32>,
    pub jitter: Option<f64>,
    pub deadlines: Option<RawDeadlines>,
    /// Extra upgrade-request headers: a string (`${VAR}` expands) or, for a credential such as
    /// Azure's `api-key`, `{env: VAR}` / `{file: PATH}` like `bearer_token`.
    #[serde(default)]
    pub headers: BTreeMap<String, RawHeaderValue>,
    pub bearer_token: Option<RawBearer>,
    pub tls: Option<RawTls>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `vllm` (default) or `openai`.
    pub dialect: Option<String>,
    /// `gen_ai.provider.name` (default: the dialect's name).
    pub provider: Option<String>,
    /// OpenAI dialect: PCM rate declared and streamed (default 24000).
    pub sample_rate: Option<u32>,
    /// OpenAI dialect: transcription language (ISO-639-1).
    pub language: Option<String>,
    /// OpenAI dialect: transcription prompt.
    pub prompt: Option<String>,
    /// OpenAI dialect: `none` (manual commits, default) or `server_vad`.
    pub turn_detection: Option<String>,
    /// OpenAI dialect with `server_vad`: the silence that ends a turn (default 500ms).
    pub vad_silence: Option<DurationText>,
    /// OpenAI dialect: `ga` (`session.update`, default) or `beta` (the legacy
    /// `transcription_session.update`, 24 kHz only).
    pub session_update: Option<String>,
    /// Several utterances on one connection: a count (the clip repeated) or a list of clips.
    pub utterances: Option<RawUtterances>,
}

/// A probe header value: text, or a secret read like a bearer token.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawHeaderValue {
    Text(String),
    Secret(RawBearer),
}

/// `utterances: 3`, or `utterances: [{audio: a.wav, reference: "…"}, …]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawUtterances {
    Count(u32),
    List(Vec<RawUtterance>),
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUtterance {
    pub audio: Option<PathBuf>,
    pub reference: Option<String>,
    pub reference_file: Option<PathBuf>,
}
