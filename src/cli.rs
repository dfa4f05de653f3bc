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
    #[command(flatten)]
    pub adhoc: crate::config::adhoc::AdhocFlags,
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
