//! Sparklines for the status page: a probe's last hour at a glance (a latency as a line,
//! outcomes as ticks with failures in red). Samples are binned into fixed time buckets so the
//! picture has a bounded size whatever the probe's interval and concurrency: a latency line
//! shows each bucket's worst value (a spike is never averaged away) and breaks where there
//! was no sample; a bucket with any failure gets a red tick.

use std::fmt::Write as _;

use super::{esc, fmt_duration};
use crate::render::waterfall::colour;

/// Buckets across the window (30 s each over an hour).
pub const BUCKETS: usize = 120;

/// Size and time window of one sparkline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Frame {
    pub width: f64,
    pub height: f64,
    /// Seconds shown, ending now.
    pub window: f64,
}

impl Frame {
    /// The bucket of a sample `age` seconds old, `None` outside the window.
    fn bucket(&self, age: f64) -> Option<usize> {
        if !(0.0..=self.window).contains(&age) {
            return None;
        }
        let from_start = self.window - age;
        Some(((from_start / self.window * BUCKETS as f64) as usize).min(BUCKETS - 1))
    }

    fn x(&self, bucket: usize) -> f64 {
        (bucket as f64 + 0.5) / BUCKETS as f64 * self.width
    }
}

fn open(f: &Frame, class: &str, label: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"{class}\" width=\"{w:.0}\" height=\"{h:.0}\" viewBox=\"0 0 {w:.0} {h:.0}\" role=\"img\" aria-label=\"{l}\"><title>{l}</title><rect width=\"100%\" height=\"100%\" fill=\"#f9fafb\"/>",
        w = f.width,
        h = f.height,
        l = esc(label)
    )
}

/// The worst value per bucket of (age seconds, value) samples.
pub fn bucket_max(samples: &[(f64, f64)], f: &Frame) -> Vec<Option<f64>> {
    let mut out = vec![None; BUCKETS];
    for (age, v) in samples {
        if let Some(b) = f.bucket(*age).filter(|_| v.is_finite()) {
            out[b] = Some(out[b].map_or(*v, |m: f64| m.max(*v)));
        }
    }
    out
}

/// A latency line (seconds), from 0 at the bottom to the window's worst value at the top.
pub fn latency(samples: &[(f64, f64)], f: &Frame, label: &str) -> String {
    let buckets = bucket_max(samples, f);
    let top = buckets.iter().flatten().fold(0.0f64, |a, b| a.max(*b));
    let title = match top {
        t if t > 0.0 => format!("{label}: worst {} in the last hour", fmt_duration(t)),
        _ => format!("{label}: no samples in the last hour"),
    };
    let mut s = open(f, "spark", &title);
    let pad = 2.0;
    let y = |v: f64| {
        if top > 0.0 {
            f.height - pad - v / top * (f.height - 2.0 * pad)
        } else {
            f.height - pad
        }
    };
    // One polyline per run of consecutive filled buckets; a lone bucket is a dot.
    let mut run: Vec<(f64, f64)> = Vec::new();
    let flush = |run: &mut Vec<(f64, f64)>, s: &mut String| {
        match run.len() {
            0 => {}
            1 => {
                let _ = write!(
                    s,
                    r#"<circle class="pt" cx="{:.1}" cy="{:.1}" r="1.6" fill="{}"/>"#,
                    run[0].0,
                    run[0].1,
                    colour::TEXT
                );
            }
            _ => {
                let pts: Vec<String> = run.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
                let _ = write!(
                    s,
                    r#"<polyline class="line" points="{}" fill="none" stroke="{}" stroke-width="1.4" stroke-linejoin="round"/>"#,
                    pts.join(" "),
                    colour::TEXT
                );
            }
        }
        run.clear();
    };
    for (i, v) in buckets.iter().enumerate() {
        match v {
            Some(v) => run.push((f.x(i), y(*v))),
            None => flush(&mut run, &mut s),
        }
    }
    flush(&mut run, &mut s);
    s.push_str("</svg>");
    s
}

/// Outcomes of (age seconds, success) samples: a short grey tick per bucket with only
/// successes, a full-height red tick per bucket with a failure.
pub fn outcomes(samples: &[(f64, bool)], f: &Frame, label: &str) -> String {
    let mut ok = vec![0u32; BUCKETS];
    let mut bad = vec![0u32; BUCKETS];
    for (age, success) in samples {
        if let Some(b) = f.bucket(*age) {
            if *success {
                ok[b] += 1;
            } else {
                bad[b] += 1;
            }
        }
    }
    let (n_ok, n_bad) = (ok.iter().sum::<u32>(), bad.iter().sum::<u32>());
    let title = format!("{label}: {n_ok} succeeded, {n_bad} failed in the last hour");
    let mut s = open(f, "spark-outcomes", &title);
    let w = (f.width / BUCKETS as f64).max(1.0);
    for i in 0..BUCKETS {
        let x = f.x(i) - w / 2.0;
        if bad[i] > 0 {
            let _ = write!(
                s,
                r#"<rect class="fail" x="{x:.1}" y="0" width="{w:.1}" height="{h:.1}" fill="{c}"><title>{n} failed</title></rect>"#,
                h = f.height,
                c = colour::FAIL,
                n = bad[i]
            );
        } else if ok[i] > 0 {
            let _ = write!(
                s,
                r##"<rect class="ok" x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{hh:.1}" fill="#9ca3af"/>"##,
                y = f.height * 0.6,
                hh = f.height * 0.4
            );
        }
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const F: Frame = Frame {
        width: 240.0,
        height: 30.0,
        window: 3600.0,
    };

    #[test]
    fn buckets_keep_the_worst_value_and_drop_what_is_outside() {
        let b = bucket_max(
            &[(10.0, 0.2), (20.0, 0.5), (3599.0, 0.1), (4000.0, 9.0)],
            &F,
        );
        // 10 s and 20 s old: the last 30 s bucket; an hour old: the first.
        assert_eq!(b[BUCKETS - 1], Some(0.5));
        assert_eq!(b[0], Some(0.1));
        assert_eq!(b.iter().flatten().count(), 2);
    }

    #[test]
    fn a_gap_breaks_the_line() {
        // Two neighbouring buckets, then a gap, then one lone bucket.
        let svg = latency(&[(100.0, 0.4), (130.0, 0.2), (1000.0, 0.3)], &F, "TTFT");
        assert_eq!(svg.matches("<polyline").count(), 1);
        assert_eq!(svg.matches("<circle").count(), 1);
        // The worst value is at the top (y = pad), zero would be at the bottom.
        assert!(svg.contains(",2.0"), "{svg}");
        assert!(svg.contains("worst 400 ms"));
        roxmltree::Document::parse(&svg).unwrap();
        assert!(latency(&[], &F, "x").contains("no samples"));
    }

    #[test]
    fn failures_are_red_ticks() {
        let svg = outcomes(&[(5.0, true), (6.0, false), (500.0, true)], &F, "runs");
        assert_eq!(svg.matches("class=\"fail\"").count(), 1);
        assert_eq!(svg.matches("class=\"ok\"").count(), 1);
        assert!(svg.contains("2 succeeded, 1 failed"));
        roxmltree::Document::parse(&svg).unwrap();
    }
}
