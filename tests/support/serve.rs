//! Shared parts of the scheduler, HTTP and serve tests: configs written as YAML and built by
//! the real loader, a runner for the scheduler's paused-clock tests, an event recorder, the
//! production backend with a window on what `serve` asks of it, and a raw HTTP/1.1 client for
//! loopback requests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rtprobe::audio::AudioError;
use rtprobe::config::{Config, ConfigError, ProbeSpec};
use rtprobe::derive::Derived;
use rtprobe::probe::ProbeError;
use rtprobe::scheduler::{BoxFuture, Runner, SchedulerEvents, StreamResult};
use rtprobe::serve::backend::{BackendError, ProbeBackend};
use rtprobe::serve::{Backend, LoadConfig, MakeBackend};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

/// A target nothing answers on loopback (the discard port): probes whose runs do not matter
/// to a test fail there at once with `connect`.
pub const NOWHERE: &str = "http://127.0.0.1:9";

/// A config file as a user writes it: `server` listening on a free loopback port, then one
/// probe per entry, each `{target, model, audio: the shipped clip, pacing: burst}` plus the
/// entry's own flow-mapping fields (`name: a, interval: 50ms`). Burst pacing keeps a run short
/// (no real-time wait for the 3 s clip) and lets the timeout be shorter than the clip.
pub fn config_text(target: &str, model: &str, probes: &[&str]) -> String {
    let entries: Vec<String> = probes
        .iter()
        .map(|p| probe_entry(target, model, p))
        .collect();
    config_of(&entries)
}

/// A config of [`probe_entry`] lines, for probes on different targets.
pub fn config_of(entries: &[String]) -> String {
    let mut text = String::from(
        "server: {listen: 127.0.0.1:0}\ndefaults: {jitter: 0, pacing: burst}\nprobes:\n",
    );
    for e in entries {
        text += e;
    }
    text
}

/// One probe line of [`config_text`].
pub fn probe_entry(target: &str, model: &str, fields: &str) -> String {
    format!(
        "  - {{target: '{target}', model: '{model}', audio: '{}', {fields}}}\n",
        super::clip().display()
    )
}

/// The specs of [`config_text`] on [`NOWHERE`], through the real loader (`config::parse`).
pub fn specs(probes: &[&str]) -> Vec<ProbeSpec> {
    let text = config_text(NOWHERE, "fake-model", probes);
    rtprobe::config::parse(&text, &super::repo().join("rtprobe.yaml"))
        .unwrap_or_else(|e| panic!("{e}\n{text}"))
        .probes
}

/// One spec of [`specs`].
pub fn spec(fields: &str) -> ProbeSpec {
    specs(&[fields]).remove(0)
}

/// `config::load` with `env` as the whole environment: a test gives a probe a token without
/// setting variables in a process whose other tests run in parallel.
pub fn load_with_env(env: &[(&str, &str)]) -> impl LoadConfig + use<> {
    let env: BTreeMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |path: &Path| {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            file: path.display().to_string(),
            reason: e.to_string(),
        })?;
        rtprobe::config::parse_with_env(&text, path, &|k| env.get(k).cloned())
    }
}

/// What a stream of [`FakeRunner`] does, set per spec by the test.
#[derive(Clone, Copy, Default)]
pub struct Act {
    pub sleep: Duration,
    pub panic: bool,
}

impl Act {
    pub fn sleep(d: Duration) -> Act {
        Act {
            sleep: d,
            ..Act::default()
        }
    }
    pub fn panic() -> Act {
        Act {
            panic: true,
            ..Act::default()
        }
    }
}

/// A runner for the scheduler tests, which run on tokio's paused clock: time jumps whenever
/// every task waits, so a real probe's network waits would time out at once. Each stream
/// records its start and does what the test set for its spec (nothing, by default).
#[derive(Default)]
pub struct FakeRunner {
    /// Every stream started: (stream, start instant) by probe.
    pub starts: ByProbe<(u32, Instant)>,
    acts: Mutex<Vec<(ProbeSpec, Act)>>,
}

impl FakeRunner {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Streams of `spec` (this exact spec: a changed one is another) do `act`.
    pub fn act(&self, spec: &ProbeSpec, act: Act) {
        self.acts.lock().unwrap().push((spec.clone(), act));
    }

    pub fn starts_of(&self, name: &str) -> Vec<(u32, Instant)> {
        self.starts.of(name)
    }
}

impl Runner for FakeRunner {
    fn run(&self, probe: Arc<ProbeSpec>, stream: u32) -> BoxFuture<StreamResult> {
        self.starts.push(&probe.name, (stream, Instant::now()));
        let act = self
            .acts
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|(s, _)| *s == *probe)
            .map(|(_, a)| *a)
            .unwrap_or_default();
        Box::pin(async move {
            let started = SystemTime::now();
            let t = Instant::now();
            tokio::time::sleep(act.sleep).await;
            if act.panic {
                panic!("fake runner panic\nsecond line");
            }
            StreamResult {
                started,
                elapsed: t.elapsed(),
                outcome: Ok(()),
                derived: Derived::default(),
                timeline: None,
                trace_id: None,
                later_utterances: Vec::new(),
            }
        })
    }

    fn debug(&self, probe: Arc<ProbeSpec>) -> BoxFuture<serde_json::Value> {
        Box::pin(async move { serde_json::json!({ "probe": probe.name }) })
    }
}

/// Values recorded per probe, in the order they came.
pub struct ByProbe<T>(Mutex<Vec<(String, T)>>);

impl<T> Default for ByProbe<T> {
    fn default() -> Self {
        ByProbe(Mutex::new(Vec::new()))
    }
}

impl<T: Clone> ByProbe<T> {
    pub fn push(&self, probe: &str, value: T) {
        self.0.lock().unwrap().push((probe.to_string(), value));
    }
    /// The values of `probe`.
    pub fn of(&self, probe: &str) -> Vec<T> {
        let all = self.0.lock().unwrap();
        all.iter()
            .filter(|(n, _)| n == probe)
            .map(|(_, v)| v.clone())
            .collect()
    }
    /// How many values, of every probe.
    pub fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A counter per probe, with the highest value it reached.
#[derive(Default)]
pub struct Counts(Mutex<BTreeMap<String, (i64, i64)>>);

impl Counts {
    pub fn add(&self, probe: &str, delta: i64) {
        let mut m = self.0.lock().unwrap();
        let (now, high) = m.entry(probe.to_string()).or_default();
        *now += delta;
        *high = (*high).max(*now);
    }
    pub fn of(&self, probe: &str) -> i64 {
        self.0.lock().unwrap().get(probe).map_or(0, |c| c.0)
    }
    pub fn high_of(&self, probe: &str) -> i64 {
        self.0.lock().unwrap().get(probe).map_or(0, |c| c.1)
    }
}

/// Everything the scheduler reported.
#[derive(Default)]
pub struct Recorder {
    /// Each run's scheduling delay and start.
    pub started: ByProbe<(Duration, Instant)>,
    pub skipped: Counts,
    pub in_flight: Counts,
    /// Each finished stream: its number and outcome.
    pub finished: ByProbe<(u32, Result<(), ProbeError>)>,
    pub finish_times: ByProbe<Instant>,
    /// The derived values of every finished stream.
    pub derived: ByProbe<Derived>,
}

impl Recorder {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
    pub fn skipped_of(&self, name: &str) -> u64 {
        self.skipped.of(name) as u64
    }
    pub fn in_flight_of(&self, name: &str) -> i64 {
        self.in_flight.of(name)
    }
    pub fn max_in_flight_of(&self, name: &str) -> i64 {
        self.in_flight.high_of(name)
    }
    pub fn finished_of(&self, name: &str) -> Vec<(u32, Result<(), ProbeError>)> {
        self.finished.of(name)
    }
    pub fn finish_times_of(&self, name: &str) -> Vec<Instant> {
        self.finish_times.of(name)
    }
    pub fn derived_of(&self, name: &str) -> Vec<Derived> {
        self.derived.of(name)
    }
    pub fn starts_of(&self, name: &str) -> Vec<(Duration, Instant)> {
        self.started.of(name)
    }
}

impl SchedulerEvents for Recorder {
    fn run_started(&self, probe: &ProbeSpec, delay: Duration) {
        self.started.push(&probe.name, (delay, Instant::now()));
    }
    fn skipped(&self, probe: &ProbeSpec) {
        self.skipped.add(&probe.name, 1);
    }
    fn in_flight(&self, probe: &ProbeSpec, delta: i64) {
        self.in_flight.add(&probe.name, delta);
    }
    fn stream_finished(&self, probe: &ProbeSpec, stream: u32, result: &StreamResult) {
        let name = &probe.name;
        self.finished.push(name, (stream, result.outcome.clone()));
        self.finish_times.push(name, Instant::now());
        self.derived.push(name, result.derived.clone());
    }
}

/// What `serve` asked of the production backend, shared between the backend `serve` owns and
/// the test: every scheduler event, each reload outcome in order, the `Accept` header of each
/// `/metrics`, whether the shutdown flush ran. `/metrics` shows only the last reload and
/// nothing of the flush, so the tests look here; what happens is all the real backend's.
#[derive(Clone, Default)]
pub struct Watch {
    pub events: Arc<Recorder>,
    pub reloads: Arc<Mutex<Vec<bool>>>,
    pub accepts: Arc<Mutex<Vec<Option<String>>>>,
    pub flushed: Arc<Mutex<bool>>,
    refusal: Arc<Mutex<Option<AudioError>>>,
}

impl Watch {
    pub fn new() -> Watch {
        Watch::default()
    }

    /// `serve`'s backend factory: a [`ProbeBackend`] watched by this.
    pub fn factory(&self) -> impl MakeBackend<Watched> + use<> {
        let watch = self.clone();
        move |config: &Config| {
            Ok(Watched {
                inner: ProbeBackend::new(config)?,
                watch,
            })
        }
    }

    /// Until a run of `probe` has started, at most `within`; whether one did.
    pub async fn run_started(&self, probe: &str, within: Duration) -> bool {
        wait_until(within, || !self.events.starts_of(probe).is_empty()).await
    }

    /// The next `prepare` refuses the config with `error`, as the real backend does when a
    /// probe's audio stopped decoding between loading and preparing: a race between two
    /// reads of one file that a test cannot time, so it is set here.
    pub fn refuse_next_prepare(&self, error: AudioError) {
        *self.refusal.lock().unwrap() = Some(error);
    }
}

/// The production backend, watched (see [`Watch`]).
pub struct Watched {
    inner: ProbeBackend,
    watch: Watch,
}

/// Scheduler events to the real backend's metrics and to the test's recorder.
struct Both(Arc<dyn SchedulerEvents>, Arc<Recorder>);

impl SchedulerEvents for Both {
    fn run_started(&self, probe: &ProbeSpec, delay: Duration) {
        self.0.run_started(probe, delay);
        self.1.run_started(probe, delay);
    }
    fn skipped(&self, probe: &ProbeSpec) {
        self.0.skipped(probe);
        self.1.skipped(probe);
    }
    fn in_flight(&self, probe: &ProbeSpec, delta: i64) {
        self.0.in_flight(probe, delta);
        self.1.in_flight(probe, delta);
    }
    fn stream_finished(&self, probe: &ProbeSpec, stream: u32, result: &StreamResult) {
        self.0.stream_finished(probe, stream, result);
        self.1.stream_finished(probe, stream, result);
    }
}

impl Backend for Watched {
    fn prepare(&self, config: &Config) -> Result<Arc<dyn Runner>, BackendError> {
        if let Some(source) = self.watch.refusal.lock().unwrap().take() {
            let probe = config.probes[0].name.clone();
            return Err(BackendError::Audio {
                index: 0,
                probe,
                source,
            });
        }
        self.inner.prepare(config)
    }
    fn events(&self) -> Arc<dyn SchedulerEvents> {
        Arc::new(Both(self.inner.events(), self.watch.events.clone()))
    }
    fn render_metrics(&self, accept: Option<&str>) -> (&'static str, Vec<u8>) {
        self.watch
            .accepts
            .lock()
            .unwrap()
            .push(accept.map(str::to_string));
        self.inner.render_metrics(accept)
    }
    fn config_reloaded(&self, success: bool, unix_seconds: f64) {
        self.watch.reloads.lock().unwrap().push(success);
        self.inner.config_reloaded(success, unix_seconds);
    }
    fn shutdown(&self, timeout: Duration) -> BoxFuture<()> {
        let flush = self.inner.shutdown(timeout);
        let flushed = self.watch.flushed.clone();
        Box::pin(async move {
            flush.await;
            *flushed.lock().unwrap() = true;
        })
    }
}

/// A response read by [`http`].
pub struct Reply {
    pub status: u16,
    pub head: String,
    pub body: String,
}

/// One HTTP/1.1 request over a fresh loopback connection.
pub async fn http(addr: std::net::SocketAddr, method: &str, path: &str, extra: &str) -> Reply {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{extra}\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.expect("read");
    let text = String::from_utf8_lossy(&buf).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Reply {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

/// Poll `f` every 20 ms until it is true or `limit` passes (real time).
pub async fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if std::time::Instant::now() > end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Writes `text` as the config file `rtprobe.yaml` in `dir`; returns its path.
pub fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("rtprobe.yaml");
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    path
}

/// `serve` as production runs it on the config `text` (written by [`write_config`]): the real
/// config loader and the real probe backend; no file watching (a test reloads when it means to).
pub async fn start_production(dir: &Path, text: &str) -> rtprobe::serve::Serve {
    let mut args = rtprobe::serve::ServeArgs::new(write_config(dir, text));
    args.no_watch = true;
    rtprobe::serve::Serve::start(args, rtprobe::config::load, ProbeBackend::new)
        .await
        .expect("serve starts")
}

/// Polls `/metrics` on `addr` every 250 ms until `ready` holds for the body, and returns that
/// body; fails the test with "no {what}" and the last body after `within`.
pub async fn metrics_when(
    addr: std::net::SocketAddr,
    within: Duration,
    what: &str,
    ready: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + within;
    loop {
        let body = http(addr, "GET", "/metrics", "").await.body;
        if ready(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "no {what}:\n{body}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The simulator with `fault`, at a pace that keeps a burst-paced run to a fraction of a
/// second (a short first-text delay and token interval).
pub async fn quick_sim(fault: rtprobe::simulate::Fault) -> rtprobe::simulate::SimHandle {
    super::sim::start(rtprobe::simulate::SimConfig {
        first_text_delay: Duration::from_millis(20),
        token_interval: Duration::from_millis(10),
        tail_delay: Duration::from_millis(10),
        fault,
        ..Default::default()
    })
    .await
}

/// [`config_text`] for probes of the simulator's model on `sim`.
pub fn sim_config(sim: &rtprobe::simulate::SimHandle, probes: &[&str]) -> String {
    config_text(&target(sim), "demo-realtime", probes)
}

/// [`probe_entry`] for a probe of the simulator's model on `sim`.
pub fn sim_entry(sim: &rtprobe::simulate::SimHandle, fields: &str) -> String {
    probe_entry(&target(sim), "demo-realtime", fields)
}

/// The target URL of `sim`, as a config names it.
pub fn target(sim: &rtprobe::simulate::SimHandle) -> String {
    format!("http://{}", sim.addr())
}

/// `serve` on the config `text` (written to `rtprobe.yaml` in `dir`) with the real loader and
/// the watched production backend; no file watching (a test reloads when it means to).
pub async fn start_watched(dir: &Path, text: &str) -> (rtprobe::serve::Serve, Watch) {
    start_watched_with(dir, text, rtprobe::config::load).await
}

/// As [`start_watched`], with `loader` for the config.
pub async fn start_watched_with(
    dir: &Path,
    text: &str,
    loader: impl LoadConfig,
) -> (rtprobe::serve::Serve, Watch) {
    let mut args = rtprobe::serve::ServeArgs::new(write_config(dir, text));
    args.no_watch = true;
    let watch = Watch::new();
    let serve = rtprobe::serve::Serve::start(args, loader, watch.factory())
        .await
        .expect("serve starts");
    (serve, watch)
}
