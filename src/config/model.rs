//! The validated configuration: what every other module reads. Built only by
//! `config::load`/`config::parse` from raw YAML; every field here has passed validation, so
//! consumers never re-check. Secrets are wrapped in `Secret`, which cannot be printed.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A bearer token or other credential. `Debug`/`Display` print `<redacted>`; the only way to the
/// value is `expose()`, called where the header is built.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    pub fn new(value: impl Into<Arc<str>>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Where a bearer token comes from (kept for `/config`, which shows the source, not the value).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretSource {
    Env(String),
    File(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BearerToken {
    pub source: SecretSource,
    pub token: Secret,
}

/// The WebSocket endpoint, already normalised: `http(s)://h:p[/base]` became
/// `ws(s)://h:p[/base]/v1/realtime`; a `ws(s)://` URL is kept as written.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Target {
    /// Full `ws://` or `wss://` URL of the realtime endpoint.
    pub ws_url: String,
    /// `http://` or `https://` base of the same server (for `GET /v1/models`).
    pub http_base: String,
    pub host: String,
    pub port: u16,
    pub secure: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelChoice {
    /// Send this name in `session.update`.
    Named(String),
    /// Ask `GET /v1/models` once per run and use the first id.
    Auto,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Pacing {
    /// §6.1: update, start commit, appends at the chunk duration, final commit.
    Realtime,
    /// guidellm's order (§6.2): all appends back to back, then both commits.
    Burst,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Deadlines {
    /// From `t0` to `session.created` (dns + tcp + tls + upgrade + session).
    #[serde(with = "crate::config::duration::serde_secs")]
    pub connect: Duration,
    /// From the first audio sent to the first non-empty text.
    #[serde(with = "crate::config::duration::serde_secs")]
    pub first_text: Duration,
    /// From the final commit to `transcription.done`.
    #[serde(with = "crate::config::duration::serde_secs")]
    pub done: Duration,
}

impl Default for Deadlines {
    fn default() -> Self {
        Deadlines {
            connect: Duration::from_secs(5),
            first_text: Duration::from_secs(15),
            done: Duration::from_secs(15),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct TlsSettings {
    /// Extra PEM CA bundle to trust (on top of the system and webpki roots).
    pub ca_file: Option<PathBuf>,
    /// SNI / certificate name to verify instead of the URL host.
    pub server_name: Option<String>,
    /// Skip certificate verification. Opt-in; logged as a warning and shown in `/config`.
    pub insecure_skip_verify: bool,
}

/// The wire dialect a probe speaks (one module per dialect in `probe::dialect`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dialect {
    /// vLLM's own `/v1/realtime`: flat `session.update`, `commit{final}`, `transcription.*`.
    #[default]
    Vllm,
    /// The OpenAI GA Realtime API in transcription mode (docs/protocol-openai.md).
    #[serde(rename = "openai")]
    OpenAi,
}

impl Dialect {
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Vllm => "vllm",
            Dialect::OpenAi => "openai",
        }
    }

    /// The PCM rate the dialect streams unless `sample_rate` says otherwise.
    pub fn default_rate(self) -> u32 {
        match self {
            Dialect::Vllm => 16_000,
            Dialect::OpenAi => 24_000,
        }
    }
}

/// Who decides where an utterance ends (OpenAI dialect).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TurnDetection {
    /// `turn_detection: null`: the probe commits each utterance itself.
    #[default]
    Manual,
    /// `server_vad`: the server commits after `silence` of trailing silence, which the probe
    /// streams after the clip; the utterance ends at `speech_stopped`.
    ServerVad {
        #[serde(with = "crate::config::duration::serde_secs")]
        silence: Duration,
    },
}

/// The dialect and its settings, validated (a dialect-specific key never reaches the other).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DialectSpec {
    pub kind: Dialect,
    /// The `gen_ai.provider.name` attribute (semantic-convention values: `openai`,
    /// `azure.ai.openai`, …; `vllm` for vLLM).
    pub provider: String,
    /// PCM rate streamed (and declared, in the OpenAI dialect); audio is resampled to it at load.
    pub sample_rate: u32,
    /// OpenAI: `audio.input.transcription.language` (ISO-639-1).
    pub language: Option<String>,
    /// OpenAI: `audio.input.transcription.prompt`.
    pub prompt: Option<String>,
    pub turn_detection: TurnDetection,
}

impl Default for DialectSpec {
    fn default() -> Self {
        DialectSpec::of(Dialect::Vllm)
    }
}

impl DialectSpec {
    /// The dialect with its defaults.
    pub fn of(kind: Dialect) -> Self {
        DialectSpec {
            kind,
            provider: kind.as_str().to_string(),
            sample_rate: kind.default_rate(),
            language: None,
            prompt: None,
            turn_detection: TurnDetection::Manual,
        }
    }
}

/// One utterance of a multi-utterance session: a clip and its reference transcript.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UtteranceSpec {
    pub audio: PathBuf,
    pub reference: Option<String>,
}

/// One configured probe, validated.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ProbeSpec {
    /// Unique, `[a-zA-Z0-9_.-]{1,64}`; the `rtprobe.probe` label.
    pub name: String,
    pub target: Target,
    pub model: ModelChoice,
    /// Audio file (WAV or FLAC), resolved relative to the config file's directory.
    pub audio: PathBuf,
    /// Reference transcript for WER, if configured (inline or from a file).
    pub reference: Option<String>,
    /// A complete run whose WER exceeds this fails with `error.type="wer"` (needs `reference`).
    pub max_wer: Option<f64>,
    #[serde(with = "crate::config::duration::serde_secs")]
    pub chunk: Duration,
    pub pacing: Pacing,
    pub deadlines: Deadlines,
    /// Extra headers on the upgrade request. Values may come from env expansion.
    #[serde(skip)]
    pub headers: Vec<(String, Secret)>,
    #[serde(skip)]
    pub bearer: Option<BearerToken>,
    pub tls: TlsSettings,
    /// Static labels added to every series of this probe.
    pub labels: BTreeMap<String, String>,
    /// Schedule (used by `serve`).
    #[serde(with = "crate::config::duration::serde_secs")]
    pub interval: Duration,
    /// Whole-run bound; at most `interval`.
    #[serde(with = "crate::config::duration::serde_secs")]
    pub timeout: Duration,
    /// Parallel streams per run.
    pub concurrency: u32,
    /// Random delay added to each scheduled start, at most this fraction of the interval.
    pub jitter: f64,
    /// Wire dialect and its settings.
    pub dialect: DialectSpec,
    /// The utterances of one session, in order (`utterances:`); empty means one utterance of
    /// `audio` with `reference`. See `ProbeSpec::clips`.
    pub utterances: Vec<UtteranceSpec>,
}

impl ProbeSpec {
    /// Every utterance of one session: `utterances`, or the one clip.
    pub fn clips(&self) -> Vec<UtteranceSpec> {
        if self.utterances.is_empty() {
            vec![UtteranceSpec {
                audio: self.audio.clone(),
                reference: self.reference.clone(),
            }]
        } else {
            self.utterances.clone()
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OtlpProtocol {
    Grpc,
    HttpProtobuf,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct OtlpSettings {
    pub endpoint: String,
    pub protocol: OtlpProtocol,
    #[serde(skip)]
    pub headers: Vec<(String, Secret)>,
    #[serde(with = "crate::config::duration::serde_secs")]
    pub interval: Duration,
    #[serde(with = "crate::config::duration::serde_secs")]
    pub timeout: Duration,
    /// Export delta temporality instead of cumulative.
    pub delta_temporality: bool,
    /// Also export one trace per probe run (`otlp.traces`).
    pub traces: bool,
}

/// Histogram bucket boundaries, per kind of value. Validated strictly increasing and finite.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Buckets {
    /// Latencies in seconds (TTFT, RTT, finalize, end-to-end, phases, scheduler delay).
    pub latency_seconds: Vec<f64>,
    /// Inter-token gaps in seconds.
    pub itl_seconds: Vec<f64>,
    /// Unitless ratios (send-window audio rate, WER).
    pub ratio: Vec<f64>,
    /// Token rates in tokens per second.
    pub tokens_per_second: Vec<f64>,
    /// Token counts.
    pub tokens: Vec<f64>,
}

impl Default for Buckets {
    fn default() -> Self {
        Buckets {
            // vLLM's time_to_first_token_seconds boundaries (0.001 … 80) plus SLO-friendly
            // steps between 50 ms and 10 s.
            latency_seconds: vec![
                0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5,
                0.75, 1.0, 1.5, 2.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
            ],
            // vLLM's inter_token_latency_seconds boundaries.
            itl_seconds: vec![
                0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
                10.0, 20.0, 40.0, 80.0,
            ],
            ratio: vec![
                0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 0.9, 0.95, 0.98, 0.99, 1.0, 1.01,
                1.02, 1.05, 1.1, 1.25, 1.5, 2.0, 5.0, 10.0, 100.0,
            ],
            tokens_per_second: vec![
                0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 50.0, 75.0, 100.0, 200.0, 500.0,
                1000.0, 5000.0,
            ],
            tokens: vec![
                1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0,
            ],
        }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ServerSettings {
    /// Address for `/metrics` and the status endpoints.
    pub listen: String,
    /// Guards the endpoints that act or reveal configuration (`/-/reload`, `/config`,
    /// `/probe`). Only its source is shown by `/config`.
    #[serde(serialize_with = "token_source")]
    pub admin_token: Option<BearerToken>,
}

fn token_source<S: serde::Serializer>(t: &Option<BearerToken>, s: S) -> Result<S::Ok, S::Error> {
    serde::Serialize::serialize(&t.as_ref().map(|t| &t.source), s)
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            listen: "0.0.0.0:9464".into(),
            admin_token: None,
        }
    }
}

/// A whole validated config file.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Config {
    pub server: ServerSettings,
    pub otlp: Option<OtlpSettings>,
    pub buckets: Buckets,
    pub probes: Vec<ProbeSpec>,
}
