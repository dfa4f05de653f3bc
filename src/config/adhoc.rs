//! `rtprobe probe`'s choice of probe: one from a config file, or one built from ad hoc flags.
//! The flags become a one-probe config document and go through `config::parse`, so a probe
//! from the command line is judged by exactly the rules of a config file (a dialect's flag on
//! the other dialect, a bad duration, a missing token variable: the same errors).

use std::path::{Path, PathBuf};

use super::{ConfigError, ProbeSpec};

/// The ad hoc flags of `rtprobe probe` (the alternative to `--config FILE --probe NAME`).
#[derive(Debug, Clone, clap::Args)]
pub struct AdhocFlags {
    /// Ad hoc: server URL (http(s)://host:port or ws(s)://…/v1/realtime).
    #[arg(long, requires = "audio")]
    pub target: Option<String>,
    /// Ad hoc: audio file (WAV or FLAC).
    #[arg(long)]
    pub audio: Option<PathBuf>,
    /// Ad hoc: model name, or `auto` for the first id of GET /v1/models.
    #[arg(long, default_value = "auto")]
    pub model: String,
    /// Ad hoc: reference transcript for WER.
    #[arg(long)]
    pub reference: Option<String>,
    /// Ad hoc: audio chunk duration.
    #[arg(long, default_value = "100ms")]
    pub chunk: String,
    /// Ad hoc: `realtime` (paced) or `burst` (guidellm order).
    #[arg(long, default_value = "realtime")]
    pub pacing: String,
    /// Ad hoc: name of an environment variable holding a bearer token.
    #[arg(long, value_name = "VAR")]
    pub bearer_token_env: Option<String>,
    /// Ad hoc: PEM CA file to trust for wss.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Ad hoc: wire dialect, `vllm` or `openai` (OpenAI GA transcription sessions).
    #[arg(long, default_value = "vllm")]
    pub dialect: String,
    /// Ad hoc, openai dialect: `none` (manual commit) or `server_vad`.
    #[arg(long)]
    pub turn_detection: Option<String>,
    /// Ad hoc, openai dialect: PCM rate declared and streamed (default 24000).
    #[arg(long)]
    pub sample_rate: Option<u32>,
    /// Ad hoc, openai dialect: transcription language (ISO-639-1).
    #[arg(long)]
    pub language: Option<String>,
    /// Ad hoc, openai dialect: session update shape, `ga` (default) or `beta` (legacy
    /// `transcription_session.update`; OpenAI's beta API also wants `OpenAI-Beta: realtime=v1`,
    /// which needs a config file's `headers:`).
    #[arg(long)]
    pub session_update: Option<String>,
}

/// Why no probe could be chosen.
#[derive(Debug, thiserror::Error)]
pub enum ChooseError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{file}: no probe named {name:?}")]
    NoSuchProbe { file: String, name: String },
    #[error("{file} has {count} probes ({names}): pick one with --probe")]
    Ambiguous {
        file: String,
        count: usize,
        names: String,
    },
    #[error("give --config FILE --probe NAME, or --target URL --audio FILE")]
    Nothing,
    #[error("--target needs --audio FILE")]
    NoAudio,
    #[error("reading the current directory: {0}")]
    Cwd(#[source] std::io::Error),
}

/// The probe to run: `name` (or the only probe) from the config file at `config`, else the
/// probe the ad hoc `flags` describe.
pub fn choose(
    config: Option<&Path>,
    name: Option<&str>,
    flags: &AdhocFlags,
) -> Result<ProbeSpec, ChooseError> {
    let Some(path) = config else {
        return from_flags(flags);
    };
    let cfg = super::load(path)?;
    let file = path.display().to_string();
    match name {
        Some(name) => cfg
            .probes
            .into_iter()
            .find(|p| p.name == name)
            .ok_or_else(|| ChooseError::NoSuchProbe {
                file,
                name: name.to_string(),
            }),
        None if cfg.probes.len() == 1 => Ok(cfg.probes.into_iter().next().expect("one probe")),
        None => Err(ChooseError::Ambiguous {
            file,
            count: cfg.probes.len(),
            names: probe_names(&cfg.probes),
        }),
    }
}

/// The probes' names, comma-separated, for messages.
pub fn probe_names(probes: &[ProbeSpec]) -> String {
    probes
        .iter()
        .map(|p| p.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn from_flags(flags: &AdhocFlags) -> Result<ProbeSpec, ChooseError> {
    let target = flags.target.clone().ok_or(ChooseError::Nothing)?;
    let audio = flags.audio.clone().ok_or(ChooseError::NoAudio)?;
    let cwd = std::env::current_dir().map_err(ChooseError::Cwd)?;
    let mut probe = serde_json::json!({
        "name": "adhoc",
        "target": target,
        "model": flags.model,
        "audio": absolute(&cwd, &audio),
        "chunk": flags.chunk,
        "pacing": flags.pacing,
        "interval": "1h",
        "timeout": "10m",
        "dialect": flags.dialect,
    });
    // Dialect-specific flags go through the validator too, which rejects them for vllm.
    if let Some(t) = &flags.turn_detection {
        probe["turn_detection"] = t.clone().into();
    }
    if let Some(r) = flags.sample_rate {
        probe["sample_rate"] = r.into();
    }
    if let Some(l) = &flags.language {
        probe["language"] = l.clone().into();
    }
    if let Some(u) = &flags.session_update {
        probe["session_update"] = u.clone().into();
    }
    if let Some(r) = &flags.reference {
        probe["reference"] = r.clone().into();
    }
    if let Some(var) = &flags.bearer_token_env {
        probe["bearer_token"] = serde_json::json!({ "env": var });
    }
    if let Some(ca) = &flags.ca_file {
        probe["tls"] = serde_json::json!({ "ca_file": absolute(&cwd, ca) });
    }
    // JSON is YAML: the flags go through the config validator like any file would.
    let doc = serde_json::json!({ "probes": [probe] }).to_string();
    let cfg = super::parse(&doc, &cwd.join("<command line>"))?;
    Ok(cfg.probes.into_iter().next().expect("one probe"))
}

fn absolute(cwd: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        cwd.join(p)
    }
}
