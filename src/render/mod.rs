//! Pictures of probe runs, drawn on the server as self-contained SVG (no JavaScript, no
//! external assets), so the status page, the run pages and `rtprobe probe --svg` share one
//! renderer. Pure: strings in, strings out, no clocks or I/O.
//!
//! Every piece of text that reaches a picture goes through [`esc`]: transcripts and error
//! details come from the server under test.

pub mod sparkline;
pub mod waterfall;

/// Escape text for HTML/SVG element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            // Control characters are not allowed in XML 1.0 documents; a hostile transcript
            // must not make the picture unparseable.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => o.push('\u{fffd}'),
            c => o.push(c),
        }
    }
    o
}

/// An axis step: the smallest of 1, 2, 2.5, 5 × 10^k that is at least `raw` (within float
/// error, so a step computed as exactly 0.2 stays 0.2).
pub fn nice_step(raw: f64) -> f64 {
    let mag = 10f64.powf(raw.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0] {
        if m * mag >= raw * (1.0 - 1e-9) {
            return m * mag;
        }
    }
    10.0 * mag
}

/// A duration in seconds for a label: `850 µs`, `412 ms`, `1.62 s`.
pub fn fmt_duration(s: f64) -> String {
    let a = s.abs();
    if a < 0.001 {
        format!("{:.0} µs", s * 1e6)
    } else if a < 1.0 {
        format!("{:.0} ms", s * 1e3)
    } else if a < 10.0 {
        format!("{s:.2} s")
    } else {
        format!("{s:.1} s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(
            esc("<a href='x'>&\"\u{1}"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;\u{fffd}"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(fmt_duration(0.000_85), "850 µs");
        assert_eq!(fmt_duration(0.4124), "412 ms");
        assert_eq!(fmt_duration(1.624), "1.62 s");
        assert_eq!(fmt_duration(12.34), "12.3 s");
    }
}
