//! The HTML page of one run — a kept run at `/runs/<probe>/<id>`, or an on-demand run at
//! `/probe?name=` when a browser asks — and the page chrome it shares with the status page.
//! It shows the waterfall, the same rows as `rtprobe probe`'s table, and the transcript.
//! Everything from the run is escaped; the page has no script and no external asset.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use super::status::fmt_time;
use crate::config::{ModelChoice, Pacing, ProbeSpec};
use crate::derive::derive_probe_run;
use crate::probe::{ErrorType, Timeline};
use crate::render::waterfall::{self, Options};
use crate::render::{esc, fmt_duration};
use crate::report::{RunHeader, rows, utterance_rows};

/// Style shared by the status page and the run pages.
pub const CSS: &str = "\
:root{color-scheme:light}\
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;margin:0;color:#1d1d1f;background:#f4f5f7;font-size:14px}\
header{background:#1f2937;color:#f9fafb;padding:10px 24px;display:flex;gap:20px;align-items:baseline}\
header b{font-size:17px;letter-spacing:.3px}header a{color:#cbd5e1;text-decoration:none}header a:hover{color:#fff}\
main{padding:18px 24px;max-width:1400px}\
section{background:#fff;border:1px solid #e2e5e9;border-radius:6px;padding:14px 18px;margin:0 0 16px;overflow-x:auto}\
h1{font-size:20px;margin:2px 0 14px}h2{font-size:16px;margin:0 0 10px}h3{font-size:14px;margin:14px 0 6px;color:#444}\
table{border-collapse:collapse;font-size:13px}\
td,th{border-bottom:1px solid #eceef1;padding:4px 10px;text-align:left;vertical-align:middle}\
th{color:#4b5563;font-weight:600;background:#f9fafb}\
td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}td:first-child{white-space:nowrap}\
.bad{color:#c62828;font-weight:600}.ok{color:#1b7e4f;font-weight:600}.muted{color:#6b7280}\
.pic{overflow-x:auto}.pic svg{display:block}\
.kv td:first-child{color:#4b5563;white-space:nowrap}\
blockquote{margin:0;padding:8px 12px;background:#f9fafb;border-left:3px solid #c51b7d;white-space:pre-wrap;word-break:break-word}\
a{color:#1d4ed8}\
.spark svg{display:block;margin:1px 0}\
.sparks{display:flex;gap:22px;flex-wrap:wrap;margin:4px 0 8px}.sparks figure{margin:0}\
.sparks svg{display:block;border:1px solid #eceef1;border-radius:3px}\
figcaption{font-size:12px;color:#4b5563;margin-top:3px}";

/// The page head and top bar.
pub fn head(title: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <link rel=\"icon\" href=\"data:,\">\
         <title>{}</title>\n<style>{CSS}</style></head><body>\n\
         <header><b>rtprobe</b><a href=\"/\">status</a><a href=\"/metrics\">metrics</a>\
         <a href=\"/config\">config</a><a href=\"/readyz\">readyz</a></header>\n<main>\n",
        esc(title)
    )
}

pub const FOOT: &str = "</main></body></html>\n";

/// What is known about the run to draw.
pub struct RunView<'a> {
    pub spec: &'a ProbeSpec,
    /// e.g. `run 12` or `on-demand run`.
    pub heading: String,
    pub at: SystemTime,
    /// Stream index within its scheduled run, for scheduled runs.
    pub stream: Option<u32>,
    pub elapsed: Duration,
    pub error: Option<(ErrorType, &'a str)>,
    /// `None` when the run left no timeline (made up by the scheduler, or too large to keep).
    pub timeline: Option<&'a Timeline>,
    /// The run's trace id, when it was exported as a trace (`otlp.traces`).
    pub trace_id: Option<&'a str>,
    /// Why there is no timeline, shown instead of the picture.
    pub missing: &'a str,
}

fn model(spec: &ProbeSpec) -> &str {
    match &spec.model {
        ModelChoice::Named(m) => m,
        ModelChoice::Auto => "auto",
    }
}

/// The whole page.
pub fn render(v: &RunView<'_>) -> String {
    let spec = v.spec;
    let mut h = head(&format!("{} · {}", spec.name, v.heading));
    let _ = writeln!(
        h,
        "<h1>{} <span class=\"muted\">· {}</span></h1>",
        esc(&spec.name),
        esc(&v.heading)
    );
    let outcome = match v.error {
        None => "<span class=\"ok\">success</span>".to_string(),
        Some((k, _)) => format!("<span class=\"bad\">failed: {}</span>", esc(k.as_str())),
    };
    let stream = v
        .stream
        .map(|s| format!(" · stream {s}"))
        .unwrap_or_default();
    let _ = writeln!(
        h,
        "<p>{outcome} · {} UTC{stream} · {} · target <code>{}</code> · model <code>{}</code></p>",
        fmt_time(v.at),
        fmt_duration(v.elapsed.as_secs_f64()),
        esc(&spec.target.ws_url),
        esc(model(spec)),
    );
    if let Some((_, detail)) = v.error {
        let _ = writeln!(h, "<p class=\"muted\">{}</p>", esc(detail));
    }
    if let Some(id) = v.trace_id {
        let _ = writeln!(
            h,
            "<p>trace id <code class=\"trace-id\">{}</code> <span class=\"muted\">(search it in Tempo or Jaeger)</span></p>",
            esc(id)
        );
    }
    let Some(t) = v.timeline else {
        let _ = writeln!(
            h,
            "<section><p class=\"muted\">No picture: {}</p></section>",
            esc(v.missing)
        );
        h.push_str(FOOT);
        return h;
    };
    // The values `/metrics` recorded for this run: one set per utterance, the first in full.
    let derived = derive_probe_run(spec, &mut t.clone());
    let d = derived.first().cloned().unwrap_or_default();
    let opts = Options {
        width: 1080.0,
        ..Options::default()
    };
    let svg = waterfall::render(t, &d, &opts);
    let _ = writeln!(
        h,
        "<section><h2>Where the time went</h2><div class=\"pic\">{svg}</div>\
         <p class=\"muted\">Hover a mark for its exact time. Time 0 is the connection start.</p></section>"
    );
    let header = RunHeader {
        probe: &spec.name,
        target: &spec.target.ws_url,
        model: model(spec),
        pacing: match spec.pacing {
            Pacing::Realtime => "realtime",
            Pacing::Burst => "burst",
        },
    };
    h.push_str("<section><h2>Values</h2><table class=\"kv\">\n");
    for (k, val) in rows(&header, t, &d) {
        if matches!(k, "probe" | "target" | "model" | "transcript") {
            continue;
        }
        let _ = writeln!(h, "<tr><td>{}</td><td>{}</td></tr>", esc(k), esc(&val));
    }
    for (k, val) in utterance_rows(t, &derived) {
        let _ = writeln!(h, "<tr><td>{}</td><td>{}</td></tr>", esc(&k), esc(&val));
    }
    h.push_str("</table></section>\n");
    let _ = writeln!(
        h,
        "<section><h2>Transcript</h2><blockquote class=\"transcript\">{}</blockquote></section>",
        esc(t.transcript())
    );
    h.push_str(FOOT);
    h
}
