//! The run waterfall: one probe run's `Timeline` (and its `Derived` values) as an SVG, so an
//! operator sees where the time went — the connection phases, every audio append at the
//! instant it left (late ones stand out), the commits, every transcription delta with its words
//! (empty deltas lighter), `done`, and the derived intervals as labelled brackets. A failed run
//! shows where it stopped and its `error.type`.
//!
//! Layout: one shared time axis (`Scale`, ticks at 1/2/2.5/5 steps), then a connection lane and
//! a *band* of stream lanes (audio, commits, text, done) followed by the bracket rows. A band
//! covers a range of sends and deltas ([`Band`]); a run is drawn as one band today, and a
//! session of several utterances can be drawn as one band per utterance without changing the
//! scale, the marks or the legend.
//!
//! Every mark carries a class (`m-append`, `m-delta`, …) and its instant in seconds
//! (`data-t`), and hovering it shows a native SVG `<title>`: no script is needed to read it.

use std::fmt::Write as _;
use std::ops::Range;
use std::time::Duration;

use super::{esc, fmt_duration, nice_step};
use crate::derive::{Derived, phase_spans};
use crate::probe::timeline::{Done, SentKind, Timeline};

/// ITL gaps longer than this get a bracket by default.
pub const DEFAULT_ITL_THRESHOLD: f64 = 0.25;
/// An append this late against its schedule is drawn in the "late" colour.
pub const LATE_MARK: f64 = 0.002;

/// What to draw besides the run itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Total width in pixels.
    pub width: f64,
    /// ITL gaps longer than this (seconds) get a bracket.
    pub itl_threshold: f64,
    /// A heading drawn at the top (escaped), e.g. the probe name.
    pub title: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            width: 960.0,
            itl_threshold: DEFAULT_ITL_THRESHOLD,
            title: None,
        }
    }
}

/// The colours, one per kind of thing, shared with the legend and the status page.
pub mod colour {
    /// dns, connect, tls, upgrade, session: one hue, darker as the connection progresses.
    pub const PHASES: [(&str, &str); 5] = [
        ("dns", "#c6dbef"),
        ("connect", "#9ecae1"),
        ("tls", "#6baed6"),
        ("upgrade", "#3182bd"),
        ("session", "#08519c"),
    ];
    pub const APPEND: &str = "#1b9e77";
    pub const LATE: &str = "#d95f02";
    pub const COMMIT: &str = "#7570b3";
    pub const TEXT: &str = "#c51b7d";
    pub const DONE: &str = "#252525";
    pub const FAIL: &str = "#d62728";
    pub const BRACKET: &str = "#525252";
    pub const GRID: &str = "#e8e8e8";
    pub const MUTED: &str = "#8c8c8c";
    pub const LANE: &str = "#f7f7f7";
}

const LEFT: f64 = 128.0;
const RIGHT: f64 = 24.0;
const LANE_H: f64 = 28.0;
const TEXT_LANE_H: f64 = 50.0;
const BRACKET_H: f64 = 24.0;
/// Rough advance of an 11 px sans-serif character, for keeping labels apart.
const CHAR_W: f64 = 6.4;
const FONT: &str = "system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif";

/// Seconds → x. The axis runs from 0 (`t0`, just before name resolution) to `t_max`, a whole
/// number of tick steps at or past the run's last instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scale {
    pub x0: f64,
    pub width: f64,
    pub t_max: f64,
    pub step: f64,
}

impl Scale {
    /// About eight ticks over `t_last` seconds, drawn across `width` pixels from `x0`.
    pub fn new(x0: f64, width: f64, t_last: f64) -> Scale {
        let t_last = if t_last.is_finite() && t_last > 0.0 {
            t_last
        } else {
            0.001
        };
        let step = nice_step(t_last / 8.0);
        let ticks = (t_last / step - 1e-9).ceil().max(1.0);
        Scale {
            x0,
            width,
            t_max: ticks * step,
            step,
        }
    }

    pub fn x(&self, t: f64) -> f64 {
        self.x0 + t / self.t_max * self.width
    }

    /// Tick instants from 0 to `t_max` inclusive.
    pub fn ticks(&self) -> Vec<f64> {
        let n = (self.t_max / self.step).round() as usize;
        (0..=n).map(|i| i as f64 * self.step).collect()
    }
}

/// A tick label with as many decimals as the step needs, in ms below a second and in seconds
/// from there: `0`, `250 ms`, `1.25 s`, `2 s`.
pub fn tick_label(t: f64, step: f64) -> String {
    if t == 0.0 {
        return "0".into();
    }
    let (v, s, unit) = if t < 1.0 {
        (t * 1e3, step * 1e3, "ms")
    } else {
        (t, step, "s")
    };
    let decimals = (0..4)
        .find(|d| {
            let scaled = s * 10f64.powi(*d);
            (scaled - scaled.round()).abs() < 1e-6
        })
        .unwrap_or(4) as usize;
    let mut n = format!("{v:.decimals$}");
    if n.contains('.') {
        n = n.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    format!("{n} {unit}")
}

/// A slice of the run drawn as one set of stream lanes: its sends, its deltas and its `done`.
#[derive(Debug, Clone)]
pub struct Band<'a> {
    /// Drawn in the left gutter above the band when set (e.g. `utterance 2`).
    pub label: Option<String>,
    pub sent: Range<usize>,
    pub deltas: Range<usize>,
    pub done: Option<&'a Done>,
}

impl<'a> Band<'a> {
    /// The whole run as one band.
    pub fn whole(t: &'a Timeline) -> Band<'a> {
        Band {
            label: None,
            sent: 0..t.sent.len(),
            deltas: 0..t.deltas.len(),
            done: t.done.as_ref(),
        }
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// The last instant the timeline knows of, in seconds.
fn last_instant(t: &Timeline) -> f64 {
    let mut last = t.ended;
    for (_, _, end) in phase_spans(t) {
        last = last.max(end);
    }
    for s in &t.sent {
        last = last.max(s.at).max(s.scheduled.unwrap_or_default());
    }
    if let Some(d) = t.deltas.last() {
        last = last.max(d.at);
    }
    if let Some(d) = &t.done {
        last = last.max(d.at);
    }
    secs(last)
}

struct Svg {
    out: String,
    scale: Scale,
    right: f64,
}

impl Svg {
    fn lane(&mut self, y: f64, h: f64, label: &str, shaded: bool) {
        if shaded {
            let _ = writeln!(
                self.out,
                r#"<rect x="0" y="{y:.2}" width="{w:.2}" height="{h:.2}" fill="{c}"/>"#,
                w = self.right + RIGHT,
                c = colour::LANE
            );
        }
        let _ = writeln!(
            self.out,
            r##"<text x="{x:.2}" y="{ty:.2}" text-anchor="end" fill="#333" font-weight="600">{l}</text>"##,
            x = LEFT - 10.0,
            ty = y + h / 2.0 + 4.0,
            l = esc(label)
        );
    }

    /// A vertical instant mark; `class` is `m-<kind>` so tests and styles can find it.
    #[allow(clippy::too_many_arguments)]
    fn mark(
        &mut self,
        class: &str,
        t: f64,
        y1: f64,
        y2: f64,
        stroke: &str,
        width: f64,
        opacity: f64,
        title: &str,
    ) {
        let x = self.scale.x(t);
        let _ = writeln!(
            self.out,
            r#"<line class="{class}" data-t="{t:.6}" x1="{x:.2}" x2="{x:.2}" y1="{y1:.2}" y2="{y2:.2}" stroke="{stroke}" stroke-width="{width}" stroke-opacity="{opacity}"><title>{title}</title></line>"#,
            title = esc(title)
        );
    }

    /// A diamond centred on instant `t` (commits).
    fn diamond(&mut self, t: f64, y: f64, r: f64, fill: &str, title: &str) {
        let x = self.scale.x(t);
        let _ = writeln!(
            self.out,
            r##"<path d="M{x:.2} {a:.2}L{b:.2} {y:.2}L{x:.2} {c:.2}L{d:.2} {y:.2}Z" fill="{fill}" stroke="#fff" stroke-width="1"><title>{title}</title></path>"##,
            a = y - r,
            b = x + r,
            c = y + r,
            d = x - r,
            title = esc(title)
        );
    }

    /// A label `gap` px right of the instant `t` when it fits in the plot, else left of it.
    fn label_beside(&mut self, t: f64, gap: f64, y: f64, fill: &str, extra: &str, label: &str) {
        let x = self.scale.x(t);
        let w = label.len() as f64 * CHAR_W;
        let (lx, anchor) = if x + gap + w <= self.right {
            (x + gap, "start")
        } else {
            (x - gap, "end")
        };
        self.text(lx, y, anchor, fill, extra, label);
    }

    fn text(&mut self, x: f64, y: f64, anchor: &str, fill: &str, extra: &str, s: &str) {
        let _ = writeln!(
            self.out,
            r#"<text x="{x:.2}" y="{y:.2}" text-anchor="{anchor}" fill="{fill}"{extra}>{s}</text>"#,
            s = esc(s)
        );
    }

    /// A labelled bracket from `from` to `to` seconds; the label sits above its middle, or
    /// beside it when the bracket is too narrow.
    fn bracket(&mut self, name: &str, from: f64, to: f64, y: f64, label: &str, title: &str) {
        let (x1, x2) = (self.scale.x(from), self.scale.x(to));
        let mid = y + 14.0;
        let _ = writeln!(
            self.out,
            r#"<g class="bracket" data-name="{name}" data-from="{from:.6}" data-to="{to:.6}"><title>{title}</title>"#,
            name = esc(name),
            title = esc(title)
        );
        let _ = writeln!(
            self.out,
            r#"<path class="b-span" d="M{x1:.2} {a:.2}V{mid:.2}H{x2:.2}V{a:.2}" fill="none" stroke="{c}" stroke-width="1.5"/>"#,
            a = mid - 6.0,
            c = colour::BRACKET
        );
        let w = label.chars().count() as f64 * CHAR_W;
        let (x, anchor) = if x2 - x1 >= w + 8.0 {
            ((x1 + x2) / 2.0, "middle")
        } else if x2 + 6.0 + w <= self.right {
            (x2 + 6.0, "start")
        } else {
            (x1 - 6.0, "end")
        };
        let ty = if anchor == "middle" {
            mid - 3.0
        } else {
            mid + 4.0
        };
        self.text(x, ty, anchor, "#222", "", label);
        self.out.push_str("</g>\n");
    }
}

/// Draw one run. `d` must be `derive(t, …)` of the same timeline.
pub fn render(t: &Timeline, d: &Derived, opts: &Options) -> String {
    let width = opts.width.max(LEFT + RIGHT + 200.0);
    let right = width - RIGHT;
    let scale = Scale::new(LEFT, right - LEFT, last_instant(t));
    let mut s = Svg {
        out: String::with_capacity(16 * 1024),
        scale,
        right,
    };
    let mut y = 8.0;
    if let Some(title) = &opts.title {
        s.text(
            12.0,
            y + 14.0,
            "start",
            "#111",
            r#" font-size="14" font-weight="700""#,
            title,
        );
        let outcome = match &t.outcome {
            Ok(()) => format!("success · {}", fmt_duration(secs(t.ended))),
            Err(e) => format!(
                "failed: {} after {}",
                e.kind.as_str(),
                fmt_duration(secs(t.ended))
            ),
        };
        let fill = if t.succeeded() {
            colour::APPEND
        } else {
            colour::FAIL
        };
        s.text(
            right,
            y + 14.0,
            "end",
            fill,
            r#" font-size="12" font-weight="600""#,
            &outcome,
        );
        y += 26.0;
    }
    // Axis: labels on top, grid lines drawn once the plot height is known.
    let axis_y = y + 14.0;
    let grid_at = s.out.len();
    let plot_top = axis_y + 4.0;
    y = plot_top;

    // Connection lane.
    s.lane(y, LANE_H, "connection", true);
    for (name, start, end) in phase_spans(t) {
        let (a, b) = (secs(start), secs(end));
        let (x1, x2) = (s.scale.x(a), s.scale.x(b));
        let fill = colour::PHASES
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(colour::MUTED, |(_, c)| *c);
        let _ = writeln!(
            s.out,
            r#"<rect class="phase" data-phase="{name}" data-from="{a:.6}" data-to="{b:.6}" x="{x1:.2}" y="{ry:.2}" width="{w:.2}" height="16" fill="{fill}"><title>{name}: {dur} (ended at {at})</title></rect>"#,
            ry = y + 6.0,
            w = (x2 - x1).max(1.0),
            dur = esc(&fmt_duration(b - a)),
            at = esc(&fmt_duration(b)),
        );
        if x2 - x1 >= name.len() as f64 * CHAR_W + 6.0 {
            let ink = if matches!(name, "upgrade" | "session") {
                "#fff"
            } else {
                "#08306b"
            };
            s.text((x1 + x2) / 2.0, y + 18.0, "middle", ink, "", name);
        }
    }
    y += LANE_H;

    y = stream_band(&mut s, t, d, &Band::whole(t), y, opts.itl_threshold);

    // Where a failed run stopped, across every lane.
    if let Err(e) = &t.outcome {
        let at = secs(t.ended);
        let x = s.scale.x(at);
        s.mark(
            "m-stop",
            at,
            plot_top,
            y,
            colour::FAIL,
            2.0,
            1.0,
            &format!(
                "stopped at {}: {} ({})",
                fmt_duration(at),
                e.kind.as_str(),
                e.detail
            ),
        );
        let label = format!("✕ {}", e.kind.as_str());
        let w = label.chars().count() as f64 * CHAR_W;
        let (lx, anchor) = if x + 6.0 + w <= right {
            (x + 6.0, "start")
        } else {
            (x - 6.0, "end")
        };
        s.text(
            lx,
            plot_top + 12.0,
            anchor,
            colour::FAIL,
            r#" class="stop-label" font-weight="700""#,
            &label,
        );
    }
    let plot_bottom = y;

    // Grid and tick labels, inserted beneath the marks.
    let mut grid = String::new();
    for tick in s.scale.ticks() {
        let x = s.scale.x(tick);
        let _ = writeln!(
            grid,
            r##"<line class="grid" x1="{x:.2}" x2="{x:.2}" y1="{axis_y:.2}" y2="{plot_bottom:.2}" stroke="{c}"/><text class="tick" data-t="{tick:.6}" x="{x:.2}" y="{ty:.2}" text-anchor="middle" fill="#555" font-size="10">{l}</text>"##,
            c = colour::GRID,
            ty = axis_y - 3.0,
            l = esc(&tick_label(tick, s.scale.step)),
        );
    }
    s.out.insert_str(grid_at, &grid);

    y = legend(&mut s, plot_bottom + 14.0, right);
    let height = y + 8.0;
    let body = std::mem::take(&mut s.out);
    let aria = match &t.outcome {
        Ok(()) => "waterfall of a successful probe run".to_string(),
        Err(e) => format!("waterfall of a probe run that failed: {}", e.kind.as_str()),
    };
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"waterfall\" width=\"{width:.0}\" height=\"{height:.0}\" viewBox=\"0 0 {width:.0} {height:.0}\" role=\"img\" aria-label=\"{aria}\" font-family=\"{FONT}\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"#fff\"/>\n{body}</svg>\n",
        aria = esc(&aria)
    )
}

/// The stream lanes and brackets of one band; returns the y below them.
fn stream_band(s: &mut Svg, t: &Timeline, d: &Derived, band: &Band<'_>, y0: f64, itl: f64) -> f64 {
    let mut y = y0;
    if let Some(label) = &band.label {
        s.text(
            8.0,
            y + 12.0,
            "start",
            "#111",
            r#" font-weight="700""#,
            label,
        );
        y += 16.0;
    }
    let sent = &t.sent[band.sent.clone()];

    // Audio appends at their send instants; lateness as a segment back to the schedule.
    s.lane(y, LANE_H, "audio sent", false);
    let mut n = 0usize;
    for a in sent.iter().filter(|x| x.kind == SentKind::Append) {
        n += 1;
        let at = secs(a.at);
        let late = a.scheduled.map(|sch| at - secs(sch)).unwrap_or(0.0);
        if late > 0.0
            && let Some(sch) = a.scheduled
        {
            let (x1, x2) = (s.scale.x(secs(sch)), s.scale.x(at));
            let _ = writeln!(
                s.out,
                r#"<line class="late" x1="{x1:.2}" x2="{x2:.2}" y1="{ly:.2}" y2="{ly:.2}" stroke="{c}" stroke-width="3" stroke-opacity="0.8"/>"#,
                ly = y + 14.0,
                c = colour::LATE
            );
        }
        let audio = a
            .audio_end
            .map(|e| format!(", audio to {}", fmt_duration(secs(e))))
            .unwrap_or_default();
        let title = format!(
            "append #{n} sent at {}, {} late{audio}",
            fmt_duration(at),
            fmt_duration(late.max(0.0))
        );
        let stroke = if late >= LATE_MARK {
            colour::LATE
        } else {
            colour::APPEND
        };
        s.mark("m-append", at, y + 6.0, y + 22.0, stroke, 1.5, 1.0, &title);
    }
    y += LANE_H;

    // Session update and commits.
    s.lane(y, LANE_H, "commits", true);
    let mid = y + LANE_H / 2.0;
    for x in sent.iter().filter(|x| x.kind != SentKind::Append) {
        let at = secs(x.at);
        let (class, name, r) = match x.kind {
            SentKind::SessionUpdate => ("m-session-update", "session.update", 3.5),
            SentKind::StartCommit => ("m-commit", "commit", 5.0),
            SentKind::FinalCommit => ("m-final-commit", "final commit", 6.5),
            SentKind::Append => continue,
        };
        let title = format!("{name} sent at {}", fmt_duration(at));
        s.mark(
            class,
            at,
            y + 4.0,
            y + LANE_H - 4.0,
            colour::COMMIT,
            1.0,
            0.5,
            &title,
        );
        s.diamond(at, mid, r, colour::COMMIT, &title);
        if x.kind == SentKind::FinalCommit {
            s.label_beside(at, 10.0, mid + 4.0, colour::COMMIT, "", name);
        }
    }
    y += LANE_H;

    // Text deltas with their words in two staggered rows; empty deltas lighter and shorter.
    s.lane(y, TEXT_LANE_H, "text", false);
    let mut row_end = [f64::NEG_INFINITY; 2];
    for i in band.deltas.clone() {
        let delta = t.deltas[i];
        let at = secs(delta.at);
        let words = t.delta_words(i);
        let tick_bottom = y + TEXT_LANE_H - 4.0;
        if delta.nonempty {
            let title = format!("delta {} at {}: {words:?}", i + 1, fmt_duration(at));
            s.mark(
                "m-delta",
                at,
                tick_bottom - 16.0,
                tick_bottom,
                colour::TEXT,
                2.0,
                1.0,
                &title,
            );
            let shown = match words.trim() {
                "" => "␣",
                w => w,
            };
            let x = s.scale.x(at);
            let w = shown.chars().count() as f64 * CHAR_W;
            if let Some(row) = (0..2).find(|r| row_end[*r] + 3.0 <= x)
                && x + w <= s.right + RIGHT
            {
                row_end[row] = x + w;
                s.text(
                    x,
                    y + 13.0 + row as f64 * 13.0,
                    "start",
                    "#222",
                    r#" class="word""#,
                    shown,
                );
            }
        } else {
            let title = format!("empty delta {} at {}", i + 1, fmt_duration(at));
            s.mark(
                "m-delta-empty",
                at,
                tick_bottom - 8.0,
                tick_bottom,
                colour::TEXT,
                1.5,
                0.3,
                &title,
            );
        }
    }
    y += TEXT_LANE_H;

    // done.
    s.lane(y, LANE_H, "done", true);
    if let Some(done) = band.done {
        let at = secs(done.at);
        let usage = done
            .usage
            .map(|u| {
                format!(
                    ", {} prompt + {} completion tokens",
                    u.prompt_tokens, u.completion_tokens
                )
            })
            .unwrap_or_default();
        let title = format!("transcription.done at {}{usage}", fmt_duration(at));
        s.mark(
            "m-done",
            at,
            y + 4.0,
            y + LANE_H - 4.0,
            colour::DONE,
            2.5,
            1.0,
            &title,
        );
        let label = if t.truncated {
            "done (truncated)"
        } else {
            "done"
        };
        s.label_beside(
            at,
            6.0,
            y + 18.0,
            colour::DONE,
            r#" font-weight="600""#,
            label,
        );
    }
    y += LANE_H;

    // Derived intervals.
    y += 6.0;
    let first_append = sent
        .iter()
        .find(|x| x.kind == SentKind::Append)
        .map(|x| secs(x.at));
    let final_commit = sent
        .iter()
        .find(|x| x.kind == SentKind::FinalCommit)
        .map(|x| secs(x.at));
    type Row<'a> = (&'a str, &'a str, Option<(f64, f64)>, &'a str);
    let rows: [Row<'_>; 4] = [
        (
            "ttft",
            "TTFT",
            d.ttft.map(|v| (0.0, v)),
            "TTFT (guidellm): first text − connect start",
        ),
        (
            "first-text",
            "first text",
            first_append
                .zip(d.time_to_first_text)
                .map(|(a, v)| (a, a + v)),
            "time to first text: first text − first audio sent",
        ),
        (
            "rtt-last",
            "last round trip",
            final_commit.zip(d.rtt_last).map(|(c, v)| (c, c + v)),
            "Time To Last Round Trip: last text − final commit sent",
        ),
        (
            "finalize",
            "finalize",
            final_commit.zip(d.finalize).map(|(c, v)| (c, c + v)),
            "finalize: transcription.done − final commit sent",
        ),
    ];
    for (i, (name, label, span, title)) in rows.into_iter().enumerate() {
        s.lane(y, BRACKET_H, label, i % 2 == 1);
        match span {
            Some((a, b)) => {
                let value = fmt_duration(b - a);
                s.bracket(name, a, b, y, &value, &format!("{title} = {value}"));
            }
            None => s.text(
                LEFT + 4.0,
                y + 16.0,
                "start",
                colour::MUTED,
                "",
                "undefined",
            ),
        }
        y += BRACKET_H;
        if name == "first-text" {
            // ITL gaps over the threshold, between consecutive text tokens of this band.
            let label = format!("ITL > {}", fmt_duration(itl));
            s.lane(y, BRACKET_H, &label, false);
            let tokens: Vec<f64> = band
                .deltas
                .clone()
                .filter(|i| t.deltas[*i].nonempty)
                .map(|i| secs(t.deltas[i].at))
                .collect();
            let mut any = false;
            for w in tokens.windows(2) {
                let gap = w[1] - w[0];
                if gap > itl {
                    any = true;
                    let value = fmt_duration(gap);
                    s.bracket(
                        "itl",
                        w[0],
                        w[1],
                        y,
                        &value,
                        &format!("gap between text deltas = {value}"),
                    );
                }
            }
            if !any {
                let note = if tokens.len() < 2 {
                    "fewer than two text deltas"
                } else {
                    "no gap over the threshold"
                };
                s.text(LEFT + 4.0, y + 16.0, "start", colour::MUTED, "", note);
            }
            y += BRACKET_H;
        }
    }
    y
}

/// The legend rows below the plot; returns the y below them.
fn legend(s: &mut Svg, y0: f64, right: f64) -> f64 {
    enum Swatch {
        Rect(&'static str),
        Tick(&'static str, f64),
        Diamond,
        Dash,
    }
    let mut items: Vec<(Swatch, &str)> = colour::PHASES
        .iter()
        .map(|(n, c)| (Swatch::Rect(c), *n))
        .collect();
    items.extend([
        (Swatch::Tick(colour::APPEND, 1.0), "append"),
        (Swatch::Tick(colour::LATE, 1.0), "append ≥ 2 ms late"),
        (Swatch::Diamond, "commit"),
        (Swatch::Tick(colour::TEXT, 1.0), "text delta"),
        (Swatch::Tick(colour::TEXT, 0.3), "empty delta"),
        (Swatch::Tick(colour::DONE, 1.0), "done"),
        (Swatch::Dash, "failure"),
    ]);
    let (mut x, mut y) = (LEFT, y0);
    for (sw, label) in items {
        let w = 16.0 + label.chars().count() as f64 * CHAR_W + 14.0;
        if x + w > right + RIGHT && x > LEFT {
            x = LEFT;
            y += 18.0;
        }
        match sw {
            Swatch::Rect(c) => {
                let _ = write!(
                    s.out,
                    r#"<rect x="{x:.2}" y="{ry:.2}" width="11" height="11" fill="{c}"/>"#,
                    ry = y - 9.0
                );
            }
            Swatch::Tick(c, o) => {
                let _ = write!(
                    s.out,
                    r#"<line x1="{lx:.2}" x2="{lx:.2}" y1="{a:.2}" y2="{b:.2}" stroke="{c}" stroke-width="2.5" stroke-opacity="{o}"/>"#,
                    lx = x + 5.0,
                    a = y - 10.0,
                    b = y + 2.0
                );
            }
            Swatch::Diamond => {
                let (cx, cy) = (x + 5.0, y - 4.0);
                let _ = write!(
                    s.out,
                    r#"<path d="M{cx:.2} {a:.2}L{b:.2} {cy:.2}L{cx:.2} {c:.2}L{d:.2} {cy:.2}Z" fill="{f}"/>"#,
                    a = cy - 5.0,
                    b = cx + 5.0,
                    c = cy + 5.0,
                    d = cx - 5.0,
                    f = colour::COMMIT
                );
            }
            Swatch::Dash => {
                let _ = write!(
                    s.out,
                    r#"<line x1="{lx:.2}" x2="{lx:.2}" y1="{a:.2}" y2="{b:.2}" stroke="{c}" stroke-width="2.5"/>"#,
                    lx = x + 5.0,
                    a = y - 10.0,
                    b = y + 2.0,
                    c = colour::FAIL
                );
            }
        }
        s.text(x + 16.0, y, "start", "#444", "", label);
        x += w;
    }
    y + 6.0
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::derive::derive;
    use crate::probe::error::{ErrorType, ProbeError};
    use crate::probe::timeline::fixtures::{ms, sent};
    use crate::probe::timeline::{Delta, Sent};

    #[test]
    fn nice_steps_and_scale() {
        assert_eq!(nice_step(0.3), 0.5);
        assert_eq!(nice_step(0.2), 0.2);
        assert_eq!(nice_step(0.21), 0.25);
        assert_eq!(nice_step(0.0012), 0.002);
        assert_eq!(nice_step(7.0), 10.0);
        let s = Scale::new(100.0, 800.0, 1.9);
        assert_eq!((s.step, s.t_max), (0.25, 2.0));
        assert_eq!(s.x(0.0), 100.0);
        assert_eq!(s.x(1.0), 500.0);
        assert_eq!(s.ticks().len(), 9);
        // Exactly on a tick: no extra empty step.
        assert_eq!(Scale::new(0.0, 1.0, 2.0).t_max, 2.0);
        // Nothing happened: a 1 ms axis in 0.2 ms steps.
        let empty = Scale::new(0.0, 1.0, 0.0);
        assert!((empty.t_max - 0.001).abs() < 1e-12 && (empty.step - 0.0002).abs() < 1e-12);
    }

    #[test]
    fn tick_labels_carry_the_decimals_the_step_needs() {
        assert_eq!(tick_label(0.0, 0.25), "0");
        assert_eq!(tick_label(0.75, 0.25), "750 ms");
        assert_eq!(tick_label(0.0075, 0.0025), "7.5 ms");
        assert_eq!(tick_label(3.0, 1.0), "3 s");
        assert_eq!(tick_label(7.5, 2.5), "7.5 s");
        assert_eq!(tick_label(1.0, 0.25), "1 s");
        assert_eq!(tick_label(1.25, 0.25), "1.25 s");
        assert_eq!(tick_label(1.5, 0.25), "1.5 s");
        assert_eq!(tick_label(1.2, 0.2), "1.2 s");
    }

    fn run() -> Timeline {
        let mut t = Timeline::new(SystemTime::UNIX_EPOCH);
        t.phases.tcp_connected = Some(ms(5));
        t.phases.upgraded = Some(ms(20));
        t.phases.session_created = Some(ms(22));
        let append = |at, sch| Sent {
            kind: SentKind::Append,
            at: ms(at),
            scheduled: Some(ms(sch)),
            audio_end: None,
        };
        t.sent = vec![
            sent(SentKind::SessionUpdate, 23),
            sent(SentKind::StartCommit, 24),
            append(25, 25),
            append(135, 125),
            sent(SentKind::FinalCommit, 136),
        ];
        t.delta_text = " <b>hi there".into();
        t.deltas = vec![
            Delta {
                at: ms(300),
                nonempty: true,
                text_end: 6,
            },
            Delta {
                at: ms(350),
                nonempty: false,
                text_end: 6,
            },
            Delta {
                at: ms(700),
                nonempty: true,
                text_end: 12,
            },
        ];
        t.ended = ms(700);
        t
    }

    #[test]
    fn marks_brackets_and_escaping() {
        let t = run();
        let d = derive(&t, None);
        let svg = render(&t, &d, &Options::default());
        assert_eq!(svg.matches("class=\"m-append\"").count(), 2);
        assert_eq!(svg.matches("class=\"m-delta\"").count(), 2);
        assert_eq!(svg.matches("class=\"m-delta-empty\"").count(), 1);
        assert_eq!(svg.matches("class=\"phase\"").count(), 3);
        // The second append left 10 ms late: drawn in the late colour with its segment.
        assert_eq!(svg.matches("class=\"late\"").count(), 1);
        assert!(svg.contains(">&lt;b&gt;hi</text>"), "{svg}");
        assert!(!svg.contains("<b>"));
        // The 400 ms gap is over the threshold; TTFT is 300 ms from 0.
        assert!(svg.contains(r#"data-name="itl" data-from="0.300000" data-to="0.700000""#));
        assert!(svg.contains(r#"data-name="ttft" data-from="0.000000" data-to="0.300000""#));
        // No done: finalize undefined, run still "succeeded" as far as the outcome says.
        assert!(!svg.contains("m-done"));
        assert!(svg.contains(">undefined</text>"));
        assert_eq!(t.delta_words(0), " <b>hi");
        assert_eq!(t.delta_words(1), "");
        assert_eq!(t.delta_words(2), " there");
    }

    #[test]
    fn a_failed_run_marks_where_it_stopped() {
        let mut t = run();
        t.outcome = Err(ProbeError::new(ErrorType::ClosedEarly, "closed <1006>"));
        t.ended = ms(800);
        let svg = render(&t, &derive(&t, None), &Options::default());
        let scale = Scale::new(LEFT, 960.0 - RIGHT - LEFT, 0.8);
        let want = format!(
            r#"class="m-stop" data-t="0.800000" x1="{:.2}""#,
            scale.x(0.8)
        );
        assert!(svg.contains(&want), "{svg}");
        assert!(svg.contains("✕ closed_early"));
        assert!(svg.contains("closed &lt;1006&gt;"));
    }
}
