//! The run waterfall drawn from real runs against the built-in simulator: the SVG parses, and
//! every mark sits at the x of its timestamp on the picture's own axis (read back from the
//! tick labels, so the axis a reader sees and the marks agree). Server text is shown as text.

use crate::support;

use std::time::Duration;

use rtprobe::derive::{Derived, derive};
use rtprobe::probe::timeline::{SentKind, Timeline};
use rtprobe::probe::{ErrorType, ServerCode, run};
use rtprobe::render::waterfall::{Options, render};
use rtprobe::simulate::{Fault, SimConfig};
use support::probe::{silence, spec};
use support::sim::start;

/// Marks are written with two decimals; the axis is read back from rounded tick positions.
const PX: f64 = 0.02;

fn sim(transcript: &str) -> SimConfig {
    SimConfig {
        transcript: transcript.into(),
        first_text_delay: Duration::from_millis(250),
        token_interval: Duration::from_millis(60),
        empty_deltas_per_word: 1,
        ..SimConfig::default()
    }
}

async fn probe(cfg: SimConfig) -> (Timeline, Derived, String) {
    let sim = start(cfg).await;
    let audio = silence(Duration::from_millis(1200), Duration::from_millis(100));
    let t = tokio::time::timeout(Duration::from_secs(20), run(&spec(&sim), &audio))
        .await
        .expect("run within 20 s");
    let d = derive(&t, None);
    let opts = Options {
        title: Some("test <probe>".into()),
        ..Options::default()
    };
    let svg = render(&t, &d, &opts);
    // To look at the pictures: WATERFALL_OUT=dir cargo test --test probe waterfall::
    if let Some(dir) = std::env::var_os("WATERFALL_OUT") {
        let name = format!("{}.svg", t.transcript().len());
        std::fs::write(std::path::Path::new(&dir).join(name), &svg).unwrap();
    }
    (t, d, svg)
}

/// Seconds from a tick label: `0`, `250 ms`, `1.5 s`.
fn tick_seconds(label: &str) -> f64 {
    match label.split_once(' ') {
        None => label.parse().unwrap(),
        Some((v, "ms")) => v.parse::<f64>().unwrap() / 1e3,
        Some((v, "s")) => v.parse().unwrap(),
        Some(_) => panic!("tick label {label:?}"),
    }
}

struct Picture<'a> {
    doc: &'a roxmltree::Document<'a>,
    /// x = x0 + t · px_per_s, from the first and last tick.
    x0: f64,
    px_per_s: f64,
}

impl<'a> Picture<'a> {
    fn new(doc: &'a roxmltree::Document<'a>) -> Picture<'a> {
        let ticks: Vec<(f64, f64)> = doc
            .descendants()
            .filter(|n| n.attribute("class") == Some("tick"))
            .map(|n| {
                let x: f64 = n.attribute("x").unwrap().parse().unwrap();
                (tick_seconds(n.text().unwrap()), x)
            })
            .collect();
        assert!(ticks.len() >= 4, "too few ticks: {ticks:?}");
        let (first, last) = (ticks[0], ticks[ticks.len() - 1]);
        assert_eq!(first.0, 0.0);
        let px_per_s = (last.1 - first.1) / (last.0 - first.0);
        // Every tick on the same linear scale.
        for (t, x) in &ticks {
            assert!((first.1 + t * px_per_s - x).abs() < PX, "tick {t} at {x}");
        }
        Picture {
            doc,
            x0: first.1,
            px_per_s,
        }
    }

    fn x(&self, t: Duration) -> f64 {
        self.x0 + t.as_secs_f64() * self.px_per_s
    }

    fn nodes(&self, class: &str) -> Vec<roxmltree::Node<'a, 'a>> {
        self.doc
            .descendants()
            .filter(|n| n.attribute("class") == Some(class))
            .collect()
    }

    fn xs(&self, class: &str) -> Vec<f64> {
        self.nodes(class)
            .iter()
            .map(|n| n.attribute("x1").unwrap().parse().unwrap())
            .collect()
    }

    fn assert_at(&self, class: &str, times: &[Duration]) {
        let xs = self.xs(class);
        assert_eq!(xs.len(), times.len(), "{class}: marks vs timestamps");
        for (x, t) in xs.iter().zip(times) {
            let want = self.x(*t);
            assert!(
                (x - want).abs() < PX,
                "{class} at {t:?}: x {x}, want {want}"
            );
        }
    }

    /// (x1, x2) of a bracket's span, from its path `M x1 y V y H x2 V y`.
    fn bracket(&self, name: &str) -> Option<(f64, f64)> {
        let g = self
            .nodes("bracket")
            .into_iter()
            .find(|n| n.attribute("data-name") == Some(name))?;
        let path = g
            .descendants()
            .find(|n| n.attribute("class") == Some("b-span"))
            .unwrap();
        let d = path.attribute("d").unwrap();
        let x1: f64 = d[1..].split(' ').next().unwrap().parse().unwrap();
        let x2: f64 = d
            .split('H')
            .nth(1)
            .unwrap()
            .split('V')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        Some((x1, x2))
    }

    fn texts(&self, class: &str) -> Vec<String> {
        self.nodes(class)
            .iter()
            .map(|n| n.text().unwrap_or("").to_string())
            .collect()
    }
}

fn sent_at(t: &Timeline, kind: SentKind) -> Vec<Duration> {
    t.sent
        .iter()
        .filter_map(|s| (s.kind == kind).then_some(s.at))
        .collect()
}

fn deltas_at(t: &Timeline, nonempty: bool) -> Vec<Duration> {
    let of_kind = |d: &&rtprobe::probe::timeline::Delta| d.nonempty == nonempty;
    t.deltas.iter().filter(of_kind).map(|d| d.at).collect()
}

/// Every instant of the timeline has its mark at the right x.
fn assert_marks(p: &Picture<'_>, t: &Timeline) {
    p.assert_at("m-append", &sent_at(t, SentKind::Append));
    p.assert_at("m-session-update", &sent_at(t, SentKind::SessionUpdate));
    p.assert_at("m-commit", &sent_at(t, SentKind::StartCommit));
    p.assert_at("m-final-commit", &sent_at(t, SentKind::FinalCommit));
    p.assert_at("m-delta", &deltas_at(t, true));
    p.assert_at("m-delta-empty", &deltas_at(t, false));
    let done: Vec<Duration> = t.done.iter().map(|d| d.at).collect();
    p.assert_at("m-done", &done);
    let phases = p.nodes("phase");
    let mut want = vec![];
    for end in [
        t.phases.tcp_connected,
        t.phases.upgraded,
        t.phases.session_created,
    ] {
        want.push(end.expect("phase reached"));
    }
    assert_eq!(phases.len(), want.len());
    for (rect, end) in phases.iter().zip(&want) {
        let x: f64 = rect.attribute("x").unwrap().parse().unwrap();
        let w: f64 = rect.attribute("width").unwrap().parse().unwrap();
        let right = x + w;
        // A phase narrower than a pixel is drawn one pixel wide.
        assert!(
            (right - p.x(*end)).abs() < PX || (w == 1.0 && right >= p.x(*end)),
            "phase ends at {end:?}: {right} vs {}",
            p.x(*end)
        );
    }
}

fn assert_bracket(p: &Picture<'_>, name: &str, from: Duration, secs: Option<f64>) {
    let (x1, x2) = p
        .bracket(name)
        .unwrap_or_else(|| panic!("no {name} bracket"));
    let to = from + Duration::from_secs_f64(secs.expect("value defined"));
    assert!(
        (x1 - p.x(from)).abs() < PX,
        "{name} from: {x1} vs {}",
        p.x(from)
    );
    assert!((x2 - p.x(to)).abs() < PX, "{name} to: {x2} vs {}", p.x(to));
}

#[tokio::test]
async fn one_word_run() {
    let (t, d, svg) = probe(sim("Hello.")).await;
    assert!(t.succeeded(), "{:?}", t.outcome);
    let doc = roxmltree::Document::parse(&svg).expect("SVG parses");
    let p = Picture::new(&doc);
    assert_marks(&p, &t);
    assert_eq!(p.texts("word"), ["Hello."]);
    assert_bracket(&p, "ttft", Duration::ZERO, d.ttft);
    let fin = sent_at(&t, SentKind::FinalCommit)[0];
    assert_bracket(&p, "finalize", fin, d.finalize);
    assert_bracket(
        &p,
        "first-text",
        sent_at(&t, SentKind::Append)[0],
        d.time_to_first_text,
    );
    assert!(p.nodes("m-stop").is_empty());
    // The title is escaped text.
    assert!(svg.contains("test &lt;probe&gt;"));
}

#[tokio::test]
async fn many_words_with_empty_deltas_and_a_slow_last_word() {
    let cfg = SimConfig {
        hold_last_words: 1,
        tail_delay: Duration::from_millis(800),
        ..sim("Mary had a little lamb, its fleece was white as snow.")
    };
    let (t, d, svg) = probe(cfg).await;
    assert!(t.succeeded(), "{:?}", t.outcome);
    let doc = roxmltree::Document::parse(&svg).expect("SVG parses");
    let p = Picture::new(&doc);
    assert_marks(&p, &t);
    assert_eq!(deltas_at(&t, true).len(), 11);
    assert!(!deltas_at(&t, false).is_empty());
    // Each shown word is its delta's text, drawn at its delta's x.
    let words = p.nodes("word");
    assert!(words.len() >= 6, "most words fit: {}", words.len());
    for w in &words {
        let x: f64 = w.attribute("x").unwrap().parse().unwrap();
        let i = t
            .deltas
            .iter()
            .position(|dl| dl.nonempty && (p.x(dl.at) - x).abs() < PX)
            .expect("a word sits on a text delta");
        assert_eq!(t.delta_words(i).trim(), w.text().unwrap());
    }
    // The held last word arrives after the final commit: a gap over 250 ms.
    let tokens = deltas_at(&t, true);
    let gaps: Vec<_> = tokens
        .windows(2)
        .filter(|w| w[1] - w[0] > Duration::from_millis(250))
        .collect();
    assert_eq!(
        p.nodes("bracket")
            .iter()
            .filter(|n| n.attribute("data-name") == Some("itl"))
            .count(),
        gaps.len()
    );
    assert!(!gaps.is_empty());
    let fin = sent_at(&t, SentKind::FinalCommit)[0];
    assert_bracket(&p, "rtt-last", fin, d.rtt_last);
}

#[tokio::test]
async fn a_run_failing_mid_stream_shows_where_it_stopped() {
    let cfg = SimConfig {
        fault: Fault::ErrorMidStream,
        fault_after_words: 3,
        ..sim("one two three four five six")
    };
    let (t, _d, svg) = probe(cfg).await;
    let err = t.outcome.as_ref().unwrap_err();
    assert_eq!(
        err.kind,
        ErrorType::ServerError(ServerCode::ProcessingError)
    );
    let doc = roxmltree::Document::parse(&svg).expect("SVG parses");
    let p = Picture::new(&doc);
    assert_marks(&p, &t);
    assert_eq!(deltas_at(&t, true).len(), 3);
    p.assert_at("m-stop", &[t.ended]);
    assert_eq!(p.texts("stop-label"), ["✕ server_error.processing_error"]);
    assert!(p.nodes("m-done").is_empty());
    assert!(p.bracket("finalize").is_none());
}

#[tokio::test]
async fn a_transcript_with_markup_is_shown_as_text() {
    let (t, _d, svg) = probe(sim("<script>alert(1)</script> said & <b>Mary</b>")).await;
    assert!(t.succeeded(), "{:?}", t.outcome);
    let doc = roxmltree::Document::parse(&svg).expect("SVG parses");
    assert!(
        doc.descendants()
            .all(|n| !matches!(n.tag_name().name(), "script" | "b" | "foreignObject")),
        "server text became markup"
    );
    let p = Picture::new(&doc);
    let words = p.texts("word");
    assert_eq!(words[0], "<script>alert(1)</script>");
    assert!(svg.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    // Tooltips carry the words too, escaped.
    let titles: Vec<&str> = doc
        .descendants()
        .filter(|n| n.tag_name().name() == "title")
        .filter_map(|n| n.text())
        .collect();
    assert!(
        titles.iter().any(|s| s.contains("<b>Mary</b>")),
        "{titles:?}"
    );
}
