//! `rtprobe load`: a concurrency sweep against one configured probe. Each level runs the probe
//! with `concurrency = level` on the production path — `config::load`, the serve backend's
//! runner (`probe::run` → `derive`, audio prepared once) and recorder, the scheduler —
//! for a warm-up (not counted), the measured duration, and a drain of the streams still open;
//! then a cool-down before the next level. No second measurement path.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::aggregate::LoadStats;
use super::display::{self, Mode, SharedStats};
use super::render::clock;
use super::sweep::{self, Level, Slo, SweepDoc, Verdict};
use crate::config::{Config, ProbeSpec};
use crate::scheduler::{
    BACKSTOP_SLACK, Runner, Scheduler, SchedulerEvents, StreamResult, process_seed,
};
use crate::serve::Backend;
use crate::serve::backend::ProbeBackend;
use crate::sync;

/// The levels of `--concurrency`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Levels(pub Vec<u32>);

fn parse_levels(text: &str) -> Result<Levels, String> {
    sweep::parse_levels(text).map(Levels)
}

/// Flags of `rtprobe load`.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    /// Config file holding the probe.
    #[arg(long, short = 'c')]
    pub config: PathBuf,
    /// Name of the probe in --config (defaults to the only probe when there is one).
    #[arg(long)]
    pub probe: Option<String>,
    /// Concurrent streams per level, increasing: e.g. 1,4,16,64.
    #[arg(long, value_parser = parse_levels)]
    pub concurrency: Levels,
    /// Measured time per level.
    #[arg(long, value_parser = crate::config::parse_duration)]
    pub duration: Duration,
    /// Time per level before measuring (its streams are not counted).
    #[arg(long, value_parser = crate::config::parse_duration, default_value = "10s")]
    pub warmup: Duration,
    /// Pause between levels, so one level's tail does not load the next.
    #[arg(long, value_parser = crate::config::parse_duration, default_value = "5s")]
    pub cooldown: Duration,
    /// SLO on Time To Last Round Trip p90.
    #[arg(long, value_parser = crate::config::parse_duration)]
    pub slo_rtt: Duration,
    /// SLO on time to first text p90.
    #[arg(long, value_parser = crate::config::parse_duration)]
    pub slo_first_text: Duration,
    /// Directory for sweep.json and the charts (sweep.svg, and sweep.png when a converter exists).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// No live table or progress lines.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{0}")]
    Config(String),
    #[error("{path}: no probe named {name:?} (probes: {known})")]
    NoSuchProbe {
        path: PathBuf,
        name: String,
        known: String,
    },
    #[error("{path} has {n} probes ({known}): pick one with --probe")]
    WhichProbe {
        path: PathBuf,
        n: usize,
        known: String,
    },
    #[error("cannot start the probe backend: {0}")]
    Backend(String),
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What a sweep measured.
#[derive(Debug, Clone)]
pub struct SweepResult {
    pub probe: String,
    pub target: String,
    pub slo: Slo,
    pub levels: Vec<Level>,
    pub verdict: Verdict,
}

impl SweepResult {
    pub fn doc<'a>(&'a self, args: &LoadArgs) -> SweepDoc<'a> {
        SweepDoc {
            probe: &self.probe,
            target: &self.target,
            duration_s: args.duration.as_secs_f64(),
            warmup_s: args.warmup.as_secs_f64(),
            cooldown_s: args.cooldown.as_secs_f64(),
            slo: self.slo,
            levels: &self.levels,
            verdict: &self.verdict,
        }
    }
}

fn pick_probe(config: &Config, path: &Path, name: Option<&str>) -> Result<ProbeSpec, LoadError> {
    let known = || {
        config
            .probes
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match name {
        Some(n) => config
            .probes
            .iter()
            .find(|p| p.name == n)
            .cloned()
            .ok_or_else(|| LoadError::NoSuchProbe {
                path: path.to_path_buf(),
                name: n.to_string(),
                known: known(),
            }),
        None if config.probes.len() == 1 => Ok(config.probes[0].clone()),
        None => Err(LoadError::WhichProbe {
            path: path.to_path_buf(),
            n: config.probes.len(),
            known: known(),
        }),
    }
}

/// Scheduler events of one level → the metrics recorder and the level's totals. Streams that
/// started before the measurement began (during the warm-up) are left out of the totals.
struct LevelEvents {
    metrics: Arc<dyn SchedulerEvents>,
    stats: SharedStats,
    measure_start: Mutex<Instant>,
}

impl SchedulerEvents for LevelEvents {
    fn run_started(&self, probe: &ProbeSpec, delay: Duration) {
        self.metrics.run_started(probe, delay);
    }
    fn skipped(&self, probe: &ProbeSpec) {
        sync::lock(&self.stats).skipped();
        self.metrics.skipped(probe);
    }
    fn in_flight(&self, probe: &ProbeSpec, delta: i64) {
        sync::lock(&self.stats).in_flight(delta);
        self.metrics.in_flight(probe, delta);
    }
    fn stream_finished(&self, probe: &ProbeSpec, stream: u32, result: &StreamResult) {
        let start = *sync::lock(&self.measure_start);
        let at = start.elapsed().as_secs_f64();
        if at >= result.elapsed.as_secs_f64() {
            sync::lock(&self.stats).finished(result, at);
        }
        self.metrics.stream_finished(probe, stream, result);
    }
}

/// Run the sweep. Progress goes to stderr per `mode`.
pub async fn run(args: &LoadArgs, mode: Mode) -> Result<SweepResult, LoadError> {
    let path = args.config.clone();
    let config = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || crate::config::load(&path))
            .await
            .map_err(|e| LoadError::Config(e.to_string()))?
            .map_err(|e| LoadError::Config(e.to_string()))?
    };
    let spec = pick_probe(&config, &path, args.probe.as_deref())?;
    // Only the chosen probe: the backend exports (and OTLP pushes) just its series.
    let config = Config {
        probes: vec![spec.clone()],
        ..config
    };
    let (backend, runner) = tokio::task::spawn_blocking(move || {
        let backend = ProbeBackend::new(&config).map_err(|e| LoadError::Backend(e.to_string()))?;
        let runner = backend
            .prepare(&config)
            .map_err(|e| LoadError::Config(e.to_string()))?;
        Ok::<_, LoadError>((backend, runner))
    })
    .await
    .map_err(|e| LoadError::Backend(e.to_string()))??;
    let slo = Slo {
        rtt_last_p90: args.slo_rtt.as_secs_f64(),
        first_text_p90: args.slo_first_text.as_secs_f64(),
    };
    let levels_n = args.concurrency.0.len();
    let mut levels = Vec::with_capacity(levels_n);
    for (i, &n) in args.concurrency.0.iter().enumerate() {
        let spec = Arc::new(ProbeSpec {
            concurrency: n,
            ..spec.clone()
        });
        let title = format!(
            "level {}/{levels_n}: {n} concurrent stream{} of {}",
            i + 1,
            if n == 1 { "" } else { "s" },
            spec.name
        );
        let report = run_level(args, mode, &backend, runner.clone(), spec, title).await;
        levels.push(Level {
            concurrency: n,
            report,
        });
        if i + 1 < levels_n && !args.cooldown.is_zero() {
            tokio::time::sleep(args.cooldown).await;
        }
    }
    backend.shutdown(crate::serve::FLUSH_TIMEOUT).await;
    let verdict = sweep::verdict(&levels, &slo);
    Ok(SweepResult {
        probe: spec.name.clone(),
        target: spec.target.ws_url.clone(),
        slo,
        levels,
        verdict,
    })
}

async fn run_level(
    args: &LoadArgs,
    mode: Mode,
    backend: &ProbeBackend,
    runner: Arc<dyn Runner>,
    spec: Arc<ProbeSpec>,
    title: String,
) -> super::LoadReport {
    let stats: SharedStats = Arc::new(Mutex::new(LoadStats::new()));
    let events = Arc::new(LevelEvents {
        metrics: backend.events(),
        stats: stats.clone(),
        measure_start: Mutex::new(Instant::now()),
    });
    let mut scheduler = Scheduler::new(runner.clone(), events.clone(), process_seed());
    scheduler.apply(std::slice::from_ref(&spec), runner);
    if !args.warmup.is_zero() {
        if mode != Mode::Off {
            eprintln!("{title}: warming up for {}", clock(args.warmup));
        }
        tokio::time::sleep(args.warmup).await;
    }
    // Count afresh from here; streams open now stay open but their results are not counted.
    let start = Instant::now();
    sync::lock(&stats).restart();
    *sync::lock(&events.measure_start) = start;
    let live = display::spawn(stats.clone(), start, args.duration, mode, Some(title));
    tokio::time::sleep(args.duration).await;
    // Streams still open finish (their results count); a stuck one is cancelled by then.
    scheduler.shutdown(spec.timeout + BACKSTOP_SLACK).await;
    live.finish().await;
    sync::lock(&stats).report()
}

/// Write `sweep.json`, `sweep.svg` and (when `rsvg-convert` or `convert` is installed)
/// `sweep.png` into `dir`. Returns the paths written.
pub fn write_outputs(
    dir: &Path,
    result: &SweepResult,
    args: &LoadArgs,
) -> Result<Vec<PathBuf>, LoadError> {
    let write = |path: PathBuf, bytes: &[u8]| {
        std::fs::write(&path, bytes)
            .map_err(|source| LoadError::Write {
                path: path.clone(),
                source,
            })
            .map(|_| path)
    };
    std::fs::create_dir_all(dir).map_err(|source| LoadError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let json = serde_json::to_string_pretty(&result.doc(args)).unwrap_or_default() + "\n";
    let mut written = vec![write(dir.join("sweep.json"), json.as_bytes())?];
    let title = format!("rtprobe load: {} ({})", result.probe, result.target);
    let subtitle = super::sweep::headline(&result.slo, &result.verdict);
    let svg = super::chart::sweep_svg(&title, &subtitle, &result.levels, &result.slo);
    let svg_path = write(dir.join("sweep.svg"), svg.as_bytes())?;
    written.push(svg_path.clone());
    let png = dir.join("sweep.png");
    if super::chart::to_png(&svg_path, &png) {
        written.push(png);
    }
    Ok(written)
}
