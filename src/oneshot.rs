//! `rtprobe probe`: one run of one probe from the command line, with a progress line on a
//! terminal, then the report (table or JSON) on stdout and optionally the run as an SVG
//! waterfall. The same `probe::run_session` → `derive_probe_run` path as `serve`, so the numbers
//! printed are the numbers a scrape would show.

use std::path::PathBuf;
use std::time::Duration;

use crate::audio::{self, AudioError, PreparedAudio};
use crate::cli::ProbeArgs;
use crate::config::adhoc::{self, ChooseError};
use crate::config::{self, ProbeSpec};
use crate::derive::derive_probe_run;
use crate::probe::{self, ProbeError, ProgressEvent};
use crate::render::waterfall;
use crate::report::{self, RunHeader};

/// Why the probe could not be run at all (a run that fails is not an error here: it is
/// reported, and its outcome returned).
#[derive(Debug, thiserror::Error)]
pub enum OneshotError {
    #[error(transparent)]
    Choose(#[from] ChooseError),
    #[error(transparent)]
    Audio(#[from] AudioError),
    #[error("the probe did not return within its timeout")]
    Stalled,
    #[error("writing {path}: {source}", path = path.display())]
    Svg {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

/// Runs the chosen probe once and prints its report. Returns the probe's name and the run's
/// outcome.
pub async fn run(args: &ProbeArgs) -> Result<(String, Result<(), ProbeError>), OneshotError> {
    let spec = adhoc::choose(args.config.as_deref(), args.probe.as_deref(), &args.adhoc)?;
    let clips = spec.clips();
    let audio = clips
        .iter()
        .map(|c| audio::prepare_at(&c.audio, spec.chunk, spec.dialect.sample_rate))
        .collect::<Result<Vec<_>, _>>()?;
    let audio: Vec<&PreparedAudio> = audio.iter().collect();
    let progress =
        !args.quiet && !args.json && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut text_chars = 0;
    let mut observer = |e: &ProgressEvent| {
        if !progress {
            return;
        }
        match e {
            ProgressEvent::ChunkSent { index, total } => {
                eprint!("\r\x1b[2Kstreaming {index}/{total} chunks, {text_chars} chars of text");
            }
            ProgressEvent::Text { chars_total } => text_chars = *chars_total,
            ProgressEvent::Done => eprint!("\r\x1b[2K"),
            _ => {}
        }
    };
    let mut timeline = tokio::time::timeout(
        spec.timeout + Duration::from_secs(5),
        probe::run_session(&spec, &audio, &mut observer),
    )
    .await
    .map_err(|_| OneshotError::Stalled)?;
    if progress {
        eprint!("\r\x1b[2K");
    }
    // Every utterance's values: the table shows the first in full and a line per utterance.
    let derived = derive_probe_run(&spec, &mut timeline);
    let header = header(&spec);
    if let Some(path) = &args.svg {
        let opts = waterfall::Options {
            title: Some(format!("{} · {}", spec.name, spec.target.ws_url)),
            ..Default::default()
        };
        let svg = waterfall::render(&timeline, &derived[0], &opts);
        std::fs::write(path, svg).map_err(|source| OneshotError::Svg {
            path: path.clone(),
            source,
        })?;
    }
    let out = if args.json {
        serde_json::to_string_pretty(&report::json(
            &header,
            &timeline,
            &derived,
            spec.utterances.len() > 1,
        ))? + "\n"
    } else {
        report::table(&header, &timeline, &derived)
    };
    // A closed pipe (`| head`) is not an error worth a panic.
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), out.as_bytes());
    Ok((spec.name.clone(), timeline.outcome))
}

fn header(spec: &ProbeSpec) -> RunHeader<'_> {
    RunHeader {
        probe: &spec.name,
        target: &spec.target.ws_url,
        model: match &spec.model {
            config::ModelChoice::Named(m) => m.as_str(),
            config::ModelChoice::Auto => "auto",
        },
        pacing: match spec.pacing {
            config::Pacing::Realtime => "realtime",
            config::Pacing::Burst => "burst",
        },
    }
}
