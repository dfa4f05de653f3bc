//! Every invalid config in `tests/fixtures/config/invalid/` fails with exactly the message in
//! its sibling `.err` file: the file, the field path, the line and column, and what is allowed.
//! Adding a case is adding two files. The environment is fixed (only `TENANT` is set) so the
//! messages do not depend on the machine.

use std::path::{Path, PathBuf};

use rtprobe::config::{ConfigError, parse_with_env};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/config/invalid")
}

fn env(name: &str) -> Option<String> {
    (name == "TENANT").then(|| "acme".to_string())
}

fn parse_fixture(path: &Path) -> Result<rtprobe::config::Config, ConfigError> {
    let text = std::fs::read_to_string(path).expect("fixture");
    // cargo runs integration tests from the package root: a relative origin keeps machine
    // paths out of the messages, exactly as a user running `rtprobe check-config` from the
    // repository would see them.
    let relative = path
        .strip_prefix(env!("CARGO_MANIFEST_DIR"))
        .expect("inside the repo");
    parse_with_env(&text, relative, &env)
}

#[test]
fn every_invalid_fixture_fails_with_its_exact_message() {
    let cases = crate::support::files_in(&dir(), "yaml");
    assert!(cases.len() >= 20, "only {} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let want = std::fs::read_to_string(case.with_extension("err"))
            .unwrap_or_else(|_| panic!("{} has no .err file", case.display()));
        match parse_fixture(case) {
            Ok(_) => failures.push(format!("{}: accepted", case.display())),
            Err(e) if e.to_string() != want.trim() => failures.push(format!(
                "{}:\n  want: {}\n  got:  {e}",
                case.display(),
                want.trim()
            )),
            Err(_) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn semantic_errors_point_at_the_offending_line() {
    for (case, line) in [
        ("duplicate-name", 6),
        ("timeout-longer-than-interval", 7),
        ("jitter-out-of-range", 6),
        ("bad-label-name", 7),
    ] {
        let err = parse_fixture(&dir().join(format!("{case}.yaml"))).unwrap_err();
        assert_eq!(err.line(), Some(line), "{case}: {err}");
    }
}

#[test]
fn secrets_never_reach_error_messages() {
    let text = "probes:\n  - name: a\n    target: http://127.0.0.1:8000\n    model: m\n    audio: missing.wav\n    bearer_token: { env: TOKEN }\n";
    let env = |k: &str| (k == "TOKEN").then(|| "sk-planted-secret".to_string());
    let err = parse_with_env(text, Path::new("x.yaml"), &env)
        .unwrap_err()
        .to_string();
    assert!(!err.contains("sk-planted-secret"), "{err}");
}

#[test]
fn targets_without_a_usable_host_are_rejected() {
    for (target, ok) in [
        ("http://]?", false),
        ("http://[]:80", false),
        ("http://:8000", false),
        ("http://a b:80", false),
        ("ws://[::1:80/x", false),
        ("http://127.0.0.1:8000", true),
        ("https://[::1]:8443/base", true),
        ("ws://vllm.internal:80/v1/realtime?x=1", true),
    ] {
        let verdict = if ok { "rejected" } else { "accepted" };
        assert_eq!(
            rtprobe::config::parse_target(target).is_ok(),
            ok,
            "{target:?} {verdict}"
        );
    }
}

#[test]
fn max_wer_comes_from_defaults_unless_the_probe_sets_it() {
    let clip = crate::support::clip();
    let text = format!(
        "defaults:\n  max_wer: 0.25\nprobes:\n  - {{name: a, target: 'http://127.0.0.1:8000', model: m, audio: '{c}', reference: x}}\n  - {{name: b, target: 'http://127.0.0.1:8000', model: m, audio: '{c}', reference: x, max_wer: 0.5}}\n",
        c = clip.display()
    );
    let cfg = parse_with_env(&text, Path::new("x.yaml"), &env).expect("valid");
    let got: Vec<Option<f64>> = cfg.probes.iter().map(|p| p.max_wer).collect();
    assert_eq!(got, vec![Some(0.25), Some(0.5)]);
}
