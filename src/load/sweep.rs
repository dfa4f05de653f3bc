//! The concurrency sweep's verdict and text, pure: given each level's [`LoadReport`], which
//! level is the highest that holds the SLO (round-trip and first-text p90 within the user's
//! thresholds), where it breaks, and the first level where server-side error types appear.
//! `run.rs` produces the reports through the production scheduler and probe client.

use serde::Serialize;

use super::aggregate::LoadReport;
use super::render::{NONE, ms};

/// The most streams a level may ask for (the config's `concurrency` bound).
pub const MAX_LEVEL: u32 = 1024;

/// Parse `1,4,16,64`: strictly increasing, each in 1…1024.
pub fn parse_levels(text: &str) -> Result<Vec<u32>, String> {
    let mut out: Vec<u32> = Vec::new();
    for part in text.split(',') {
        let p = part.trim();
        let n: u32 = p.parse().map_err(|_| {
            format!("--concurrency: {p:?} is not a whole number (expected e.g. 1,4,16,64)")
        })?;
        if !(1..=MAX_LEVEL).contains(&n) {
            return Err(format!(
                "--concurrency: {n} is outside 1…{MAX_LEVEL} streams"
            ));
        }
        if out.last().is_some_and(|l| *l >= n) {
            return Err(format!(
                "--concurrency: levels must increase ({} then {n})",
                out.last().unwrap_or(&0)
            ));
        }
        out.push(n);
    }
    Ok(out)
}

/// The thresholds a level must keep, on p90s.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Slo {
    /// Time To Last Round Trip p90, seconds.
    pub rtt_last_p90: f64,
    /// Time to first text p90, seconds.
    pub first_text_p90: f64,
}

/// One level's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Level {
    /// Concurrent streams.
    pub concurrency: u32,
    #[serde(flatten)]
    pub report: LoadReport,
}

impl Level {
    /// Failed ÷ finished streams; `None` before any finished.
    pub fn failure_ratio(&self) -> Option<f64> {
        let n = self.report.finished();
        (n > 0).then(|| self.report.runs.failed as f64 / n as f64)
    }

    /// Whether both p90s have a reading and are within `slo`.
    pub fn within(&self, slo: &Slo) -> bool {
        let l = &self.report.latency;
        matches!(l.rtt_last.p90, Some(v) if v <= slo.rtt_last_p90)
            && matches!(l.time_to_first_text.p90, Some(v) if v <= slo.first_text_p90)
    }

    /// The `error.type`s of this level that say the server is struggling.
    pub fn server_errors(&self) -> Vec<String> {
        self.report
            .runs
            .failures
            .keys()
            .filter(|k| is_server_struggling(k))
            .cloned()
            .collect()
    }
}

/// Error types that mean the server did not keep up or gave up: `server_error.*`,
/// `timeout_*`, `closed_early` and `http_5xx`. (Client-side ones such as `dns`, `tls` or
/// `http_401` are configuration problems, not load.)
pub fn is_server_struggling(error_type: &str) -> bool {
    error_type.starts_with("server_error.")
        || error_type.starts_with("timeout_")
        || error_type == "closed_early"
        || error_type == "http_5xx"
}

/// What the sweep found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    /// The highest level within the SLO, counting up until the first that is not.
    pub holds: Option<u32>,
    /// The first level outside the SLO.
    pub breaks_at: Option<u32>,
    /// The first level with server-struggling error types, and those types.
    pub first_errors: Option<u32>,
    pub first_error_types: Vec<String>,
}

pub fn verdict(levels: &[Level], slo: &Slo) -> Verdict {
    let breaks = levels.iter().position(|l| !l.within(slo));
    let holds = match breaks {
        Some(0) => None,
        Some(i) => Some(levels[i - 1].concurrency),
        None => levels.last().map(|l| l.concurrency),
    };
    let errors = levels.iter().find(|l| !l.server_errors().is_empty());
    Verdict {
        holds,
        breaks_at: breaks.map(|i| levels[i].concurrency),
        first_errors: errors.map(|l| l.concurrency),
        first_error_types: errors.map(|l| l.server_errors()).unwrap_or_default(),
    }
}

/// The sweep as a table: one row per level, then the verdict.
pub fn table(levels: &[Level], slo: &Slo, v: &Verdict) -> Vec<String> {
    let mut out = vec![format!(
        "{:>7} {:>6} {:>6} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>9} {:>8}",
        "streams",
        "ok",
        "failed",
        "1st p50",
        "1st p90",
        "RTT p50",
        "RTT p90",
        "ITL p50",
        "ITL p90",
        "tok/s",
        "fail %"
    )];
    for l in levels {
        let r = &l.report;
        let lat = &r.latency;
        out.push(format!(
            "{:>7} {:>6} {:>6} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>9} {:>8}",
            l.concurrency,
            r.runs.succeeded,
            r.runs.failed,
            ms(lat.time_to_first_text.p50),
            ms(lat.time_to_first_text.p90),
            ms(lat.rtt_last.p50),
            ms(lat.rtt_last.p90),
            ms(lat.itl.p50),
            ms(lat.itl.p90),
            r.throughput
                .output_tokens_per_s
                .map_or(NONE.to_string(), |t| format!("{t:.1}")),
            l.failure_ratio()
                .map_or(NONE.to_string(), |f| format!("{:.1}", f * 100.0)),
        ));
    }
    let slo_text = format!(
        "RTT last p90 ≤ {} and first text p90 ≤ {}",
        ms(Some(slo.rtt_last_p90)),
        ms(Some(slo.first_text_p90))
    );
    out.push(match v.holds {
        Some(n) => format!("holds the SLO ({slo_text}) up to {n} concurrent streams"),
        None => format!("no level holds the SLO ({slo_text})"),
    });
    if let Some(b) = v.breaks_at {
        out.push(format!("SLO broken at {b} streams"));
    }
    out.push(match v.first_errors {
        Some(n) => format!(
            "first server errors at {n} streams: {}",
            v.first_error_types.join(", ")
        ),
        None => "no server errors at any level".to_string(),
    });
    out
}

/// The verdict in one short line (the charts' subtitle).
pub fn headline(slo: &Slo, v: &Verdict) -> String {
    let mut parts = vec![format!(
        "SLO: RTT last p90 ≤ {:.0} ms, first text p90 ≤ {:.0} ms",
        slo.rtt_last_p90 * 1000.0,
        slo.first_text_p90 * 1000.0
    )];
    parts.push(match v.holds {
        Some(n) => format!("holds up to {n} streams"),
        None => "no level holds it".to_string(),
    });
    if let Some(b) = v.breaks_at {
        parts.push(format!("breaks at {b}"));
    }
    parts.push(match v.first_errors {
        Some(n) => format!(
            "first server errors at {n} ({})",
            v.first_error_types.join(", ")
        ),
        None => "no server errors".to_string(),
    });
    parts.join(" · ")
}

/// The sweep's JSON document.
#[derive(Debug, Clone, Serialize)]
pub struct SweepDoc<'a> {
    pub probe: &'a str,
    pub target: &'a str,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub cooldown_s: f64,
    pub slo: Slo,
    pub levels: &'a [Level],
    pub verdict: &'a Verdict,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::LoadStats;

    pub(crate) fn level(n: u32, rtt: Option<f64>, first: Option<f64>, errors: &[&str]) -> Level {
        let mut report = LoadStats::new().report();
        report.latency.rtt_last.p90 = rtt;
        report.latency.time_to_first_text.p90 = first;
        report.runs.succeeded = 10;
        for e in errors {
            report.runs.failures.insert(e.to_string(), 2);
            report.runs.failed += 2;
        }
        Level {
            concurrency: n,
            report,
        }
    }

    const SLO: Slo = Slo {
        rtt_last_p90: 0.5,
        first_text_p90: 1.5,
    };

    #[test]
    fn levels_parse_strictly() {
        assert_eq!(parse_levels("1,4, 16,64"), Ok(vec![1, 4, 16, 64]));
        assert!(parse_levels("4,1").unwrap_err().contains("increase"));
        assert!(parse_levels("0").unwrap_err().contains("1…1024"));
        assert!(parse_levels("2000").is_err());
        assert!(parse_levels("1,x").unwrap_err().contains("\"x\""));
        assert!(parse_levels("").is_err());
    }

    #[test]
    fn holds_until_the_first_breach_and_finds_first_errors() {
        let levels = [
            level(1, Some(0.2), Some(0.4), &[]),
            level(4, Some(0.5), Some(1.5), &["dns"]),
            level(16, Some(0.6), Some(1.0), &["timeout_first_text"]),
            level(
                64,
                Some(0.4),
                Some(1.0),
                &["closed_early", "server_error.buffer_full"],
            ),
        ];
        let v = verdict(&levels, &SLO);
        assert_eq!(v.holds, Some(4));
        assert_eq!(v.breaks_at, Some(16));
        assert_eq!(v.first_errors, Some(16));
        assert_eq!(v.first_error_types, ["timeout_first_text"]);
        assert_eq!(levels[1].failure_ratio(), Some(2.0 / 12.0));
        let text = table(&levels, &SLO, &v);
        assert_eq!(
            text[0],
            "streams     ok failed    1st p50    1st p90    RTT p50    RTT p90    ITL p50    ITL p90     tok/s   fail %"
        );
        assert_eq!(
            text[3],
            "     16     10      2          —  1000.0 ms          —   600.0 ms          —          —         —     16.7"
        );
        assert_eq!(
            text[5],
            "holds the SLO (RTT last p90 ≤ 500.0 ms and first text p90 ≤ 1500.0 ms) up to 4 concurrent streams"
        );
        assert_eq!(text[6], "SLO broken at 16 streams");
        assert_eq!(
            text[7],
            "first server errors at 16 streams: timeout_first_text"
        );
        assert_eq!(
            headline(&SLO, &v),
            "SLO: RTT last p90 ≤ 500 ms, first text p90 ≤ 1500 ms · holds up to 4 streams · breaks at 16 · first server errors at 16 (timeout_first_text)"
        );
    }

    #[test]
    fn no_reading_is_not_within_and_all_good_holds_the_top() {
        let v = verdict(&[level(1, None, Some(0.1), &[])], &SLO);
        assert_eq!((v.holds, v.breaks_at), (None, Some(1)));
        let v = verdict(
            &[
                level(1, Some(0.1), Some(0.1), &[]),
                level(2, Some(0.1), Some(0.1), &[]),
            ],
            &SLO,
        );
        assert_eq!(
            (v.holds, v.breaks_at, v.first_errors),
            (Some(2), None, None)
        );
    }
}
