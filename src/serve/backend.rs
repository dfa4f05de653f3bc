//! The production `serve::Backend`: probe runs through `probe::run` + `derive`, with
//! each probe's audio prepared once per config generation, and scheduler events recorded
//! through `metrics::{Telemetry, Recorder, ProbeLabels}`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::audio::{AudioError, PreparedAudio};
use crate::config::{self, Config, ModelChoice, ProbeSpec};
use crate::derive::derive_probe_run;
use crate::metrics::traces::{TraceExporter, run_spans, trace_id};
use crate::metrics::{MetricsError, ProbeLabels, Recorder, Telemetry};
use crate::probe::ErrorType;
use crate::scheduler::{BoxFuture, DebugRun, Runner, SchedulerEvents, StreamResult};
use crate::serve::{Backend, ServeArgs, ServeError, ServeOutcome};
use crate::sync;

/// Why the production backend could not start or take a config. `serve` shows it as the
/// reason a start or reload was refused.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("probes[{index}] ({probe}): {source}")]
    Audio {
        index: usize,
        probe: String,
        #[source]
        source: AudioError,
    },
    #[error(transparent)]
    Metrics(#[from] MetricsError),
}

/// Why a run's audio was unavailable (see [`GenerationRunner::audio_for`]).
#[derive(Debug, thiserror::Error)]
enum AudioUnavailable {
    #[error(transparent)]
    Audio(#[from] AudioError),
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
}

/// Audio is shared between probes that stream the same file at the same chunk size and rate.
type AudioKey = (PathBuf, Duration, u32);

/// The model label value: the configured name, or `auto` when it is discovered per run.
fn model_label(spec: &ProbeSpec) -> &str {
    match &spec.model {
        ModelChoice::Named(m) => m,
        ModelChoice::Auto => "auto",
    }
}

/// A multi-utterance probe's series carry `rtprobe.utterance`: `first` for the first utterance
/// of a connection (and the run itself), `later` for the warm ones after it.
const UTTERANCE: &str = "rtprobe.utterance";

fn labels(spec: &ProbeSpec) -> ProbeLabels {
    let l = ProbeLabels::new(spec, model_label(spec));
    if spec.utterances.len() > 1 {
        l.with(UTTERANCE, "first")
    } else {
        l
    }
}

fn later_labels(spec: &ProbeSpec) -> ProbeLabels {
    ProbeLabels::new(spec, model_label(spec)).with(UTTERANCE, "later")
}

/// One config generation's runner: the prepared audio of every probe in it, and where run
/// traces go when `otlp.traces` is on.
struct GenerationRunner {
    audio: HashMap<AudioKey, Arc<PreparedAudio>>,
    traces: Option<Arc<TraceExporter>>,
}

impl GenerationRunner {
    /// Decode every distinct audio file of the config once. Runs on a blocking thread.
    fn prepare(config: &Config) -> Result<Self, BackendError> {
        let mut audio = HashMap::new();
        for (i, p) in config.probes.iter().enumerate() {
            for clip in p.clips() {
                let key = (clip.audio.clone(), p.chunk, p.dialect.sample_rate);
                if audio.contains_key(&key) {
                    continue;
                }
                // `config::load` already prepared this file the same way; it can only fail here
                // if the file changed in between. `e` names the file.
                let prepared =
                    crate::audio::prepare_at(&clip.audio, p.chunk, p.dialect.sample_rate).map_err(
                        |source| BackendError::Audio {
                            index: i,
                            probe: p.name.clone(),
                            source,
                        },
                    )?;
                audio.insert(key, Arc::new(prepared));
            }
        }
        Ok(GenerationRunner {
            audio,
            traces: None,
        })
    }

    /// The prepared audio for a probe. A spec always belongs to this runner's generation
    /// (the scheduler swaps runner and probe set together), so the fallback only guards
    /// against that invariant breaking: decode now, off the async workers.
    async fn audio_for(
        &self,
        spec: &ProbeSpec,
    ) -> Result<Vec<Arc<PreparedAudio>>, AudioUnavailable> {
        let mut out = Vec::new();
        for clip in spec.clips() {
            let key = (clip.audio, spec.chunk, spec.dialect.sample_rate);
            if let Some(a) = self.audio.get(&key) {
                out.push(a.clone());
                continue;
            }
            let (path, chunk, rate) = key;
            let a =
                tokio::task::spawn_blocking(move || crate::audio::prepare_at(&path, chunk, rate))
                    .await??;
            out.push(Arc::new(a));
        }
        Ok(out)
    }
}

impl Runner for Arc<GenerationRunner> {
    fn run(&self, probe: Arc<ProbeSpec>, _stream: u32) -> BoxFuture<StreamResult> {
        let this = self.clone();
        Box::pin(async move {
            let started = SystemTime::now();
            let t = Instant::now();
            let audio = match this.audio_for(&probe).await {
                Ok(a) => a,
                Err(e) => {
                    return StreamResult::failed(
                        ErrorType::Protocol,
                        format!("audio unavailable: {e}"),
                        started,
                        t.elapsed(),
                    );
                }
            };
            let mut timeline = session(&probe, &audio).await;
            let mut derived = derive_probe_run(&probe, &mut timeline);
            let first = derived.remove(0);
            let trace_id = this.traces.as_ref().and_then(|traces| {
                let spans = run_spans(&labels(&probe), &timeline, &first);
                let id = trace_id(&spans);
                traces.send(spans);
                id
            });
            StreamResult {
                started: timeline.started,
                elapsed: t.elapsed(),
                outcome: timeline.outcome.clone(),
                derived: first,
                later_utterances: derived,
                timeline: Some(Arc::new(timeline)),
                trace_id,
            }
        })
    }

    fn debug(&self, probe: Arc<ProbeSpec>) -> BoxFuture<serde_json::Value> {
        let run = self.debug_run(probe);
        Box::pin(async move { run.await.json })
    }

    fn debug_run(&self, probe: Arc<ProbeSpec>) -> BoxFuture<DebugRun> {
        let this = self.clone();
        Box::pin(async move {
            let audio = match this.audio_for(&probe).await {
                Ok(a) => a,
                Err(e) => {
                    return DebugRun {
                        json: serde_json::json!({ "probe": probe.name, "error": e.to_string() }),
                        timeline: None,
                    };
                }
            };
            let mut timeline = session(&probe, &audio).await;
            let mut all = derive_probe_run(&probe, &mut timeline);
            let derived = all.remove(0);
            let mut json = serde_json::json!({
                "probe": probe.name,
                "target": probe.target.ws_url,
                "outcome": match &timeline.outcome {
                    Ok(()) => serde_json::json!("ok"),
                    Err(e) => serde_json::json!({ "error.type": e.kind, "detail": e.detail }),
                },
                "timeline": timeline,
                "derived": derived,
            });
            if probe.utterances.len() > 1 {
                crate::report::session_fields(&mut json, &timeline, &all);
            }
            DebugRun {
                json,
                timeline: Some(Arc::new(timeline)),
            }
        })
    }
}

/// One session over the probe's clips.
async fn session(probe: &ProbeSpec, audio: &[Arc<PreparedAudio>]) -> crate::probe::Timeline {
    let clips: Vec<&PreparedAudio> = audio.iter().map(|a| a.as_ref()).collect();
    // Text as it arrives feeds the live token rate of `serve --duration` and `load`.
    let mut count = |e: &crate::probe::ProgressEvent| {
        if let crate::probe::ProgressEvent::Text { .. } = e {
            crate::load::count_text_delta();
        }
    };
    crate::probe::run_session(probe, &clips, &mut count).await
}

/// The label identity of a probe: two specs with the same identity share every series.
fn identity(spec: &ProbeSpec) -> String {
    format!(
        "{}|{}|{}|{}|{:?}",
        spec.name,
        spec.target.host,
        spec.target.port,
        model_label(spec),
        spec.labels
    )
}

/// Scheduler events → OTel instruments, for the probes of the current config only: the last
/// run of a probe that a reload removed (or relabelled) may still finish, and recording it
/// would bring the removed series back.
struct MetricsEvents {
    recorder: Recorder,
    live: RwLock<HashMap<String, ProbeLabels>>,
}

impl MetricsEvents {
    fn live_labels(&self, probe: &ProbeSpec) -> Option<ProbeLabels> {
        let live = sync::read(&self.live);
        live.get(&identity(probe)).cloned()
    }

    /// Make `config`'s probes the live ones; forget open streams of the others.
    fn set_live(&self, config: &Config) {
        let next: HashMap<String, ProbeLabels> = config
            .probes
            .iter()
            .map(|p| (identity(p), labels(p)))
            .collect();
        let mut live = sync::write(&self.live);
        for (key, old) in live.iter() {
            if !next.contains_key(key) {
                self.recorder.forget(old);
            }
        }
        *live = next;
    }
}

impl SchedulerEvents for MetricsEvents {
    fn run_started(&self, probe: &ProbeSpec, delay: Duration) {
        if let Some(l) = self.live_labels(probe) {
            self.recorder.scheduler_delay(&l, delay.as_secs_f64());
        }
    }
    fn skipped(&self, probe: &ProbeSpec) {
        if let Some(l) = self.live_labels(probe) {
            self.recorder.record_skipped(&l);
        }
    }
    fn in_flight(&self, probe: &ProbeSpec, delta: i64) {
        if let Some(l) = self.live_labels(probe) {
            self.recorder.in_flight(&l, delta);
        }
    }
    fn stream_finished(&self, probe: &ProbeSpec, _stream: u32, result: &StreamResult) {
        if let Some(l) = self.live_labels(probe) {
            let outcome = result.outcome.as_ref().map(|_| ()).map_err(|e| e.kind);
            self.recorder.record_run(&l, &result.derived, outcome);
            // A failed session is a failed run: like a failed single-utterance run it records
            // its outcome and phases only.
            if result.outcome.is_ok() && !result.later_utterances.is_empty() {
                let later = later_labels(probe);
                for d in &result.later_utterances {
                    self.recorder.record_utterance(&later, d);
                }
            }
        }
    }
}

/// What the metrics pipeline currently exports: the label identity of every probe, and the
/// buckets and OTLP settings it was built with. A reload that changes any of it rebuilds the
/// pipeline (`Telemetry::reconfigure`), so a removed or relabelled probe stops being exported.
#[derive(PartialEq)]
struct Exported {
    probes: Vec<String>,
    buckets: crate::config::Buckets,
    metrics: crate::config::MetricsSettings,
    otlp: Option<crate::config::OtlpSettings>,
}

impl Exported {
    fn of(config: &Config) -> Exported {
        let probes = config.probes.iter().map(identity).collect();
        Exported {
            probes,
            buckets: config.buckets.clone(),
            metrics: config.metrics.clone(),
            otlp: config.otlp.clone(),
        }
    }
}

/// The run-trace exporter for `config`, when it asks for traces.
fn trace_exporter(config: &Config) -> Result<Option<Arc<TraceExporter>>, MetricsError> {
    match &config.otlp {
        Some(o) if o.traces => TraceExporter::start(o).map(|t| Some(Arc::new(t))),
        _ => Ok(None),
    }
}

/// The production backend.
pub struct ProbeBackend {
    telemetry: Mutex<Option<Telemetry>>,
    /// Run traces, when the current config has `otlp.traces: true`.
    traces: Mutex<Option<Arc<TraceExporter>>>,
    events: Arc<MetricsEvents>,
    exported: Mutex<Exported>,
}

/// `rtprobe serve` with the production parts: configs through `config::load`, runs and
/// metrics through [`ProbeBackend`].
pub async fn serve(args: ServeArgs) -> Result<ServeOutcome, ServeError> {
    super::run(args, config::load, ProbeBackend::new).await
}

impl ProbeBackend {
    /// The metrics pipeline (and trace exporter) for `config`; `serve`'s `make_backend`.
    pub fn new(config: &Config) -> Result<ProbeBackend, BackendError> {
        let telemetry =
            Telemetry::with_settings(&config.buckets, &config.metrics, config.otlp.as_ref())?;
        let events = Arc::new(MetricsEvents {
            recorder: telemetry.recorder(),
            live: RwLock::new(HashMap::new()),
        });
        events.set_live(config);
        Ok(ProbeBackend {
            telemetry: Mutex::new(Some(telemetry)),
            traces: Mutex::new(trace_exporter(config)?),
            events,
            exported: Mutex::new(Exported::of(config)),
        })
    }

    /// A config generation: its audio prepared, and the metrics pipeline rebuilt when what is
    /// exported changes.
    fn take(&self, config: &Config) -> Result<Arc<dyn Runner>, BackendError> {
        // Audio first: a config whose audio cannot be prepared is rejected before anything
        // exported changes.
        let mut runner = GenerationRunner::prepare(config)?;
        for p in config.probes.iter().filter(|p| p.tls.insecure_skip_verify) {
            tracing::warn!(probe = %p.name, "TLS certificate verification is off for this probe (tls.insecure_skip_verify)");
        }
        let next = Exported::of(config);
        let mut exported = sync::lock(&self.exported);
        if *exported != next {
            self.events.set_live(config);
            let t = sync::lock(&self.telemetry);
            if let Some(t) = t.as_ref() {
                t.reconfigure_with(&config.buckets, &config.metrics, config.otlp.as_ref())?;
            }
            *sync::lock(&self.traces) = trace_exporter(config)?;
            *exported = next;
        }
        runner.traces = sync::lock(&self.traces).clone();
        Ok(Arc::new(Arc::new(runner)))
    }
}

impl Backend for ProbeBackend {
    fn prepare(&self, config: &Config) -> Result<Arc<dyn Runner>, BackendError> {
        self.take(config)
    }

    fn events(&self) -> Arc<dyn SchedulerEvents> {
        self.events.clone()
    }

    fn render_metrics(&self, accept: Option<&str>) -> (&'static str, Vec<u8>) {
        let t = sync::lock(&self.telemetry);
        match t.as_ref() {
            Some(t) => t.render(accept),
            // Only after shutdown, when the HTTP server is closing too.
            None => ("text/plain; charset=utf-8", b"# shutting down\n".to_vec()),
        }
    }

    fn config_reloaded(&self, success: bool, unix_seconds: f64) {
        self.events.recorder.config_reload(success, unix_seconds);
    }

    fn shutdown(&self, timeout: Duration) -> BoxFuture<()> {
        let t = sync::lock(&self.telemetry).take();
        let traces = sync::lock(&self.traces).take();
        Box::pin(async move {
            if let Some(traces) = traces {
                traces.flush(timeout).await;
            }
            if let Some(t) = t {
                t.shutdown(timeout).await;
            }
        })
    }
}
