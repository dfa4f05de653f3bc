//! OTLP over https (gRPC and HTTP/protobuf) to receivers whose certificate chains to the test
//! CA in `tests/fixtures/otlp-tls`, trusted through `SSL_CERT_FILE` as an operator would. Its own
//! test binary because it sets a process environment variable; the untrusted case lives in
//! `export/otlp_receiver.rs`, whose binary never sets it, so there the test CA is never trusted.

// The shared support tree; this binary uses only a part of it.
#[allow(dead_code)]
#[path = "support/mod.rs"]
mod support;

use std::time::Duration;

use rtprobe::config::model::OtlpProtocol;
use support::metrics::receiver::{TLS_DIR, check, export_once_over_tls};

#[test]
fn otlp_over_https_trusts_ssl_cert_file() {
    // SAFETY: set before the runtime (or any other thread) of this test binary exists.
    unsafe { std::env::set_var("SSL_CERT_FILE", format!("{TLS_DIR}/ca.pem")) };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for protocol in [OtlpProtocol::Grpc, OtlpProtocol::HttpProtobuf] {
            let (endpoint, received, failures) =
                export_once_over_tls(protocol, Duration::from_secs(10)).await;
            assert!(endpoint.starts_with("https://127.0.0.1:"));
            let (auth, metrics) = received
                .latest_with("gen_ai.client.operation.time_to_first_chunk")
                .unwrap_or_else(|| panic!("{protocol:?}: nothing arrived over TLS"));
            check(auth, &metrics);
            assert_eq!(failures, 0, "{protocol:?}");
        }
    });
}
