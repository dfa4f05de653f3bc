//! Every HTTP route of `rtprobe serve` with real requests on loopback, through the real
//! serve wiring and fake probe/metrics backends.

use crate::support;

use std::path::Path;
use std::time::Duration;

use rtprobe::serve::{Serve, ServeArgs};
use support::serve::{FakeBackend, http, load_test_config, wait_until};

const TOKEN: &str = "sekret-TOKEN-8c1f2a";

async fn start(dir: &Path, text: &str) -> (Serve, FakeBackend) {
    let path = dir.join("rtprobe.conf");
    std::fs::write(&path, text).unwrap();
    let mut args = ServeArgs::new(&path);
    args.no_watch = true;
    let backend = FakeBackend::new();
    let handle = backend.handle();
    let serve = Serve::start(args, load_test_config, move |_| Ok(backend))
        .await
        .expect("serve starts");
    (serve, handle)
}

#[tokio::test]
async fn health_metrics_and_unknown_routes() {
    let dir = tempfile::tempdir().unwrap();
    let (serve, _b) = start(dir.path(), "probe a 100\n").await;
    let addr = serve.local_addr();
    let r = http(addr, "GET", "/healthz", "").await;
    assert_eq!((r.status, r.body.as_str()), (200, "ok\n"));
    let r = http(
        addr,
        "GET",
        "/metrics",
        "Accept: application/openmetrics-text\r\n",
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(
        r.head
            .to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4")
    );
    assert!(r.body.contains("fake_streams_total"), "{}", r.body);
    assert!(r.body.contains("# accept application/openmetrics-text"));
    assert_eq!(http(addr, "GET", "/nope", "").await.status, 404);
    assert_eq!(http(addr, "GET", "/metrics/x", "").await.status, 404);
    let r = http(addr, "POST", "/metrics", "Content-Length: 0\r\n").await;
    assert_eq!(r.status, 405);
    assert!(r.head.to_ascii_lowercase().contains("allow: get, head"));
    assert_eq!(http(addr, "GET", "/-/reload", "").await.status, 405);
    assert_eq!(http(addr, "DELETE", "/config", "").await.status, 405);
    let r = http(addr, "POST", "/-/reload", "Content-Length: 10000000\r\n").await;
    assert_eq!(r.status, 413);
    serve.run_until(async {}).await;
}

#[tokio::test]
async fn readiness_waits_for_every_probes_first_run() {
    let dir = tempfile::tempdir().unwrap();
    // `slow` has a one-day interval: its random first tick is (almost surely) far away.
    let (serve, _b) = start(dir.path(), "probe fast 50\nprobe slow 86400000\n").await;
    let addr = serve.local_addr();
    let r = http(addr, "GET", "/readyz", "").await;
    assert_eq!(r.status, 503);
    assert!(r.body.contains("slow"), "{}", r.body);
    // Replace the probe set with one that runs often: ready once it has been attempted.
    std::fs::write(dir.path().join("rtprobe.conf"), "probe fast 50\n").unwrap();
    assert_eq!(http(addr, "POST", "/-/reload", "").await.status, 200);
    let mut ready = false;
    for _ in 0..200 {
        if http(addr, "GET", "/readyz", "").await.status == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ready);
    // A new probe makes it unready again until its first run.
    std::fs::write(
        dir.path().join("rtprobe.conf"),
        "probe fast 50\nprobe later 86400000\n",
    )
    .unwrap();
    assert_eq!(http(addr, "POST", "/-/reload", "").await.status, 200);
    let r = http(addr, "GET", "/readyz", "").await;
    assert_eq!(r.status, 503);
    assert!(r.body.contains("later"));
    serve.run_until(async {}).await;
}

#[tokio::test]
async fn config_is_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let (serve, _b) = start(dir.path(), &format!("probe a 60000\ntoken {TOKEN}\n")).await;
    let addr = serve.local_addr();
    for (path, extra) in [
        ("/config", ""),
        ("/config?format=json", ""),
        ("/config", "Accept: application/json\r\n"),
    ] {
        let r = http(addr, "GET", path, extra).await;
        assert_eq!(r.status, 200, "{path}");
        assert!(
            !r.body.contains(TOKEN),
            "{path} leaks the token:\n{}",
            r.body
        );
        assert!(!r.body.contains("sekret"), "{path}");
        assert!(
            r.body.contains("X-Api-Key"),
            "header name shown: {}",
            r.body
        );
        assert!(r.body.contains("RTPROBE_TEST_TOKEN"), "token source shown");
        assert!(r.body.contains("ws://127.0.0.1:9/v1/realtime"));
    }
    let json = http(addr, "GET", "/config?format=json", "").await;
    let v: serde_json::Value = serde_json::from_str(&json.body).unwrap();
    assert_eq!(v["probes"][0]["name"], "a");
    assert_eq!(
        v["probes"][0]["bearer"]["source"]["env"],
        "RTPROBE_TEST_TOKEN"
    );
    assert_eq!(v["probes"][0]["interval"], 60.0);
    let yaml = http(addr, "GET", "/config", "").await;
    assert!(yaml.head.contains("application/yaml"));
    assert!(yaml.body.contains("interval: 60.0"), "{}", yaml.body);
    // Nor anywhere else.
    for path in ["/", "/metrics", "/readyz"] {
        assert!(
            !http(addr, "GET", path, "").await.body.contains(TOKEN),
            "{path}"
        );
    }
    serve.run_until(async {}).await;
}

#[tokio::test]
async fn reload_endpoint_applies_valid_and_keeps_old_on_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let (serve, b) = start(dir.path(), "probe a 60000\n").await;
    let addr = serve.local_addr();
    let file = dir.path().join("rtprobe.conf");

    std::fs::write(&file, "probe a 60000\nprobe b 60000\n").unwrap();
    let r = http(addr, "POST", "/-/reload", "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("added b"), "{}", r.body);
    assert!(r.body.contains("kept a"), "{}", r.body);
    assert_eq!(serve.config().probes.len(), 2);

    std::fs::write(&file, "probe c 60000\ninvalid\n").unwrap();
    let r = http(addr, "POST", "/-/reload", "").await;
    assert_eq!(r.status, 500);
    assert!(r.body.contains("invalid duration at line 2"), "{}", r.body);
    let names: Vec<String> = serve
        .config()
        .probes
        .iter()
        .map(|p| p.name.clone())
        .collect();
    assert_eq!(names, vec!["a", "b"], "old config kept");
    let cfg = http(addr, "GET", "/config?format=json", "").await;
    assert!(cfg.body.contains("\"b\"") && !cfg.body.contains("\"c\""));

    // A backend that cannot prepare the new generation (e.g. undecodable audio) also keeps the old one.
    std::fs::write(&file, "probe d 60000 fake.bad_audio\n").unwrap();
    let r = http(addr, "POST", "/-/reload", "").await;
    assert_eq!(r.status, 500);
    assert!(r.body.contains("cannot decode"));
    assert_eq!(serve.config().probes.len(), 2);

    // The first entry is the initial load, which sets the reload gauges at start-up.
    assert_eq!(*b.reloads.lock().unwrap(), vec![true, true, false, false]);
    serve.run_until(async {}).await;
}

#[tokio::test]
async fn probe_now_only_runs_configured_probes() {
    let dir = tempfile::tempdir().unwrap();
    let (serve, _b) = start(dir.path(), "probe a.b-1 60000\n").await;
    let addr = serve.local_addr();
    let r = http(addr, "GET", "/probe?name=a.b-1", "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["probe"], "a.b-1");
    assert_eq!(v["debug"], true);
    assert_eq!(
        http(addr, "GET", "/probe?name=%61.b-1", "").await.status,
        200
    );
    assert_eq!(
        http(addr, "GET", "/probe?name=ws://evil", "").await.status,
        404
    );
    assert_eq!(http(addr, "GET", "/probe?name=other", "").await.status, 404);
    assert_eq!(http(addr, "GET", "/probe", "").await.status, 400);
    assert_eq!(
        http(addr, "POST", "/probe?name=a.b-1", "").await.status,
        405
    );
    serve.run_until(async {}).await;
}

#[tokio::test]
async fn status_page_lists_probes_results_and_failures() {
    let dir = tempfile::tempdir().unwrap();
    let (serve, b) = start(
        dir.path(),
        "probe good 50 concurrency=2\nprobe bad 50 fake.fail=http_5xx\n",
    )
    .await;
    let addr = serve.local_addr();
    assert!(
        wait_until(Duration::from_secs(10), || {
            b.events.finished_of("good").len() >= 2 && !b.events.finished_of("bad").is_empty()
        })
        .await
    );
    let r = http(addr, "GET", "/", "").await;
    assert_eq!(r.status, 200);
    assert!(r.head.contains("text/html"));
    let page = r.body;
    for needle in [
        "good",
        "bad",
        "fake-model",
        "ws://127.0.0.1:9/v1/realtime",
        "http_5xx",
        "250.", // TTFT of stream 0 in ms
        "tok/s",
        "Recent failures",
        // The failure detail is escaped, never raw HTML.
        "fake failure &lt;b&gt;detail&lt;/b&gt;",
    ] {
        assert!(
            page.contains(needle),
            "status page lacks {needle:?}:\n{page}"
        );
    }
    assert!(!page.contains("<b>detail</b>"));
    assert!(!page.contains("<script"));
    serve.run_until(async {}).await;
}

#[tokio::test]
async fn one_on_demand_probe_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let (serve, _b) = start(dir.path(), "probe slow 60000 fake.debug_ms=1500\n").await;
    let addr = serve.local_addr();
    // Two at once: whichever arrives second, within the first's 1.5 s, is refused.
    let a = tokio::spawn(async move { http(addr, "GET", "/probe?name=slow", "").await.status });
    let b = tokio::spawn(async move { http(addr, "GET", "/probe?name=slow", "").await.status });
    let mut statuses = vec![a.await.unwrap(), b.await.unwrap()];
    statuses.sort();
    assert_eq!(statuses, vec![200, 429]);
    // The slot is free again once the first finished.
    assert_eq!(http(addr, "GET", "/probe?name=slow", "").await.status, 200);
    serve.run_until(async {}).await;
}
