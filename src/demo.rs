//! `rtprobe demo`: the built-in simulator with Voxtral-like cadence, and `serve` on the
//! embedded demo config and clips, written to a temporary directory. Live metrics with no vLLM,
//! so a newcomer sees the status page and dashboards within a minute.

use std::path::PathBuf;
use std::time::Duration;

use crate::cli::DemoArgs;
use crate::config;
use crate::serve::{ServeArgs, ServeError, ServeOutcome, backend};
use crate::simulate::{SimConfig, SimError, Simulator};

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("creating {path}: {source}", path = path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing {path}: {source}", path = path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("--duration: {0}")]
    Duration(String),
    #[error(transparent)]
    Simulator(#[from] SimError),
    #[error(transparent)]
    Serve(#[from] ServeError),
}

const DEMO_CONFIG: &str = include_str!("../examples/rtprobe-demo.yaml");
const DEMO_FILES: [(&str, &[u8]); 4] = [
    (
        "audio/mary-had-a-little-lamb.wav",
        include_bytes!("../examples/audio/mary-had-a-little-lamb.wav"),
    ),
    (
        "audio/mary-had-a-little-lamb.txt",
        include_bytes!("../examples/audio/mary-had-a-little-lamb.txt"),
    ),
    (
        "audio/quick-brown-fox.flac",
        include_bytes!("../examples/audio/quick-brown-fox.flac"),
    ),
    (
        "audio/quick-brown-fox.txt",
        include_bytes!("../examples/audio/quick-brown-fox.txt"),
    ),
];

/// Runs the demo until SIGTERM/SIGINT or `--duration`; the temporary directory is removed
/// afterwards.
pub async fn run(args: DemoArgs) -> Result<ServeOutcome, DemoError> {
    let dir = std::env::temp_dir().join(format!("rtprobe-demo-{}", std::process::id()));
    let write = |path: PathBuf, bytes: &[u8]| {
        std::fs::write(&path, bytes).map_err(|source| DemoError::Write { path, source })
    };
    std::fs::create_dir_all(dir.join("audio")).map_err(|source| DemoError::CreateDir {
        path: dir.clone(),
        source,
    })?;
    for (name, bytes) in DEMO_FILES {
        write(dir.join(name), bytes)?;
    }
    let config_text = DEMO_CONFIG
        .replace("127.0.0.1:18000", &args.sim_listen.to_string())
        .replace(
            "listen: 127.0.0.1:9464",
            &format!("listen: {}", args.listen),
        );
    let config_path = dir.join("rtprobe.yaml");
    write(config_path.clone(), config_text.as_bytes())?;

    let sim_cfg = SimConfig {
        // Three tokens per word, 80 ms apart: text spread over the clip as Voxtral does.
        empty_deltas_per_word: 2,
        first_text_delay: Duration::from_millis(420),
        tail_delay: Duration::from_millis(180),
        jitter: Duration::from_millis(15),
        seed: 0x5eed,
        max_records: 0,
        ..SimConfig::default()
    };
    let sim = Simulator::bind(args.sim_listen, sim_cfg).await?.spawn();
    eprintln!(
        "rtprobe demo: simulator on http://{}, status page http://{}/ , metrics http://{}/metrics (Ctrl-C to stop)",
        sim.addr(),
        args.listen,
        args.listen
    );
    let mut serve_args = ServeArgs::new(&config_path);
    serve_args.duration = args
        .duration
        .as_deref()
        .map(config::parse_duration)
        .transpose()
        .map_err(DemoError::Duration)?;
    let result = backend::serve(serve_args).await;
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(result?)
}
