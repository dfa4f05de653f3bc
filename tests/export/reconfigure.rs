//! `Telemetry::reconfigure`: a probe removed by a reload stops being exported, new buckets take
//! effect, and the state that must survive (open streams, last reload) does.

use crate::support;

use rtprobe::metrics::{ProbeLabels, Telemetry};
use support::metrics::{buckets, derived, spec};

fn render(t: &Telemetry) -> String {
    String::from_utf8(t.render(None).1).unwrap()
}

fn lines<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.starts_with(prefix)).collect()
}

#[tokio::test]
async fn reconfigure_drops_removed_probes_and_keeps_live_state() {
    let t = Telemetry::new(&buckets(), None).unwrap();
    let r = t.recorder();
    let kept = ProbeLabels::new(&spec("kept"), "m");
    let removed = ProbeLabels::new(&spec("removed"), "m");
    r.record_run(&kept, &derived(), Ok(()));
    r.record_run(&removed, &derived(), Ok(()));
    r.in_flight(&kept, 2);
    r.in_flight(&removed, 1);
    r.in_flight(&removed, -1);
    r.config_reload(true, 1_700_000_000.0);
    let before = render(&t);
    assert!(before.contains(r#"rtprobe_probe="removed""#));

    // A reload removed a probe and changed the latency buckets.
    let mut b = buckets();
    b.latency_seconds = vec![0.25, 0.75];
    t.reconfigure(&b, None).unwrap();
    let r2 = t.recorder();
    let after = render(&t);
    assert!(
        !after.contains("removed"),
        "removed probe still exported:\n{after}"
    );
    assert!(
        lines(&after, "rtprobe_probe_runs_total").is_empty(),
        "counters restart empty:\n{after}"
    );
    // Two streams of `kept` are still open; the reload outcome is still known.
    let in_flight = lines(&after, "rtprobe_probe_in_flight{");
    assert_eq!(in_flight.len(), 1, "{after}");
    assert!(in_flight[0].contains(r#"rtprobe_probe="kept""#) && in_flight[0].ends_with(" 2"));
    assert!(after.contains("rtprobe_config_reload_success 1\n"));
    assert!(after.contains("rtprobe_config_reload_timestamp_seconds 1700000000\n"));

    // Old recorders and new ones write to the new pipeline; streams opened before close right.
    r.in_flight(&kept, -1);
    r2.in_flight(&kept, -1);
    r2.record_run(&kept, &derived(), Ok(()));
    let now = render(&t);
    let in_flight = lines(&now, "rtprobe_probe_in_flight{");
    assert!(in_flight[0].ends_with(" 0"), "{now}");
    let les: Vec<&str> = lines(&now, "gen_ai_client_operation_duration_seconds_bucket")
        .iter()
        .map(|l| l.split("le=\"").nth(1).unwrap().split('"').next().unwrap())
        .collect();
    assert_eq!(les, vec!["0.25", "0.75", "+Inf"]);
}

#[tokio::test]
async fn failed_reconfigure_changes_nothing() {
    let t = Telemetry::new(&buckets(), None).unwrap();
    let l = ProbeLabels::new(&spec("p"), "m");
    t.recorder().record_run(&l, &derived(), Ok(()));
    let before = render(&t);
    let mut b = buckets();
    b.tokens = vec![5.0, f64::INFINITY];
    let err = t.reconfigure(&b, None).unwrap_err().to_string();
    assert!(err.contains("tokens"), "{err}");
    assert_eq!(render(&t), before);
}
