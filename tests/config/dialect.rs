//! The `dialect` key and its settings: URL rules per dialect, defaults, the provider attribute,
//! and the OpenAI settings as validated (their misuse is in `errors`' fixtures).

use std::path::Path;
use std::time::Duration;

use rtprobe::config::{
    Dialect, SessionUpdate, TurnDetection, parse_target, parse_target_for, parse_with_env,
};

#[test]
fn openai_urls_ask_for_a_transcription_session() {
    let ws = |u: &str| parse_target_for(u, Dialect::OpenAi).unwrap().ws_url;
    assert_eq!(
        ws("https://api.openai.com"),
        "wss://api.openai.com:443/v1/realtime?intent=transcription"
    );
    assert_eq!(
        ws("http://10.0.0.5:30000/base/"),
        "ws://10.0.0.5:30000/base/v1/realtime?intent=transcription"
    );
    // A query on the http URL (Azure's api-version and deployment) is kept after the intent.
    assert_eq!(
        ws("https://res.openai.azure.com/openai?api-version=2025-04-01-preview&deployment=d"),
        "wss://res.openai.azure.com:443/openai/v1/realtime?intent=transcription&api-version=2025-04-01-preview&deployment=d"
    );
    assert_eq!(
        ws("https://h/?intent=transcription&x=1"),
        "wss://h:443/v1/realtime?intent=transcription&x=1",
        "intent is not added twice"
    );
    // ws(s):// is the full endpoint, kept exactly (LocalAI wants ?model=, speaches too).
    assert_eq!(
        ws("ws://127.0.0.1:8080/v1/realtime?model=whisper"),
        "ws://127.0.0.1:8080/v1/realtime?model=whisper"
    );
    assert_eq!(
        ws("wss://res.openai.azure.com/openai/realtime?api-version=v&deployment=d"),
        "wss://res.openai.azure.com:443/openai/realtime?api-version=v&deployment=d"
    );
    assert_eq!(
        parse_target("https://api.openai.com").unwrap().ws_url,
        "wss://api.openai.com:443/v1/realtime",
        "vLLM URLs are unchanged"
    );
}

fn load(yaml: &str) -> rtprobe::config::Config {
    let origin = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/rtprobe.yaml");
    parse_with_env(yaml, &origin, &|_| None).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn defaults_set_the_dialect_and_probes_their_settings() {
    let cfg = load(
        r#"
defaults:
  dialect: openai
probes:
  - name: openai
    target: https://api.openai.com
    model: gpt-4o-transcribe
    audio: audio/mary-had-a-little-lamb.wav
    language: en
    prompt: nursery rhymes
  - name: sglang
    target: http://127.0.0.1:30000
    model: qwen3-asr
    audio: audio/mary-had-a-little-lamb.wav
    sample_rate: 16000
    turn_detection: server_vad
    vad_silence: 300ms
    provider: sglang
  - name: vllm
    dialect: vllm
    target: http://127.0.0.1:8000
    model: m
    audio: audio/mary-had-a-little-lamb.wav
"#,
    );
    let [a, b, c] = &cfg.probes[..] else {
        panic!("three probes")
    };
    assert_eq!(a.dialect.kind, Dialect::OpenAi);
    assert_eq!(a.dialect.sample_rate, 24_000);
    assert_eq!(a.dialect.provider, "openai");
    assert_eq!(a.dialect.language.as_deref(), Some("en"));
    assert_eq!(a.dialect.prompt.as_deref(), Some("nursery rhymes"));
    assert_eq!(a.dialect.turn_detection, TurnDetection::Manual);
    assert!(a.target.ws_url.ends_with("?intent=transcription"));
    assert_eq!(b.dialect.sample_rate, 16_000);
    assert_eq!(b.dialect.provider, "sglang");
    assert_eq!(
        b.dialect.turn_detection,
        TurnDetection::ServerVad {
            silence: Duration::from_millis(300)
        }
    );
    assert_eq!(c.dialect.kind, Dialect::Vllm);
    assert_eq!(c.dialect.sample_rate, 16_000);
    assert_eq!(c.dialect.provider, "vllm");
    assert_eq!(c.target.ws_url, "ws://127.0.0.1:8000/v1/realtime");
}

#[test]
fn shipped_dialect_examples_pass_check_config() {
    // The Azure key's Secret file cannot exist here: map it to a temporary file.
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("api-key");
    std::fs::write(&key_file, "azure-test-key\n").unwrap();
    let env = |name: &str| (name == "OPENAI_API_KEY").then(|| "test-key".to_string());
    for (file, provider) in [
        ("openai.yaml", "openai"),
        ("azure-openai.yaml", "azure.ai.openai"),
        ("sglang.yaml", "sglang"),
        ("speaches.yaml", "speaches"),
    ] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples")
            .join(file);
        let text = std::fs::read_to_string(&path).unwrap().replace(
            "/var/run/secrets/azure-openai/api-key",
            &key_file.display().to_string(),
        );
        let cfg = parse_with_env(&text, &path, &env).unwrap_or_else(|e| panic!("{file}: {e}"));
        for p in &cfg.probes {
            assert_eq!(p.dialect.kind, Dialect::OpenAi, "{file}");
            assert_eq!(p.dialect.provider, provider, "{file}");
        }
        if file == "azure-openai.yaml" {
            let p = &cfg.probes[0];
            assert!(
                p.target.ws_url.starts_with(
                    "wss://my-resource.openai.azure.com:443/openai/realtime?api-version="
                ),
                "{}",
                p.target.ws_url
            );
            assert_eq!(p.headers[0].0, "api-key");
            assert_eq!(
                p.headers[0].1.expose(),
                "azure-test-key",
                "the file's trailing newline is trimmed"
            );
            assert!(!format!("{:?}", p.headers).contains("azure-test-key"));
        }
    }
}

#[test]
fn utterances_as_a_count_or_a_list() {
    let cfg = load(
        r#"
probes:
  - name: repeat
    target: http://127.0.0.1:8000
    model: m
    audio: audio/mary-had-a-little-lamb.wav
    reference: Mary had a little lamb.
    utterances: 3
  - name: list
    dialect: openai
    target: http://127.0.0.1:8000
    model: m
    utterances:
      - audio: audio/mary-had-a-little-lamb.wav
        reference_file: audio/mary-had-a-little-lamb.txt
      - audio: audio/quick-brown-fox.flac
        reference: The quick brown fox jumps over the lazy dog.
  - name: single
    target: http://127.0.0.1:8000
    model: m
    audio: audio/quick-brown-fox.flac
"#,
    );
    let [repeat, list, single] = &cfg.probes[..] else {
        panic!("three probes")
    };
    let clips = repeat.clips();
    assert_eq!(clips.len(), 3);
    assert!(
        clips
            .iter()
            .all(|c| c.audio.ends_with("audio/mary-had-a-little-lamb.wav")
                && c.reference.as_deref() == Some("Mary had a little lamb."))
    );
    let clips = list.clips();
    assert_eq!(clips.len(), 2);
    assert_eq!(
        clips[0].reference.as_deref(),
        Some("Mary had a little lamb, its fleece was white as snow.")
    );
    assert!(clips[1].audio.ends_with("audio/quick-brown-fox.flac"));
    assert_eq!(
        list.audio, clips[0].audio,
        "the probe's clip is the first utterance's"
    );
    assert!(single.utterances.is_empty());
    assert_eq!(single.clips().len(), 1);
}

#[test]
fn beta_session_update_is_openai_only_and_24_khz() {
    let origin = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/rtprobe.yaml");
    let probe = |extra: &str| {
        format!(
            "probes:\n  - name: p\n    target: http://127.0.0.1:8000\n    model: m\n    audio: audio/mary-had-a-little-lamb.wav\n{extra}"
        )
    };
    let cfg = load(&probe("    dialect: openai\n    session_update: beta\n"));
    assert_eq!(cfg.probes[0].dialect.session_update, SessionUpdate::Beta);
    assert_eq!(cfg.probes[0].dialect.sample_rate, 24_000);
    let cfg = load(&probe("    dialect: openai\n"));
    assert_eq!(cfg.probes[0].dialect.session_update, SessionUpdate::Ga);
    for (extra, field, line, says) in [
        (
            "    session_update: beta\n",
            "probes[0].session_update",
            6,
            "session_update belongs to the openai dialect; this probe speaks vllm",
        ),
        (
            "    dialect: openai\n    sample_rate: 16000\n    session_update: beta\n",
            "probes[0].sample_rate",
            7,
            "sample_rate 16000 does not fit session_update: beta, whose pcm16 audio is 24000 Hz only",
        ),
        (
            "    dialect: openai\n    session_update: legacy\n",
            "probes[0].session_update",
            7,
            "unknown session_update \"legacy\": expected ga or beta",
        ),
    ] {
        let err = parse_with_env(&probe(extra), &origin, &|_| None).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(&format!("{field}: {says}")), "{text}");
        assert_eq!(err.line(), Some(line), "{text}");
    }
}
