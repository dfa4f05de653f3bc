//! Shared fakes for the scheduler, HTTP and serve tests: probe specs, a runner whose behaviour
//! is set through probe labels, an event recorder, a backend, a tiny config loader and a raw
//! HTTP/1.1 client for loopback requests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rtprobe::config::{
    BearerToken, Buckets, Config, Deadlines, ModelChoice, Pacing, ProbeSpec, Secret, SecretSource,
    ServerSettings, Target, TlsSettings,
};
use rtprobe::derive::Derived;
use rtprobe::probe::{ErrorType, ProbeError};
use rtprobe::scheduler::{BoxFuture, Runner, SchedulerEvents, StreamResult};
use rtprobe::serve::Backend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

/// A probe spec; fake behaviour goes in labels: `fake.sleep_ms`, `fake.fail` (an error
/// label value, e.g. `connect`), `fake.panic`.
pub fn spec(name: &str, interval: Duration) -> ProbeSpec {
    ProbeSpec {
        name: name.into(),
        target: Target {
            ws_url: "ws://127.0.0.1:9/v1/realtime".into(),
            http_base: "http://127.0.0.1:9".into(),
            host: "127.0.0.1".into(),
            port: 9,
            secure: false,
        },
        model: ModelChoice::Named("fake-model".into()),
        audio: PathBuf::from("clip.wav"),
        reference: None,
        max_wer: None,
        chunk: Duration::from_millis(100),
        pacing: Pacing::Realtime,
        deadlines: Deadlines::default(),
        headers: Vec::new(),
        bearer: None,
        tls: TlsSettings::default(),
        labels: BTreeMap::new(),
        interval,
        timeout: interval,
        concurrency: 1,
        jitter: 0.0,
        dialect: Default::default(),
        utterances: Vec::new(),
    }
}

pub fn with_label(mut s: ProbeSpec, k: &str, v: &str) -> ProbeSpec {
    s.labels.insert(k.into(), v.into());
    s
}

pub fn config(probes: Vec<ProbeSpec>) -> Config {
    Config {
        server: ServerSettings {
            listen: "127.0.0.1:0".into(),
            admin_token: None,
        },
        otlp: None,
        buckets: Buckets::default(),
        metrics: Default::default(),
        probes,
    }
}

/// Every stream the fake runner started: (probe, stream, start instant).
#[derive(Default)]
pub struct FakeRunner {
    pub starts: Mutex<Vec<(String, u32, Instant)>>,
}

impl FakeRunner {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn starts_of(&self, name: &str) -> Vec<(u32, Instant)> {
        self.starts
            .lock()
            .unwrap()
            .iter()
            .filter(|(n, _, _)| n == name)
            .map(|(_, s, t)| (*s, *t))
            .collect()
    }
}

fn error_kind(label: &str) -> ErrorType {
    ErrorType::all()
        .into_iter()
        .find(|e| e.as_str() == label)
        .unwrap_or(ErrorType::Protocol)
}

impl Runner for FakeRunner {
    fn run(&self, probe: Arc<ProbeSpec>, stream: u32) -> BoxFuture<StreamResult> {
        self.starts
            .lock()
            .unwrap()
            .push((probe.name.clone(), stream, Instant::now()));
        let sleep = probe
            .labels
            .get("fake.sleep_ms")
            .and_then(|v| v.parse().ok())
            .map(Duration::from_millis)
            .unwrap_or(Duration::ZERO);
        let fail = probe.labels.get("fake.fail").map(|l| error_kind(l));
        let panic = probe.labels.contains_key("fake.panic");
        Box::pin(async move {
            let started = SystemTime::now();
            let t = Instant::now();
            tokio::time::sleep(sleep).await;
            if panic {
                panic!("fake runner panic\nsecond line");
            }
            let outcome = match fail {
                Some(kind) => Err(ProbeError::new(kind, "fake failure <b>detail</b>")),
                None => Ok(()),
            };
            let ok = outcome.is_ok();
            StreamResult {
                started,
                elapsed: t.elapsed(),
                outcome,
                derived: Derived {
                    ttft: ok.then_some(0.25 + f64::from(stream) * 0.01),
                    rtt_last: ok.then_some(0.5),
                    rtt_mean: ok.then_some(0.4),
                    itl_gaps: if ok { vec![0.05, 0.07, 0.09] } else { vec![] },
                    decode_token_rate: ok.then_some(20.0 + f64::from(stream)),
                    ..Derived::default()
                },
                timeline: None,
                trace_id: None,
                later_utterances: Vec::new(),
            }
        })
    }

    fn debug(&self, probe: Arc<ProbeSpec>) -> BoxFuture<serde_json::Value> {
        let sleep = probe
            .labels
            .get("fake.debug_ms")
            .and_then(|v| v.parse().ok())
            .map(Duration::from_millis)
            .unwrap_or(Duration::ZERO);
        Box::pin(async move {
            tokio::time::sleep(sleep).await;
            serde_json::json!({ "probe": probe.name, "debug": true })
        })
    }
}

/// (probe, stream, outcome) of one finished stream.
pub type Finished = (String, u32, Result<(), ProbeError>);

/// Everything the scheduler reported.
#[derive(Default)]
pub struct Recorder {
    pub started: Mutex<Vec<(String, Duration, Instant)>>,
    pub skipped: Mutex<BTreeMap<String, u64>>,
    pub in_flight: Mutex<BTreeMap<String, i64>>,
    pub max_in_flight: Mutex<BTreeMap<String, i64>>,
    pub finished: Mutex<Vec<Finished>>,
    pub finish_times: Mutex<Vec<(String, Instant)>>,
}

impl Recorder {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
    pub fn skipped_of(&self, name: &str) -> u64 {
        self.skipped.lock().unwrap().get(name).copied().unwrap_or(0)
    }
    pub fn in_flight_of(&self, name: &str) -> i64 {
        self.in_flight
            .lock()
            .unwrap()
            .get(name)
            .copied()
            .unwrap_or(0)
    }
    pub fn max_in_flight_of(&self, name: &str) -> i64 {
        self.max_in_flight
            .lock()
            .unwrap()
            .get(name)
            .copied()
            .unwrap_or(0)
    }
    pub fn finished_of(&self, name: &str) -> Vec<(u32, Result<(), ProbeError>)> {
        self.finished
            .lock()
            .unwrap()
            .iter()
            .filter(|(n, _, _)| n == name)
            .map(|(_, s, r)| (*s, r.clone()))
            .collect()
    }
    pub fn finish_times_of(&self, name: &str) -> Vec<Instant> {
        self.finish_times
            .lock()
            .unwrap()
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, t)| *t)
            .collect()
    }
    pub fn starts_of(&self, name: &str) -> Vec<(Duration, Instant)> {
        self.started
            .lock()
            .unwrap()
            .iter()
            .filter(|(n, _, _)| n == name)
            .map(|(_, d, t)| (*d, *t))
            .collect()
    }
}

impl SchedulerEvents for Recorder {
    fn run_started(&self, probe: &ProbeSpec, delay: Duration) {
        self.started
            .lock()
            .unwrap()
            .push((probe.name.clone(), delay, Instant::now()));
    }
    fn skipped(&self, probe: &ProbeSpec) {
        *self
            .skipped
            .lock()
            .unwrap()
            .entry(probe.name.clone())
            .or_default() += 1;
    }
    fn in_flight(&self, probe: &ProbeSpec, delta: i64) {
        let mut m = self.in_flight.lock().unwrap();
        let v = m.entry(probe.name.clone()).or_default();
        *v += delta;
        let now = *v;
        let mut mx = self.max_in_flight.lock().unwrap();
        let e = mx.entry(probe.name.clone()).or_default();
        *e = (*e).max(now);
    }
    fn stream_finished(&self, probe: &ProbeSpec, stream: u32, result: &StreamResult) {
        self.finished
            .lock()
            .unwrap()
            .push((probe.name.clone(), stream, result.outcome.clone()));
        self.finish_times
            .lock()
            .unwrap()
            .push((probe.name.clone(), Instant::now()));
    }
}

/// A backend over the fakes: records reload gauges and the shutdown flush.
pub struct FakeBackend {
    pub runner: Arc<FakeRunner>,
    pub events: Arc<Recorder>,
    pub reloads: Arc<Mutex<Vec<bool>>>,
    pub flushed: Arc<Mutex<bool>>,
}

impl FakeBackend {
    pub fn new() -> Self {
        FakeBackend {
            runner: FakeRunner::new(),
            events: Recorder::new(),
            reloads: Arc::new(Mutex::new(Vec::new())),
            flushed: Arc::new(Mutex::new(false)),
        }
    }

    /// A second handle on the same recorders, for the test to keep after `serve` owns one.
    pub fn handle(&self) -> FakeBackend {
        FakeBackend {
            runner: self.runner.clone(),
            events: self.events.clone(),
            reloads: self.reloads.clone(),
            flushed: self.flushed.clone(),
        }
    }
}

impl Backend for FakeBackend {
    fn prepare(&self, config: &Config) -> Result<Arc<dyn Runner>, String> {
        if let Some(p) = config
            .probes
            .iter()
            .find(|p| p.labels.contains_key("fake.bad_audio"))
        {
            return Err(format!("probes[{}].audio: cannot decode", p.name));
        }
        Ok(self.runner.clone())
    }
    fn events(&self) -> Arc<dyn SchedulerEvents> {
        self.events.clone()
    }
    fn render_metrics(&self, accept: Option<&str>) -> (&'static str, Vec<u8>) {
        let n = self.events.finished.lock().unwrap().len();
        (
            "text/plain; version=0.0.4; charset=utf-8",
            format!(
                "# fake\nfake_streams_total {n}\n# accept {}\n",
                accept.unwrap_or("-")
            )
            .into_bytes(),
        )
    }
    fn config_reloaded(&self, success: bool, _unix_seconds: f64) {
        self.reloads.lock().unwrap().push(success);
    }
    fn shutdown(&self, _timeout: Duration) -> BoxFuture<()> {
        let f = self.flushed.clone();
        Box::pin(async move {
            *f.lock().unwrap() = true;
        })
    }
}

/// A tiny line format for test config files, standing in for `config::load`:
/// `probe NAME INTERVAL_MS [key=value ...]` (keys become labels; `concurrency=N` and
/// `timeout_ms=N` set those fields), `token VALUE` puts a bearer token and an `X-Api-Key`
/// header on every probe, `invalid` fails with a line-numbered message.
pub fn load_test_config(path: &Path) -> Result<Config, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut probes = Vec::new();
    let mut token = None;
    for (i, line) in text.lines().enumerate() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [] => {}
            ["probe", name, ms, rest @ ..] => {
                let ms: u64 = ms
                    .parse()
                    .map_err(|_| format!("line {}: bad interval", i + 1))?;
                let mut s = spec(name, Duration::from_millis(ms));
                for kv in rest {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    match k {
                        "concurrency" => s.concurrency = v.parse().unwrap_or(1),
                        "timeout_ms" => s.timeout = Duration::from_millis(v.parse().unwrap_or(ms)),
                        _ => s = with_label(s, k, v),
                    }
                }
                probes.push(s);
            }
            ["token", value] => token = Some(value.to_string()),
            ["invalid", ..] => {
                return Err(format!(
                    "{}: probes[0].interval: invalid duration at line {} column 1",
                    path.display(),
                    i + 1
                ));
            }
            _ => return Err(format!("line {}: unknown statement", i + 1)),
        }
    }
    if let Some(t) = token {
        for p in &mut probes {
            p.bearer = Some(BearerToken {
                source: SecretSource::Env("RTPROBE_TEST_TOKEN".into()),
                token: Secret::new(t.as_str()),
            });
            p.headers
                .push(("X-Api-Key".into(), Secret::new(t.as_str())));
        }
    }
    Ok(config(probes))
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

/// `serve` as production runs it on the config file at `path`: the real config loader and the
/// real probe backend; no file watching (a test reloads when it means to).
pub async fn start_production(path: &Path) -> rtprobe::serve::Serve {
    let mut args = rtprobe::serve::ServeArgs::new(path);
    args.no_watch = true;
    rtprobe::serve::Serve::start(
        args,
        |p: &Path| rtprobe::config::load(p).map_err(|e| e.to_string()),
        rtprobe::serve::backend::ProbeBackend::new,
    )
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
