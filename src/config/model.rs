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

/// Which shape of session update the OpenAI dialect sends (docs/protocol-openai.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionUpdate {
    /// `session.update{session:{type:"transcription",audio:{input:{…}}}}`.
    #[default]
    Ga,
    /// The legacy beta `transcription_session.update` (`input_audio_format: "pcm16"`, 24 kHz
    /// only), for older servers and OpenAI's beta API.
    Beta,
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
    /// OpenAI: the session update's shape.
    pub session_update: SessionUpdate,
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
            session_update: SessionUpdate::Ga,
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

    /// A probe of `name` at `ws://h:1/v1/realtime` with the defaults and model `auto`, for
    /// unit tests that need a spec but no config file.
    #[cfg(test)]
    pub(crate) fn example(name: &str) -> ProbeSpec {
        ProbeSpec {
            name: name.into(),
            target: Target {
                ws_url: "ws://h:1/v1/realtime".into(),
                http_base: "http://h:1".into(),
                host: "h".into(),
                port: 1,
                secure: false,
            },
            model: ModelChoice::Auto,
            audio: "a.wav".into(),
            reference: None,
            max_wer: None,
            chunk: Duration::from_millis(100),
            pacing: Pacing::Realtime,
            deadlines: Deadlines::default(),
            headers: vec![],
            bearer: None,
            tls: TlsSettings::default(),
            labels: Default::default(),
            interval: Duration::from_secs(60),
            timeout: Duration::from_secs(30),
            concurrency: 1,
            jitter: 0.0,
            dialect: Default::default(),
            utterances: Vec::new(),
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
    /// Export histograms with Base2 exponential buckets instead of the explicit ones.
    pub exponential_histograms: bool,
}

/// Histogram bucket boundaries, per kind of value. Validated strictly increasing and finite;
/// an empty list means no buckets: the histogram exports only `_sum`, `_count` and `+Inf`.
///
/// The defaults keep one probe within 150 series on `/metrics` (see the README's series
/// budget): each quantity gets the boundaries its dashboards and rules need, and the SLO
/// thresholds of `deploy/prometheus` (0.5 s round trip, 1.5 s first text) are boundaries.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Buckets {
    /// Latencies in seconds (TTFT, RTT, finalize, end-to-end).
    pub latency_seconds: Vec<f64>,
    /// Inter-token gaps in seconds.
    pub itl_seconds: Vec<f64>,
    /// Connection phases in seconds (dns, connect, tls, upgrade, session).
    pub phase_seconds: Vec<f64>,
    /// rtprobe's own lateness in seconds (scheduler delay, pacing lateness).
    pub lateness_seconds: Vec<f64>,
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
            // SLO thresholds 0.5 and 1.5 are boundaries (the rules match le="0.5", le="1.5").
            latency_seconds: vec![0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0],
            itl_seconds: vec![0.025, 0.05, 0.1, 0.25, 0.5, 1.0],
            phase_seconds: vec![0.001, 0.01, 0.05, 0.25, 1.0],
            lateness_seconds: vec![0.001, 0.005, 0.025, 0.1, 0.5],
            // Dashboards read only the means of these: `_sum` / `_count`.
            ratio: Vec::new(),
            tokens_per_second: Vec::new(),
            tokens: Vec::new(),
        }
    }
}

/// Histograms a config may switch off (`metrics.disabled`), by Prometheus name, with their OTel
/// instrument names. The two SLO histograms (`rtprobe_round_trip_last_seconds`,
/// `rtprobe_time_to_first_text_seconds`) feed the shipped rules and cannot be switched off.
pub const OPTIONAL_HISTOGRAMS: [(&str, &str); 14] = [
    (
        "gen_ai_client_operation_duration_seconds",
        "gen_ai.client.operation.duration",
    ),
    (
        "gen_ai_client_operation_time_to_first_chunk_seconds",
        "gen_ai.client.operation.time_to_first_chunk",
    ),
    (
        "gen_ai_client_operation_time_per_output_chunk_seconds",
        "gen_ai.client.operation.time_per_output_chunk",
    ),
    (
        "rtprobe_guidellm_inter_token_latency_seconds",
        "rtprobe.guidellm.inter_token_latency",
    ),
    ("rtprobe_round_trip_mean_seconds", "rtprobe.round_trip.mean"),
    (
        "rtprobe_finalize_duration_seconds",
        "rtprobe.finalize.duration",
    ),
    ("rtprobe_phase_duration_seconds", "rtprobe.phase.duration"),
    (
        "rtprobe_send_window_audio_rate_ratio",
        "rtprobe.send_window.audio_rate",
    ),
    (
        "rtprobe_send_window_output_tokens_per_second",
        "rtprobe.send_window.output_tokens",
    ),
    (
        "rtprobe_decode_token_rate_per_second",
        "rtprobe.decode.token_rate",
    ),
    ("gen_ai_client_token_usage", "gen_ai.client.token.usage"),
    (
        "rtprobe_transcript_word_error_rate_ratio",
        "rtprobe.transcript.word_error_rate",
    ),
    ("rtprobe_pacing_lateness_seconds", "rtprobe.pacing.lateness"),
    ("rtprobe_scheduler_delay_seconds", "rtprobe.scheduler.delay"),
];

/// How histograms appear in `/metrics`' protobuf format (the text format always has classic
/// buckets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HistogramFormat {
    /// Classic buckets only.
    Classic,
    /// Native (exponential) buckets only.
    Native,
    /// Both: dashboards and rules on classic buckets keep working.
    #[default]
    Both,
}

/// The `metrics:` section: what `/metrics` and OTLP export beyond the bucket boundaries.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MetricsSettings {
    /// Prometheus names (from [`OPTIONAL_HISTOGRAMS`]) of histograms not exported at all.
    pub disabled: Vec<String>,
    /// Histograms in the protobuf format of `/metrics`.
    pub histograms: HistogramFormat,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        MetricsSettings {
            // Both repeat another histogram: finalize is the last round trip plus the wait for
            // `done`; guidellm's ITL is the mean of the per-gap ITL histogram.
            disabled: vec![
                "rtprobe_finalize_duration_seconds".into(),
                "rtprobe_guidellm_inter_token_latency_seconds".into(),
            ],
            histograms: HistogramFormat::Both,
        }
    }
}

impl MetricsSettings {
    /// Whether the OTel instrument `otel_name` is switched off.
    pub fn is_disabled(&self, otel_name: &str) -> bool {
        OPTIONAL_HISTOGRAMS
            .iter()
            .any(|(prom, otel)| *otel == otel_name && self.disabled.iter().any(|d| d == prom))
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
    pub metrics: MetricsSettings,
    pub probes: Vec<ProbeSpec>,
}
