//! Run pages of `serve` with the production backend against the simulator: the status page
//! links each kept run to `/runs/<probe>/<id>`, which shows its waterfall, values and
//! transcript (escaped); `/probe?name=` answers a browser with the same page and anything else
//! with JSON; run pages are open like the status page while `/probe` keeps needing the token.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rtprobe::simulate::{Fault, SimConfig, SimHandle};

use crate::support;
use support::serve::{Reply, http};

const TOKEN: &str = "admin-run-pages-5d2e";
const HOSTILE: &str = "<script>alert(1)</script> quick & brown";

async fn sim(fault: Fault) -> SimHandle {
    let cfg = SimConfig {
        transcript: HOSTILE.into(),
        token_interval: Duration::from_millis(40),
        fault,
        fault_after_words: 2,
        ..SimConfig::default()
    };
    crate::support::sim::start(cfg).await
}

fn config_text(good: SocketAddr, bad: SocketAddr) -> String {
    let clip = crate::support::clip();
    let mut text =
        "server: {listen: 127.0.0.1:0, admin_token: {file: admin}}\nprobes:\n".to_string();
    for (name, addr) in [("good", good), ("bad", bad)] {
        text += &format!(
            "  - {{name: {name}, target: 'http://{addr}', model: demo-realtime, audio: '{}', interval: 5s, jitter: 0}}\n",
            clip.display()
        );
    }
    text
}

/// The `/runs/<probe>/<id>` links of one probe on the status page.
fn run_links(page: &str, probe: &str) -> Vec<String> {
    let prefix = format!("href=\"/runs/{probe}/");
    page.match_indices(&prefix)
        .map(|(i, _)| {
            let rest = &page[i + 6..];
            rest[..rest.find('"').unwrap()].to_string()
        })
        .collect()
}

/// The inline SVG of a page, parsed.
fn svg_of(page: &str) -> String {
    let start = page.find("<svg").expect("the page has an SVG");
    let end = page.find("</svg>").expect("the SVG ends") + "</svg>".len();
    page[start..end].to_string()
}

fn count_class(svg: &str, class: &str) -> usize {
    let doc = roxmltree::Document::parse(svg).expect("the SVG parses");
    doc.descendants()
        .filter(|n| n.attribute("class") == Some(class))
        .count()
}

fn assert_safe(page: &str) {
    assert!(!page.contains("<script"), "server text became markup");
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
}

async fn get(addr: SocketAddr, path: &str, extra: &str) -> Reply {
    http(addr, "GET", path, extra).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_runs_and_on_demand_runs_have_pages() {
    let good = sim(Fault::None).await;
    let bad = sim(Fault::ErrorMidStream).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("admin"), TOKEN).unwrap();
    let text = config_text(good.addr(), bad.addr());
    let serve = support::serve::start_production(dir.path(), &text).await;
    let addr = serve.local_addr();

    // Each probe's first run starts within its 5 s interval (a random offset) and takes the
    // 3 s clip.
    let deadline = Instant::now() + Duration::from_secs(25);
    let page = loop {
        let page = get(addr, "/", "").await.body;
        if !run_links(&page, "good").is_empty() && !run_links(&page, "bad").is_empty() {
            break page;
        }
        assert!(Instant::now() < deadline, "no kept runs:\n{page}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    // A success: open without the token, picture with every text delta, escaped transcript.
    let link = &run_links(&page, "good")[0];
    let r = get(addr, link, "").await;
    assert_eq!(r.status, 200, "{link}: {}", r.body);
    assert!(r.head.contains("text/html"));
    assert!(r.body.contains("Where the time went") && r.body.contains("success"));
    assert_safe(&r.body);
    let svg = svg_of(&r.body);
    assert_eq!(count_class(&svg, "m-delta"), 4, "one mark per word");
    assert_eq!(count_class(&svg, "m-done"), 1);
    assert!(r.body.contains("Time To Last Round Trip"));

    // A failure: where it stopped and its error.type.
    let link = &run_links(&page, "bad")[0];
    let r = get(addr, link, "").await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("failed: server_error.processing_error"));
    let svg = svg_of(&r.body);
    assert_eq!(count_class(&svg, "m-stop"), 1);
    assert_eq!(count_class(&svg, "m-delta"), 2);
    assert_safe(&r.body);

    for missing in [
        "/runs/good/999999",
        "/runs/nope/0",
        "/runs/good/x",
        "/runs/good",
    ] {
        assert_eq!(get(addr, missing, "").await.status, 404, "{missing}");
    }

    // On demand: still guarded; HTML for a browser, JSON otherwise.
    assert_eq!(get(addr, "/probe?name=good", "").await.status, 401);
    let auth = format!("Authorization: Bearer {TOKEN}\r\n");
    let browser = format!("{auth}Accept: text/html,application/xhtml+xml,*/*;q=0.8\r\n");
    let r = get(addr, "/probe?name=good", &browser).await;
    assert_eq!(r.status, 200);
    assert!(r.head.contains("text/html"), "{}", r.head);
    assert!(r.body.contains("on-demand run"));
    assert_safe(&r.body);
    assert_eq!(count_class(&svg_of(&r.body), "m-delta"), 4);
    let r = get(addr, "/probe?name=good", &auth).await;
    assert_eq!(r.status, 200);
    assert!(r.head.contains("application/json"), "{}", r.head);
    let v: serde_json::Value = serde_json::from_str(&r.body).expect("JSON");
    assert_eq!(v["outcome"], "ok");

    serve.run_until(async {}).await;
    good.shutdown().await;
    bad.shutdown().await;
}
