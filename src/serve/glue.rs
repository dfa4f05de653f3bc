//! The production `serve::Backend`: probe runs through `probe::run` + `metrics::derive`, with
//! each probe's audio prepared once per config generation, and scheduler events recorded
//! through `metrics::{Telemetry, Recorder, ProbeLabels}`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::audio::PreparedAudio;
use crate::config::{Config, ModelChoice, ProbeSpec};
use crate::metrics::derive::derive;
use crate::metrics::{ProbeLabels, Recorder, Telemetry};
use crate::probe::ErrorType;
use crate::scheduler::{BoxFuture, Runner, SchedulerEvents, StreamResult};
use crate::serve::Backend;

/// Audio is shared between probes that stream the same file at the same chunk size.
type AudioKey = (PathBuf, Duration);

/// The model label value: the configured name, or `auto` when it is discovered per run.
fn model_label(spec: &ProbeSpec) -> &str {
    match &spec.model {
        ModelChoice::Named(m) => m,
        ModelChoice::Auto => "auto",
    }
}

fn labels(spec: &ProbeSpec) -> ProbeLabels {
    ProbeLabels::new(spec, model_label(spec))
}

/// One config generation's runner: the prepared audio of every probe in it.
struct GenerationRunner {
    audio: HashMap<AudioKey, Arc<PreparedAudio>>,
}

impl GenerationRunner {
    /// Decode every distinct audio file of the config once. Runs on a blocking thread.
    fn prepare(config: &Config) -> Result<Self, String> {
        let mut audio = HashMap::new();
        for (i, p) in config.probes.iter().enumerate() {
            let key = (p.audio.clone(), p.chunk);
            if audio.contains_key(&key) {
                continue;
            }
            let prepared = crate::audio::prepare(&p.audio, p.chunk).map_err(|e| {
                format!("probes[{i}] ({}): audio {}: {e}", p.name, p.audio.display())
            })?;
            audio.insert(key, Arc::new(prepared));
        }
        Ok(GenerationRunner { audio })
    }

    /// The prepared audio for a probe. A spec always belongs to this runner's generation
    /// (the scheduler swaps runner and probe set together), so the fallback only guards
    /// against that invariant breaking: decode now, off the async workers.
    async fn audio_for(&self, spec: &ProbeSpec) -> Result<Arc<PreparedAudio>, String> {
        if let Some(a) = self.audio.get(&(spec.audio.clone(), spec.chunk)) {
            return Ok(a.clone());
        }
        let (path, chunk) = (spec.audio.clone(), spec.chunk);
        tokio::task::spawn_blocking(move || crate::audio::prepare(&path, chunk))
            .await
            .map_err(|e| e.to_string())?
            .map(Arc::new)
            .map_err(|e| e.to_string())
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
            let timeline = crate::probe::run(&probe, &audio).await;
            let derived = derive(&timeline, probe.reference.as_deref());
            StreamResult {
                started: timeline.started,
                elapsed: t.elapsed(),
                outcome: timeline.outcome.clone(),
                derived,
            }
        })
    }

    fn debug(&self, probe: Arc<ProbeSpec>) -> BoxFuture<serde_json::Value> {
        let this = self.clone();
        Box::pin(async move {
            let audio = match this.audio_for(&probe).await {
                Ok(a) => a,
                Err(e) => return serde_json::json!({ "probe": probe.name, "error": e }),
            };
            let timeline = crate::probe::run(&probe, &audio).await;
            let derived = derive(&timeline, probe.reference.as_deref());
            serde_json::json!({
                "probe": probe.name,
                "target": probe.target.ws_url,
                "outcome": match &timeline.outcome {
                    Ok(()) => serde_json::json!("ok"),
                    Err(e) => serde_json::json!({ "error.type": e.kind, "detail": e.detail }),
                },
                "timeline": timeline,
                "derived": derived,
            })
        })
    }
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
        let live = self.live.read().unwrap_or_else(|p| p.into_inner());
        live.get(&identity(probe)).cloned()
    }

    /// Make `config`'s probes the live ones; forget open streams of the others.
    fn set_live(&self, config: &Config) {
        let next: HashMap<String, ProbeLabels> = config
            .probes
            .iter()
            .map(|p| (identity(p), labels(p)))
            .collect();
        let mut live = self.live.write().unwrap_or_else(|p| p.into_inner());
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

/// The production backend.
pub struct ProbeBackend {
    telemetry: Mutex<Option<Telemetry>>,
    events: Arc<MetricsEvents>,
    exported: Mutex<Exported>,
}

impl ProbeBackend {
    pub fn new(config: &Config) -> Result<ProbeBackend, String> {
        let telemetry =
            Telemetry::with_settings(&config.buckets, &config.metrics, config.otlp.as_ref())
                .map_err(|e| e.to_string())?;
        let events = Arc::new(MetricsEvents {
            recorder: telemetry.recorder(),
            live: RwLock::new(HashMap::new()),
        });
        events.set_live(config);
        Ok(ProbeBackend {
            telemetry: Mutex::new(Some(telemetry)),
            events,
            exported: Mutex::new(Exported::of(config)),
        })
    }
}

impl Backend for ProbeBackend {
    fn prepare(&self, config: &Config) -> Result<Arc<dyn Runner>, String> {
        let runner = GenerationRunner::prepare(config)?;
        for p in config.probes.iter().filter(|p| p.tls.insecure_skip_verify) {
            tracing::warn!(probe = %p.name, "TLS certificate verification is off for this probe (tls.insecure_skip_verify)");
        }
        let next = Exported::of(config);
        let mut exported = self.exported.lock().unwrap_or_else(|p| p.into_inner());
        if *exported != next {
            self.events.set_live(config);
            let t = self.telemetry.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(t) = t.as_ref() {
                t.reconfigure_with(&config.buckets, &config.metrics, config.otlp.as_ref())
                    .map_err(|e| e.to_string())?;
            }
            *exported = next;
        }
        Ok(Arc::new(Arc::new(runner)))
    }

    fn events(&self) -> Arc<dyn SchedulerEvents> {
        self.events.clone()
    }

    fn render_metrics(&self, accept: Option<&str>) -> (&'static str, Vec<u8>) {
        let t = self.telemetry.lock().unwrap_or_else(|p| p.into_inner());
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
        let t = self
            .telemetry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        Box::pin(async move {
            if let Some(t) = t {
                t.shutdown(timeout).await;
            }
        })
    }
}
