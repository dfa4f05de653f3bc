//! The status page and run pages in a real browser: `serve` (production backend) probes the
//! simulator, headless Chromium loads the status page, a successful run's page and a failed
//! run's page over the DevTools protocol, and the test fails on any console error, uncaught
//! exception or failed resource, or on a picture that is empty or not drawn. Each page is
//! captured as a PNG.
//!
//! Needs Debian's `chromium`; without it the test prints SKIPPED and passes, unless `CI` is
//! set. The README's screenshot is made by this test:
//!
//! ```sh
//! RTPROBE_SCREENSHOTS=docs/img cargo test --test solo browser::
//! ```

use crate::support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use rtprobe::simulate::{Fault, SimConfig, SimHandle};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const WIDTH: u32 = 1200;

/// Kills the browser however the test ends.
struct Browser(Child);

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn launch(chromium: &Path, profile: &Path) -> Browser {
    let child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            &format!("--window-size={WIDTH},900"),
            &format!("--user-data-dir={}", profile.display()),
            "about:blank",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    Browser(child)
}

/// The browser's DevTools WebSocket URL, from the `DevToolsActivePort` file it writes.
async fn devtools_url(profile: &Path) -> String {
    let file = profile.join("DevToolsActivePort");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(text) = std::fs::read_to_string(&file) {
            let mut lines = text.lines();
            if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                return format!("ws://127.0.0.1:{port}{path}");
            }
        }
        assert!(Instant::now() < deadline, "chromium did not open DevTools");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A minimal DevTools client on one page session; keeps every event it reads.
struct Cdp {
    ws: Ws,
    next: u64,
    session: Option<String>,
    events: Vec<Value>,
}

impl Cdp {
    async fn read(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(30), self.ws.next())
                .await
                .expect("DevTools answers within 30 s")
                .expect("DevTools connection open")
                .expect("DevTools message");
            if let Message::Text(t) = msg {
                return serde_json::from_str(t.as_str()).expect("DevTools JSON");
            }
        }
    }

    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = &self.session {
            msg["sessionId"] = json!(s);
        }
        self.ws
            .send(Message::text(msg.to_string()))
            .await
            .expect("send to DevTools");
        loop {
            let v = self.read().await;
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
            self.events.push(v);
        }
    }

    async fn wait_event(&mut self, method: &str) -> Value {
        if let Some(i) = self.events.iter().position(|e| e["method"] == method) {
            return self.events.remove(i);
        }
        loop {
            let v = self.read().await;
            if v["method"] == method {
                return v;
            }
            self.events.push(v);
        }
    }

    /// Console errors, uncaught exceptions and failed loads seen so far.
    fn errors(&self) -> Vec<String> {
        self.events
            .iter()
            .filter(|e| {
                let p = &e["params"];
                match e["method"].as_str() {
                    Some("Runtime.exceptionThrown") => true,
                    Some("Runtime.consoleAPICalled") => {
                        matches!(p["type"].as_str(), Some("error" | "assert"))
                    }
                    Some("Log.entryAdded") => p["entry"]["level"] == "error",
                    _ => false,
                }
            })
            .map(|e| e.to_string())
            .collect()
    }

    async fn eval(&mut self, expr: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expr, "returnByValue": true }),
            )
            .await;
        assert!(r.get("exceptionDetails").is_none(), "{expr}: {r}");
        r["result"]["value"].clone()
    }

    /// Load `url`, wait for its load event, check for errors, capture the whole page.
    async fn visit(&mut self, url: &str) -> Vec<u8> {
        self.call("Page.navigate", json!({ "url": url })).await;
        self.wait_event("Page.loadEventFired").await;
        // Layout and paint settle; late console errors arrive meanwhile.
        self.eval("new Promise(r => requestAnimationFrame(() => setTimeout(r, 100)))")
            .await;
        let errors = self.errors();
        assert!(errors.is_empty(), "{url}: browser errors: {errors:#?}");
        let m = self.call("Page.getLayoutMetrics", json!({})).await;
        let size = &m["cssContentSize"];
        let shot = self
            .call(
                "Page.captureScreenshot",
                json!({
                    "format": "png",
                    "captureBeyondViewport": true,
                    "clip": { "x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1 },
                }),
            )
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot data"))
            .expect("base64 PNG");
        assert!(png.starts_with(b"\x89PNG"), "{url}: not a PNG");
        png
    }
}

/// Every SVG of the given class is drawn: a visible box and marks inside.
async fn assert_drawn(cdp: &mut Cdp, selector: &str, min_marks: u64) {
    let v = cdp
        .eval(&format!(
            "[...document.querySelectorAll('{selector}')].map(s => {{ const r = s.getBoundingClientRect(); \
             return [r.width, r.height, s.querySelectorAll('line,rect,path,polyline,circle,text').length]; }})"
        ))
        .await;
    let svgs = v.as_array().expect("array");
    assert!(!svgs.is_empty(), "no {selector} on the page");
    for s in svgs {
        let (w, h, n) = (
            s[0].as_f64().unwrap(),
            s[1].as_f64().unwrap(),
            s[2].as_u64().unwrap(),
        );
        assert!(w > 50.0 && h > 10.0, "{selector} has no size: {s}");
        assert!(n >= min_marks, "{selector} is empty: {s}");
    }
}

async fn sim(fault: Fault) -> SimHandle {
    let cfg = SimConfig {
        first_text_delay: Duration::from_millis(320),
        token_interval: Duration::from_millis(70),
        empty_deltas_per_word: 1,
        jitter: Duration::from_millis(12),
        seed: 7,
        fault,
        fault_after_words: 4,
        ..SimConfig::default()
    };
    crate::support::sim::start(cfg).await
}

fn config_text(good: SocketAddr, bad: SocketAddr) -> String {
    let audio = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/audio");
    format!(
        "server: {{listen: 127.0.0.1:0}}\n\
         defaults: {{interval: 5s, jitter: 0}}\n\
         probes:\n\
         - {{name: mary, target: 'http://{good}', model: demo-realtime, audio: '{a}/mary-had-a-little-lamb.wav', reference_file: '{a}/mary-had-a-little-lamb.txt'}}\n\
         - {{name: flaky, target: 'http://{bad}', model: demo-realtime, audio: '{a}/mary-had-a-little-lamb.wav'}}\n",
        a = audio.display()
    )
}

fn first_link(page: &str, probe: &str) -> Option<String> {
    let prefix = format!("href=\"/runs/{probe}/");
    let i = page.find(&prefix)? + "href=\"".len();
    Some(page[i..i + page[i..].find('"')?].to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_render_in_a_headless_browser() {
    let _alone = crate::support::gate::alone(module_path!());
    let Some(chromium) = support::require_tool(
        "chromium",
        "apt-get install -y --no-install-recommends chromium",
    ) else {
        return;
    };
    tokio::time::timeout(Duration::from_secs(150), run(chromium))
        .await
        .expect("the browser test finishes within 150 s");
}

async fn run(chromium: PathBuf) {
    let good = sim(Fault::None).await;
    let bad = sim(Fault::ErrorMidStream).await;
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(good.addr(), bad.addr());
    let serve = support::serve::start_production(dir.path(), &text).await;
    let addr = serve.local_addr();

    // Two runs of the healthy probe and one failure, so the sparklines have a line.
    let deadline = Instant::now() + Duration::from_secs(40);
    let (ok_link, bad_link) = loop {
        let page = support::serve::http(addr, "GET", "/", "").await.body;
        let oks = page.matches("href=\"/runs/mary/").count();
        if let (true, Some(ok), Some(bad)) = (
            oks >= 3, // the last-result cell and two kept successes
            first_link(&page, "mary"),
            first_link(&page, "flaky"),
        ) {
            break (ok, bad);
        }
        assert!(Instant::now() < deadline, "no kept runs:\n{page}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };

    let profile = tempfile::tempdir().unwrap();
    let _browser = launch(&chromium, profile.path());
    let url = devtools_url(profile.path()).await;
    let (ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("connect to DevTools");
    let mut cdp = Cdp {
        ws,
        next: 0,
        session: None,
        events: Vec::new(),
    };
    let target = cdp
        .call("Target.createTarget", json!({ "url": "about:blank" }))
        .await;
    let attached = cdp
        .call(
            "Target.attachToTarget",
            json!({ "targetId": target["targetId"], "flatten": true }),
        )
        .await;
    cdp.session = Some(attached["sessionId"].as_str().unwrap().to_string());
    for domain in ["Page.enable", "Runtime.enable", "Log.enable"] {
        cdp.call(domain, json!({})).await;
    }
    cdp.call(
        "Emulation.setDeviceMetricsOverride",
        json!({ "width": WIDTH, "height": 900, "deviceScaleFactor": 1, "mobile": false }),
    )
    .await;

    let base = format!("http://{addr}");
    let status = cdp.visit(&format!("{base}/")).await;
    assert_drawn(&mut cdp, "svg.spark", 1).await;
    assert_drawn(&mut cdp, "svg.spark-outcomes", 1).await;

    let run = cdp.visit(&format!("{base}{ok_link}")).await;
    assert_drawn(&mut cdp, "svg.waterfall", 50).await;
    let counts = cdp
        .eval("['m-append','m-delta','m-done'].map(c => document.querySelectorAll('svg.waterfall .' + c).length)")
        .await;
    let counts: Vec<u64> = counts
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert!(
        counts[0] > 10 && counts[1] == 11 && counts[2] == 1,
        "{counts:?}"
    );

    let failed = cdp.visit(&format!("{base}{bad_link}")).await;
    assert_drawn(&mut cdp, "svg.waterfall", 20).await;
    let stop = cdp
        .eval("document.querySelector('svg.waterfall .stop-label').textContent")
        .await;
    assert_eq!(stop, "✕ server_error.processing_error");

    let out = match std::env::var_os("RTPROBE_SCREENSHOTS") {
        Some(d) => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(d),
        None => dir.path().to_path_buf(),
    };
    std::fs::create_dir_all(&out).unwrap();
    for (name, png) in [
        ("status-page.png", &status),
        ("run-page.png", &run),
        ("run-page-failed.png", &failed),
    ] {
        std::fs::write(out.join(name), png).unwrap();
    }
    eprintln!("screenshots in {}", out.display());

    drop(cdp);
    serve.run_until(async {}).await;
    good.shutdown().await;
    bad.shutdown().await;
}
