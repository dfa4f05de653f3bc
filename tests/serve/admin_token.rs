//! `server.admin_token` guards the endpoints that act or reveal configuration (`/-/reload`,
//! `/config`, `/probe`) while `/metrics`, health and the status page stay open for scrapers
//! and kubelets.

use std::net::SocketAddr;

const TOKEN: &str = "admin-planted-77c1";

use crate::support;

/// The status line and body of one request, with an optional bearer token.
async fn request(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> String {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let r = support::serve::http(addr, method, path, &format!("{auth}Content-Length: 0\r\n")).await;
    format!("HTTP/1.1 {}\r\n{}", r.status, r.body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_need_the_token() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("admin"), format!("{TOKEN}\n")).unwrap();
    let clip = crate::support::clip();
    let text = format!(
        "server: {{listen: 127.0.0.1:0, admin_token: {{file: admin}}}}\nprobes:\n  - {{name: a, target: 'http://127.0.0.1:9', model: m, audio: '{}', interval: 1h}}\n",
        clip.display()
    );
    let serve = support::serve::start_production(dir.path(), &text).await;
    let addr = serve.local_addr();

    for (method, path) in [
        ("GET", "/config"),
        ("POST", "/-/reload"),
        ("GET", "/probe?name=a"),
    ] {
        let r = request(addr, method, path, None).await;
        assert!(
            r.starts_with("HTTP/1.1 401"),
            "{method} {path} without a token: {r}"
        );
        let r = request(addr, method, path, Some("wrong-token-of-other-length")).await;
        assert!(
            r.starts_with("HTTP/1.1 401"),
            "{method} {path} with a wrong token: {r}"
        );
    }
    let r = request(addr, "GET", "/config", Some(TOKEN)).await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(!r.contains(TOKEN), "the token itself is never shown:\n{r}");
    assert!(
        request(addr, "POST", "/-/reload", Some(TOKEN))
            .await
            .starts_with("HTTP/1.1 200")
    );
    for path in ["/metrics", "/healthz", "/"] {
        assert!(
            request(addr, "GET", path, None)
                .await
                .starts_with("HTTP/1.1 200"),
            "{path} stays open"
        );
    }
    serve.run_until(async {}).await;
}
