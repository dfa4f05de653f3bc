//! Renders `/metrics` after recording known values and checks names, labels, buckets, counts and
//! sums exactly.

mod metrics_support;

use metrics_support::{buckets, derived, spec};
use rtprobe::metrics::{ProbeLabels, Telemetry};
use rtprobe::probe::error::ErrorType;

fn render(t: &Telemetry) -> String {
    let (ct, body) = t.render(None);
    assert_eq!(ct, "text/plain; version=0.0.4; charset=utf-8");
    String::from_utf8(body).expect("utf-8")
}

#[tokio::test]
async fn dump() {
    let t = Telemetry::new(&buckets(), None).unwrap();
    let r = t.recorder();
    let l = ProbeLabels::new(&spec("p1"), "whisper-tiny");
    r.record_run(&l, &derived(), Ok(()));
    r.record_run(&l, &derived(), Err(ErrorType::TimeoutFirstText));
    r.record_skipped(&l);
    r.in_flight(&l, 1);
    r.scheduler_delay(&l, 0.01);
    r.config_reload(true, 1.7e9);
    println!("{}", render(&t));
}
