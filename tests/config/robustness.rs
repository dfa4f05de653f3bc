//! Parsers never panic on hostile input: seeded random strings and mutations of valid inputs
//! (byte flips, truncations, duplications, splices) through the server-event parser, the config
//! loader, the duration parser and the URL normaliser. Seeded, so a failure reproduces; a few
//! thousand cases each by default, fast enough for every CI run. A long run:
//! `RTPROBE_FUZZ_CASES=1000000 RTPROBE_FUZZ_SEED=7 cargo test --release --test config robustness::`.

use std::path::Path;

use rtprobe::config::{parse_duration, parse_target, parse_with_env};
use rtprobe::probe::events::parse;
use rtprobe::rng::SplitMix64;

fn cases() -> usize {
    std::env::var("RTPROBE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000)
}

/// Per-test seed, offset by `RTPROBE_FUZZ_SEED` so long runs explore new inputs.
fn rng(test: u64) -> SplitMix64 {
    let base: u64 = std::env::var("RTPROBE_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    SplitMix64::new(base.wrapping_mul(1000) + test)
}

const EVENTS: [&str; 6] = [
    r#"{"type":"session.created","id":"sess-5f63bce265104dde","created":1795377832}"#,
    r#"{"type":"transcription.delta","delta":" Mary"}"#,
    r#"{"type":"transcription.delta","delta":""}"#,
    r#"{"type":"transcription.done","text":" Mary had","usage":{"prompt_tokens":39,"total_tokens":150,"completion_tokens":111,"prompt_tokens_details":null,"completion_tokens_details":null}}"#,
    r#"{"type":"error","error":"Invalid audio data","code":"invalid_audio"}"#,
    r#"{"type":"error","error":{"type":"invalid_request_error","code":"x","message":"m","param":null}}"#,
];

const ALPHABET: &[u8] = b"{}[]\":,.-_ 0123456789eE+truefalsnl\\u00\n\tabcxyz:/@?#%${}";

fn random_text(rng: &mut SplitMix64, max: usize) -> String {
    let len = (rng.next_u64() as usize) % max;
    (0..len)
        .map(|_| ALPHABET[(rng.next_u64() as usize) % ALPHABET.len()] as char)
        .collect()
}

/// One random edit of `s`, kept valid UTF-8 (the parsers take `&str`).
fn mutate(rng: &mut SplitMix64, s: &str) -> String {
    let mut b = s.as_bytes().to_vec();
    let n = b.len().max(1);
    match rng.next_u64() % 5 {
        0 if !b.is_empty() => {
            let i = (rng.next_u64() as usize) % b.len();
            b[i] = ALPHABET[(rng.next_u64() as usize) % ALPHABET.len()];
        }
        1 => b.truncate((rng.next_u64() as usize) % n),
        2 if !b.is_empty() => {
            let i = (rng.next_u64() as usize) % b.len();
            let j = i + (rng.next_u64() as usize) % (b.len() - i);
            let piece = b[i..j].to_vec();
            b.splice(j..j, piece);
        }
        3 => {
            let i = (rng.next_u64() as usize) % n;
            let extra = random_text(rng, 12);
            b.splice(i.min(b.len())..i.min(b.len()), extra.bytes());
        }
        _ => {
            if !b.is_empty() {
                let i = (rng.next_u64() as usize) % b.len();
                b.remove(i);
            }
        }
    }
    String::from_utf8_lossy(&b).into_owned()
}

#[test]
fn event_parser_never_panics() {
    let mut rng = rng(1);
    for _ in 0..cases() {
        let _ = parse(&random_text(&mut rng, 200));
        let mut s = EVENTS[(rng.next_u64() as usize) % EVENTS.len()].to_string();
        for _ in 0..1 + rng.next_u64() % 4 {
            s = mutate(&mut rng, &s);
        }
        let _ = parse(&s);
    }
}

#[test]
fn config_loader_never_panics() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let seeds: Vec<String> = [
        "examples/rtprobe-demo.yaml",
        "examples/vllm-local.yaml",
        "examples/vllm-remote-wss.yaml",
    ]
    .iter()
    .map(|p| std::fs::read_to_string(root.join(p)).unwrap())
    .collect();
    let origin = root.join("examples/fuzz.yaml");
    let env = |k: &str| (k == "TENANT").then(|| "x".to_string());
    let mut rng = rng(2);
    let mut accepted = 0;
    for _ in 0..cases() / 3 {
        let mut s = seeds[(rng.next_u64() as usize) % seeds.len()].clone();
        for _ in 0..1 + rng.next_u64() % 3 {
            s = mutate(&mut rng, &s);
        }
        if parse_with_env(&s, &origin, &env).is_ok() {
            accepted += 1;
        }
        let _ = parse_with_env(&random_text(&mut rng, 300), &origin, &env);
    }
    // Some single edits (in comments, say) leave a valid file: the mutations are not all fatal.
    assert!(accepted > 0);
}

#[test]
fn duration_and_url_parsers_never_panic() {
    let mut rng = rng(3);
    for _ in 0..cases() {
        let _ = parse_duration(&mutate(&mut rng, "1m30.5s"));
        let _ = parse_duration(&random_text(&mut rng, 20));
        let _ = parse_target(&mutate(&mut rng, "https://[::1]:8443/base/?x=1"));
        let _ = parse_target(&random_text(&mut rng, 40));
    }
}
