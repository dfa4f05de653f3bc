//! The OTel resource: who is pushing. In a fleet every sidecar runs the same probe names against
//! `127.0.0.1`, so without an instance identity fifty sidecars push identical series that a
//! backend merges into one. rtprobe therefore sets `service.instance.id` by default (the pod's
//! host name, which Kubernetes sets to the pod name), and lets the standard variables win:
//!
//! 1. rtprobe's defaults: `service.name=rtprobe`, `service.version`, `service.instance.id` from
//!    `HOSTNAME`, else the kernel's host name;
//! 2. `OTEL_RESOURCE_ATTRIBUTES` (`k=v,k2=v2`, parsed by the SDK's detector) overrides any of
//!    them and adds more (`k8s.pod.name`, `k8s.namespace.name`, `k8s.node.name` in the shipped
//!    manifests);
//! 3. `OTEL_SERVICE_NAME` overrides `service.name`, as the OTel spec orders them.
//!
//! Plus the SDK's `telemetry.sdk.*` attributes. The Prometheus side needs none of this: the
//! scraper's `instance` label identifies the replica.

use opentelemetry::KeyValue;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::resource::{
    EnvResourceDetector, ResourceDetector, TelemetryResourceDetector,
};

const SERVICE_NAME: &str = "service.name";
const SERVICE_VERSION: &str = "service.version";
const SERVICE_INSTANCE_ID: &str = "service.instance.id";

/// The resource of this process (reads the environment and the host name).
pub(crate) fn resource() -> Resource {
    let non_empty = |v: String| {
        let v = v.trim().to_owned();
        (!v.is_empty()).then_some(v)
    };
    let host = std::env::var("HOSTNAME")
        .ok()
        .and_then(non_empty)
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .and_then(non_empty)
        });
    let service_name = std::env::var("OTEL_SERVICE_NAME").ok().and_then(non_empty);
    compose(
        host.as_deref(),
        EnvResourceDetector::new().detect(),
        service_name.as_deref(),
    )
}

/// Layers, later wins: rtprobe's defaults, the SDK's telemetry attributes, `from_env`
/// (`OTEL_RESOURCE_ATTRIBUTES`), then `service_name` (`OTEL_SERVICE_NAME`).
fn compose(host: Option<&str>, from_env: Resource, service_name: Option<&str>) -> Resource {
    let mut defaults = vec![
        KeyValue::new(SERVICE_NAME, "rtprobe"),
        KeyValue::new(SERVICE_VERSION, env!("CARGO_PKG_VERSION")),
    ];
    if let Some(host) = host {
        defaults.push(KeyValue::new(SERVICE_INSTANCE_ID, host.to_owned()));
    }
    let mut builder = Resource::builder_empty()
        .with_attributes(defaults)
        .with_detector(Box::new(TelemetryResourceDetector))
        .with_attributes(
            from_env
                .iter()
                .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
        );
    if let Some(name) = service_name {
        builder = builder.with_service_name(name.to_owned());
    }
    builder.build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::Key;

    fn get(r: &Resource, key: &'static str) -> Option<String> {
        r.get(&Key::from_static_str(key)).map(|v| v.to_string())
    }

    fn env(kvs: &[(&'static str, &'static str)]) -> Resource {
        Resource::builder_empty()
            .with_attributes(kvs.iter().map(|(k, v)| KeyValue::new(*k, *v)))
            .build()
    }

    #[test]
    fn defaults_name_the_service_and_the_instance() {
        let r = compose(Some("vllm-7f9c-0"), env(&[]), None);
        assert_eq!(get(&r, SERVICE_NAME).as_deref(), Some("rtprobe"));
        assert_eq!(get(&r, SERVICE_INSTANCE_ID).as_deref(), Some("vllm-7f9c-0"));
        assert_eq!(
            get(&r, SERVICE_VERSION).as_deref(),
            Some(env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(
            get(&r, "telemetry.sdk.name").as_deref(),
            Some("opentelemetry")
        );
        // No host name: no made-up instance id.
        let r = compose(None, env(&[]), None);
        assert_eq!(get(&r, SERVICE_INSTANCE_ID), None);
    }

    #[test]
    fn the_environment_wins_over_the_defaults() {
        let from_env = env(&[
            (SERVICE_NAME, "from-attributes"),
            (SERVICE_INSTANCE_ID, "replica-3"),
            ("k8s.pod.name", "vllm-0"),
            ("k8s.namespace.name", "speech"),
        ]);
        let r = compose(Some("host"), from_env.clone(), None);
        assert_eq!(get(&r, SERVICE_NAME).as_deref(), Some("from-attributes"));
        assert_eq!(get(&r, SERVICE_INSTANCE_ID).as_deref(), Some("replica-3"));
        assert_eq!(get(&r, "k8s.pod.name").as_deref(), Some("vllm-0"));
        assert_eq!(get(&r, "k8s.namespace.name").as_deref(), Some("speech"));
        // OTEL_SERVICE_NAME beats service.name in OTEL_RESOURCE_ATTRIBUTES.
        let r = compose(Some("host"), from_env, Some("canary"));
        assert_eq!(get(&r, SERVICE_NAME).as_deref(), Some("canary"));
        assert_eq!(get(&r, SERVICE_INSTANCE_ID).as_deref(), Some("replica-3"));
    }
}
