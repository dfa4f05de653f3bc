//! wss:// through the test CA: trusted with the right CA file, a server-name override or the
//! opt-in skip-verify; `tls` with an unrelated CA or none.

use crate::support;

use std::time::Duration;

use rtprobe::config::{ModelChoice, ProbeSpec, TlsSettings};
use rtprobe::probe::run;
use rtprobe::simulate::{SimConfig, SimHandle, TlsFiles};
use support::probe::{fixture, silence, spec_for};
use support::sim::start;

async fn tls_sim() -> SimHandle {
    start(SimConfig {
        tls: Some(TlsFiles {
            cert_pem: fixture("server.pem"),
            key_pem: fixture("server.key"),
        }),
        ..SimConfig::default()
    })
    .await
}

fn with_tls(host: &str, sim: &SimHandle, tls: TlsSettings) -> ProbeSpec {
    let mut spec = spec_for(host, sim.addr().port(), true);
    spec.tls = tls;
    spec
}

fn ca(name: &str) -> TlsSettings {
    TlsSettings {
        ca_file: Some(fixture(name)),
        ..TlsSettings::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_ca_works_and_times_every_phase() {
    let sim = tls_sim().await;
    let audio = silence(Duration::from_millis(300), Duration::from_millis(100));
    let tl = run(&with_tls("localhost", &sim, ca("ca.pem")), &audio).await;
    assert!(tl.succeeded(), "{:?}", tl.outcome);
    let p = tl.phases;
    let order = [
        p.dns_done,
        p.tcp_connected,
        p.tls_done,
        p.upgraded,
        p.session_created,
    ];
    assert!(order.iter().all(Option::is_some), "{p:?}");
    assert!(order.windows(2).all(|w| w[0] <= w[1]), "{p:?}");
    let names: Vec<&str> = rtprobe::derive::derive(&tl, None)
        .phases
        .iter()
        .map(|p| p.0)
        .collect();
    assert_eq!(names, ["dns", "connect", "tls", "upgrade", "session"]);

    // An IP literal verifies against the certificate's IP SAN; a name override also works.
    let tl = run(&with_tls("127.0.0.1", &sim, ca("ca.pem")), &audio).await;
    assert!(tl.succeeded(), "{:?}", tl.outcome);
    let mut tls = ca("ca.pem");
    tls.server_name = Some("localhost".into());
    let mut spec = with_tls("127.0.0.1", &sim, tls);
    // https model discovery goes through the same TLS settings.
    spec.model = ModelChoice::Auto;
    let tl = run(&spec, &audio).await;
    assert!(tl.succeeded(), "{:?}", tl.outcome);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_issuer_is_tls() {
    let sim = tls_sim().await;
    let audio = silence(Duration::from_millis(300), Duration::from_millis(100));
    for tls in [ca("other-ca.pem"), TlsSettings::default()] {
        let tl = run(&with_tls("localhost", &sim, tls), &audio).await;
        let err = tl.outcome.unwrap_err();
        assert_eq!(err.kind.as_str(), "tls", "{err}");
        assert!(tl.phases.tcp_connected.is_some() && tl.phases.tls_done.is_none());
    }
    // A name the certificate does not carry fails too.
    let mut tls = ca("ca.pem");
    tls.server_name = Some("elsewhere.example".into());
    let err = run(&with_tls("127.0.0.1", &sim, tls), &audio)
        .await
        .outcome
        .unwrap_err();
    assert_eq!(err.kind.as_str(), "tls", "{err}");
    // A missing CA file is a tls failure, not a panic.
    let err = run(&with_tls("localhost", &sim, ca("absent.pem")), &audio)
        .await
        .outcome
        .unwrap_err();
    assert_eq!(err.kind.as_str(), "tls", "{err}");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_verify_is_opt_in() {
    let sim = tls_sim().await;
    let audio = silence(Duration::from_millis(300), Duration::from_millis(100));
    let tls = TlsSettings {
        insecure_skip_verify: true,
        ..TlsSettings::default()
    };
    let tl = run(&with_tls("localhost", &sim, tls), &audio).await;
    assert!(tl.succeeded(), "{:?}", tl.outcome);
    sim.shutdown().await;
}
