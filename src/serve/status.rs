//! What `serve` knows about each probe for humans and for readiness: last result, live
//! figures, a rolling one-hour high/low of the decode token rate, and recent runs, with
//! failures kept longer than successes (they are what an operator comes looking for).
//! Rendered as a small HTML page with no JavaScript.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::config::{ModelChoice, ProbeSpec};
use crate::probe::ErrorType;
use crate::scheduler::{StreamResult, one_line};
use crate::stats::quantile;

/// Successful runs kept per probe.
pub const KEEP_SUCCESSES: usize = 20;
/// Failed runs kept per probe.
pub const KEEP_FAILURES: usize = 50;
/// Outcomes the success ratio is computed over (independent of what is kept for display, so
/// keeping failures longer does not bias the ratio).
pub const RATIO_WINDOW: usize = 100;
/// Window of the decode token rate high/low.
pub const RATE_WINDOW: Duration = Duration::from_secs(3600);
/// Cap on token-rate samples in the window, whatever the interval and concurrency.
const RATE_SAMPLES_MAX: usize = 4096;

/// One finished stream, as shown on the status page.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    pub at: SystemTime,
    pub stream: u32,
    pub elapsed: Duration,
    pub error: Option<(ErrorType, String)>,
    pub ttft: Option<f64>,
    pub itl_p50: Option<f64>,
    pub rtt_last: Option<f64>,
    pub rtt_mean: Option<f64>,
    pub decode_token_rate: Option<f64>,
}

impl RunRecord {
    fn from_result(stream: u32, r: &StreamResult) -> Self {
        RunRecord {
            at: r.started,
            stream,
            elapsed: r.elapsed,
            error: r
                .outcome
                .as_ref()
                .err()
                .map(|e| (e.kind, one_line(&e.detail, 200))),
            ttft: r.derived.ttft,
            itl_p50: quantile(&r.derived.itl_gaps, 0.5),
            rtt_last: r.derived.rtt_last,
            rtt_mean: r.derived.rtt_mean,
            decode_token_rate: r.derived.decode_token_rate,
        }
    }
}

/// Everything kept about one probe.
#[derive(Debug, Clone)]
pub struct ProbeStatus {
    pub spec: Arc<ProbeSpec>,
    /// A run has been started since this probe (with these settings) was scheduled.
    pub attempted: bool,
    pub skipped: u64,
    pub last: Option<RunRecord>,
    pub successes: VecDeque<RunRecord>,
    pub failures: VecDeque<RunRecord>,
    outcomes: VecDeque<bool>,
    rates: VecDeque<(Instant, f64)>,
}

impl ProbeStatus {
    fn new(spec: Arc<ProbeSpec>) -> Self {
        ProbeStatus {
            spec,
            attempted: false,
            skipped: 0,
            last: None,
            successes: VecDeque::new(),
            failures: VecDeque::new(),
            outcomes: VecDeque::new(),
            rates: VecDeque::new(),
        }
    }

    /// Successes ÷ outcomes over the last `RATIO_WINDOW` streams.
    pub fn success_ratio(&self) -> Option<f64> {
        if self.outcomes.is_empty() {
            return None;
        }
        let ok = self.outcomes.iter().filter(|o| **o).count();
        Some(ok as f64 / self.outcomes.len() as f64)
    }

    /// (low, high) decode token rate over the last hour.
    pub fn rate_low_high(&self, now: Instant) -> Option<(f64, f64)> {
        let mut it = self
            .rates
            .iter()
            .filter(|(t, _)| now.saturating_duration_since(*t) <= RATE_WINDOW)
            .map(|(_, r)| *r);
        let first = it.next()?;
        Some(it.fold((first, first), |(lo, hi), r| (lo.min(r), hi.max(r))))
    }

    fn record(&mut self, now: Instant, rec: RunRecord) {
        let ok = rec.error.is_none();
        push_bounded(&mut self.outcomes, ok, RATIO_WINDOW);
        if let Some(rate) = rec.decode_token_rate {
            push_bounded(&mut self.rates, (now, rate), RATE_SAMPLES_MAX);
        }
        while self
            .rates
            .front()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) > RATE_WINDOW)
        {
            self.rates.pop_front();
        }
        if ok {
            push_bounded(&mut self.successes, rec.clone(), KEEP_SUCCESSES);
        } else {
            push_bounded(&mut self.failures, rec.clone(), KEEP_FAILURES);
        }
        self.last = Some(rec);
    }
}

fn push_bounded<T>(q: &mut VecDeque<T>, v: T, cap: usize) {
    if q.len() == cap {
        q.pop_front();
    }
    q.push_back(v);
}

/// The shared board: written by scheduler events, read by HTTP handlers.
#[derive(Debug, Default)]
pub struct StatusBoard {
    inner: Mutex<Board>,
}

#[derive(Debug, Default)]
struct Board {
    config_loaded: bool,
    probes: BTreeMap<String, ProbeStatus>,
}

impl StatusBoard {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Board> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Install a new probe set (a config generation). History survives for probes whose
    /// settings are unchanged; changed and new probes start empty and not yet attempted.
    pub fn set_probes(&self, specs: &[Arc<ProbeSpec>]) {
        let mut b = self.lock();
        b.config_loaded = true;
        let mut old = std::mem::take(&mut b.probes);
        for spec in specs {
            let st = match old.remove(&spec.name) {
                Some(st) if *st.spec == **spec => st,
                _ => ProbeStatus::new(spec.clone()),
            };
            b.probes.insert(spec.name.clone(), st);
        }
    }

    pub fn mark_attempted(&self, name: &str) {
        if let Some(p) = self.lock().probes.get_mut(name) {
            p.attempted = true;
        }
    }

    pub fn record_skip(&self, name: &str) {
        if let Some(p) = self.lock().probes.get_mut(name) {
            p.skipped += 1;
        }
    }

    /// Record a finished stream (ignored for a probe no longer configured).
    pub fn record(&self, name: &str, stream: u32, result: &StreamResult) {
        let now = Instant::now();
        if let Some(p) = self.lock().probes.get_mut(name) {
            p.record(now, RunRecord::from_result(stream, result));
        }
    }

    /// Ready once a config is loaded and every probe's first run has been attempted.
    pub fn readiness(&self) -> Result<(), String> {
        let b = self.lock();
        if !b.config_loaded {
            return Err("config not loaded yet".into());
        }
        let waiting: Vec<&str> = b
            .probes
            .values()
            .filter(|p| !p.attempted)
            .map(|p| p.spec.name.as_str())
            .collect();
        if waiting.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "first run not attempted yet for: {}",
                waiting.join(", ")
            ))
        }
    }

    /// A copy of one probe's status.
    pub fn probe(&self, name: &str) -> Option<ProbeStatus> {
        self.lock().probes.get(name).cloned()
    }

    /// The status page.
    pub fn render_html(&self) -> String {
        let now = Instant::now();
        let b = self.lock();
        let mut h = String::with_capacity(8192);
        h.push_str(
            "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>rtprobe</title>\n<style>\
             body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;margin-bottom:1em}\
             td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}.bad{color:#b00}.ok{color:#070}\
             </style></head><body>\n<h1>rtprobe</h1>\n\
             <p><a href=\"/metrics\">metrics</a> · <a href=\"/config\">config</a> · \
             <a href=\"/readyz\">readyz</a></p>\n",
        );
        if b.probes.is_empty() {
            h.push_str("<p>No probes configured.</p>\n");
        }
        h.push_str("<h2>Probes</h2>\n<table><tr><th>probe</th><th>target</th><th>model</th><th>interval</th><th>last result</th><th>TTFT</th><th>ITL p50</th><th>RTT last</th><th>RTT mean</th><th>token rate 1 h low / high</th><th>success ratio</th><th>skipped ticks</th></tr>\n");
        for p in b.probes.values() {
            let s = &p.spec;
            let model = match &s.model {
                ModelChoice::Named(m) => m.as_str(),
                ModelChoice::Auto => "auto",
            };
            let last = match &p.last {
                None if p.attempted => "running".to_string(),
                None => "not run yet".to_string(),
                Some(r) => match &r.error {
                    None => format!("<span class=\"ok\">ok</span> {}", fmt_time(r.at)),
                    Some((k, _)) => {
                        format!(
                            "<span class=\"bad\">{}</span> {}",
                            esc(k.as_str()),
                            fmt_time(r.at)
                        )
                    }
                },
            };
            let l = p.last.as_ref();
            let rates = match p.rate_low_high(now) {
                Some((lo, hi)) => format!("{lo:.1} / {hi:.1} tok/s"),
                None => "–".into(),
            };
            let ratio = match p.success_ratio() {
                Some(r) => format!("{:.0}% of {}", r * 100.0, p.outcomes.len()),
                None => "–".into(),
            };
            let _ = writeln!(
                h,
                "<tr><td><a href=\"#p-{n}\">{n}</a></td><td>{t}</td><td>{m}</td><td>{i}</td><td>{last}</td><td>{a}</td><td>{b}</td><td>{c}</td><td>{d}</td><td>{rates}</td><td>{ratio}</td><td>{sk}</td></tr>",
                n = esc(&s.name),
                t = esc(&s.target.ws_url),
                m = esc(model),
                i = fmt_secs(s.interval.as_secs_f64()),
                a = fmt_ms(l.and_then(|r| r.ttft)),
                b = fmt_ms(l.and_then(|r| r.itl_p50)),
                c = fmt_ms(l.and_then(|r| r.rtt_last)),
                d = fmt_ms(l.and_then(|r| r.rtt_mean)),
                sk = p.skipped,
            );
        }
        h.push_str("</table>\n");
        for p in b.probes.values() {
            let _ = writeln!(
                h,
                "<h3 id=\"p-{n}\">{n}</h3>\n<p>Recent failures (last {KEEP_FAILURES} kept):</p>",
                n = esc(&p.spec.name)
            );
            if p.failures.is_empty() {
                h.push_str("<p>none</p>\n");
            } else {
                h.push_str("<table><tr><th>time</th><th>stream</th><th>error.type</th><th>detail</th></tr>\n");
                for r in p.failures.iter().rev() {
                    let (k, d) = r
                        .error
                        .as_ref()
                        .map(|(k, d)| (k.as_str(), d.as_str()))
                        .unwrap_or(("", ""));
                    let _ = writeln!(
                        h,
                        "<tr><td>{}</td><td>{}</td><td class=\"bad\">{}</td><td>{}</td></tr>",
                        fmt_time(r.at),
                        r.stream,
                        esc(k),
                        esc(d)
                    );
                }
                h.push_str("</table>\n");
            }
            let _ = writeln!(h, "<p>Recent successes (last {KEEP_SUCCESSES} kept):</p>");
            if p.successes.is_empty() {
                h.push_str("<p>none</p>\n");
            } else {
                h.push_str("<table><tr><th>time</th><th>stream</th><th>duration</th><th>TTFT</th><th>ITL p50</th><th>RTT last</th><th>RTT mean</th><th>token rate</th></tr>\n");
                for r in p.successes.iter().rev() {
                    let _ = writeln!(
                        h,
                        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                        fmt_time(r.at),
                        r.stream,
                        fmt_secs(r.elapsed.as_secs_f64()),
                        fmt_ms(r.ttft),
                        fmt_ms(r.itl_p50),
                        fmt_ms(r.rtt_last),
                        fmt_ms(r.rtt_mean),
                        r.decode_token_rate
                            .map(|v| format!("{v:.1} tok/s"))
                            .unwrap_or_else(|| "–".into()),
                    );
                }
                h.push_str("</table>\n");
            }
        }
        h.push_str("</body></html>\n");
        h
    }
}

/// Escape text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn fmt_ms(v: Option<f64>) -> String {
    match v {
        Some(s) => format!("{:.1} ms", s * 1000.0),
        None => "–".into(),
    }
}

fn fmt_secs(s: f64) -> String {
    if s >= 1.0 {
        format!("{s:.1} s")
    } else {
        format!("{:.0} ms", s * 1000.0)
    }
}

/// UTC `YYYY-MM-DD HH:MM:SS` (no date crate needed for one format).
pub fn fmt_time(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_format() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_391_009);
        assert_eq!(fmt_time(t), "2026-11-22 23:43:29");
        assert_eq!(fmt_time(SystemTime::UNIX_EPOCH), "1970-01-01 00:00:00");
    }

    fn spec(name: &str) -> Arc<ProbeSpec> {
        let cfg_probe = ProbeSpec {
            name: name.into(),
            target: crate::config::Target {
                ws_url: "ws://h:1/v1/realtime".into(),
                http_base: "http://h:1".into(),
                host: "h".into(),
                port: 1,
                secure: false,
            },
            model: ModelChoice::Auto,
            audio: "a.wav".into(),
            reference: None,
            max_wer: None,
            chunk: Duration::from_millis(100),
            pacing: crate::config::Pacing::Realtime,
            deadlines: crate::config::Deadlines::default(),
            headers: vec![],
            bearer: None,
            tls: crate::config::TlsSettings::default(),
            labels: Default::default(),
            interval: Duration::from_secs(60),
            timeout: Duration::from_secs(30),
            concurrency: 1,
            jitter: 0.0,
        };
        Arc::new(cfg_probe)
    }

    fn result(rate: Option<f64>, fail: bool) -> StreamResult {
        let mut r = StreamResult::failed(
            ErrorType::Connect,
            "refused",
            SystemTime::now(),
            Duration::ZERO,
        );
        if !fail {
            r.outcome = Ok(());
        }
        r.derived.decode_token_rate = rate;
        r
    }

    #[tokio::test(start_paused = true)]
    async fn rolling_rate_window_ratio_and_retention() {
        let b = StatusBoard::new();
        b.set_probes(&[spec("p")]);
        assert!(b.readiness().is_err());
        b.mark_attempted("p");
        assert!(b.readiness().is_ok());
        b.record("p", 0, &result(Some(10.0), false));
        tokio::time::advance(Duration::from_secs(1800)).await;
        b.record("p", 0, &result(Some(30.0), false));
        let st = b.probe("p").unwrap();
        assert_eq!(st.rate_low_high(Instant::now()), Some((10.0, 30.0)));
        // 10 tok/s falls out of the hour.
        tokio::time::advance(Duration::from_secs(1801)).await;
        b.record("p", 0, &result(Some(20.0), false));
        let st = b.probe("p").unwrap();
        assert_eq!(st.rate_low_high(Instant::now()), Some((20.0, 30.0)));
        for _ in 0..100 {
            b.record("p", 0, &result(None, true));
        }
        for _ in 0..30 {
            b.record("p", 0, &result(None, false));
        }
        let st = b.probe("p").unwrap();
        assert_eq!(st.failures.len(), KEEP_FAILURES);
        assert_eq!(st.successes.len(), KEEP_SUCCESSES);
        // Last 100 outcomes: 70 failures, 30 successes.
        assert_eq!(st.success_ratio(), Some(0.3));
        // A changed spec resets history; an unchanged one keeps it.
        b.set_probes(&[spec("p")]);
        assert_eq!(b.probe("p").unwrap().successes.len(), KEEP_SUCCESSES);
        let mut changed = (*spec("p")).clone();
        changed.interval = Duration::from_secs(30);
        b.set_probes(&[Arc::new(changed)]);
        let st = b.probe("p").unwrap();
        assert!(st.successes.is_empty() && !st.attempted);
    }

    #[test]
    fn escaping() {
        assert_eq!(
            esc("<a href='x'>&\""),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;"
        );
    }
}
