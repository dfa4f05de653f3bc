//! Measurement accuracy, pacing precision and footprint of the probe path (see BENCHMARKS.md).
//!
//! Runs N concurrent paced streams through the real `probe::run` against the in-process
//! simulator, and compares every measured interval with the simulator's recorded ground truth
//! (same process, same monotonic clock), so the figure is rtprobe's error, not the fake's; the
//! simulator's own emit lateness is reported beside it. Then times `/metrics` rendering.
//!
//! `cargo bench --bench accuracy -- [--streams 1,16,64,256] [--jitter-ms 0] [--runs 1]`

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtprobe::config::{self, Buckets};
use rtprobe::metrics::Telemetry;
use rtprobe::metrics::derive::{Derived, derive};
use rtprobe::probe;
use rtprobe::simulate::{ClientFrameKind, EmitKind, SessionRecord, SimConfig, Simulator};
use rtprobe::stats::quantile;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn proc_status(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .map(|l| l.to_string())
        })
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// utime + stime of this process in seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
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

fn first_frame_at(rec: &SessionRecord, pred: impl Fn(&ClientFrameKind) -> bool) -> Option<Instant> {
    rec.client_frames
        .iter()
        .find(|f| pred(&f.kind))
        .map(|f| f.at)
}

struct Errors {
    ttft: Vec<f64>,
    itl: Vec<f64>,
    rtt_last: Vec<f64>,
    finalize: Vec<f64>,
    pacing: Vec<f64>,
    sim_lateness: Vec<f64>,
    failed: usize,
}

async fn run_n(n: usize, jitter: Duration) -> (Errors, f64, f64) {
    let sim_cfg = SimConfig {
        first_text_delay: Duration::from_millis(300),
        token_interval: Duration::from_millis(80),
        empty_deltas_per_word: 1,
        tail_delay: Duration::from_millis(150),
        done_delay: Duration::from_millis(40),
        jitter,
        max_records: 100_000,
        keepalive: None,
        ..SimConfig::default()
    };
    let sim = Simulator::bind("127.0.0.1:0".parse().unwrap(), sim_cfg)
        .await
        .unwrap()
        .spawn();
    let clip = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/audio/quick-brown-fox.flac");
    let mut probes = Vec::new();
    for i in 0..n {
        // The simulator ignores the query string, and records it: it pairs runs with sessions.
        let yaml = format!(
            "probes:\n  - name: b{i}\n    target: ws://{}/v1/realtime?stream={i}\n    model: demo-realtime\n    audio: {}\n    timeout: 30s\n    interval: 60s\n    deadlines: {{connect: 10s, first_text: 10s, done: 10s}}\n",
            sim.addr(),
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
    let cpu0 = cpu_seconds();
    let wall0 = Instant::now();
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
    let cpu = cpu_seconds() - cpu0;
    let stream_minutes = wall0.elapsed().as_secs_f64() / 60.0 * n as f64;
    let records = sim.records();
    let mut e = Errors {
        ttft: vec![],
        itl: vec![],
        rtt_last: vec![],
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
        let Some(rec) = records
            .iter()
            .find(|r| r.request.as_ref().is_some_and(|(_, p)| p.ends_with(&query)))
        else {
            e.failed += 1;
            continue;
        };
        if tl.outcome.is_err() {
            e.failed += 1;
            continue;
        }
        let d: Derived = derive(tl, None);
        let texts: Vec<Instant> = rec
            .deltas(0)
            .into_iter()
            .filter(|(_, ne)| *ne)
            .map(|(at, _)| at)
            .collect();
        let first_append =
            first_frame_at(rec, |k| matches!(k, ClientFrameKind::Append { .. })).unwrap();
        let fin = first_frame_at(rec, |k| {
            *k == ClientFrameKind::Commit { final_: Some(true) }
        })
        .unwrap();
        let secs = |a: Instant, b: Instant| b.duration_since(a).as_secs_f64();
        if let (Some(m), Some(t)) = (d.time_to_first_text, texts.first()) {
            e.ttft.push((m - secs(first_append, *t)).abs());
        }
        for (k, gap) in d.itl_gaps.iter().enumerate() {
            if k + 1 < texts.len() {
                e.itl.push((gap - secs(texts[k], texts[k + 1])).abs());
            }
        }
        if let (Some(m), Some(t)) = (d.rtt_last, texts.last()) {
            e.rtt_last.push((m - secs(fin, *t)).abs());
        }
        if let (Some(m), Some(done)) = (d.finalize, rec.done_at(0)) {
            e.finalize.push((m - secs(fin, done)).abs());
        }
        e.pacing.extend(d.pacing_lateness.iter().copied());
        for em in rec
            .emissions
            .iter()
            .filter(|em| matches!(em.kind, EmitKind::Delta { .. } | EmitKind::Done))
        {
            if let Some(dl) = em.deadline {
                e.sim_lateness
                    .push(em.at.saturating_duration_since(dl).as_secs_f64());
            }
        }
    }
    sim.shutdown().await;
    (
        e,
        cpu / stream_minutes.max(1e-9),
        proc_status("VmHWM:") as f64 / 1024.0,
    )
}

fn render_bench(probes: usize) -> (Vec<f64>, usize) {
    let t = Telemetry::new(&Buckets::default(), None).expect("telemetry");
    let rec = t.recorder();
    let yaml_probe = |i: usize| {
        format!(
            "  - name: p{i}\n    target: http://10.0.0.{}:8000\n    model: m\n    audio: {}\n",
            i % 250,
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("examples/audio/quick-brown-fox.flac")
                .display()
        )
    };
    let yaml = format!(
        "probes:\n{}",
        (0..probes).map(yaml_probe).collect::<String>()
    );
    let cfg = config::parse(&yaml, Path::new("bench.yaml")).expect("config");
    let d = Derived {
        e2e: Some(3.2),
        ttft: Some(0.4),
        time_to_first_text: Some(0.35),
        itl_gaps: vec![0.08, 0.16, 0.24],
        itl_guidellm: Some(0.02),
        rtt_last: Some(0.15),
        rtt_mean: Some(0.3),
        finalize: Some(0.19),
        phases: vec![("connect", 0.001), ("upgrade", 0.002), ("session", 0.0005)],
        send_window_audio_rate: Some(1.0),
        send_window_output_tokens: Some(12.0),
        decode_token_rate: Some(4.0),
        usage: Some(rtprobe::probe::timeline::Usage {
            prompt_tokens: 39,
            completion_tokens: 40,
            total_tokens: 79,
        }),
        wer: Some(0.1),
        pacing_lateness: vec![0.0002; 30],
        text_deltas: 9,
        deltas: 17,
        ..Derived::default()
    };
    for p in &cfg.probes {
        let labels = rtprobe::metrics::ProbeLabels::new(p, "m");
        rec.record_run(&labels, &d, Ok(()));
        rec.scheduler_delay(&labels, 0.001);
    }
    let mut times = Vec::new();
    let mut size = 0;
    for _ in 0..50 {
        let start = Instant::now();
        let (_, body) = t.render(None);
        times.push(start.elapsed().as_secs_f64());
        size = body.len();
    }
    (times, size)
}

fn main() {
    let streams: Vec<usize> = arg("--streams")
        .unwrap_or_else(|| "1,16,64,256".into())
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
        "abs error vs simulator ground truth, ms: p50 / p99 / max  (jitter ±{} ms)",
        jitter.as_millis()
    );
    println!(
        "| N | failed | TTFT (audio) | ITL gaps | last RTT | finalize | pacing lateness | simulator emit lateness | CPU s per stream-min | peak RSS MB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for n in streams {
        let (e, cpu, rss) = rt.block_on(run_n(n, jitter));
        println!(
            "| {n} | {} | {} | {} | {} | {} | {} | {} | {:.3} | {:.1} |",
            e.failed,
            fmt_ms(&e.ttft),
            fmt_ms(&e.itl),
            fmt_ms(&e.rtt_last),
            fmt_ms(&e.finalize),
            fmt_ms(&e.pacing),
            fmt_ms(&e.sim_lateness),
            cpu,
            rss
        );
    }
    for probes in [10, 100] {
        let (t, size) = render_bench(probes);
        println!(
            "/metrics render with {probes} probes: p50 {:.2} ms, p99 {:.2} ms, body {} KB",
            quantile(&t, 0.5).unwrap() * 1e3,
            quantile(&t, 0.99).unwrap() * 1e3,
            size / 1024
        );
    }
}
