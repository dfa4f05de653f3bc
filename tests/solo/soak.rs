//! Fault soak: `rtprobe serve` (a child process) probes a simulator that cycles through every
//! fault knob, at a high rate with concurrency, and must keep its schedule, its memory and its
//! file descriptors, lose no run, never panic, and label every failure from the closed set.
//! Short by default (~40 s, for CI); `RTPROBE_SOAK_SECS=1800` for a long run. Prints figures.

use crate::support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use rtprobe::probe::ErrorType;
use rtprobe::simulate::{Fault, SimConfig};

/// Empty while `serve` is not listening yet.
fn get(addr: SocketAddr, path: &str) -> String {
    support::get(addr, path, Duration::from_secs(10)).unwrap_or_default()
}

fn proc_field(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Sum of a counter family, grouped by the value of `label` (or "" without it).
fn sum_by(metrics: &str, family: &str, label: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in metrics
        .lines()
        .filter(|l| l.starts_with(family) && l[family.len()..].starts_with('{'))
    {
        let value: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        let key = line
            .split(&format!("{label}=\""))
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or("")
            .to_string();
        *out.entry(key).or_default() += value;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_survives_every_fault_at_a_high_rate() {
    let _alone = crate::support::gate::alone(module_path!());
    let secs: u64 = std::env::var("RTPROBE_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let faults: Vec<Fault> = Fault::NAMES
        .iter()
        .map(|n| {
            if n.starts_with("http_status") {
                "http_status:503"
            } else {
                n
            }
        })
        .chain(["http_status:401", "http_status:403"])
        .map(|n| Fault::from_str(n).expect("fault name"))
        .collect();
    let sim_cfg = SimConfig {
        faults: faults.clone(),
        first_text_delay: Duration::from_millis(100),
        token_interval: Duration::from_millis(20),
        tail_delay: Duration::from_millis(50),
        done_delay: Duration::from_millis(10),
        slow_session_delay: Duration::from_secs(3),
        fault_after_words: 2,
        max_records: 0,
        ..SimConfig::default()
    };
    let sim = crate::support::sim::start(sim_cfg).await;
    let dir = tempfile::tempdir().unwrap();
    crate::support::wav::write_wav(&dir.path().join("short.wav"), 0.6);
    let port = crate::support::free_port();
    let (probes, interval, concurrency) = (3u32, 2.0f64, 2u32);
    let mut cfg = format!("server: {{listen: 127.0.0.1:{port}}}\nprobes:\n");
    for i in 0..probes {
        cfg += &format!(
            "  - {{name: soak{i}, target: 'http://{}', model: demo-realtime, audio: short.wav, interval: 2s, timeout: 2s, jitter: 0.1, concurrency: {concurrency}, deadlines: {{connect: 800ms, first_text: 800ms, done: 600ms}}}}\n",
            sim.addr()
        );
    }
    std::fs::write(dir.path().join("rtprobe.yaml"), cfg).unwrap();
    let log_path = dir.path().join("serve.log");
    let child = Command::new(env!("CARGO_BIN_EXE_rtprobe"))
        .args(["serve", "--config"])
        .arg(dir.path().join("rtprobe.yaml"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .expect("start serve");
    let pid = child.id();
    let guard = support::Kill(child);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();

    tokio::time::sleep(Duration::from_secs(5)).await;
    let (rss0, fds0) = (proc_field(pid, "VmRSS:"), fds(pid));
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let metrics = tokio::task::spawn_blocking(move || get(addr, "/metrics"))
        .await
        .unwrap();
    let (rss1, hwm, fds1) = (
        proc_field(pid, "VmRSS:"),
        proc_field(pid, "VmHWM:"),
        fds(pid),
    );
    let elapsed = started.elapsed().as_secs_f64() + 5.0;

    let by_type = sum_by(&metrics, "rtprobe_probe_runs_total", "error_type");
    let runs: f64 = by_type.values().sum();
    // (`+ 0.0`: an empty float sum is -0.0, which would print as "-0".)
    let skipped: f64 = sum_by(&metrics, "rtprobe_scheduler_skipped_total", "rtprobe_probe")
        .values()
        .sum::<f64>()
        + 0.0;
    let in_flight: f64 = sum_by(&metrics, "rtprobe_probe_in_flight", "rtprobe_probe")
        .values()
        .sum();
    let closed: Vec<&str> = ErrorType::all()
        .into_iter()
        .map(ErrorType::as_str)
        .collect();
    for kind in by_type.keys().filter(|k| !k.is_empty()) {
        assert!(
            closed.contains(&kind.as_str()),
            "error_type {kind:?} outside the closed set"
        );
    }
    // Every tick is a run of `concurrency` streams or a skip; none is lost. Runs still open at
    // the scrape are counted when they end, hence the slack of one tick per probe.
    let expected_ticks = probes as f64 * (elapsed / interval);
    let accounted = (runs + in_flight) / concurrency as f64 + skipped;
    println!(
        "soak {secs}s: {runs} streams recorded ({} failed), {skipped:.0} skipped ticks, {in_flight} in flight; ticks accounted {accounted:.0} of ~{expected_ticks:.0}; RSS {rss0} → {rss1} kB (peak {hwm}); fds {fds0} → {fds1}; by error_type {by_type:?}",
        runs - by_type.get("").copied().unwrap_or(0.0)
    );
    assert!(
        (accounted - expected_ticks).abs() <= 2.0 * probes as f64,
        "ticks accounted {accounted} vs expected {expected_ticks}"
    );
    assert!(by_type.len() >= 8, "most faults seen: {by_type:?}");
    assert!(
        fds1 <= fds0 + 2 * (probes * concurrency) as usize,
        "fd leak: {fds0} → {fds1}"
    );
    assert!(rss1 < 64 * 1024, "RSS {rss1} kB");
    // Scheduler delay: p99 under 50 ms (the bucket holding it, from the histogram).
    let delay_le = |le: &str| {
        sum_by(&metrics, "rtprobe_scheduler_delay_seconds_bucket", "le")
            .get(le)
            .copied()
            .unwrap_or(0.0)
    };
    let total = delay_le("+Inf");
    assert!(total > 0.0);
    // The p99 bucket is printed; the bound is loose on purpose (a stalled scheduler shows up
    // as seconds), since CI machines are shared.
    // The default `buckets.lateness_seconds` boundaries, as rendered.
    let p99_bucket = rtprobe::config::Buckets::default()
        .lateness_seconds
        .iter()
        .map(|b| b.to_string())
        .find(|le| delay_le(le) / total >= 0.99)
        .unwrap_or_else(|| "+Inf".into());
    println!("scheduler delay p99 ≤ {p99_bucket} s over {total} runs");
    assert!(
        delay_le("0.5") / total >= 0.99,
        "scheduler delay p99 above 500 ms"
    );
    drop(guard);
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(!log.contains("panicked"), "panic in serve:\n{log}");
    sim.shutdown().await;
}
