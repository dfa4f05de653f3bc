//! Command-line shape of the `rtprobe` binary: the subcommands and their flags. Parsing only;
//! `main.rs` dispatches, and each subcommand's flags turn into validated values in the module
//! that owns them (config, simulate, serve).

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::simulate::SimArgs;

#[derive(Debug, Parser)]
#[command(
    name = "rtprobe",
    version,
    about = "Synthetic realtime speech-to-text probes for vLLM /v1/realtime, exported as OpenTelemetry histograms",
    propagate_version = true
)]
pub struct Cli {
    /// Log filter: a level (`info`) or `target=level` directives (`rtprobe=debug,info`).
    #[arg(long, global = true, env = "RTPROBE_LOG", default_value = "info")]
    pub log_level: String,
    /// Log line format.
    #[arg(long, global = true, env = "RTPROBE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the sidecar: scheduled probes, /metrics, health, reload, status page, OTLP push.
    Serve(crate::serve::ServeArgs),
    /// Run one probe now and print a readable table (or JSON).
    Probe(ProbeArgs),
    /// Validate a config file; exit non-zero with a precise message if it is wrong.
    CheckConfig {
        /// The config file to check.
        config: PathBuf,
    },
    /// Concurrency sweep of one probe: each level in turn, per-level figures, the highest level
    /// within the SLO, the first with server errors, charts.
    Load(crate::load::run::LoadArgs),
    /// Run the built-in vLLM-compatible realtime server (demos, dashboards, tests).
    Simulate(SimArgs),
    /// The simulator and `serve` wired together on an embedded config: live metrics, no vLLM.
    Demo(DemoArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct ProbeArgs {
    /// Config file holding the probe (with --probe).
    #[arg(long, short, requires = "probe", conflicts_with_all = ["target", "audio"])]
    pub config: Option<PathBuf>,
    /// Name of the probe in --config (defaults to the only probe when there is one).
    #[arg(long)]
    pub probe: Option<String>,
    /// Ad hoc: server URL (http(s)://host:port or ws(s)://…/v1/realtime).
    #[arg(long, requires = "audio")]
    pub target: Option<String>,
    /// Ad hoc: audio file (WAV or FLAC).
    #[arg(long)]
    pub audio: Option<PathBuf>,
    /// Ad hoc: model name, or `auto` for the first id of GET /v1/models.
    #[arg(long, default_value = "auto")]
    pub model: String,
    /// Ad hoc: reference transcript for WER.
    #[arg(long)]
    pub reference: Option<String>,
    /// Ad hoc: audio chunk duration.
    #[arg(long, default_value = "100ms")]
    pub chunk: String,
    /// Ad hoc: `realtime` (paced) or `burst` (guidellm order).
    #[arg(long, default_value = "realtime")]
    pub pacing: String,
    /// Ad hoc: name of an environment variable holding a bearer token.
    #[arg(long, value_name = "VAR")]
    pub bearer_token_env: Option<String>,
    /// Ad hoc: PEM CA file to trust for wss.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Ad hoc: wire dialect, `vllm` or `openai` (OpenAI GA transcription sessions).
    #[arg(long, default_value = "vllm")]
    pub dialect: String,
    /// Ad hoc, openai dialect: `none` (manual commit) or `server_vad`.
    #[arg(long)]
    pub turn_detection: Option<String>,
    /// Ad hoc, openai dialect: PCM rate declared and streamed (default 24000).
    #[arg(long)]
    pub sample_rate: Option<u32>,
    /// Ad hoc, openai dialect: transcription language (ISO-639-1).
    #[arg(long)]
    pub language: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also draw the run (success or failure) as an SVG waterfall into this file.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    /// No progress line while streaming.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Where the exporter listens (/metrics, status page).
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub listen: String,
    /// Where the built-in simulator listens.
    #[arg(long, default_value = "127.0.0.1:18000")]
    pub sim_listen: std::net::SocketAddr,
    /// Stop after this long (e.g. `2m`); runs until Ctrl-C when absent.
    #[arg(long)]
    pub duration: Option<String>,
}
