//! The `rtprobe` binary: parse flags, set up logging, run one subcommand. All logic lives in the
//! library; this file only wires it and turns errors into exit codes (the one place `anyhow`
//! is used).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, anyhow};
use clap::Parser;
use rtprobe::cli::{Cli, Command, DemoArgs, ProbeArgs};
use rtprobe::config::{self, ProbeSpec};
use rtprobe::derive::derive_session;
use rtprobe::probe::{self, ProgressEvent};
use rtprobe::report::{self, RunHeader};
use rtprobe::serve::ServeArgs;
use rtprobe::serve::backend::ProbeBackend;
use rtprobe::simulate::{SimConfig, Simulator};

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    // Info lines (one per failed stream) would scroll a live table away: keep warnings only
    // while one is drawn, unless the user chose a level.
    if live_table(&cli.command) && cli.log_level == "info" {
        cli.log_level = "warn".into();
    }
    if let Err(e) = rtprobe::logging::init(&cli.log_level, cli.log_format) {
        eprintln!("rtprobe: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(worker_threads())
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rtprobe: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rtprobe: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Whether the command draws a live table on a terminal.
fn live_table(command: &Command) -> bool {
    use rtprobe::load::display::Mode;
    match command {
        Command::Serve(a) => a.duration.is_some() && Mode::detect(a.quiet) == Mode::Live,
        Command::Load(a) => Mode::detect(a.quiet) == Mode::Live,
        Command::Demo(a) => a.duration.is_some() && Mode::detect(false) == Mode::Live,
        _ => false,
    }
}

/// A sidecar should not start one thread per node core; two workers carry hundreds of streams.
/// `RTPROBE_WORKER_THREADS` overrides.
fn worker_threads() -> usize {
    std::env::var("RTPROBE_WORKER_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get().min(2)))
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::CheckConfig { config } => Ok(check_config(&config)),
        Command::Probe(args) => probe_once(args).await,
        Command::Simulate(args) => {
            let listen = args.listen;
            let cfg = args.into_config()?;
            let sim = Simulator::bind(listen, cfg).await?;
            tracing::info!(addr = %sim.local_addr(), "simulator listening (Ctrl-C to stop)");
            sim.serve(shutdown_signal()).await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve(args) => serve(args).await,
        Command::Load(args) => load(args).await,
        Command::Demo(args) => demo(args).await,
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let json = args.json;
    let outcome = rtprobe::serve::run(
        args,
        |p: &Path| config::load(p).map_err(|e| e.to_string()),
        ProbeBackend::new,
    )
    .await?;
    if let Some(summary) = outcome.summary {
        let out = if json {
            serde_json::to_string_pretty(&summary)? + "\n"
        } else {
            rtprobe::load::render::table(&summary).join("\n") + "\n"
        };
        let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), out.as_bytes());
    }
    Ok(ExitCode::SUCCESS)
}

async fn load(args: rtprobe::load::run::LoadArgs) -> anyhow::Result<ExitCode> {
    use rtprobe::load::{display::Mode, run, sweep};
    let result = run::run(&args, Mode::detect(args.quiet)).await?;
    let written = match &args.out {
        Some(dir) => run::write_outputs(dir, &result, &args)?,
        None => Vec::new(),
    };
    let out = if args.json {
        serde_json::to_string_pretty(&result.doc(&args))? + "\n"
    } else {
        sweep::table(&result.levels, &result.slo, &result.verdict).join("\n") + "\n"
    };
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), out.as_bytes());
    for path in written {
        eprintln!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// The embedded default: the built-in simulator with Voxtral-like cadence, and `serve` on the
/// demo config with its clips, written to a temporary directory.
async fn demo(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let dir = std::env::temp_dir().join(format!("rtprobe-demo-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("audio"))
        .with_context(|| format!("creating {}", dir.display()))?;
    for (name, bytes) in DEMO_FILES {
        std::fs::write(dir.join(name), bytes).with_context(|| format!("writing {name}"))?;
    }
    let config_text = DEMO_CONFIG
        .replace("127.0.0.1:18000", &args.sim_listen.to_string())
        .replace(
            "listen: 127.0.0.1:9464",
            &format!("listen: {}", args.listen),
        );
    let config_path = dir.join("rtprobe.yaml");
    std::fs::write(&config_path, config_text).context("writing the demo config")?;

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
        .map_err(|e| anyhow!(e))?;
    let result = serve(serve_args).await;
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    result
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

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn check_config(path: &Path) -> ExitCode {
    match config::load(path) {
        Ok(cfg) => {
            println!(
                "{}: OK, {} probe(s): {}",
                path.display(),
                cfg.probes.len(),
                names(&cfg.probes)
            );
            for p in cfg.probes.iter().filter(|p| p.tls.insecure_skip_verify) {
                println!(
                    "warning: probe {:?} skips TLS certificate verification",
                    p.name
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn names(probes: &[ProbeSpec]) -> String {
    probes
        .iter()
        .map(|p| p.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The probe to run: from the config file, or built from the ad hoc flags through the same
/// validation as a config file (the flags become a one-probe config document).
fn probe_spec(args: &ProbeArgs) -> anyhow::Result<ProbeSpec> {
    if let Some(path) = &args.config {
        let cfg = config::load(path)?;
        return match &args.probe {
            Some(name) => cfg
                .probes
                .into_iter()
                .find(|p| &p.name == name)
                .ok_or_else(|| anyhow!("{}: no probe named {name:?}", path.display())),
            None if cfg.probes.len() == 1 => Ok(cfg.probes.into_iter().next().expect("one probe")),
            None => Err(anyhow!(
                "{} has {} probes ({}): pick one with --probe",
                path.display(),
                cfg.probes.len(),
                names(&cfg.probes)
            )),
        };
    }
    let target = args
        .target
        .clone()
        .ok_or_else(|| anyhow!("give --config FILE --probe NAME, or --target URL --audio FILE"))?;
    let audio = args
        .audio
        .clone()
        .ok_or_else(|| anyhow!("--target needs --audio FILE"))?;
    let cwd = std::env::current_dir().context("reading the current directory")?;
    let mut probe = serde_json::json!({
        "name": "adhoc",
        "target": target,
        "model": args.model,
        "audio": absolute(&cwd, &audio),
        "chunk": args.chunk,
        "pacing": args.pacing,
        "interval": "1h",
        "timeout": "10m",
        "dialect": args.dialect,
    });
    // Dialect-specific flags go through the validator too, which rejects them for vllm.
    if let Some(t) = &args.turn_detection {
        probe["turn_detection"] = t.clone().into();
    }
    if let Some(r) = args.sample_rate {
        probe["sample_rate"] = r.into();
    }
    if let Some(l) = &args.language {
        probe["language"] = l.clone().into();
    }
    if let Some(r) = &args.reference {
        probe["reference"] = r.clone().into();
    }
    if let Some(var) = &args.bearer_token_env {
        probe["bearer_token"] = serde_json::json!({ "env": var });
    }
    if let Some(ca) = &args.ca_file {
        probe["tls"] = serde_json::json!({ "ca_file": absolute(&cwd, ca) });
    }
    // JSON is YAML: the flags go through the config validator like any file would.
    let doc = serde_json::json!({ "probes": [probe] }).to_string();
    let cfg = config::parse(&doc, &cwd.join("<command line>"))?;
    Ok(cfg.probes.into_iter().next().expect("one probe"))
}

fn absolute(cwd: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        cwd.join(p)
    }
}

async fn probe_once(args: ProbeArgs) -> anyhow::Result<ExitCode> {
    let spec = probe_spec(&args)?;
    let clips = spec.clips();
    let audio = clips
        .iter()
        .map(|c| rtprobe::audio::prepare_at(&c.audio, spec.chunk, spec.dialect.sample_rate))
        .collect::<Result<Vec<_>, _>>()?;
    let audio: Vec<&rtprobe::audio::PreparedAudio> = audio.iter().collect();
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
    let timeline = tokio::time::timeout(
        spec.timeout + Duration::from_secs(5),
        probe::run_session(&spec, &audio, &mut observer),
    )
    .await
    .context("the probe did not return within its timeout")?;
    if progress {
        eprint!("\r\x1b[2K");
    }
    // A multi-utterance session's table shows its first utterance; `--json` carries the whole
    // timeline with every utterance's slice.
    let mut timeline = timeline;
    let clips = spec.clips();
    let references: Vec<Option<&str>> = clips.iter().map(|c| c.reference.as_deref()).collect();
    let derived = derive_session(&mut timeline, &references, spec.max_wer).remove(0);
    let model = match &spec.model {
        config::ModelChoice::Named(m) => m.as_str(),
        config::ModelChoice::Auto => "auto",
    };
    let header = RunHeader {
        probe: &spec.name,
        target: &spec.target.ws_url,
        model,
        pacing: match spec.pacing {
            config::Pacing::Realtime => "realtime",
            config::Pacing::Burst => "burst",
        },
    };
    if let Some(path) = &args.svg {
        let opts = rtprobe::render::waterfall::Options {
            title: Some(format!("{} · {}", spec.name, spec.target.ws_url)),
            ..Default::default()
        };
        let svg = rtprobe::render::waterfall::render(&timeline, &derived, &opts);
        std::fs::write(path, svg).with_context(|| format!("writing {}", path.display()))?;
    }
    let out = if args.json {
        serde_json::to_string_pretty(&report::json(&header, &timeline, &derived))? + "\n"
    } else {
        report::table(&header, &timeline, &derived)
    };
    // A closed pipe (`| head`) is not an error worth a panic.
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), out.as_bytes());
    Ok(match &timeline.outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "rtprobe: probe {} failed: error.type={} ({})",
                spec.name, e.kind, e.detail
            );
            ExitCode::FAILURE
        }
    })
}
