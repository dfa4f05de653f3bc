//! A [`LoadReport`] as text: the live table (progress bar + grouped figures), the one-line form
//! for logs and pipes, and the ANSI frame that redraws a table in place. Pure string building,
//! separate from the terminal I/O in `display.rs`, so every character is tested.
//!
//! The table always has the same lines in the same order: before the first result every figure
//! reads "—" (unavailable), never 0, and the redraw never has to move anything but the cursor.

use std::fmt::Write;
use std::time::Duration;

use super::aggregate::{LoadReport, Quantiles};

/// What unavailable looks like.
pub const NONE: &str = "—";
const BAR_WIDTH: usize = 30;

/// `1m05s`, `59s`, `1h02m00s`: elapsed and total times on the progress line.
pub fn clock(d: Duration) -> String {
    let s = d.as_secs();
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    if h > 0 {
        format!("{h}h{m:02}m{s:02}s")
    } else if m > 0 {
        format!("{m}m{s:02}s")
    } else {
        format!("{s}s")
    }
}

/// Seconds as milliseconds with one decimal, or "—".
pub fn ms(v: Option<f64>) -> String {
    match v {
        Some(s) => format!("{:.1} ms", s * 1000.0),
        None => NONE.to_string(),
    }
}

fn num(v: Option<f64>, decimals: usize, unit: &str) -> String {
    match v {
        Some(x) => format!("{x:.decimals$}{unit}"),
        None => NONE.to_string(),
    }
}

fn percent(v: Option<f64>) -> String {
    num(v.map(|x| x * 100.0), 1, " %")
}

/// `[██████░░░░…]  1m00s / 2m00s  50%`, on elapsed time (not on run count).
pub fn progress_line(elapsed: Duration, total: Duration) -> String {
    let frac = if total.is_zero() {
        1.0
    } else {
        (elapsed.as_secs_f64() / total.as_secs_f64()).clamp(0.0, 1.0)
    };
    let filled = (frac * BAR_WIDTH as f64).floor() as usize;
    format!(
        "[{}{}]  {} / {}  {:.0}%",
        "█".repeat(filled),
        "░".repeat(BAR_WIDTH - filled),
        clock(elapsed.min(total)),
        clock(total),
        frac * 100.0
    )
}

fn latency_row(name: &str, q: &Quantiles) -> String {
    format!(
        "  {name:<11} {:>10} {:>10} {:>10} {:>7}",
        ms(q.p50),
        ms(q.p90),
        ms(q.p99),
        q.n
    )
}

/// The grouped figures: runs, latency, throughput, transcript. Always 13 lines.
pub fn table(r: &LoadReport) -> Vec<String> {
    let runs = &r.runs;
    let failures = if runs.failures.is_empty() {
        "none".to_string()
    } else {
        let mut s = String::new();
        for (kind, n) in &runs.failures {
            let _ = write!(s, "{kind} {n}  ");
        }
        s.trim_end().to_string()
    };
    let l = &r.latency;
    let t = &r.throughput;
    vec![
        format!(
            "runs        started {}  ok {}  failed {}  skipped ticks {}  open {}",
            runs.started, runs.succeeded, runs.failed, runs.skipped_ticks, runs.open
        ),
        format!("  error.type  {failures}"),
        format!(
            "latency       {:>10} {:>10} {:>10} {:>7}",
            "p50", "p90", "p99", "n"
        ),
        latency_row("first text", &l.time_to_first_text),
        latency_row("TTFT", &l.ttft),
        latency_row("ITL", &l.itl),
        latency_row("RTT last", &l.rtt_last),
        latency_row("Avg RTT", &l.rtt_mean),
        latency_row("finalize", &l.finalize),
        format!(
            "throughput  output {}  streams {}  audio {}",
            num(t.output_tokens_per_s, 1, " tok/s"),
            num(t.streams_per_min, 1, "/min"),
            num(t.audio_rate, 2, "× real time"),
        ),
        format!(
            "  window    {}  output tokens {}",
            num(t.send_window_s, 1, " s (first to last send)"),
            t.output_tokens
        ),
        format!(
            "  live      {} per open stream  high {}  low {}",
            num(t.live_token_rate, 1, " tok/s"),
            num(t.live_token_rate_high, 1, ""),
            num(t.live_token_rate_low, 1, ""),
        ),
        format!(
            "transcript  WER p50 {}  max {}  (n={})",
            percent(r.transcript.wer_p50),
            percent(r.transcript.wer_max),
            r.transcript.n
        ),
    ]
}

/// The live view: progress bar, then the table.
pub fn live(r: &LoadReport, elapsed: Duration, total: Duration) -> Vec<String> {
    let mut lines = vec![progress_line(elapsed, total)];
    lines.extend(table(r));
    lines
}

/// One line for a log or a pipe (stderr not a terminal).
pub fn plain_line(r: &LoadReport, elapsed: Duration, total: Duration) -> String {
    format!(
        "rtprobe: {} / {}  streams {} ok {} failed {} open {}  first text p90 {}  RTT last p90 {}  output {}",
        clock(elapsed.min(total)),
        clock(total),
        r.runs.started,
        r.runs.succeeded,
        r.runs.failed,
        r.runs.open,
        ms(r.latency.time_to_first_text.p90),
        ms(r.latency.rtt_last.p90),
        num(r.throughput.output_tokens_per_s, 1, " tok/s"),
    )
}

/// Bytes that replace the `prev` lines drawn last time with `lines`: cursor up, then each line
/// cleared and rewritten, then everything below cleared.
pub fn redraw(prev: usize, lines: &[String]) -> String {
    let mut out = String::new();
    if prev > 0 {
        let _ = write!(out, "\x1b[{prev}A");
    }
    for line in lines {
        let _ = write!(out, "\r\x1b[2K{line}\n");
    }
    out.push_str("\x1b[J");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::aggregate::LoadStats;

    #[test]
    fn clocks_and_bar() {
        assert_eq!(clock(Duration::from_secs(59)), "59s");
        assert_eq!(clock(Duration::from_secs(65)), "1m05s");
        assert_eq!(clock(Duration::from_secs(3720)), "1h02m00s");
        assert_eq!(
            progress_line(Duration::from_secs(60), Duration::from_secs(120)),
            format!("[{}{}]  1m00s / 2m00s  50%", "█".repeat(15), "░".repeat(15))
        );
        assert_eq!(
            progress_line(Duration::from_secs(200), Duration::from_secs(120)),
            format!("[{}]  2m00s / 2m00s  100%", "█".repeat(30))
        );
    }

    #[test]
    fn placeholders_before_the_first_result() {
        let lines = table(&LoadStats::new().report());
        assert_eq!(lines.len(), 13);
        assert_eq!(
            lines[0],
            "runs        started 0  ok 0  failed 0  skipped ticks 0  open 0"
        );
        assert_eq!(lines[1], "  error.type  none");
        assert_eq!(
            lines[3],
            "  first text           —          —          —       0"
        );
        assert_eq!(lines[9], "throughput  output —  streams —  audio —");
        assert_eq!(lines[11], "  live      — per open stream  high —  low —");
        assert_eq!(lines[12], "transcript  WER p50 —  max —  (n=0)");
        assert!(!lines.join("\n").contains(" 0.0"));
    }

    #[test]
    fn figures_with_units() {
        let mut s = LoadStats::new();
        s.in_flight(1);
        let mut r = s.report();
        r.latency.rtt_last.p50 = Some(0.1204);
        r.latency.rtt_last.n = 3;
        r.throughput.output_tokens_per_s = Some(52.14);
        r.throughput.streams_per_min = Some(10.0);
        r.throughput.audio_rate = Some(1.0);
        r.transcript.wer_p50 = Some(0.0);
        r.transcript.wer_max = Some(0.0909);
        r.runs.failures.insert("timeout_done".into(), 2);
        r.runs.failures.insert("closed_early".into(), 1);
        let lines = table(&r);
        assert_eq!(lines[1], "  error.type  closed_early 1  timeout_done 2");
        assert_eq!(
            lines[6],
            "  RTT last      120.4 ms          —          —       3"
        );
        assert_eq!(
            lines[9],
            "throughput  output 52.1 tok/s  streams 10.0/min  audio 1.00× real time"
        );
        assert_eq!(lines[12], "transcript  WER p50 0.0 %  max 9.1 %  (n=0)");
    }

    #[test]
    fn redraw_moves_up_and_clears() {
        let lines = vec!["a".to_string(), "b".to_string()];
        assert_eq!(redraw(0, &lines), "\r\x1b[2Ka\n\r\x1b[2Kb\n\x1b[J");
        assert_eq!(redraw(2, &lines), "\x1b[2A\r\x1b[2Ka\n\r\x1b[2Kb\n\x1b[J");
    }

    #[test]
    fn plain_line_for_pipes() {
        let r = LoadStats::new().report();
        assert_eq!(
            plain_line(&r, Duration::from_secs(5), Duration::from_secs(60)),
            "rtprobe: 5s / 1m00s  streams 0 ok 0 failed 0 open 0  first text p90 —  RTT last p90 —  output —"
        );
    }
}
