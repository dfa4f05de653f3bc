//! The effective config as shown by `GET /config`: the validated `Config` serialized, with
//! every secret replaced by where it comes from. `Secret` cannot be serialized and header
//! values are skipped by the model, so this only adds back what is safe to show: the bearer
//! token's source and the names (never values) of extra headers.

use serde_json::{Value, json};

use crate::config::Config;
use crate::http::ConfigFormat;

/// Why the config could not be shown (a serializer refused it).
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    Yaml(#[from] serde_norway::Error),
}

/// The redacted view as a JSON value.
pub fn redacted(config: &Config) -> Result<Value, ViewError> {
    let mut v = serde_json::to_value(config)?;
    if let Some(probes) = v.get_mut("probes").and_then(Value::as_array_mut) {
        for (out, spec) in probes.iter_mut().zip(&config.probes) {
            let Some(obj) = out.as_object_mut() else {
                continue;
            };
            let names: Vec<&str> = spec.headers.iter().map(|(k, _)| k.as_str()).collect();
            obj.insert("header_names".into(), json!(names));
            let bearer = match &spec.bearer {
                Some(b) => json!({ "source": b.source, "value": "<redacted>" }),
                None => Value::Null,
            };
            obj.insert("bearer".into(), bearer);
        }
    }
    if let (Some(otlp), Some(obj)) = (
        &config.otlp,
        v.get_mut("otlp").and_then(Value::as_object_mut),
    ) {
        let names: Vec<&str> = otlp.headers.iter().map(|(k, _)| k.as_str()).collect();
        obj.insert("header_names".into(), json!(names));
    }
    Ok(v)
}

/// The redacted view rendered as YAML or pretty JSON.
pub fn render(config: &Config, format: ConfigFormat) -> Result<String, ViewError> {
    let v = redacted(config)?;
    Ok(match format {
        ConfigFormat::Json => serde_json::to_string_pretty(&v)?,
        ConfigFormat::Yaml => serde_norway::to_string(&v)?,
    })
}
