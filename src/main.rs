//! The `rtprobe` binary: parse flags, set up logging, run one subcommand. All logic lives in the
//! library; this file only wires it and turns errors into exit codes (the one place `anyhow`
//! is used).

use std::path::Path;
use std::process::ExitCode;

use clap::Parser;
use rtprobe::cli::{Cli, Command};
use rtprobe::config::{self, adhoc::probe_names};
use rtprobe::load::LoadReport;
use rtprobe::serve::backend;

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
        Command::Probe(args) => {
            let (name, outcome) = rtprobe::oneshot::run(&args).await?;
            Ok(match outcome {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!(
                        "rtprobe: probe {name} failed: error.type={} ({})",
                        e.kind, e.detail
                    );
                    ExitCode::FAILURE
                }
            })
        }
        Command::Simulate(args) => {
            let listen = args.listen;
            let cfg = args.into_config()?;
            let stop = rtprobe::signals::stop_signal()?;
            let sim = rtprobe::simulate::Simulator::bind(listen, cfg).await?;
            tracing::info!(addr = %sim.local_addr(), "simulator listening (Ctrl-C to stop)");
            sim.serve(stop).await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve(args) => {
            let json = args.json;
            let outcome = backend::serve(args).await?;
            print_summary(outcome.summary, json)
        }
        Command::Load(args) => load(args).await,
        Command::Demo(args) => print_summary(rtprobe::demo::run(args).await?.summary, false),
    }
}

/// A `--duration` run's totals on stdout.
fn print_summary(summary: Option<LoadReport>, json: bool) -> anyhow::Result<ExitCode> {
    if let Some(summary) = summary {
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

fn check_config(path: &Path) -> ExitCode {
    match config::load(path) {
        Ok(cfg) => {
            println!(
                "{}: OK, {} probe(s): {}",
                path.display(),
                cfg.probes.len(),
                probe_names(&cfg.probes)
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
