//! `rtprobe serve`: the sidecar. Wires the config loader, the scheduler, the HTTP server,
//! config reload (SIGHUP, `POST /-/reload`, file change) and the lifecycle (SIGTERM/SIGINT or
//! `--duration`: stop scheduling, cancel what is left after the grace period, flush, exit).
//!
//! Probe execution and metrics come in through a [`Backend`], so this module compiles and is
//! tested without the WebSocket client or the OTel SDK; the production backend is `backend.rs`
//! over `probe::run`, `derive` and `metrics::Telemetry`.

pub mod backend;
pub mod config_view;
pub mod reload;
pub mod run_page;
pub mod status;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use crate::config::{Config, ConfigError, ProbeSpec};
use crate::http::{App, AppError, ConfigFormat, HttpError, HttpServer, ProbeAnswer, ProbeNow};
use crate::load::display::{self, Mode, SharedStats};
use crate::load::{LoadReport, LoadStats};
use crate::scheduler::{
    BACKSTOP_SLACK, BoxFuture, DebugRun, Runner, Scheduler, SchedulerEvents, StreamResult,
    process_seed,
};
use crate::sync;
use backend::BackendError;
use status::StatusBoard;

/// Default time in-flight runs get to finish at shutdown before they are cancelled.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);
/// Bound on the final metrics flush at shutdown (OTLP retries back off for seconds).
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Flags of `rtprobe serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Config file (YAML). Reloaded on SIGHUP, `POST /-/reload` and when it changes on disk.
    #[arg(long, short = 'c', env = "RTPROBE_CONFIG")]
    pub config: PathBuf,
    /// Listen address for /metrics and the status endpoints; overrides `server.listen`.
    #[arg(long)]
    pub listen: Option<String>,
    /// Run the schedule this long (e.g. 10m), then stop and print a summary; a live table is
    /// shown on stderr meanwhile (plain lines when stderr is not a terminal).
    #[arg(long, value_parser = crate::config::parse_duration)]
    pub duration: Option<Duration>,
    /// With --duration: no live table or progress lines.
    #[arg(long, short, requires = "duration")]
    pub quiet: bool,
    /// With --duration: print the summary as JSON.
    #[arg(long, requires = "duration")]
    pub json: bool,
    /// Time in-flight runs get to finish at shutdown before they are cancelled.
    #[arg(long, value_parser = crate::config::parse_duration, default_value = "5s")]
    pub grace_period: Duration,
    /// Do not watch the config file for changes (SIGHUP and POST /-/reload still work).
    #[arg(long)]
    pub no_watch: bool,
}

impl ServeArgs {
    /// Args for `config` with every other flag at its default.
    pub fn new(config: impl Into<PathBuf>) -> Self {
        ServeArgs {
            config: config.into(),
            listen: None,
            duration: None,
            quiet: false,
            json: false,
            grace_period: DEFAULT_GRACE,
            no_watch: false,
        }
    }
}

/// Loads and validates a config file: `config::load` in production (the same code as
/// `check-config`; config errors never contain secrets).
pub type Loader = dyn Fn(&Path) -> Result<Config, ConfigError> + Send + Sync;

/// The bounds of a config loader, shared by [`Serve::start`] and [`run`]: anything callable
/// like `config::load` that can move to a blocking thread.
pub trait LoadConfig: Fn(&Path) -> Result<Config, ConfigError> + Send + Sync + 'static {}
impl<L> LoadConfig for L where L: Fn(&Path) -> Result<Config, ConfigError> + Send + Sync + 'static {}

/// The backend factory, shared by [`Serve::start`] and [`run`]: called once with the first
/// config (`ProbeBackend::new` in production).
pub trait MakeBackend<B: Backend>: FnOnce(&Config) -> Result<B, BackendError> {}
impl<B: Backend, F> MakeBackend<B> for F where F: FnOnce(&Config) -> Result<B, BackendError> {}

/// What `serve` needs from probe execution and metrics.
pub trait Backend: Send + Sync + 'static {
    /// Prepare a config generation (decode each probe's audio once) and return the runner
    /// for its probes. An error rejects the config like a validation error. Called from a
    /// blocking thread.
    fn prepare(&self, config: &Config) -> Result<Arc<dyn Runner>, BackendError>;
    /// Where scheduler events go for metrics (skips, in-flight, delay, each stream's outcome).
    fn events(&self) -> Arc<dyn SchedulerEvents>;
    /// `/metrics`: (content type, body) for an `Accept` header.
    fn render_metrics(&self, accept: Option<&str>) -> (&'static str, Vec<u8>);
    /// Set the reload gauges: outcome and Unix time of the attempt.
    fn config_reloaded(&self, success: bool, unix_seconds: f64);
    /// Final flush (OTLP), bounded by `timeout`.
    fn shutdown(&self, timeout: Duration) -> BoxFuture<()>;
}

/// Why a reload left the running config in place.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The loader rejected the new config.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The backend could not take the new config (e.g. its audio cannot be prepared).
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("config load task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("shutting down; reload ignored")]
    ShuttingDown,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The backend could not be built from the first config.
    #[error("cannot start metrics/probe backend: {0}")]
    Backend(#[source] BackendError),
    /// The backend could not take the first config (like an invalid config: nothing starts).
    #[error(transparent)]
    Prepare(BackendError),
    #[error("start-up task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error(transparent)]
    Watch(#[from] reload::WatchError),
    #[error("cannot install signal handlers: {0}")]
    Signal(#[source] std::io::Error),
}

/// Why serving stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// SIGTERM, SIGINT or the caller's shutdown future.
    Signal,
    /// `--duration` elapsed.
    DurationElapsed,
}

/// How serving ended.
#[derive(Debug, Clone)]
pub struct ServeOutcome {
    pub reason: StopReason,
    /// In-flight runs all finished within the grace period (none had to be cancelled).
    pub drained: bool,
    /// Totals, in `--duration` mode (print them with `load::render::table`).
    pub summary: Option<LoadReport>,
}

/// Who asked for a reload (for logs, and to skip no-op file events).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadTrigger {
    Signal,
    Http,
    FileChange,
}

/// Fans scheduler events out to the backend's metrics, the status board and the totals of a
/// time-bound run.
struct Events {
    metrics: Arc<dyn SchedulerEvents>,
    status: Arc<StatusBoard>,
    summary: Option<(SharedStats, tokio::time::Instant)>,
}

impl SchedulerEvents for Events {
    fn run_started(&self, probe: &ProbeSpec, delay: Duration) {
        self.status.mark_attempted(&probe.name);
        self.metrics.run_started(probe, delay);
    }
    fn skipped(&self, probe: &ProbeSpec) {
        self.status.record_skip(&probe.name);
        if let Some((s, _)) = &self.summary {
            sync::lock(s).skipped();
        }
        self.metrics.skipped(probe);
    }
    fn in_flight(&self, probe: &ProbeSpec, delta: i64) {
        if let Some((s, _)) = &self.summary {
            sync::lock(s).in_flight(delta);
        }
        self.metrics.in_flight(probe, delta);
    }
    fn stream_finished(&self, probe: &ProbeSpec, stream: u32, result: &StreamResult) {
        self.status.record(&probe.name, stream, result);
        if let Some((s, start)) = &self.summary {
            let at = start.elapsed().as_secs_f64();
            sync::lock(s).finished(result, at);
        }
        self.metrics.stream_finished(probe, stream, result);
    }
}

struct State {
    path: PathBuf,
    loader: Arc<Loader>,
    backend: Arc<dyn Backend>,
    config: RwLock<Arc<Config>>,
    runner: RwLock<Arc<dyn Runner>>,
    /// File contents at the last reload attempt, to ignore file events that change nothing.
    last_seen: Mutex<Option<Vec<u8>>>,
    scheduler: tokio::sync::Mutex<Option<Scheduler>>,
    status: Arc<StatusBoard>,
    events: Arc<Events>,
    /// One on-demand `/probe` at a time: it is a real probe against a real server.
    debug_busy: Arc<AtomicBool>,
    reload_lock: tokio::sync::Mutex<()>,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn specs_of(config: &Config) -> Vec<Arc<ProbeSpec>> {
    config.probes.iter().cloned().map(Arc::new).collect()
}

impl State {
    async fn load_and_prepare(&self) -> Result<(Config, Arc<dyn Runner>), ReloadError> {
        let loader = self.loader.clone();
        let backend = self.backend.clone();
        let path = self.path.clone();
        // Loading reads files and prepare decodes audio: keep both off the async workers.
        tokio::task::spawn_blocking(move || {
            let config = loader(&path)?;
            let runner = backend.prepare(&config)?;
            Ok((config, runner))
        })
        .await?
    }

    async fn reload(&self, trigger: ReloadTrigger) -> Result<String, ReloadError> {
        let _serial = self.reload_lock.lock().await;
        let bytes = tokio::fs::read(&self.path).await.ok();
        {
            let mut last = sync::lock(&self.last_seen);
            if trigger == ReloadTrigger::FileChange && bytes.is_some() && *last == bytes {
                tracing::debug!(path = %self.path.display(), "config file event without content change");
                return Ok("unchanged".into());
            }
            *last = bytes;
        }
        let result = self.load_and_prepare().await;
        let (config, runner) = match result {
            Ok(x) => x,
            Err(e) => {
                self.backend.config_reloaded(false, unix_now());
                tracing::error!(?trigger, error = %e, "config reload failed; keeping the running config");
                return Err(e);
            }
        };
        let mut sched = self.scheduler.lock().await;
        let Some(scheduler) = sched.as_mut() else {
            return Err(ReloadError::ShuttingDown);
        };
        let old = sync::read(&self.config).clone();
        if old.server != config.server {
            tracing::warn!("server.listen takes effect only after a restart");
        }
        let specs = specs_of(&config);
        self.status.set_probes(&specs);
        let report = scheduler.apply(&specs, runner.clone());
        *sync::write(&self.runner) = runner;
        *sync::write(&self.config) = Arc::new(config);
        self.backend.config_reloaded(true, unix_now());
        tracing::info!(?trigger, %report, "config reloaded");
        Ok(format!("reloaded: {report}"))
    }
}

/// What the HTTP routes read; `AppHandle` exposes it as an `App`.
impl State {
    fn metrics(&self, accept: Option<&str>) -> (&'static str, Vec<u8>) {
        self.backend.render_metrics(accept)
    }

    fn readiness(&self) -> Result<(), status::NotReady> {
        self.status.readiness()
    }

    fn config(&self, format: ConfigFormat) -> Result<String, config_view::ViewError> {
        let config = sync::read(&self.config).clone();
        config_view::render(&config, format)
    }

    fn status_page(&self) -> String {
        self.status.render_html()
    }

    fn probe_now(&self, name: &str, html: bool) -> ProbeNow {
        let config = sync::read(&self.config).clone();
        let Some(spec) = config.probes.iter().find(|p| p.name == name) else {
            return ProbeNow::Unknown;
        };
        if self.debug_busy.swap(true, Ordering::AcqRel) {
            return ProbeNow::Busy;
        }
        let runner = sync::read(&self.runner).clone();
        let busy = BusyGuard(self.debug_busy.clone());
        let bound = spec.timeout + BACKSTOP_SLACK;
        let spec = Arc::new(spec.clone());
        let fut = runner.debug_run(spec.clone());
        let started = SystemTime::now();
        ProbeNow::Run(Box::pin(async move {
            let _busy = busy;
            let run = match tokio::time::timeout(bound, fut).await {
                Ok(run) => run,
                Err(_) => DebugRun {
                    json: serde_json::json!({
                        "error": format!("no result within the probe timeout + {}s", BACKSTOP_SLACK.as_secs()),
                    }),
                    timeline: None,
                },
            };
            if !html {
                return ProbeAnswer::Json(run.json);
            }
            let t = run.timeline.as_deref();
            let error = t.and_then(|t| t.outcome.as_ref().err());
            let missing = run.json["error"]
                .as_str()
                .unwrap_or("the runner kept no timeline");
            ProbeAnswer::Html(run_page::render(&run_page::RunView {
                spec: &spec,
                heading: "on-demand run".into(),
                at: t.map_or(started, |t| t.started),
                stream: None,
                elapsed: t.map_or(Duration::ZERO, |t| t.ended),
                error: error.map(|e| (e.kind, e.detail.as_str())),
                timeline: t,
                trace_id: None,
                missing,
            }))
        }))
    }
}

/// Clears the `/probe` busy flag however the request ends (including a dropped connection).
struct BusyGuard(Arc<AtomicBool>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// The HTTP view of the state. A newtype over the `Arc` because reload needs an owned
/// handle to return a `'static` future.
struct AppHandle(Arc<State>);

impl App for AppHandle {
    fn metrics(&self, accept: Option<&str>) -> (&'static str, Vec<u8>) {
        self.0.metrics(accept)
    }
    fn readiness(&self) -> Result<(), AppError> {
        Ok(self.0.readiness()?)
    }
    fn reload(&self) -> BoxFuture<Result<String, AppError>> {
        let state = self.0.clone();
        Box::pin(async move { Ok(state.reload(ReloadTrigger::Http).await?) })
    }
    fn config(&self, format: ConfigFormat) -> Result<String, AppError> {
        Ok(self.0.config(format)?)
    }
    fn status_page(&self) -> String {
        self.0.status_page()
    }
    fn probe_now(&self, name: &str, html: bool) -> ProbeNow {
        self.0.probe_now(name, html)
    }
    fn run_page(&self, probe: &str, id: u64) -> Option<String> {
        self.0.status.run_page(probe, id)
    }
    fn admin_token(&self) -> Option<crate::config::Secret> {
        let config = sync::read(&self.0.config);
        config.server.admin_token.as_ref().map(|t| t.token.clone())
    }
}

/// A cloneable handle that triggers reloads (for signal handlers and tests).
#[derive(Clone)]
pub struct Reloader(Arc<State>);

impl Reloader {
    pub async fn reload(&self, trigger: ReloadTrigger) -> Result<String, ReloadError> {
        self.0.reload(trigger).await
    }
}

/// A running sidecar: scheduler, HTTP server and (unless disabled) the config file watch.
pub struct Serve {
    state: Arc<State>,
    http: HttpServer,
    watcher: Option<reload::ConfigWatcher>,
    args: ServeArgs,
}

impl Serve {
    /// Load the config (an invalid one is an error: nothing starts), build the backend from
    /// it, bind the HTTP server and start the schedule.
    pub async fn start<B: Backend>(
        args: ServeArgs,
        loader: impl LoadConfig,
        make_backend: impl MakeBackend<B>,
    ) -> Result<Serve, ServeError> {
        let loader: Arc<Loader> = Arc::new(loader);
        let path = args.config.clone();
        let first = {
            let loader = loader.clone();
            let path = path.clone();
            tokio::task::spawn_blocking(move || loader(&path)).await??
        };
        let backend: Arc<dyn Backend> =
            Arc::new(make_backend(&first).map_err(ServeError::Backend)?);
        let runner = {
            let backend = backend.clone();
            let config = first.clone();
            tokio::task::spawn_blocking(move || backend.prepare(&config))
                .await?
                .map_err(ServeError::Prepare)?
        };
        // The first load counts as a successful load, so the reload gauges exist from the start
        // (dashboards and the "config reload failed" alert need a value to compare against).
        backend.config_reloaded(true, unix_now());
        let status = Arc::new(StatusBoard::new());
        let events = Arc::new(Events {
            metrics: backend.events(),
            status: status.clone(),
            summary: args.duration.map(|_| {
                (
                    Arc::new(Mutex::new(LoadStats::new())),
                    tokio::time::Instant::now(),
                )
            }),
        });
        let specs = specs_of(&first);
        status.set_probes(&specs);
        let mut scheduler = Scheduler::new(runner.clone(), events.clone(), process_seed());
        let listen = args
            .listen
            .clone()
            .unwrap_or_else(|| first.server.listen.clone());
        let state = Arc::new(State {
            path: path.clone(),
            loader,
            backend,
            config: RwLock::new(Arc::new(first)),
            runner: RwLock::new(runner.clone()),
            last_seen: Mutex::new(std::fs::read(&path).ok()),
            scheduler: tokio::sync::Mutex::new(None),
            status,
            events,
            debug_busy: Arc::new(AtomicBool::new(false)),
            reload_lock: tokio::sync::Mutex::new(()),
        });
        let http = HttpServer::bind(&listen, Arc::new(AppHandle(state.clone()))).await?;
        tracing::info!(addr = %http.local_addr(), probes = specs.len(), "serving");
        let report = scheduler.apply(&specs, runner);
        tracing::info!(%report, "probes scheduled");
        *state.scheduler.lock().await = Some(scheduler);
        let watcher = if args.no_watch {
            None
        } else {
            let st = state.clone();
            Some(reload::watch(
                &path,
                reload::DEBOUNCE,
                Arc::new(move || {
                    let st = st.clone();
                    Box::pin(async move {
                        let _ = st.reload(ReloadTrigger::FileChange).await;
                    })
                }),
            )?)
        };
        Ok(Serve {
            state,
            http,
            watcher,
            args,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.http.local_addr()
    }

    pub fn reloader(&self) -> Reloader {
        Reloader(self.state.clone())
    }

    /// The config running now.
    pub fn config(&self) -> Arc<Config> {
        sync::read(&self.state.config).clone()
    }

    /// Serve until `stop` resolves or `--duration` elapses, then shut down in order: stop
    /// watching and scheduling, give in-flight runs the grace period, cancel the rest
    /// (recorded as `cancelled`), close the HTTP server, flush metrics.
    pub async fn run_until(self, stop: impl Future<Output = ()>) -> ServeOutcome {
        let Serve {
            state,
            http,
            watcher,
            args,
        } = self;
        let live = match (&state.events.summary, args.duration) {
            (Some((stats, start)), Some(d)) => Some(display::spawn(
                stats.clone(),
                *start,
                d,
                Mode::detect(args.quiet),
                None,
            )),
            _ => None,
        };
        let reason = match args.duration {
            Some(d) => tokio::select! {
                _ = stop => StopReason::Signal,
                _ = tokio::time::sleep(d) => StopReason::DurationElapsed,
            },
            None => {
                stop.await;
                StopReason::Signal
            }
        };
        tracing::info!(?reason, grace = ?args.grace_period, "shutting down");
        drop(watcher);
        let scheduler = state.scheduler.lock().await.take();
        let drained = match scheduler {
            Some(s) => s.shutdown(args.grace_period).await.drained,
            None => true,
        };
        if !drained {
            tracing::warn!("in-flight runs cancelled after the grace period");
        }
        // /metrics stays up through the grace period; the final OTLP flush comes after the
        // last cancellation is recorded and the server is closed.
        http.shutdown().await;
        state.backend.shutdown(FLUSH_TIMEOUT).await;
        if let Some(live) = live {
            live.finish().await;
        }
        let summary = state
            .events
            .summary
            .as_ref()
            .map(|(s, _)| sync::lock(s).report());
        ServeOutcome {
            reason,
            drained,
            summary,
        }
    }
}

/// `rtprobe serve`: start, reload on SIGHUP, stop on SIGTERM/SIGINT (or after `--duration`).
/// Logging must be initialised by the caller. On success the process should exit 0; print
/// `outcome.summary` when present.
pub async fn run<B: Backend>(
    args: ServeArgs,
    loader: impl LoadConfig,
    make_backend: impl MakeBackend<B>,
) -> Result<ServeOutcome, ServeError> {
    let stop = crate::signals::stop_signal().map_err(ServeError::Signal)?;
    let serve = Serve::start(args, loader, make_backend).await?;
    let hup = signals::spawn_reload_on_hup(serve.reloader()).map_err(ServeError::Signal)?;
    let outcome = serve.run_until(stop).await;
    hup.abort();
    Ok(outcome)
}

mod signals {
    //! SIGHUP reloads (the stop signal is the program's one, `crate::signals`).

    use super::{ReloadTrigger, Reloader};
    use tokio::signal::unix::{SignalKind, signal};
    use tokio::task::JoinHandle;

    pub fn spawn_reload_on_hup(reloader: Reloader) -> std::io::Result<JoinHandle<()>> {
        let mut hup = signal(SignalKind::hangup())?;
        Ok(tokio::spawn(async move {
            while hup.recv().await.is_some() {
                let _ = reloader.reload(ReloadTrigger::Signal).await;
            }
        }))
    }
}
