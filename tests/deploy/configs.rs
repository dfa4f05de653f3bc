//! The rtprobe configs shipped with the deployment files (the sidecar and standalone
//! ConfigMaps, examples/vllm-remote-wss.yaml) pass `rtprobe check-config`, and the image
//! carries what they reference. In-cluster paths are mapped to the repository (audio clips)
//! or to a temporary token file, since neither exists outside a pod.

use crate::support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::*;

const IMAGE_AUDIO: &str = "/usr/share/rtprobe/audio/";
const TOKEN_FILE: &str = "/var/run/secrets/rtprobe/token";

/// The rtprobe.yaml of the `rtprobe-config` ConfigMap a kustomization renders.
fn configmap_config(dir: &str) -> Option<String> {
    let kubectl = require_tool("kubectl", "kubectl with built-in kustomize")?;
    let rendered = run_ok(
        Command::new(kubectl).arg("kustomize").arg(repo().join(dir)),
        Duration::from_secs(120),
    );
    let cm = yaml_docs(&rendered)
        .into_iter()
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == "rtprobe-config")
        .expect("rtprobe-config ConfigMap");
    Some(
        cm["data"]["rtprobe.yaml"]
            .as_str()
            .expect("rtprobe.yaml")
            .to_string(),
    )
}

/// Run `rtprobe check-config` on `text` with in-pod paths mapped to local files.
fn check_config(name: &str, text: &str, base_dir: &Path) {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = dir.path().join("token");
    std::fs::write(&token, "test-token\n").expect("token");
    let audio_dir = repo().join("examples/audio");
    let local = text
        .replace(IMAGE_AUDIO, &format!("{}/", audio_dir.display()))
        .replace(TOKEN_FILE, &token.display().to_string())
        .replace(
            "audio: audio/",
            &format!("audio: {}/audio/", base_dir.display()),
        )
        .lines()
        // A private CA file cannot exist here; the rest of the tls block is still checked.
        .filter(|l| !l.trim_start().starts_with("ca_file:"))
        .collect::<Vec<_>>()
        .join("\n");
    let path = dir.path().join(format!("{name}.yaml"));
    std::fs::write(&path, local).expect("config");
    let out = run_bounded(
        Command::new(env!("CARGO_BIN_EXE_rtprobe"))
            .arg("check-config")
            .arg(&path),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "{name}: rtprobe check-config rejects it:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every clip a shipped config names under the image's audio directory is in examples/audio
/// (the Dockerfile copies that directory there).
fn assert_clips_ship(text: &str) {
    for (i, _) in text.match_indices(IMAGE_AUDIO) {
        let rest = &text[i + IMAGE_AUDIO.len()..];
        let file = rest.split_whitespace().next().expect("file name");
        let local = repo().join("examples/audio").join(file);
        assert!(
            local.is_file(),
            "{IMAGE_AUDIO}{file} is not in examples/audio/"
        );
    }
}

/// The config in the ConfigMap the kustomization in `dir` renders passes `check-config`, and
/// the clips it names ship in the image.
fn configmap_is_valid(name: &str, dir: &str) {
    let Some(text) = configmap_config(dir) else {
        return;
    };
    assert_clips_ship(&text);
    check_config(name, &text, &repo().join("examples"));
}

#[test]
fn sidecar_configmap_config_is_valid() {
    configmap_is_valid("sidecar", "deploy/kubernetes/base");
}

#[test]
fn standalone_configmap_config_is_valid() {
    configmap_is_valid("standalone", "deploy/kubernetes/overlays/standalone");
}

#[test]
fn remote_wss_example_is_valid() {
    let path = repo().join("examples/vllm-remote-wss.yaml");
    let text = std::fs::read_to_string(&path).expect("example");
    assert!(text.contains("target: wss://"));
    assert!(text.contains(&format!("file: {TOKEN_FILE}")));
    check_config("vllm-remote-wss", &text, &repo().join("examples"));
}

#[test]
fn dockerfile_builds_locked_and_runs_unprivileged_without_healthcheck() {
    let text = std::fs::read_to_string(repo().join("Dockerfile")).expect("Dockerfile");
    let instr: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let froms: Vec<&&str> = instr.iter().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(froms.len(), 2, "multi-stage: {froms:?}");
    assert!(froms[0].starts_with("FROM rust:1.95-slim-bookworm AS build"));
    assert!(froms[1].starts_with("FROM gcr.io/distroless/cc-debian12:nonroot"));
    assert!(text.contains("cargo build --release --locked"));
    assert!(!instr.iter().any(|l| l.starts_with("HEALTHCHECK")));
    assert!(instr.contains(&"USER 65532:65532"), "non-root user");
    assert!(instr.contains(&"ENTRYPOINT [\"rtprobe\"]"));
    assert!(instr.contains(&"CMD [\"serve\", \"--config\", \"/etc/rtprobe/rtprobe.yaml\"]"));
    assert!(instr.contains(&"COPY examples/audio/ /usr/share/rtprobe/audio/"));
    assert!(
        repo().join("examples/audio").is_dir(),
        "examples/audio/ exists for the COPY"
    );
    let ignore = std::fs::read_to_string(repo().join(".dockerignore")).expect(".dockerignore");
    for must_keep in ["src", "Cargo.toml", "Cargo.lock", "examples"] {
        assert!(
            !ignore
                .lines()
                .any(|l| l.trim().trim_end_matches('/') == must_keep),
            ".dockerignore drops {must_keep}"
        );
    }
    assert!(ignore.lines().any(|l| l.trim() == "target/"));
}

/// The example Collector config wires an OTLP receiver (gRPC and HTTP) to the prometheus and
/// debug exporters, and names nothing in its pipeline that it does not define.
#[test]
fn otel_collector_example_is_wired() {
    let doc = read_yaml(&repo().join("examples/otel-collector.yaml"));
    let protocols = &doc["receivers"]["otlp"]["protocols"];
    assert_eq!(protocols["grpc"]["endpoint"], "0.0.0.0:4317");
    assert_eq!(protocols["http"]["endpoint"], "0.0.0.0:4318");
    let pipeline = &doc["service"]["pipelines"]["metrics"];
    for (kind, section) in [
        ("receivers", "receivers"),
        ("processors", "processors"),
        ("exporters", "exporters"),
    ] {
        for name in pipeline[kind].as_array().expect("pipeline list") {
            let name = name.as_str().expect("name");
            assert!(
                doc[section].get(name).is_some(),
                "pipeline names {kind} {name}, which is not defined"
            );
        }
    }
    let exporters: Vec<&str> = pipeline["exporters"]
        .as_array()
        .expect("exporters")
        .iter()
        .filter_map(|e| e.as_str())
        .collect();
    assert_eq!(exporters, ["prometheus", "debug"]);
}
