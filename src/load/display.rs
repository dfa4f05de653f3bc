//! The terminal side of the live view: every 0.5 s, read the totals, render them (`render.rs`)
//! and write to stderr — redrawn in place on a terminal, one plain line every few seconds
//! otherwise (logs, CI, pipes), nothing with `--quiet`. The only I/O of the load module's
//! display; what it writes is decided by pure functions.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::aggregate::LoadStats;
use super::render;

use crate::sync;

/// Redraw period of the live table.
pub const TICK: Duration = Duration::from_millis(500);
/// Period of the plain lines when stderr is not a terminal.
pub const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// How the run is shown while it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A table redrawn in place (stderr is a terminal).
    Live,
    /// A line every [`PLAIN_EVERY`].
    Plain,
    /// `--quiet`.
    Off,
}

impl Mode {
    /// `Live` on a terminal, `Plain` otherwise, `Off` when quiet.
    pub fn detect(quiet: bool) -> Mode {
        if quiet {
            Mode::Off
        } else if std::io::stderr().is_terminal() {
            Mode::Live
        } else {
            Mode::Plain
        }
    }
}

/// The shared totals a display reads and the scheduler events feed.
pub type SharedStats = Arc<Mutex<LoadStats>>;

/// A running display; [`Display::finish`] draws the last frame and stops it.
pub struct Display {
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

/// Start showing `stats` for a run of `total` that began at `start`. `title` is printed once
/// above the table (e.g. the concurrency level of a sweep).
pub fn spawn(
    stats: SharedStats,
    start: Instant,
    total: Duration,
    mode: Mode,
    title: Option<String>,
) -> Display {
    let (stop, mut stop_rx) = watch::channel(false);
    if mode == Mode::Off {
        return Display { stop, task: None };
    }
    let task = tokio::spawn(async move {
        let mut drawn = 0usize;
        let mut last_plain: Option<Instant> = None;
        let mut err = std::io::stderr();
        if let Some(t) = &title {
            let _ = writeln!(err, "{t}");
        }
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let last = tokio::select! {
                _ = ticker.tick() => false,
                _ = stop_rx.wait_for(|s| *s) => true,
            };
            let now = Instant::now();
            let elapsed = now.saturating_duration_since(start);
            let report = {
                let mut s = sync::lock(&stats);
                s.observe_live(elapsed.as_secs_f64(), super::text_deltas());
                s.report()
            };
            let out = match mode {
                Mode::Live => {
                    let lines = render::live(&report, elapsed, total);
                    let out = render::redraw(drawn, &lines);
                    drawn = lines.len();
                    Some(out)
                }
                Mode::Plain => {
                    let due = last_plain.is_none_or(|t| now - t >= PLAIN_EVERY);
                    (due || last).then(|| {
                        last_plain = Some(now);
                        render::plain_line(&report, elapsed, total) + "\n"
                    })
                }
                Mode::Off => None,
            };
            if let Some(out) = out {
                let mut lock = err.lock();
                let _ = lock.write_all(out.as_bytes());
                let _ = lock.flush();
            }
            if last {
                break;
            }
        }
    });
    Display {
        stop,
        task: Some(task),
    }
}

impl Display {
    /// Draw the final frame and wait for the display to stop.
    pub async fn finish(mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for Display {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}
