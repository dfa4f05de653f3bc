//! Measurement accuracy, pacing precision and footprint of the probe path (see BENCHMARKS.md).
//!
//! Starts `rtprobe simulate` (the release binary) as its own process with known timing, runs N
//! concurrent paced streams through the real `probe::run` here, then fetches the simulator's
//! ground-truth records from `GET /debug/records` and compares every measured interval with the
//! same interval on the simulator's clock. The simulator no longer shares this process's
//! runtime, so its inbound lateness is not charged to rtprobe's figures, and this process's CPU
//! and RSS are rtprobe's alone. (`/metrics` render time is `benches/metrics_render.rs`.)
//!
//! `cargo bench --bench accuracy -- [--streams 1,64,256] [--jitter-ms 0]`

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtprobe::config;
use rtprobe::derive::{Derived, derive};
use rtprobe::probe;
use rtprobe::stats::{mean, quantile};
use serde_json::Value;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn proc_status(pid: &str, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .map(|l| l.to_string())
        })
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// utime + stime of a process (`self` or a pid) in seconds.
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of /proc/pid/stat; after the `)` (field 2) they
    // are the 12th and 13th words. Clock ticks are 100 Hz on Linux.
    let field = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let ticks = field(11) + field(12);
    ticks as f64 / 100.0
}

fn fmt_ms(v: &[f64]) -> String {
    let q = |p| quantile(v, p).map_or("-".into(), |x: f64| format!("{:.3}", x * 1e3));
    format!("{} / {} / {}", q(0.5), q(0.99), q(1.0))
}

/// The simulator process; killed when dropped, so a failed bench leaves nothing running.
struct SimProcess {
    child: Child,
    addr: SocketAddr,
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 GET on loopback; the simulator closes after the response.
fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    let status = buf
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    Ok((status, body))
}

fn start_sim(jitter: Duration) -> SimProcess {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_rtprobe"))
        .args(["--log-level", "warn", "simulate", "--listen"])
        .arg(addr.to_string())
        .args([
            "--first-text-delay",
            "300ms",
            "--token-interval",
            "80ms",
            "--empty-deltas-per-word",
            "1",
            "--tail-delay",
            "150ms",
            "--done-delay",
            "40ms",
            "--keepalive",
            "0",
            "--records",
            "4096",
        ])
        .arg("--jitter")
        .arg(format!("{}ms", jitter.as_millis()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn rtprobe simulate");
    let sim = SimProcess { child, addr };
    let until = Instant::now() + Duration::from_secs(10);
    while !matches!(http_get(addr, "/health"), Ok((200, _))) {
        assert!(
            Instant::now() < until,
            "simulator did not come up on {addr}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    sim
}

/// The ground truth of one session, in seconds on the simulator's clock.
struct Truth {
    target: String,
    /// (receipt, kind) of every client frame.
    frames: Vec<(f64, Value)>,
    /// (emit time, deadline, kind) of every emission.
    emits: Vec<(f64, Option<f64>, Value)>,
}

fn truths(addr: SocketAddr) -> Vec<Truth> {
    let (status, body) = http_get(addr, "/debug/records").expect("GET /debug/records");
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("records JSON");
    let secs = |v: &Value| v.as_u64().map(|ns| ns as f64 / 1e9);
    v["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .map(|s| Truth {
            target: s["target"].as_str().unwrap_or("").to_owned(),
            frames: s["client_frames"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| (secs(&f["at_ns"]).unwrap(), f["kind"].clone()))
                .collect(),
            emits: s["emissions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    (
                        secs(&e["at_ns"]).unwrap(),
                        secs(&e["deadline_ns"]),
                        e["kind"].clone(),
                    )
                })
                .collect(),
        })
        .collect()
}

impl Truth {
    fn first_frame(&self, pred: impl Fn(&Value) -> bool) -> Option<f64> {
        self.frames.iter().find(|(_, k)| pred(k)).map(|(at, _)| *at)
    }

    /// Emit times of the non-empty deltas.
    fn texts(&self) -> Vec<f64> {
        self.emits
            .iter()
            .filter(|(_, _, k)| k["delta"] == Value::Bool(true))
            .map(|(at, _, _)| *at)
            .collect()
    }

    fn done(&self) -> Option<f64> {
        self.emits
            .iter()
            .find(|(_, _, k)| k == "done")
            .map(|(at, _, _)| *at)
    }

    /// The frames Avg RTT averages over: update, both commits, every append.
    fn protocol_frames(&self) -> Vec<f64> {
        self.frames
            .iter()
            .filter(|(_, k)| {
                k == "session_update" || k.get("append").is_some() || k.get("commit").is_some()
            })
            .map(|(at, _)| *at)
            .collect()
    }
}

/// Send and receive stamps of both processes for one direction, on their own clocks (seconds).
#[derive(Default)]
struct Transits {
    /// (rtprobe's send stamp, simulator's receipt) of every append and the final commit.
    up: Vec<(f64, f64)>,
    /// (simulator's emit, rtprobe's receive stamp) of every delta.
    down: Vec<(f64, f64)>,
}

impl Transits {
    /// The two clocks share no origin; their offset θ (simulator − rtprobe) is bounded by every
    /// message, NTP-style: θ ≤ receipt − send for each up message, θ ≥ emit − receive for each
    /// down message, and θ is taken midway between the tightest bounds. Measured once, on a
    /// single quiet stream (θ is constant: both processes read the same monotonic clock).
    /// Both sides stamp a send after the write returned, and the peer may read the bytes
    /// before that, so the bounds can cross by about a write: the half-width returned is then
    /// negative. Returns (θ, half-width).
    fn offset(&self) -> Option<(f64, f64)> {
        let hi = self
            .up
            .iter()
            .map(|(c, s)| s - c)
            .fold(f64::INFINITY, f64::min);
        let lo = self
            .down
            .iter()
            .map(|(s, c)| s - c)
            .fold(f64::NEG_INFINITY, f64::max);
        (hi.is_finite() && lo.is_finite()).then(|| ((lo + hi) / 2.0, (hi - lo) / 2.0))
    }

    /// One-way transits (up, down) in seconds, given the clock offset θ.
    fn at(&self, theta: f64) -> (Vec<f64>, Vec<f64>) {
        let up = self.up.iter().map(|(c, s)| s - c - theta).collect();
        let down = self.down.iter().map(|(s, c)| c + theta - s).collect();
        (up, down)
    }
}

struct Errors {
    transits: Transits,
    ttft: Vec<f64>,
    itl: Vec<f64>,
    rtt_last: Vec<f64>,
    rtt_mean: Vec<f64>,
    finalize: Vec<f64>,
    pacing: Vec<f64>,
    sim_lateness: Vec<f64>,
    failed: usize,
}

struct Footprint {
    /// CPU seconds per stream-minute of this process (rtprobe only).
    cpu: f64,
    /// CPU seconds per stream-minute of the simulator process.
    sim_cpu: f64,
    /// Peak RSS of this process, MB.
    rss: f64,
}

/// N streams against the running simulator; `run` tags their sessions (the simulator keeps
/// every run's records) and `epoch` is the origin of rtprobe-side seconds.
async fn run_n(sim: &SimProcess, run: usize, n: usize, epoch: Instant) -> (Errors, Footprint) {
    let sim_pid = sim.child.id().to_string();
    let sim_addr = sim.addr;
    let clip = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/audio/quick-brown-fox.flac");
    let mut probes = Vec::new();
    for i in 0..n {
        // The simulator ignores the query string, and records it: it pairs runs with sessions.
        let yaml = format!(
            "probes:\n  - name: b{i}\n    target: ws://{}/v1/realtime?run={run}&stream={i}\n    model: demo-realtime\n    audio: {}\n    timeout: 30s\n    interval: 60s\n    deadlines: {{connect: 10s, first_text: 10s, done: 10s}}\n",
            sim_addr,
            clip.display()
        );
        probes.push(
            config::parse(&yaml, Path::new("bench.yaml"))
                .expect("bench config")
                .probes
                .remove(0),
        );
    }
    let audio = Arc::new(rtprobe::audio::prepare(&clip, Duration::from_millis(100)).expect("clip"));
    let (cpu0, sim_cpu0) = (cpu_seconds("self"), cpu_seconds(&sim_pid));
    let wall0 = Instant::now();
    let bench_secs = |at: Instant| at.saturating_duration_since(epoch).as_secs_f64();
    let handles: Vec<_> = probes
        .into_iter()
        .map(|spec| {
            let audio = audio.clone();
            tokio::spawn(async move {
                let tl = probe::run(&spec, &audio).await;
                (spec.target.ws_url.clone(), tl)
            })
        })
        .collect();
    let mut results = Vec::new();
    for h in handles {
        results.push(h.await.expect("probe task"));
    }
    let stream_minutes = wall0.elapsed().as_secs_f64() / 60.0 * n as f64;
    let footprint = Footprint {
        cpu: (cpu_seconds("self") - cpu0) / stream_minutes.max(1e-9),
        sim_cpu: (cpu_seconds(&sim_pid) - sim_cpu0) / stream_minutes.max(1e-9),
        rss: proc_status("self", "VmHWM:") as f64 / 1024.0,
    };
    let records = tokio::task::spawn_blocking(move || truths(sim_addr))
        .await
        .expect("records");
    let mut e = Errors {
        transits: Transits::default(),
        ttft: vec![],
        itl: vec![],
        rtt_last: vec![],
        rtt_mean: vec![],
        finalize: vec![],
        pacing: vec![],
        sim_lateness: vec![],
        failed: 0,
    };
    for (url, tl) in &results {
        let query = url
            .split_once('?')
            .map(|(_, q)| format!("?{q}"))
            .unwrap_or_default();
        let Some(rec) = records.iter().find(|r| r.target.ends_with(&query)) else {
            e.failed += 1;
            continue;
        };
        if tl.outcome.is_err() {
            e.failed += 1;
            continue;
        }
        let d: Derived = derive(tl, None);
        let texts = rec.texts();
        let first_append = rec.first_frame(|k| k.get("append").is_some()).unwrap();
        let fin = rec
            .first_frame(|k| k["commit"] == Value::Bool(true))
            .unwrap();
        if let (Some(m), Some(t)) = (d.time_to_first_text, texts.first()) {
            e.ttft.push((m - (t - first_append)).abs());
        }
        for (k, gap) in d.itl_gaps.iter().enumerate() {
            if k + 1 < texts.len() {
                e.itl.push((gap - (texts[k + 1] - texts[k])).abs());
            }
        }
        if let (Some(m), Some(t)) = (d.rtt_last, texts.last()) {
            e.rtt_last.push((m - (t - fin)).abs());
        }
        let sent = rec.protocol_frames();
        if let (Some(m), Some(recv), Some(sent)) = (d.rtt_mean, mean(&texts), mean(&sent)) {
            e.rtt_mean.push((m - (recv - sent)).abs());
        }
        if let (Some(m), Some(done)) = (d.finalize, rec.done()) {
            e.finalize.push((m - (done - fin)).abs());
        }
        e.pacing.extend(d.pacing_lateness.iter().copied());
        // Pair the stamps of both sides message by message (both keep wire order).
        let t0 = tl.t0.expect("a run that succeeded has its origin");
        let c = |offset: Duration| bench_secs(t0 + offset);
        let sim_appends = rec
            .frames
            .iter()
            .filter(|(_, k)| k.get("append").is_some() || k["commit"] == Value::Bool(true))
            .map(|(at, _)| *at);
        let rt_appends = tl.sent.iter().filter(|s| {
            matches!(
                s.kind,
                rtprobe::probe::timeline::SentKind::Append
                    | rtprobe::probe::timeline::SentKind::FinalCommit
            )
        });
        e.transits
            .up
            .extend(rt_appends.zip(sim_appends).map(|(s, at)| (c(s.at), at)));
        let sim_deltas = rec
            .emits
            .iter()
            .filter(|(_, _, k)| k.get("delta").is_some())
            .map(|(at, _, _)| *at);
        e.transits
            .down
            .extend(sim_deltas.zip(&tl.deltas).map(|(at, dl)| (at, c(dl.at))));
        for (at, deadline, kind) in &rec.emits {
            if let Some(dl) = deadline
                && (kind.get("delta").is_some() || kind == "done")
            {
                e.sim_lateness.push((at - dl).max(0.0));
            }
        }
    }
    (e, footprint)
}

fn main() {
    let streams: Vec<usize> = arg("--streams")
        .unwrap_or_else(|| "1,64,256".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let jitter =
        Duration::from_millis(arg("--jitter-ms").and_then(|v| v.parse().ok()).unwrap_or(0));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "abs error vs ground truth of `rtprobe simulate` in its own process, ms: p50 / p99 / max  (jitter ±{} ms)",
        jitter.as_millis()
    );
    println!(
        "| N | failed | TTFT (audio) | ITL gaps | last RTT | Avg RTT | finalize | pacing lateness | simulator emit lateness | rtprobe CPU s per stream-min | simulator CPU s per stream-min | rtprobe peak RSS MB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    // One simulator process for the whole bench, so one clock offset holds for every N; it is
    // measured on a single stream first, while both processes are quiet.
    let epoch = Instant::now();
    let sim = start_sim(jitter);
    let (calibration, _) = rt.block_on(run_n(&sim, 0, 1, epoch));
    let offset = calibration.transits.offset();
    let mut splits = Vec::new();
    for (run, n) in streams.into_iter().enumerate() {
        let (e, f) = rt.block_on(run_n(&sim, run + 1, n, epoch));
        splits.push((n, offset.map(|(theta, _)| e.transits.at(theta))));
        println!(
            "| {n} | {} | {} | {} | {} | {} | {} | {} | {} | {:.3} | {:.3} | {:.1} |",
            e.failed,
            fmt_ms(&e.ttft),
            fmt_ms(&e.itl),
            fmt_ms(&e.rtt_last),
            fmt_ms(&e.rtt_mean),
            fmt_ms(&e.finalize),
            fmt_ms(&e.pacing),
            fmt_ms(&e.sim_lateness),
            f.cpu,
            f.sim_cpu,
            f.rss
        );
    }
    let half_width = offset.map_or("-".into(), |(_, w)| format!("{:.3}", w * 1e3));
    println!(
        "\none-way transits, ms, p50 / p99 / max (clock offset from one calibration stream, half-width {half_width} ms): up = rtprobe's send stamp → simulator's receipt (the simulator's read delay), down = simulator's emit → rtprobe's receive stamp (rtprobe's own receive delay)"
    );
    println!("| N | up (appends, final commit) | down (every delta) |");
    println!("|---|---|---|");
    for (n, split) in splits {
        match split {
            Some((up, down)) => println!("| {n} | {} | {} |", fmt_ms(&up), fmt_ms(&down)),
            None => println!("| {n} | - | - |"),
        }
    }
    drop(sim);
}
