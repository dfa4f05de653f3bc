//! Charts of a concurrency sweep as one SVG: time to first text, Time To Last Round Trip and ITL
//! (p50 and p90), output tokens/s, streams/min and the failure ratio, each against concurrent
//! streams. Hand-written SVG (no plotting crate), pure and tested by parsing it back: every
//! point carries its level and value, every plot area its scale, so a test can check that a
//! value sits where it should.

use std::fmt::Write;

use super::aggregate::Quantiles;
use super::sweep::{Level, Slo};
use crate::render::{esc, nice_step};

const WIDTH: f64 = 1200.0;
const HEIGHT: f64 = 760.0;
const COLS: usize = 3;
const TOP: f64 = 70.0;
const PANEL_W: f64 = WIDTH / COLS as f64;
const PANEL_H: f64 = (HEIGHT - TOP) / 2.0;
/// Plot area inside a panel: margins for the axis labels and the panel title.
const LEFT: f64 = 62.0;
const RIGHT: f64 = 22.0;
const HEAD: f64 = 46.0;
const FOOT: f64 = 50.0;

const P50: &str = "#4e79a7";
const P90: &str = "#e15759";
const ONE: &str = "#59a14f";
const GRID: &str = "#e6e6e6";
const INK: &str = "#333333";
const SLO_INK: &str = "#9c6ade";

/// One line of a panel.
struct Series {
    name: &'static str,
    color: &'static str,
    values: Vec<Option<f64>>,
}

struct Panel {
    id: &'static str,
    title: &'static str,
    unit: &'static str,
    series: Vec<Series>,
    /// A threshold drawn as a dashed line (the SLO), in the panel's unit.
    threshold: Option<f64>,
    /// A fixed top of the y axis (100 for a percentage) instead of one fitted to the data.
    top: Option<f64>,
}

/// Where a plot area is: x, y of the top-left corner, width, height.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plot {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
}

impl Plot {
    fn of_panel(i: usize) -> Plot {
        let (col, row) = (i % COLS, i / COLS);
        Plot {
            x: col as f64 * PANEL_W + LEFT,
            y: TOP + row as f64 * PANEL_H + HEAD,
            w: PANEL_W - LEFT - RIGHT,
            h: PANEL_H - HEAD - FOOT,
        }
    }

    /// x of level `i` of `n`: evenly spaced (levels usually grow geometrically), with half a
    /// step of margin at both ends.
    pub fn x_of(&self, i: usize, n: usize) -> f64 {
        self.x + self.w * (i as f64 + 0.5) / n.max(1) as f64
    }

    /// y of `v` on a 0…`ymax` axis.
    pub fn y_of(&self, v: f64, ymax: f64) -> f64 {
        self.y + self.h * (1.0 - (v / ymax).clamp(0.0, 1.0))
    }
}

/// The y axis for data up to `m`: (top, tick step), with at most five steps of 1, 2, 2.5 or
/// 5 × 10^k and the top the first tick at or above `m`. (1, 0.2) when there is nothing to show.
pub fn axis(m: f64) -> (f64, f64) {
    if !(m.is_finite() && m > 0.0) {
        return (1.0, 0.2);
    }
    let step = nice_step(m / 5.0);
    let top = (m / step - 1e-9).ceil().max(1.0) * step;
    (top, step)
}

/// Tick label: no trailing zeros.
fn tick(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn panels(levels: &[Level], slo: &Slo) -> Vec<Panel> {
    // A latency's p50 and p90 in ms, against its SLO (in s) if it has one.
    let latency = |id, title, q: fn(&Level) -> &Quantiles, slo: Option<f64>| {
        let ms = |p: fn(&Quantiles) -> Option<f64>| {
            levels.iter().map(|l| p(q(l)).map(|v| v * 1000.0)).collect()
        };
        Panel {
            id,
            title,
            unit: "ms",
            series: vec![
                Series {
                    name: "p50",
                    color: P50,
                    values: ms(|q| q.p50),
                },
                Series {
                    name: "p90",
                    color: P90,
                    values: ms(|q| q.p90),
                },
            ],
            threshold: slo.map(|t| t * 1000.0),
            top: None,
        }
    };
    // One value per level, one line.
    let one = |(id, title, unit), (name, color), value: fn(&Level) -> Option<f64>, top| Panel {
        id,
        title,
        unit,
        series: vec![Series {
            name,
            color,
            values: levels.iter().map(value).collect(),
        }],
        threshold: None,
        top,
    };
    vec![
        latency(
            "first_text",
            "Time to first text",
            |l| &l.report.latency.time_to_first_text,
            Some(slo.first_text_p90),
        ),
        latency(
            "rtt_last",
            "Time To Last Round Trip",
            |l| &l.report.latency.rtt_last,
            Some(slo.rtt_last_p90),
        ),
        latency(
            "itl",
            "Inter-token latency",
            |l| &l.report.latency.itl,
            None,
        ),
        one(
            ("output_tokens", "Output tokens / s (send window)", "tok/s"),
            ("tok/s", ONE),
            |l| l.report.throughput.output_tokens_per_s,
            None,
        ),
        one(
            ("streams_per_min", "Streams / min (send window)", "1/min"),
            ("streams/min", P50),
            |l| l.report.throughput.streams_per_min,
            None,
        ),
        one(
            ("failure_ratio", "Failed streams", "%"),
            ("failed", P90),
            |l| l.failure_ratio().map(|f| f * 100.0),
            Some(100.0),
        ),
    ]
}

/// The sweep's charts as a standalone SVG document; `subtitle` is the verdict.
pub fn sweep_svg(title: &str, subtitle: &str, levels: &[Level], slo: &Slo) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">
<rect width="100%" height="100%" fill="#ffffff"/>
<text x="24" y="34" font-size="20" font-weight="bold" fill="{INK}">{}</text>
<text x="24" y="56" font-size="13" fill="#555555">{}</text>
"##,
        esc(title),
        esc(subtitle)
    );
    let n = levels.len();
    for (i, panel) in panels(levels, slo).iter().enumerate() {
        let p = Plot::of_panel(i);
        let data_max = panel
            .series
            .iter()
            .flat_map(|s| s.values.iter().flatten().copied())
            .chain(panel.threshold)
            .fold(0.0f64, f64::max);
        let (ymax, step) = match panel.top {
            Some(top) => (top, top / 5.0),
            None => axis(data_max * 1.05),
        };
        let steps = (ymax / step).round() as usize;
        let _ = writeln!(
            s,
            r##"<g class="panel" data-panel="{id}">
<text x="{tx}" y="{ty}" font-size="15" font-weight="bold" fill="{INK}">{title}</text>
<rect class="plot" data-panel="{id}" data-ymax="{ymax}" x="{x}" y="{y}" width="{w}" height="{h}" fill="#fafafa" stroke="#cccccc"/>"##,
            id = panel.id,
            tx = p.x,
            ty = p.y - 22.0,
            title = esc(panel.title),
            x = p.x,
            y = p.y,
            w = p.w,
            h = p.h,
        );
        // Horizontal grid and y labels.
        for k in 0..=steps {
            let v = step * k as f64;
            let y = p.y_of(v, ymax);
            if k > 0 {
                let _ = writeln!(
                    s,
                    r#"<line x1="{}" y1="{y:.2}" x2="{}" y2="{y:.2}" stroke="{GRID}"/>"#,
                    p.x,
                    p.x + p.w
                );
            }
            let _ = writeln!(
                s,
                r##"<text x="{:.2}" y="{:.2}" font-size="11" text-anchor="end" fill="#666666">{}</text>"##,
                p.x - 6.0,
                y + 4.0,
                tick(v)
            );
        }
        let _ = writeln!(
            s,
            r##"<text x="{:.2}" y="{:.2}" font-size="11" fill="#666666" transform="rotate(-90 {:.2} {:.2})" text-anchor="middle">{}</text>"##,
            p.x - 46.0,
            p.y + p.h / 2.0,
            p.x - 46.0,
            p.y + p.h / 2.0,
            esc(panel.unit)
        );
        // x labels: the levels.
        for (j, l) in levels.iter().enumerate() {
            let _ = writeln!(
                s,
                r#"<text x="{:.2}" y="{:.2}" font-size="12" text-anchor="middle" fill="{INK}">{}</text>"#,
                p.x_of(j, n),
                p.y + p.h + 17.0,
                l.concurrency
            );
        }
        let _ = writeln!(
            s,
            r##"<text x="{:.2}" y="{:.2}" font-size="11" text-anchor="middle" fill="#666666">concurrent streams</text>"##,
            p.x + p.w / 2.0,
            p.y + p.h + 36.0
        );
        if let Some(t) = panel.threshold {
            let y = p.y_of(t, ymax);
            let _ = writeln!(
                s,
                r#"<line class="slo" data-value="{t}" x1="{}" y1="{y:.2}" x2="{}" y2="{y:.2}" stroke="{SLO_INK}" stroke-width="1.5" stroke-dasharray="6 4"/>
<text x="{:.2}" y="{:.2}" font-size="11" text-anchor="end" fill="{SLO_INK}">SLO {}</text>"#,
                p.x,
                p.x + p.w,
                p.x + p.w - 4.0,
                y - 5.0,
                tick(t)
            );
        }
        for (k, series) in panel.series.iter().enumerate() {
            // Lines join consecutive levels that both have a reading.
            let pts: Vec<Option<(f64, f64)>> = series
                .values
                .iter()
                .enumerate()
                .map(|(j, v)| v.map(|v| (p.x_of(j, n), p.y_of(v, ymax))))
                .collect();
            for w in pts.windows(2) {
                if let [Some(a), Some(b)] = w {
                    let _ = writeln!(
                        s,
                        r#"<line x1="{:.2}" y1="{:.2}" x2="{:.2}" y2="{:.2}" stroke="{}" stroke-width="2.5"/>"#,
                        a.0, a.1, b.0, b.1, series.color
                    );
                }
            }
            for (j, v) in series.values.iter().enumerate() {
                if let Some(v) = v {
                    let _ = writeln!(
                        s,
                        r##"<circle class="point" data-panel="{}" data-series="{}" data-level="{}" data-value="{v}" cx="{:.2}" cy="{:.2}" r="4" fill="{}" stroke="#ffffff" stroke-width="1.5"/>"##,
                        panel.id,
                        series.name,
                        levels[j].concurrency,
                        p.x_of(j, n),
                        p.y_of(*v, ymax),
                        series.color
                    );
                }
            }
            // Legend, top right of the plot.
            if panel.series.len() > 1 {
                let lx = p.x + p.w - 110.0 + k as f64 * 55.0;
                let _ = writeln!(
                    s,
                    r#"<line x1="{lx:.2}" y1="{:.2}" x2="{:.2}" y2="{:.2}" stroke="{}" stroke-width="3"/><text x="{:.2}" y="{:.2}" font-size="12" fill="{INK}">{}</text>"#,
                    p.y - 9.0,
                    lx + 16.0,
                    p.y - 9.0,
                    series.color,
                    lx + 20.0,
                    p.y - 5.0,
                    series.name
                );
            }
        }
        s.push_str("</g>\n");
    }
    s.push_str("</svg>\n");
    s
}

/// Convert `svg` to `png` with `rsvg-convert` or ImageMagick's `convert`, whichever is
/// installed; false when neither is (or both fail).
pub fn to_png(svg: &std::path::Path, png: &std::path::Path) -> bool {
    let quiet = |mut c: std::process::Command| {
        c.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let mut rsvg = std::process::Command::new("rsvg-convert");
    rsvg.arg("-o").arg(png).arg(svg);
    if quiet(rsvg) {
        return true;
    }
    let mut convert = std::process::Command::new("convert");
    convert.arg(svg).arg(png);
    quiet(convert)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::LoadStats;

    #[test]
    fn axes_and_ticks() {
        assert_eq!(axis(0.0), (1.0, 0.2));
        assert_eq!(axis(540.0), (600.0, 200.0));
        assert_eq!(axis(1009.0), (1250.0, 250.0));
        assert_eq!(axis(100.0), (100.0, 20.0));
        assert_eq!(axis(7.0), (8.0, 2.0));
        assert_eq!(axis(0.45), (0.5, 0.1));
        assert_eq!(tick(250.0), "250");
        assert_eq!(tick(0.5), "0.5");
    }

    #[test]
    fn scale_maps_values_into_the_plot() {
        let p = Plot::of_panel(4);
        assert_eq!(p.x, PANEL_W + LEFT);
        assert_eq!(p.y, TOP + PANEL_H + HEAD);
        assert_eq!(p.y_of(0.0, 500.0), p.y + p.h);
        assert_eq!(p.y_of(500.0, 500.0), p.y);
        assert_eq!(p.y_of(250.0, 500.0), p.y + p.h / 2.0);
        assert_eq!(p.x_of(0, 4), p.x + p.w / 8.0);
        assert_eq!(p.x_of(3, 4), p.x + p.w * 7.0 / 8.0);
    }

    #[test]
    fn missing_values_draw_no_point() {
        let mut a = LoadStats::new().report();
        a.latency.rtt_last.p90 = Some(0.2);
        let levels = [
            Level {
                concurrency: 1,
                report: a,
            },
            Level {
                concurrency: 2,
                report: LoadStats::new().report(),
            },
        ];
        let slo = Slo {
            rtt_last_p90: 0.3,
            first_text_p90: 1.0,
        };
        let svg = sweep_svg("t <&>", "v", &levels, &slo);
        assert_eq!(svg.matches("class=\"point\"").count(), 1);
        assert!(svg.contains("data-series=\"p90\" data-level=\"1\" data-value=\"200\""));
        assert!(svg.contains("t &lt;&amp;&gt;"));
        assert_eq!(svg.matches("class=\"slo\"").count(), 2);
    }
}
