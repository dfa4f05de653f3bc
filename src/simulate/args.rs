//! `rtprobe simulate` flags, turned into a `SimConfig`. The API key is taken from an
//! environment variable named on the command line, so it never shows in `ps` or shell history.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::{Dialect, Secret};

use super::SimError;
use super::config::{Fault, SimConfig, TlsFiles};

#[derive(Debug, Clone, clap::Args)]
pub struct SimArgs {
    /// Address to listen on (HTTP and WebSocket on the same port).
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub listen: SocketAddr,
    /// The served model name `session.update` must use (`""` also passes).
    #[arg(long, default_value = "demo-realtime")]
    pub model: String,
    /// The transcript emitted word by word.
    #[arg(
        long,
        default_value = "Mary had a little lamb, its fleece was white as snow."
    )]
    pub transcript: String,
    /// Name of an environment variable holding the API key; when set, `/v1/*` needs
    /// `Authorization: Bearer <key>`.
    #[arg(long, value_name = "VAR")]
    pub api_key_env: Option<String>,
    /// Delay before `session.created`.
    #[arg(long, default_value = "0ms", value_parser = parse_duration)]
    pub session_created_delay: Duration,
    /// First text after the receipt of the first audio chunk.
    #[arg(long, default_value = "300ms", value_parser = parse_duration)]
    pub first_text_delay: Duration,
    /// Time between consecutive tokens (deltas, empty ones included).
    #[arg(long, default_value = "80ms", value_parser = parse_duration)]
    pub token_interval: Duration,
    /// Empty deltas between two words (Voxtral-like pad tokens).
    #[arg(long, default_value_t = 0)]
    pub empty_deltas_per_word: u32,
    /// Words held back until the final commit.
    #[arg(long, default_value_t = 1)]
    pub hold_last_words: usize,
    /// Held words come this long after the final commit (= Time To Last Round Trip).
    #[arg(long, default_value = "120ms", value_parser = parse_duration)]
    pub tail_delay: Duration,
    /// `transcription.done` this long after the last delta.
    #[arg(long, default_value = "40ms", value_parser = parse_duration)]
    pub done_delay: Duration,
    /// Extra first-text and tail delay per open realtime session (a server slowing down with
    /// concurrency): with 8 sessions open and 5ms, first text and RTT come 40 ms later.
    #[arg(long, default_value = "0ms", value_parser = parse_duration)]
    pub load_delay_per_stream: Duration,
    /// Uniform ± jitter added to every emission.
    #[arg(long, default_value = "0ms", value_parser = parse_duration)]
    pub jitter: Duration,
    /// Seed of the jitter and session-id generator.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// `usage.prompt_tokens` reported in `done`.
    #[arg(long, default_value_t = 39)]
    pub prompt_tokens: u32,
    /// Fault to inject; repeat to cycle faults over successive sessions. One of: none,
    /// error_mid_stream, never_done, done_only, drop_tcp, slow_session, reject_model,
    /// close_1011, close_1012, oversized_frame, malformed_json, binary_frame,
    /// unknown_event_flood, http_status:CODE, silent, truncate.
    #[arg(long = "fault", value_name = "NAME")]
    pub faults: Vec<Fault>,
    /// k for the faults that fire "after k words".
    #[arg(long, default_value_t = 2)]
    pub fault_after_words: usize,
    /// The 0-based utterance of a connection from which mid-stream faults fire.
    #[arg(long, default_value_t = 0)]
    pub fault_from_utterance: u32,
    /// `session.created` delay under the slow_session fault.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub slow_session_delay: Duration,
    /// Size of the frame sent under the oversized_frame fault.
    #[arg(long, default_value_t = 20 * 1024 * 1024)]
    pub oversized_frame_bytes: usize,
    /// Unknown events sent under the unknown_event_flood fault.
    #[arg(long, default_value_t = 1000)]
    pub flood_events: usize,
    /// Keepalive ping period (close 1011 when a ping gets no pong by the next); 0 disables.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub keepalive: Duration,
    /// Keep the ground-truth records of the last N connections and serve them as JSON at
    /// `GET /debug/records` (for accuracy benchmarks in another process); 0 keeps none.
    #[arg(long, default_value_t = 0)]
    pub records: usize,
    /// Wire dialect served: `vllm` (vLLM 0.33's own) or `openai` (OpenAI GA transcription
    /// sessions: `?intent=transcription`, `session.update{session:{type:"transcription"}}`).
    #[arg(long, default_value = "vllm", value_parser = parse_dialect)]
    pub dialect: Dialect,
    /// OpenAI dialect: an `audio/pcm` rate `session.update` may declare (repeatable; OpenAI
    /// itself takes 24000 only).
    #[arg(long = "openai-rate", value_name = "HZ", default_values_t = [24_000u32])]
    pub openai_rates: Vec<u32>,
    /// PEM certificate chain for wss:// (with --tls-key).
    #[arg(long, value_name = "PEM")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for wss:// (with --tls-cert).
    #[arg(long, value_name = "PEM")]
    pub tls_key: Option<PathBuf>,
}

impl SimArgs {
    /// Build the configuration; reads the API key from the named variable. Records are off
    /// unless `--records` asks for them: a long-running demo server must not grow.
    pub fn into_config(self) -> Result<SimConfig, SimError> {
        let api_key = match self.api_key_env {
            None => None,
            Some(name) => match std::env::var(&name) {
                Ok(v) if !v.is_empty() => Some(Secret::new(v)),
                _ => return Err(SimError::ApiKeyEnv { name }),
            },
        };
        let tls = match (self.tls_cert, self.tls_key) {
            (Some(cert_pem), Some(key_pem)) => Some(TlsFiles { cert_pem, key_pem }),
            (None, None) => None,
            _ => return Err(SimError::TlsPair),
        };
        let (fault, faults) = match self.faults.as_slice() {
            [] => (Fault::None, Vec::new()),
            [one] => (*one, Vec::new()),
            many => (Fault::None, many.to_vec()),
        };
        Ok(SimConfig {
            model: self.model,
            transcript: self.transcript,
            api_key,
            session_created_delay: self.session_created_delay,
            first_text_delay: self.first_text_delay,
            token_interval: self.token_interval,
            empty_deltas_per_word: self.empty_deltas_per_word,
            hold_last_words: self.hold_last_words,
            tail_delay: self.tail_delay,
            done_delay: self.done_delay,
            jitter: self.jitter,
            load_delay_per_stream: self.load_delay_per_stream,
            seed: self.seed,
            prompt_tokens: self.prompt_tokens,
            fault,
            faults,
            fault_after_words: self.fault_after_words,
            fault_from_utterance: self.fault_from_utterance,
            slow_session_delay: self.slow_session_delay,
            oversized_frame_bytes: self.oversized_frame_bytes,
            flood_events: self.flood_events,
            tls,
            keepalive: Some(self.keepalive).filter(|k| !k.is_zero()),
            max_records: self.records,
            dialect: self.dialect,
            openai_rates: self.openai_rates,
            ..SimConfig::default()
        })
    }
}

/// `--dialect`, with the config's keywords and message.
fn parse_dialect(text: &str) -> Result<Dialect, String> {
    use crate::config::validate::{DIALECTS, keyword};
    keyword("dialect", Some(text), Dialect::Vllm, DIALECTS)
}

/// The config grammar (`100ms`, `1.5s`, `1m30s`), plus a bare `0` (e.g. `--keepalive 0` turns
/// the keepalive off), which a config rejects as ambiguous.
fn parse_duration(text: &str) -> Result<Duration, String> {
    if text.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    crate::config::parse_duration(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        sim: SimArgs,
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        for bad in ["", "10", "10 parsecs", "ms", "1x"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn flags_to_config() {
        let cli = Cli::try_parse_from([
            "sim",
            "--first-text-delay",
            "250ms",
            "--token-interval",
            "40ms",
            "--load-delay-per-stream",
            "5ms",
            "--fault",
            "drop_tcp",
            "--fault",
            "http_status:503",
        ])
        .unwrap();
        let cfg = cli.sim.into_config().unwrap();
        assert_eq!(cfg.first_text_delay, Duration::from_millis(250));
        assert_eq!(cfg.token_interval, Duration::from_millis(40));
        assert_eq!(cfg.load_delay_per_stream, Duration::from_millis(5));
        assert_eq!(cfg.faults, vec![Fault::DropTcp, Fault::HttpStatus(503)]);
        assert_eq!(cfg.max_records, 0);
        assert_eq!(cfg.keepalive, Some(Duration::from_secs(20)));
        let kept = Cli::try_parse_from(["sim", "--records", "300"]).unwrap();
        assert_eq!(kept.sim.into_config().unwrap().max_records, 300);
        let off = Cli::try_parse_from(["sim", "--keepalive", "0"]).unwrap();
        assert_eq!(off.sim.into_config().unwrap().keepalive, None);
        assert!(Cli::try_parse_from(["sim", "--fault", "nope"]).is_err());

        let one = Cli::try_parse_from(["sim", "--fault", "silent"]).unwrap();
        assert_eq!(one.sim.into_config().unwrap().fault, Fault::Silent);

        let key =
            Cli::try_parse_from(["sim", "--api-key-env", "RTPROBE_SIM_TEST_UNSET_VAR"]).unwrap();
        let err = key.sim.into_config().unwrap_err().to_string();
        assert!(err.contains("RTPROBE_SIM_TEST_UNSET_VAR"), "{err}");

        let half = Cli::try_parse_from(["sim", "--tls-cert", "a.pem"]).unwrap();
        assert!(matches!(half.sim.into_config(), Err(SimError::TlsPair)));
    }

    #[test]
    fn dialect_flags() {
        let d = Cli::try_parse_from(["sim"])
            .unwrap()
            .sim
            .into_config()
            .unwrap();
        assert_eq!((d.dialect, d.openai_rates), (Dialect::Vllm, vec![24_000]));
        let o = Cli::try_parse_from([
            "sim",
            "--dialect",
            "openai",
            "--openai-rate",
            "16000",
            "--openai-rate",
            "24000",
            "--fault-from-utterance",
            "1",
        ])
        .unwrap()
        .sim
        .into_config()
        .unwrap();
        assert_eq!(o.dialect, Dialect::OpenAi);
        assert_eq!(o.openai_rates, vec![16_000, 24_000]);
        assert_eq!(o.fault_from_utterance, 1);
        assert!(Cli::try_parse_from(["sim", "--dialect", "grpc"]).is_err());
    }
}
