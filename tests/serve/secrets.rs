//! A planted bearer token and a planted header value must never come out of rtprobe: not in
//! trace-level logs, `/metrics`, `/config`, the status page, `/probe` output, `probe --json`,
//! or error messages, for a probe that succeeds and one whose token is refused.

use crate::support;

use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rtprobe::config::Secret;
use rtprobe::simulate::SimConfig;

const TOKEN: &str = "sk-planted-6f1c2b9e8d7a";
const WRONG_TOKEN: &str = "sk-wrong-planted-41d9aa";
const HEADER_VALUE: &str = "tenant-planted-93e7";

/// `/metrics`, `/config` and friends of the `serve` child; it must answer.
fn get(addr: SocketAddr, path: &str) -> String {
    support::get(addr, path, Duration::from_secs(30)).expect("connect")
}

fn assert_clean(what: &str, text: &str) {
    for secret in [TOKEN, WRONG_TOKEN, HEADER_VALUE] {
        assert!(
            !text.contains(secret),
            "{what} leaks {secret}:\n{}",
            &text[..text.len().min(2000)]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_secrets_never_leave_the_process() {
    let sim_cfg = SimConfig {
        api_key: Some(Secret::new(TOKEN)),
        token_interval: Duration::from_millis(40),
        ..SimConfig::default()
    };
    let sim = crate::support::sim::start(sim_cfg).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), format!("{TOKEN}\n")).unwrap();
    std::fs::write(dir.path().join("wrong"), WRONG_TOKEN).unwrap();
    let clip = crate::support::clip();
    let port = support::free_port();
    let config = format!(
        "server: {{listen: 127.0.0.1:{port}}}\nprobes:\n\
         - {{name: good, target: 'http://{sim}', model: auto, audio: '{clip}', interval: 5s, jitter: 0, bearer_token: {{file: token}}, headers: {{X-Tenant: '${{PLANTED_TENANT}}'}}}}\n\
         - {{name: refused, target: 'http://{sim}', model: demo-realtime, audio: '{clip}', interval: 5s, jitter: 0, bearer_token: {{file: wrong}}}}\n",
        sim = sim.addr(),
        clip = clip.display()
    );
    let cfg_path = dir.path().join("rtprobe.yaml");
    std::fs::write(&cfg_path, &config).unwrap();
    let log_path = dir.path().join("serve.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_rtprobe"))
        .args(["--log-level", "trace", "serve", "--config"])
        .arg(&cfg_path)
        .env("PLANTED_TENANT", HEADER_VALUE)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start serve");
    let _guard = support::Kill(child);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();

    // Wait (bounded) until both probes have run: one success, one http_401.
    let deadline = Instant::now() + Duration::from_secs(40);
    let metrics = loop {
        let m = if TcpStream::connect(addr).is_ok() {
            get(addr, "/metrics")
        } else {
            String::new()
        };
        if m.contains("rtprobe_probe=\"good\"")
            && m.contains("outcome=\"success\"")
            && m.contains("error_type=\"http_401\"")
        {
            break m;
        }
        assert!(Instant::now() < deadline, "probes did not run:\n{m}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_clean("/metrics", &metrics);
    for path in [
        "/config",
        "/config?format=json",
        "/",
        "/readyz",
        "/probe?name=good",
        "/probe?name=refused",
    ] {
        let body = tokio::task::spawn_blocking(move || get(addr, path))
            .await
            .unwrap();
        assert!(body.starts_with("HTTP/1.1 "), "{path}: {body}");
        assert_clean(path, &body);
    }
    let config_view = get(addr, "/config");
    assert!(
        config_view.contains("token") && config_view.contains("X-Tenant"),
        "source and header name are shown:\n{config_view}"
    );

    // The CLI paths: a JSON run with the token, and a config whose token file is missing.
    let out = Command::new(env!("CARGO_BIN_EXE_rtprobe"))
        .args(["--log-level", "trace", "probe", "--config"])
        .arg(&cfg_path)
        .args(["--probe", "refused", "--json"])
        .env("PLANTED_TENANT", HEADER_VALUE)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_clean("probe --json stdout", &String::from_utf8_lossy(&out.stdout));
    assert_clean("probe --json stderr", &String::from_utf8_lossy(&out.stderr));
    std::fs::remove_file(dir.path().join("wrong")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rtprobe"))
        .arg("check-config")
        .arg(&cfg_path)
        .env("PLANTED_TENANT", HEADER_VALUE)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_clean("check-config", &String::from_utf8_lossy(&out.stderr));

    drop(_guard);
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.contains("TRACE") || log.contains("DEBUG"),
        "trace logging was on"
    );
    assert_clean("trace log", &log);
    sim.shutdown().await;
}
