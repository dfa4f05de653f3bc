//! The probe scheduler used by `rtprobe serve`: runs every configured probe on its own
//! interval, with a random start offset and per-run jitter (so many sidecars do not probe in
//! lockstep), `concurrency` parallel streams per run, never two overlapping runs of one probe
//! (a late tick is skipped and counted, not queued), a backstop deadline around each stream,
//! panic containment, hot replacement of the probe set, and a graceful shutdown that cancels
//! what is still running after a grace period.
//!
//! It knows nothing of WebSockets or OTel: it drives a [`Runner`] and reports to
//! [`SchedulerEvents`], so it can be tested with fakes and wired to the real probe client and
//! metrics recorder elsewhere.

use std::collections::hash_map::RandomState;

use crate::rng::SplitMix64;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hash, Hasher};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::config::ProbeSpec;
use crate::derive::Derived;
use crate::probe::{ErrorType, ProbeError, Timeline};
use crate::sync;

/// A boxed, sendable future, the return type of the object-safe traits here.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Slack on top of `spec.timeout` before the scheduler gives up on a stream itself. The client
/// enforces every deadline on its own; this only catches a client that fails to.
pub const BACKSTOP_SLACK: Duration = Duration::from_secs(2);

/// `error.type` recorded when the backstop fires. The run produced no `transcription.done`
/// within the whole-run bound, which is what `timeout_done` says on a dashboard; the detail
/// text names the backstop so logs tell it apart from the client's own done deadline.
pub const BACKSTOP_ERROR: ErrorType = ErrorType::TimeoutDone;

/// `error.type` recorded when a stream task panics: a bug in rtprobe, never the target's
/// fault, so it gets its own kind rather than blaming the server.
pub const PANIC_ERROR: ErrorType = ErrorType::Internal;

/// What one stream of one run produced.
#[derive(Debug, Clone)]
pub struct StreamResult {
    /// Wall-clock start, for status pages and logs.
    pub started: SystemTime,
    /// How long the stream took, as seen by whoever produced the result.
    pub elapsed: Duration,
    pub outcome: Result<(), ProbeError>,
    /// Derived values; all `None`/empty for a run that produced nothing. In a multi-utterance
    /// session: the first utterance's.
    pub derived: Derived,
    /// The raw record, for pictures of the run (`None` when the scheduler made the result up).
    pub timeline: Option<Arc<Timeline>>,
    /// The run's trace id when it was exported as a trace (`otlp.traces`).
    pub trace_id: Option<String>,
    /// A multi-utterance session's later utterances, in order (those it reached).
    pub later_utterances: Vec<Derived>,
}

impl StreamResult {
    /// A result the scheduler made up because the stream gave none (backstop, panic, cancel).
    pub fn failed(
        kind: ErrorType,
        detail: impl Into<String>,
        started: SystemTime,
        elapsed: Duration,
    ) -> Self {
        StreamResult {
            started,
            elapsed,
            outcome: Err(ProbeError::new(kind, detail)),
            derived: Derived::default(),
            timeline: None,
            trace_id: None,
            later_utterances: Vec::new(),
        }
    }

    pub fn error_kind(&self) -> Option<ErrorType> {
        self.outcome.as_ref().err().map(|e| e.kind)
    }
}

/// Runs one stream of a probe. Implemented by `serve::backend` over `probe::run` + `derive` (with the
/// audio prepared once per config generation), and by fakes in tests.
pub trait Runner: Send + Sync + 'static {
    /// Run stream `stream` (0-based, `< concurrency`) of one scheduled run. The future is
    /// dropped on cancellation, so it must be cancel-safe by drop.
    fn run(&self, probe: Arc<ProbeSpec>, stream: u32) -> BoxFuture<StreamResult>;

    /// Run the probe once on demand (`GET /probe?name=`) and return its debug record
    /// (timeline and derived values) as JSON. Not counted in metrics.
    fn debug(&self, probe: Arc<ProbeSpec>) -> BoxFuture<serde_json::Value>;

    /// `debug` with the run's timeline, for the HTML answer of `/probe`. Runners that have no
    /// timeline (fakes) answer with the JSON record only.
    fn debug_run(&self, probe: Arc<ProbeSpec>) -> BoxFuture<DebugRun> {
        let json = self.debug(probe);
        Box::pin(async move {
            DebugRun {
                json: json.await,
                timeline: None,
            }
        })
    }
}

/// An on-demand run: its JSON debug record and, from the real runner, its timeline.
pub struct DebugRun {
    pub json: serde_json::Value,
    pub timeline: Option<Arc<Timeline>>,
}

/// What the scheduler reports as it works. `serve::backend` maps these to the metrics recorder;
/// `serve` also feeds them to the status page and the duration-mode summary.
pub trait SchedulerEvents: Send + Sync + 'static {
    /// A run started `delay` after its scheduled time.
    fn run_started(&self, probe: &ProbeSpec, delay: Duration);
    /// A tick came while the previous run was still going (or was missed entirely).
    fn skipped(&self, probe: &ProbeSpec);
    /// Streams open now changed by `delta` (+1 at start, −1 when it finished in any way).
    fn in_flight(&self, probe: &ProbeSpec, delta: i64);
    /// One stream finished: success, failure, backstop, panic or cancellation.
    fn stream_finished(&self, probe: &ProbeSpec, stream: u32, result: &StreamResult);
}

/// What `Scheduler::apply` changed, by probe name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Unchanged probes: they keep their schedule.
    pub kept: Vec<String>,
    /// New names: scheduled fresh.
    pub added: Vec<String>,
    /// Same name, different settings: rescheduled fresh.
    pub changed: Vec<String>,
    /// Gone: no further runs; a run in flight may finish.
    pub removed: Vec<String>,
}

impl fmt::Display for ApplyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |v: &[String]| {
            if v.is_empty() {
                "-".to_string()
            } else {
                v.join(",")
            }
        };
        write!(
            f,
            "kept {}; added {}; changed {}; removed {}",
            list(&self.kept),
            list(&self.added),
            list(&self.changed),
            list(&self.removed)
        )
    }
}

/// How shutdown went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Every in-flight run finished within the grace period.
    pub drained: bool,
}

/// A seed that differs per process (and per boot), so sidecars started together spread out.
pub fn process_seed() -> u64 {
    let mut h = RandomState::new().build_hasher();
    std::process::id().hash(&mut h);
    if let Ok(d) = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH) {
        d.as_nanos().hash(&mut h);
    }
    h.finish()
}

/// Counts supervisors of runs in flight, so shutdown can wait for them without holding
/// their join handles (removed probes' runs are detached from any probe loop).
struct ActiveRuns(watch::Sender<usize>);

struct ActiveGuard {
    active: Arc<Shared>,
    busy: Arc<AtomicBool>,
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.busy.store(false, Ordering::Release);
        self.active
            .active
            .0
            .send_modify(|n| *n = n.saturating_sub(1));
    }
}

struct Shared {
    runner: RwLock<Arc<dyn Runner>>,
    events: Arc<dyn SchedulerEvents>,
    /// Set after the grace period: supervisors abort their streams and record `cancelled`.
    cancel: watch::Sender<bool>,
    active: ActiveRuns,
}

struct ProbeTask {
    spec: Arc<ProbeSpec>,
    /// True while a run of this probe name is in flight; carried over when the probe is
    /// changed by a reload, so the new schedule does not overlap the old schedule's last run.
    busy: Arc<AtomicBool>,
    handle: JoinHandle<()>,
}

/// The set of scheduled probes. Create inside a tokio runtime.
pub struct Scheduler {
    shared: Arc<Shared>,
    probes: HashMap<String, ProbeTask>,
    seed: u64,
    generation: u64,
}

impl Scheduler {
    /// A scheduler with no probes yet; `seed` drives start offsets and jitter (use
    /// [`process_seed`] in production, a constant in tests).
    pub fn new(runner: Arc<dyn Runner>, events: Arc<dyn SchedulerEvents>, seed: u64) -> Self {
        let (cancel, _) = watch::channel(false);
        let (active, _) = watch::channel(0usize);
        Scheduler {
            shared: Arc::new(Shared {
                runner: RwLock::new(runner),
                events,
                cancel,
                active: ActiveRuns(active),
            }),
            probes: HashMap::new(),
            seed,
            generation: 0,
        }
    }

    /// Replace the probe set and the runner (a new config generation). Probes whose spec is
    /// unchanged keep their schedule; new and changed ones start fresh with a new random
    /// offset; removed ones stop scheduling (a run in flight finishes on its own).
    pub fn apply(&mut self, probes: &[Arc<ProbeSpec>], runner: Arc<dyn Runner>) -> ApplyReport {
        *sync::write(&self.shared.runner) = runner;
        self.generation += 1;
        let mut report = ApplyReport::default();
        let mut next = HashMap::with_capacity(probes.len());
        for spec in probes {
            let name = spec.name.clone();
            let task = match self.probes.remove(&name) {
                Some(old) if *old.spec == **spec => {
                    report.kept.push(name.clone());
                    old
                }
                Some(old) => {
                    old.handle.abort();
                    report.changed.push(name.clone());
                    self.spawn_probe(spec.clone(), old.busy)
                }
                None => {
                    report.added.push(name.clone());
                    self.spawn_probe(spec.clone(), Arc::new(AtomicBool::new(false)))
                }
            };
            // Names are unique in a validated config; if not, the last one wins and the
            // earlier loop must not be left running unowned.
            if let Some(dup) = next.insert(name, task) {
                dup.handle.abort();
            }
        }
        for (name, old) in self.probes.drain() {
            old.handle.abort();
            report.removed.push(name);
        }
        self.probes = next;
        for v in [
            &mut report.kept,
            &mut report.added,
            &mut report.changed,
            &mut report.removed,
        ] {
            v.sort();
        }
        report
    }

    /// Names of the probes scheduled now, sorted.
    pub fn probe_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.probes.keys().cloned().collect();
        v.sort();
        v
    }

    /// Runs in flight now (across all probes, removed ones included).
    pub fn active_runs(&self) -> usize {
        *self.shared.active.0.borrow()
    }

    /// Stop scheduling, let in-flight runs finish within `grace`, then cancel the rest
    /// (each unfinished stream is reported as `cancelled`) and wait for that to be recorded.
    pub async fn shutdown(mut self, grace: Duration) -> ShutdownReport {
        for (_, task) in self.probes.drain() {
            task.handle.abort();
        }
        let mut active = self.shared.active.0.subscribe();
        let drained = tokio::time::timeout(grace, active.wait_for(|n| *n == 0))
            .await
            .is_ok();
        if !drained {
            self.shared.cancel.send_replace(true);
            // Supervisors record cancellations synchronously once told; this cannot hang on
            // a stuck stream because aborting does not wait for the stream's cooperation.
            let _ = active.wait_for(|n| *n == 0).await;
        }
        ShutdownReport { drained }
    }

    fn spawn_probe(&self, spec: Arc<ProbeSpec>, busy: Arc<AtomicBool>) -> ProbeTask {
        // FNV-1a, not RandomState: the per-probe stream must be reproducible from `seed`.
        let mut name_hash: u64 = 0xcbf2_9ce4_8422_2325;
        for b in spec.name.bytes() {
            name_hash = (name_hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        let rng = SplitMix64::new(self.seed ^ name_hash ^ self.generation.rotate_left(32));
        let handle = tokio::spawn(probe_loop(
            self.shared.clone(),
            spec.clone(),
            busy.clone(),
            rng,
        ));
        ProbeTask { spec, busy, handle }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        for (_, task) in self.probes.drain() {
            task.handle.abort();
        }
    }
}

/// One probe's tick loop. Tick times are absolute on the monotonic clock
/// (`start + offset + k·interval`), so lateness never accumulates into drift.
async fn probe_loop(
    shared: Arc<Shared>,
    spec: Arc<ProbeSpec>,
    busy: Arc<AtomicBool>,
    mut rng: SplitMix64,
) {
    let interval = spec.interval.max(Duration::from_millis(1));
    let jitter = if spec.jitter.is_finite() {
        spec.jitter.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let mut base = Instant::now() + interval.mul_f64(rng.unit());
    loop {
        let scheduled = base + interval.mul_f64(jitter * rng.unit());
        tokio::time::sleep_until(scheduled).await;
        let now = Instant::now();
        if busy.load(Ordering::Acquire) {
            tracing::debug!(probe = %spec.name, "previous run still in flight; tick skipped");
            shared.events.skipped(&spec);
        } else {
            start_run(
                &shared,
                &spec,
                &busy,
                now.saturating_duration_since(scheduled),
            );
        }
        base += interval;
        // After a stall (suspended host, starved runtime) skip ticks that are wholly in the
        // past instead of firing them back to back.
        while base + interval <= now {
            base += interval;
            shared.events.skipped(&spec);
        }
    }
}

fn start_run(shared: &Arc<Shared>, spec: &Arc<ProbeSpec>, busy: &Arc<AtomicBool>, delay: Duration) {
    busy.store(true, Ordering::Release);
    shared.active.0.send_modify(|n| *n += 1);
    let guard = ActiveGuard {
        active: shared.clone(),
        busy: busy.clone(),
    };
    let runner = sync::read(&shared.runner).clone();
    shared.events.run_started(spec, delay);
    tokio::spawn(supervise_run(shared.clone(), spec.clone(), runner, guard));
}

/// Runs the streams of one run, each in its own task so a panic is caught by its join handle
/// and never reaches the probe loop.
async fn supervise_run(
    shared: Arc<Shared>,
    spec: Arc<ProbeSpec>,
    runner: Arc<dyn Runner>,
    _guard: ActiveGuard,
) {
    let events = &shared.events;
    let mut cancel = shared.cancel.subscribe();
    let started_wall = SystemTime::now();
    let started = Instant::now();
    let bound = spec.timeout + BACKSTOP_SLACK;
    let mut set = JoinSet::new();
    let mut streams = HashMap::new();
    for stream in 0..spec.concurrency.max(1) {
        events.in_flight(&spec, 1);
        let runner = runner.clone();
        let probe = spec.clone();
        let handle = set.spawn(async move {
            let t = Instant::now();
            match tokio::time::timeout(bound, runner.run(probe, stream)).await {
                Ok(result) => result,
                Err(_) => StreamResult::failed(
                    BACKSTOP_ERROR,
                    format!(
                        "backstop: no result within timeout + {}s",
                        BACKSTOP_SLACK.as_secs()
                    ),
                    started_wall,
                    t.elapsed(),
                ),
            }
        });
        streams.insert(handle.id(), stream);
    }
    let finish = |stream: u32, result: StreamResult| {
        if let Err(e) = &result.outcome {
            tracing::info!(probe = %spec.name, stream, error.type = e.kind.as_str(), detail = %e.detail, "probe stream failed");
        }
        events.stream_finished(&spec, stream, &result);
        events.in_flight(&spec, -1);
    };
    loop {
        tokio::select! {
            biased;
            next = set.join_next_with_id() => match next {
                None => break,
                Some(Ok((id, result))) => {
                    if let Some(stream) = streams.remove(&id) {
                        finish(stream, result);
                    }
                }
                Some(Err(err)) => {
                    let Some(stream) = streams.remove(&err.id()) else { continue };
                    let result = if err.is_panic() {
                        let msg = panic_message(err.into_panic());
                        tracing::error!(probe = %spec.name, stream, panic = %msg, "probe stream panicked");
                        StreamResult::failed(PANIC_ERROR, format!("stream panicked: {msg}"), started_wall, started.elapsed())
                    } else {
                        StreamResult::failed(ErrorType::Cancelled, "stream aborted", started_wall, started.elapsed())
                    };
                    finish(stream, result);
                }
            },
            _ = wait_true(&mut cancel) => {
                set.abort_all();
                let mut left: Vec<u32> = streams.drain().map(|(_, s)| s).collect();
                left.sort_unstable();
                for stream in left {
                    finish(stream, StreamResult::failed(
                        ErrorType::Cancelled,
                        "cancelled at shutdown after the grace period",
                        started_wall,
                        started.elapsed(),
                    ));
                }
                break;
            }
        }
    }
}

async fn wait_true(rx: &mut watch::Receiver<bool>) {
    if rx.wait_for(|v| *v).await.is_err() {
        std::future::pending::<()>().await;
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    let msg = if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    };
    one_line(&msg, 200)
}

/// First line of `s`, at most `max` characters: details go to logs and the status page.
pub fn one_line(s: &str, max: usize) -> String {
    let line = s.lines().next().unwrap_or("");
    if line.chars().count() > max {
        let mut t: String = line.chars().take(max).collect();
        t.push('…');
        t
    } else {
        line.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_truncates() {
        assert_eq!(one_line("a\nb", 10), "a");
        assert_eq!(one_line("abcdef", 3), "abc…");
    }
}
