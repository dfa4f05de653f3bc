//! The one support tree of the integration tests, declared by every test binary as
//! `mod support`. Here: locating external tools (promtool, prometheus, kubectl, kubernetes-validate), reading the
//! repository's YAML, listing fixture files, free loopback ports, and running commands with a
//! bounded wait. The submodules hold the helpers of one area each (`promql`: the PromQL scanner
//! the dashboard and Prometheus tests share).

pub mod gate;
pub mod load;
pub mod metrics;
pub mod probe;
pub mod promql;
pub mod serve;
pub mod sim;
pub mod wav;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The repository root (where Cargo.toml is).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Find `name` on PATH. When it is missing: under CI (env `CI` set) the test fails, because CI
/// installs every tool; elsewhere the test prints a loud SKIPPED line and the caller returns.
pub fn require_tool(name: &str, install_hint: &str) -> Option<PathBuf> {
    if let Some(p) = which(name) {
        return Some(p);
    }
    if std::env::var_os("CI").is_some() {
        panic!("{name} not found on PATH and CI is set; install it: {install_hint}");
    }
    eprintln!(
        "\n!!!!!!!! SKIPPED: {name} not found on PATH; install it ({install_hint}) to run this test !!!!!!!!\n"
    );
    None
}

pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Run a command to completion within `limit`, killing it past that. Returns its output.
/// stdout and stderr are drained by threads so a chatty child never blocks on a full pipe.
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> Output {
    use std::io::Read;
    let desc = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {desc}: {e}"));
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout")));
    let err = drain(Box::new(child.stderr.take().expect("stderr")));
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                let stderr = err.join().unwrap_or_default();
                panic!(
                    "{desc} did not finish within {limit:?}; stderr: {}",
                    String::from_utf8_lossy(&stderr)
                );
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("waiting for {desc}: {e}"),
        }
    };
    Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// Run and require exit status 0; returns stdout.
pub fn run_ok(cmd: &mut Command, limit: Duration) -> String {
    let desc = format!("{cmd:?}");
    let out = run_bounded(cmd, limit);
    assert!(
        out.status.success(),
        "{desc} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Every YAML document in `text`, as JSON values (empty documents dropped).
pub fn yaml_docs(text: &str) -> Vec<serde_json::Value> {
    use serde::Deserialize;
    serde_norway::Deserializer::from_str(text)
        .map(|d| serde_json::Value::deserialize(d).expect("valid YAML document"))
        .filter(|v| !v.is_null())
        .collect()
}

pub fn read_yaml(path: &Path) -> serde_json::Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut docs = yaml_docs(&text);
    assert_eq!(docs.len(), 1, "{} holds one YAML document", path.display());
    docs.remove(0)
}

/// The le strings rtprobe renders for its default latency buckets ("0.5", "1", "2.5").
pub fn default_latency_le() -> Vec<String> {
    rtprobe::config::Buckets::default()
        .latency_seconds
        .iter()
        .map(|b| format!("{b}"))
        .collect()
}

/// Every rule (recording and alerting) of a Prometheus rules document, in file order.
pub fn rules_of(doc: &serde_json::Value) -> Vec<serde_json::Value> {
    doc["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules").clone())
        .collect()
}

/// The plain Prometheus rules file shipped in the repository.
pub fn rules_file() -> PathBuf {
    repo().join("deploy/prometheus/rtprobe-rules.yaml")
}

/// The Grafana-managed alert rules provisioning file.
pub fn grafana_alerts_file() -> PathBuf {
    repo().join("deploy/grafana/rtprobe-slo-alerts.yaml")
}

/// The files in `dir` whose name ends in `.{ext}`, sorted by name.
pub fn files_in(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}

/// Dashboard JSON files shipped in `dashboards/`, sorted by name.
pub fn dashboard_files() -> Vec<PathBuf> {
    files_in(&repo().join("dashboards"), "json")
}

/// Every panel of a dashboard, rows' nested panels included.
pub fn panels(dashboard: &serde_json::Value) -> Vec<serde_json::Value> {
    fn walk(v: &serde_json::Value, out: &mut Vec<serde_json::Value>) {
        if let Some(ps) = v["panels"].as_array() {
            for p in ps {
                out.push(p.clone());
                walk(p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dashboard, &mut out);
    out
}

/// Every (panel title, PromQL expr) of a dashboard's panel targets.
pub fn panel_exprs(dashboard: &serde_json::Value) -> Vec<(String, String)> {
    panels(dashboard)
        .iter()
        .flat_map(|p| {
            let title = p["title"].as_str().unwrap_or("").to_string();
            p["targets"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(move |t| t["expr"].as_str().map(|e| (title.clone(), e.to_string())))
        })
        .collect()
}

/// Grafana's variables replaced by values Prometheus accepts, so a panel expression can be
/// parsed by promtool or evaluated through the HTTP API.
pub fn grafana_substitute(expr: &str) -> String {
    expr.replace("${datasource}", "")
        .replace("$__rate_interval", "1m")
        .replace("$__range", "1h")
        .replace("$__interval", "15s")
        .replace("$probe", ".*")
        .replace("$model", ".*")
        .replace("$instance", ".*")
}

/// A loopback port nothing listens on (a listener bound, then dropped): a collector or server
/// that is down, or a port to hand a child process.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// A child process (an `rtprobe` the test started) that is killed and reaped when the test ends,
/// failed assertions included, so no server outlives its test.
pub struct Kill(pub std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A blocking HTTP/1.1 GET on loopback, head and body as one string; `None` when nothing
/// listens yet. The read is bounded by `read_timeout`.
pub fn get(addr: std::net::SocketAddr, path: &str, read_timeout: Duration) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(read_timeout)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    Some(out)
}

/// One probe as a user writes it, built by the real loader (`config::parse`) from the YAML of
/// its fields (one per line), so a test's spec has the defaults and passes the checks a config
/// file does. Relative paths resolve against the repository root.
pub fn probe_spec(fields: &str) -> rtprobe::config::ProbeSpec {
    let text = format!("probes:\n  - {}\n", fields.trim().replace('\n', "\n    "));
    let config = rtprobe::config::parse(&text, &repo().join("rtprobe.yaml"))
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    config.probes.into_iter().next().expect("one probe")
}

/// The shipped clip (3.08 s, "The quick brown fox…") the specs and configs point at, relative to
/// the repository; tests that stream audio pass their own `PreparedAudio`.
pub const CLIP: &str = "examples/audio/quick-brown-fox.flac";

/// `CLIP` as an absolute path, for configs written outside the repository.
pub fn clip() -> PathBuf {
    repo().join(CLIP)
}
