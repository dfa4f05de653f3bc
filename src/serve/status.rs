//! What `serve` knows about each probe for humans and for readiness: last result, live
//! figures, a bounded last-hour window (the decode token rate high/low and the sparklines),
//! and recent runs with their timelines for the run pages, failures kept longer than
//! successes (they are what an operator comes looking for). Rendered as small HTML pages with
//! no JavaScript.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::run_page::{self, RunView};
use crate::config::{ModelChoice, ProbeSpec};
use crate::probe::timeline::{Delta, Sent};
use crate::probe::{ErrorType, Timeline};
pub use crate::render::esc;
use crate::render::sparkline::{self, Frame};
use crate::scheduler::{StreamResult, one_line};
use crate::stats::quantile;
use crate::sync;

/// Successful runs kept per probe.
pub const KEEP_SUCCESSES: usize = 20;
/// Failed runs kept per probe.
pub const KEEP_FAILURES: usize = 50;
/// Outcomes the success ratio is computed over (independent of what is kept for display, so
/// keeping failures longer does not bias the ratio).
pub const RATIO_WINDOW: usize = 100;
/// Window of the decode token rate high/low and of the sparklines.
pub const RATE_WINDOW: Duration = Duration::from_secs(3600);
/// Cap on samples in the window, whatever the interval and concurrency (72 bytes each: at
/// most 288 KiB per probe).
const HOUR_SAMPLES_MAX: usize = 4096;

/// A kept run keeps its timeline (for its picture) only up to this many bytes, so the kept
/// runs of a probe hold at most (`KEEP_SUCCESSES` + `KEEP_FAILURES`) × this much: about
/// 4.4 MiB even against a target that floods deltas. A 100 ms-chunk clip of about two
/// minutes fits.
pub const KEEP_TIMELINE_BYTES: usize = 64 * 1024;

/// What a timeline holds on the heap, roughly.
pub fn timeline_bytes(t: &Timeline) -> usize {
    std::mem::size_of::<Timeline>()
        + t.sent.len() * std::mem::size_of::<Sent>()
        + t.deltas.len() * std::mem::size_of::<Delta>()
        + t.delta_text.len()
        + t.done.as_ref().map_or(0, |d| d.text.len())
}

/// One finished stream, as shown on the status page.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    /// Board-wide and never reused: the `<id>` of `/runs/<probe>/<id>`.
    pub id: u64,
    /// The run's raw record when it had one and it was small enough to keep.
    pub timeline: Option<Arc<Timeline>>,
    /// The run's trace id when it was exported as a trace.
    pub trace_id: Option<String>,
    pub at: SystemTime,
    pub stream: u32,
    pub elapsed: Duration,
    pub error: Option<(ErrorType, String)>,
    pub ttft: Option<f64>,
    pub time_to_first_text: Option<f64>,
    pub itl_p50: Option<f64>,
    pub rtt_last: Option<f64>,
    pub rtt_mean: Option<f64>,
    pub decode_token_rate: Option<f64>,
}

impl RunRecord {
    fn from_result(id: u64, stream: u32, r: &StreamResult) -> Self {
        RunRecord {
            id,
            timeline: r
                .timeline
                .clone()
                .filter(|t| timeline_bytes(t) <= KEEP_TIMELINE_BYTES),
            trace_id: r.trace_id.clone(),
            at: r.started,
            stream,
            elapsed: r.elapsed,
            error: r
                .outcome
                .as_ref()
                .err()
                .map(|e| (e.kind, one_line(&e.detail, 200))),
            ttft: r.derived.ttft,
            time_to_first_text: r.derived.time_to_first_text,
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
    hour: VecDeque<Sample>,
}

/// One finished stream of the last hour: what the sparklines and the token-rate high/low read.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample {
    at: Instant,
    ok: bool,
    time_to_first_text: Option<f64>,
    rtt_last: Option<f64>,
    decode_token_rate: Option<f64>,
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
            hour: VecDeque::new(),
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
        let mut it = self.last_hour(now).filter_map(|(_, s)| s.decode_token_rate);
        let first = it.next()?;
        Some(it.fold((first, first), |(lo, hi), r| (lo.min(r), hi.max(r))))
    }

    /// (age in seconds, sample) of the streams of the last hour.
    fn last_hour(&self, now: Instant) -> impl Iterator<Item = (f64, &Sample)> {
        self.hour
            .iter()
            .map(move |s| (now.saturating_duration_since(s.at), s))
            .filter(|(age, _)| *age <= RATE_WINDOW)
            .map(|(age, s)| (age.as_secs_f64(), s))
    }

    /// The three sparklines of the last hour: time to first text, Time To Last Round Trip,
    /// outcomes.
    pub fn sparklines(&self, now: Instant, f: &Frame) -> [String; 3] {
        let values = |get: fn(&Sample) -> Option<f64>| -> Vec<(f64, f64)> {
            self.last_hour(now)
                .filter_map(|(age, s)| get(s).map(|v| (age, v)))
                .collect()
        };
        let outcomes: Vec<(f64, bool)> = self.last_hour(now).map(|(a, s)| (a, s.ok)).collect();
        [
            sparkline::latency(&values(|s| s.time_to_first_text), f, "time to first text"),
            sparkline::latency(&values(|s| s.rtt_last), f, "Time To Last Round Trip"),
            sparkline::outcomes(&outcomes, f, "runs"),
        ]
    }

    fn record(&mut self, now: Instant, rec: RunRecord) {
        let ok = rec.error.is_none();
        push_bounded(&mut self.outcomes, ok, RATIO_WINDOW);
        let sample = Sample {
            at: now,
            ok,
            time_to_first_text: rec.time_to_first_text,
            rtt_last: rec.rtt_last,
            decode_token_rate: rec.decode_token_rate,
        };
        push_bounded(&mut self.hour, sample, HOUR_SAMPLES_MAX);
        while self
            .hour
            .front()
            .is_some_and(|s| now.saturating_duration_since(s.at) > RATE_WINDOW)
        {
            self.hour.pop_front();
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

/// Why `/readyz` answers 503.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    #[error("config not loaded yet")]
    NoConfig,
    /// The probes (comma-separated) whose first run has not been attempted.
    #[error("first run not attempted yet for: {0}")]
    FirstRunPending(String),
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
    next_id: u64,
}

impl StatusBoard {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Board> {
        sync::lock(&self.inner)
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
        let mut b = self.lock();
        let id = b.next_id;
        if let Some(p) = b.probes.get_mut(name) {
            p.record(now, RunRecord::from_result(id, stream, result));
            b.next_id += 1;
        }
    }

    /// Ready once a config is loaded and every probe's first run has been attempted.
    pub fn readiness(&self) -> Result<(), NotReady> {
        let b = self.lock();
        if !b.config_loaded {
            return Err(NotReady::NoConfig);
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
            Err(NotReady::FirstRunPending(waiting.join(", ")))
        }
    }

    /// A copy of one probe's status.
    pub fn probe(&self, name: &str) -> Option<ProbeStatus> {
        self.lock().probes.get(name).cloned()
    }

    /// The page of kept run `id` of probe `name`, if it is still kept.
    pub fn run_page(&self, name: &str, id: u64) -> Option<String> {
        let (spec, rec) = {
            let b = self.lock();
            let p = b.probes.get(name)?;
            let rec = p.successes.iter().chain(&p.failures).find(|r| r.id == id)?;
            (p.spec.clone(), rec.clone())
        };
        let missing = if rec.error.is_some() && rec.elapsed.is_zero() {
            "the run ended before it started (see the error)"
        } else {
            "this run's timeline was not kept (made up by the scheduler, or larger than the \
             per-run bound)"
        };
        Some(run_page::render(&RunView {
            spec: &spec,
            heading: format!("run {id}"),
            at: rec.at,
            stream: Some(rec.stream),
            elapsed: rec.elapsed,
            error: rec.error.as_ref().map(|(k, d)| (*k, d.as_str())),
            timeline: rec.timeline.as_deref(),
            trace_id: rec.trace_id.as_deref(),
            missing,
        }))
    }

    /// The status page.
    pub fn render_html(&self) -> String {
        let now = Instant::now();
        let b = self.lock();
        let mut h = run_page::head("rtprobe status");
        h.push_str("<h1>Probes</h1>\n<section>\n");
        if b.probes.is_empty() {
            h.push_str("<p>No probes configured.</p>\n");
        }
        h.push_str("<table><tr><th>probe</th><th>target</th><th>model</th><th>interval</th><th>last result</th><th>last hour: first text · runs</th><th>TTFT</th><th>ITL p50</th><th>RTT last</th><th>RTT mean</th><th>token rate 1 h low / high</th><th>success ratio</th><th>skipped ticks</th></tr>\n");
        for p in b.probes.values() {
            let s = &p.spec;
            let model = match &s.model {
                ModelChoice::Named(m) => m.as_str(),
                ModelChoice::Auto => "auto",
            };
            let last = match &p.last {
                None if p.attempted => "running".to_string(),
                None => "not run yet".to_string(),
                Some(r) => {
                    let (class, what) = match &r.error {
                        None => ("ok", "ok"),
                        Some((k, _)) => ("bad", k.as_str()),
                    };
                    format!(
                        "<span class=\"{class}\">{}</span> {}",
                        esc(what),
                        run_link(&s.name, r)
                    )
                }
            };
            let [first, _, runs] = p.sparklines(now, &SMALL);
            let spark = format!("<div class=\"spark\">{first}{runs}</div>");
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
                "<tr><td><a href=\"#p-{n}\">{n}</a></td><td>{t}</td><td>{m}</td><td class=\"n\">{i}</td><td>{last}</td><td>{spark}</td><td class=\"n\">{a}</td><td class=\"n\">{b}</td><td class=\"n\">{c}</td><td class=\"n\">{d}</td><td class=\"n\">{rates}</td><td class=\"n\">{ratio}</td><td class=\"n\">{sk}</td></tr>",
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
        h.push_str("</table>\n</section>\n");
        for p in b.probes.values() {
            let name = &p.spec.name;
            let _ = writeln!(h, "<section id=\"p-{n}\"><h2>{n}</h2>", n = esc(name));
            let [first, rtt, runs] = p.sparklines(now, &LARGE);
            let worst = |get: fn(&Sample) -> Option<f64>| {
                let v: Vec<f64> = p.last_hour(now).filter_map(|(_, s)| get(s)).collect();
                match (v.last(), v.iter().copied().reduce(f64::max)) {
                    (Some(l), Some(w)) => {
                        format!("last {} · worst {}", fmt_ms(Some(*l)), fmt_ms(Some(w)))
                    }
                    _ => "no value".into(),
                }
            };
            let (n, bad) = p
                .last_hour(now)
                .fold((0, 0), |(n, bad), (_, s)| (n + 1, bad + usize::from(!s.ok)));
            let _ = writeln!(
                h,
                "<div class=\"sparks\">\
                 <figure>{first}<figcaption>time to first text, last hour: {}</figcaption></figure>\
                 <figure>{rtt}<figcaption>Time To Last Round Trip, last hour: {}</figcaption></figure>\
                 <figure>{runs}<figcaption>runs, last hour: {n}, <span class=\"{}\">{bad} failed</span></figcaption></figure></div>",
                worst(|s| s.time_to_first_text),
                worst(|s| s.rtt_last),
                if bad > 0 { "bad" } else { "muted" },
            );
            kept_runs(
                &mut h,
                &format!("Recent failures (last {KEEP_FAILURES} kept)"),
                name,
                &p.failures,
                "<th>error.type</th><th>after</th><th>detail</th>",
                |r| {
                    let (k, d) = r
                        .error
                        .as_ref()
                        .map(|(k, d)| (k.as_str(), d.as_str()))
                        .unwrap_or(("", ""));
                    format!(
                        "<td class=\"bad\">{}</td><td class=\"n\">{}</td><td>{}</td>",
                        esc(k),
                        fmt_secs(r.elapsed.as_secs_f64()),
                        esc(d)
                    )
                },
            );
            kept_runs(
                &mut h,
                &format!("Recent successes (last {KEEP_SUCCESSES} kept)"),
                name,
                &p.successes,
                "<th>duration</th><th>TTFT</th><th>ITL p50</th><th>RTT last</th><th>RTT mean</th><th>token rate</th>",
                |r| {
                    format!(
                        "<td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>",
                        fmt_secs(r.elapsed.as_secs_f64()),
                        fmt_ms(r.ttft),
                        fmt_ms(r.itl_p50),
                        fmt_ms(r.rtt_last),
                        fmt_ms(r.rtt_mean),
                        r.decode_token_rate
                            .map(|v| format!("{v:.1} tok/s"))
                            .unwrap_or_else(|| "–".into()),
                    )
                },
            );
            h.push_str("</section>\n");
        }
        h.push_str(run_page::FOOT);
        h
    }
}

/// The sparklines in the probes table and in each probe's section.
const SMALL: Frame = Frame {
    width: 120.0,
    height: 18.0,
    window: RATE_WINDOW.as_secs_f64(),
};
const LARGE: Frame = Frame {
    width: 240.0,
    height: 40.0,
    window: RATE_WINDOW.as_secs_f64(),
};

/// The run's time, linked to its page.
/// A heading and the kept runs of one probe, newest first, or "none": each row the run's time
/// (linked to its page) and stream, then `cells`, under the header cells `head`.
fn kept_runs(
    h: &mut String,
    title: &str,
    probe: &str,
    runs: &VecDeque<RunRecord>,
    head: &str,
    cells: impl Fn(&RunRecord) -> String,
) {
    let _ = writeln!(h, "<h3>{title}</h3>");
    if runs.is_empty() {
        h.push_str("<p class=\"muted\">none</p>\n");
        return;
    }
    let _ = writeln!(
        h,
        "<table><tr><th>time (UTC)</th><th>stream</th>{head}</tr>"
    );
    for r in runs.iter().rev() {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td class=\"n\">{}</td>{}</tr>",
            run_link(probe, r),
            r.stream,
            cells(r)
        );
    }
    h.push_str("</table>\n");
}

fn run_link(probe: &str, r: &RunRecord) -> String {
    format!(
        "<a href=\"/runs/{}/{}\">{}</a>",
        esc(probe),
        r.id,
        fmt_time(r.at)
    )
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
        Arc::new(ProbeSpec::example(name))
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
    fn runs_get_ids_and_keep_small_timelines_only() {
        let b = StatusBoard::new();
        b.set_probes(&[spec("p"), spec("q")]);
        let mut small = result(None, false);
        small.timeline = Some(Arc::new(Timeline::new(SystemTime::UNIX_EPOCH)));
        let mut big = small.clone();
        let mut t = Timeline::new(SystemTime::UNIX_EPOCH);
        t.delta_text = "x".repeat(KEEP_TIMELINE_BYTES);
        big.timeline = Some(Arc::new(t));
        b.record("p", 0, &small);
        b.record("q", 0, &big);
        b.record("gone", 0, &small);
        b.record("p", 1, &result(None, true));
        let p = b.probe("p").unwrap();
        assert_eq!(p.successes[0].id, 0);
        assert!(p.successes[0].timeline.is_some());
        assert_eq!(
            p.failures[0].id, 2,
            "ids are board-wide; an unknown probe takes none"
        );
        assert!(b.probe("q").unwrap().successes[0].timeline.is_none());
        let page = b.run_page("p", 0).unwrap();
        assert!(page.contains("<svg") && page.contains("run 0"));
        let page = b.run_page("q", 1).unwrap();
        assert!(!page.contains("<svg") && page.contains("not kept"));
        assert!(b.run_page("p", 1).is_none() && b.run_page("x", 0).is_none());
        let status = b.render_html();
        assert!(status.contains("href=\"/runs/p/0\"") && status.contains("href=\"/runs/p/2\""));
    }

    #[test]
    fn an_hour_sample_fits_72_bytes() {
        assert!(std::mem::size_of::<Sample>() <= 72);
    }

    #[tokio::test(start_paused = true)]
    async fn sparklines_cover_the_last_hour_only() {
        let b = StatusBoard::new();
        b.set_probes(&[spec("p")]);
        let mut ok = result(None, false);
        ok.derived.time_to_first_text = Some(0.3);
        ok.derived.rtt_last = Some(0.5);
        b.record("p", 0, &ok);
        tokio::time::advance(Duration::from_secs(3000)).await;
        for _ in 0..2 {
            b.record("p", 0, &ok);
            tokio::time::advance(Duration::from_secs(30)).await;
        }
        b.record("p", 0, &result(None, true));
        let [first, rtt, runs] = b.probe("p").unwrap().sparklines(Instant::now(), &LARGE);
        // Two neighbouring buckets make one line; the first sample is still within the hour.
        assert_eq!(first.matches("<polyline").count(), 1, "{first}");
        assert_eq!(first.matches("<circle").count(), 1, "{first}");
        assert!(rtt.contains("worst 500 ms"));
        assert!(runs.contains("3 succeeded, 1 failed"));
        // 40 minutes later the first run has left the hour.
        tokio::time::advance(Duration::from_secs(2400)).await;
        let [first, _, runs] = b.probe("p").unwrap().sparklines(Instant::now(), &LARGE);
        assert_eq!(first.matches("<circle").count(), 0, "{first}");
        assert!(runs.contains("2 succeeded, 1 failed"));
        let page = b.render_html();
        assert!(page.contains("class=\"spark-outcomes\"") && page.contains("1 failed</span>"));
    }
}
