//! Raw config → validated `Config`: every semantic rule lives here, once. Each error names the
//! field path, its line and column, and what is allowed. Secrets are read (env or file) and
//! wrapped in `Secret` here and nowhere else.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::locate::{Locator, Pos};
use crate::config::model::*;
use crate::config::raw::*;

/// Looks up an environment variable (injectable so tests need not touch the process env).
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// A semantic error before the file name is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub field: String,
    pub message: String,
    pub pos: Option<Pos>,
}

type Res<T> = Result<T, Problem>;

struct Ctx<'a> {
    loc: Locator<'a>,
    dir: PathBuf,
    env: EnvLookup<'a>,
    /// Clip durations by (file, chunk), so probes sharing a clip decode it once per load.
    clips: RefCell<HashMap<(PathBuf, Duration, u32), Duration>>,
}

impl Ctx<'_> {
    fn probe_err(&self, i: usize, path: &[&str], message: impl Into<String>) -> Problem {
        Problem {
            field: field_name(&format!("probes[{i}]"), path),
            message: message.into(),
            pos: self.loc.probe(i, path),
        }
    }

    fn top_err(&self, section: &str, path: &[&str], message: impl Into<String>) -> Problem {
        Problem {
            field: field_name(section, path),
            message: message.into(),
            pos: self.loc.top(section, path),
        }
    }

    /// Prepares the clip exactly as `serve` will (`audio::prepare_at`, the same decoder,
    /// resampler and chunker, at the probe's rate), so a file `serve` could not use fails here,
    /// and returns the length of audio a run sends.
    fn clip(&self, audio: &Path, chunk: Duration, rate: u32) -> Result<Duration, String> {
        let key = (audio.to_path_buf(), chunk, rate);
        if let Some(d) = self.clips.borrow().get(&key) {
            return Ok(*d);
        }
        let prepared = crate::audio::prepare_at(audio, chunk, rate)
            .map_err(|e| format!("cannot use {}: {}", e.file, e.reason))?;
        let d = Duration::from_secs_f64(prepared.total_samples as f64 / f64::from(rate));
        self.clips.borrow_mut().insert(key, d);
        Ok(d)
    }

    fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.dir.join(p)
        }
    }
}

fn field_name(prefix: &str, path: &[&str]) -> String {
    std::iter::once(prefix)
        .chain(path.iter().copied())
        .collect::<Vec<_>>()
        .join(".")
}

/// `${VAR}` and `${VAR:-default}` expansion. `$$` is a literal `$`.
pub fn expand_env(value: &str, env: EnvLookup<'_>) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(a) = after.strip_prefix('$') {
            out.push('$');
            rest = a;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .ok_or_else(|| "unterminated ${…}".to_string())?;
            let expr = &body[..end];
            let (name, default) = match expr.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (expr, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("invalid variable name {name:?} in ${{…}}"));
            }
            match (env(name), default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => {
                    return Err(format!(
                        "environment variable {name} is not set (use ${{{name}:-default}} for a fallback)"
                    ));
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn valid_probe_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Label names that rtprobe or Prometheus own.
const RESERVED_LABELS: [&str; 13] = [
    "le",
    "rtprobe_utterance",
    "quantile",
    "job",
    "instance",
    "rtprobe_probe",
    "outcome",
    "error_type",
    "phase",
    "server_address",
    "server_port",
    "gen_ai_request_model",
    "gen_ai_token_type",
];

fn check_label(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let ok_first = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !ok_first || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!(
            "invalid label name {name:?}: expected [a-zA-Z_][a-zA-Z0-9_]*"
        ));
    }
    if name.starts_with("__") || RESERVED_LABELS.contains(&name) || name.starts_with("gen_ai_") {
        return Err(format!(
            "label name {name:?} is reserved (rtprobe or Prometheus sets it)"
        ));
    }
    Ok(())
}

/// `http(s)://h[:p][/base]` → `ws(s)://h:p[/base]/v1/realtime`; `ws(s)://…` kept as written.
pub fn parse_target(url: &str) -> Result<Target, String> {
    parse_target_for(url, Dialect::Vllm)
}

/// `parse_target` for a dialect. OpenAI: `http(s)://h[:p][/base][?q]` →
/// `ws(s)://h:p[/base]/v1/realtime?intent=transcription[&q]` (a query given on the http URL,
/// such as Azure's `api-version` and `deployment`, is kept; `intent` is not added twice); a
/// `ws(s)://` URL is kept exactly as written (docs/protocol-openai.md, "Connection").
pub fn parse_target_for(url: &str, dialect: Dialect) -> Result<Target, String> {
    let mut t = parse_target_vllm(url)?;
    if dialect == Dialect::OpenAi && !url.to_ascii_lowercase().starts_with("ws") {
        let query = url.split_once('?').map(|(_, q)| q).unwrap_or("");
        let has_intent = query.split('&').any(|kv| kv.starts_with("intent="));
        let mut q = if has_intent {
            String::new()
        } else {
            "intent=transcription".to_string()
        };
        if !query.is_empty() {
            if !q.is_empty() {
                q.push('&');
            }
            q.push_str(query);
        }
        t.ws_url = format!("{}?{q}", t.ws_url);
    }
    Ok(t)
}

fn parse_target_vllm(url: &str) -> Result<Target, String> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| {
        format!(
            "invalid URL {url:?}: expected http://, https://, ws:// or wss:// followed by a host"
        )
    })?;
    let (secure, ws_kept) = match scheme.to_ascii_lowercase().as_str() {
        "http" => (false, false),
        "https" => (true, false),
        "ws" => (false, true),
        "wss" => (true, true),
        other => {
            return Err(format!(
                "unsupported URL scheme {other:?} in {url:?}: expected http, https, ws or wss"
            ));
        }
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if authority.contains('@') {
        return Err(format!(
            "credentials in the URL are not allowed ({scheme}://…@…): use bearer_token"
        ));
    }
    let default_port = if secure { 443 } else { 80 };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, tail) = v6
            .split_once(']')
            .ok_or_else(|| format!("invalid IPv6 host in {url:?}"))?;
        let port = match tail.strip_prefix(':') {
            Some(p) => p
                .parse::<u16>()
                .map_err(|_| format!("invalid port {p:?} in {url:?}"))?,
            None if tail.is_empty() => default_port,
            None => return Err(format!("invalid host in {url:?}")),
        };
        (format!("[{h}]"), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (
                h.to_string(),
                p.parse::<u16>()
                    .map_err(|_| format!("invalid port {p:?} in {url:?}"))?,
            ),
            None => (authority.to_string(), default_port),
        }
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.is_empty()
        || port == 0
        || bare.contains(|c: char| c.is_whitespace() || matches!(c, '[' | ']' | '/' | '?' | '#'))
    {
        return Err(format!("URL {url:?} has no host"));
    }
    let hostport = format!("{host}:{port}");
    let (ws_scheme, http_scheme) = if secure {
        ("wss", "https")
    } else {
        ("ws", "http")
    };
    let ws_url = if ws_kept {
        format!(
            "{ws_scheme}://{hostport}{}",
            if path.is_empty() { "/" } else { path }
        )
    } else {
        let base = path.split('?').next().unwrap_or("").trim_end_matches('/');
        format!("{ws_scheme}://{hostport}{base}/v1/realtime")
    };
    let http_base = if ws_kept {
        format!("{http_scheme}://{hostport}")
    } else {
        let base = path.split('?').next().unwrap_or("").trim_end_matches('/');
        format!("{http_scheme}://{hostport}{base}")
    };
    Ok(Target {
        ws_url,
        http_base,
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        port,
        secure,
    })
}

fn check_buckets(name: &str, v: &[f64]) -> Result<(), String> {
    if v.iter().any(|x| !x.is_finite()) {
        return Err(format!("{name} boundaries must be finite numbers"));
    }
    if let Some(w) = v.windows(2).find(|w| w[0] >= w[1]) {
        return Err(format!(
            "{name} boundaries must be strictly increasing ({} then {})",
            w[0], w[1]
        ));
    }
    Ok(())
}

/// Parse an optional duration field; errors carry the field's path and line.
fn dur(text: &Option<DurationText>, err: impl Fn(String) -> Problem) -> Res<Option<Duration>> {
    text.as_deref()
        .map(|t| crate::config::parse_duration(t).map_err(&err))
        .transpose()
}

const CHUNK_MIN: Duration = Duration::from_millis(10);
const CHUNK_MAX: Duration = Duration::from_secs(10);

/// Validate a parsed file. `origin` is the config file's path (relative paths resolve against
/// its directory).
pub fn validate(
    raw: RawConfig,
    text: &str,
    origin: &Path,
    env: EnvLookup<'_>,
) -> Result<Config, Problem> {
    let cx = Ctx {
        loc: Locator::new(text),
        dir: origin.parent().map(Path::to_path_buf).unwrap_or_default(),
        env,
        clips: RefCell::new(HashMap::new()),
    };
    let raw_server = raw.server.unwrap_or_default();
    let admin_token = match raw_server.admin_token {
        None => None,
        Some(b) => Some(bearer(&cx, "admin_token", b, &|m| {
            cx.top_err("server", &["admin_token"], m)
        })?),
    };
    let server = ServerSettings {
        listen: raw_server
            .listen
            .unwrap_or_else(|| ServerSettings::default().listen),
        admin_token,
    };
    if server.listen.parse::<std::net::SocketAddr>().is_err() {
        return Err(cx.top_err(
            "server",
            &["listen"],
            format!(
                "invalid address {:?}: expected IP:PORT, e.g. 0.0.0.0:9464",
                server.listen
            ),
        ));
    }
    let buckets = buckets(&cx, raw.buckets)?;
    let metrics = metrics(&cx, raw.metrics)?;
    let otlp = otlp(&cx, raw.otlp)?;
    let defaults = raw.defaults.unwrap_or_default();
    if raw.probes.is_empty() {
        return Err(Problem {
            field: "probes".into(),
            message: "at least one probe is required".into(),
            pos: cx.loc.top("probes", &[]),
        });
    }
    let mut names = HashSet::new();
    let mut probes = Vec::with_capacity(raw.probes.len());
    for (i, p) in raw.probes.into_iter().enumerate() {
        let spec = probe(&cx, i, p, &defaults)?;
        if !names.insert(spec.name.clone()) {
            return Err(cx.probe_err(
                i,
                &["name"],
                format!("duplicate probe name {:?}: names must be unique", spec.name),
            ));
        }
        probes.push(spec);
    }
    Ok(Config {
        server,
        otlp,
        buckets,
        metrics,
        probes,
    })
}

fn metrics(cx: &Ctx<'_>, raw: Option<RawMetrics>) -> Res<MetricsSettings> {
    let mut m = MetricsSettings::default();
    let Some(raw) = raw else { return Ok(m) };
    m.histograms = keyword(
        "histogram format",
        raw.histograms.as_deref(),
        HistogramFormat::Both,
        &[
            ("classic", HistogramFormat::Classic),
            ("native", HistogramFormat::Native),
            ("both", HistogramFormat::Both),
        ],
    )
    .map_err(|m| cx.top_err("metrics", &["histograms"], m))?;
    let Some(disabled) = raw.disabled else {
        return Ok(m);
    };
    if let Some(bad) = disabled
        .iter()
        .find(|d| !OPTIONAL_HISTOGRAMS.iter().any(|(prom, _)| prom == d))
    {
        let allowed: Vec<&str> = OPTIONAL_HISTOGRAMS.iter().map(|(p, _)| *p).collect();
        let why = if bad == "rtprobe_round_trip_last_seconds"
            || bad == "rtprobe_time_to_first_text_seconds"
        {
            "feeds the shipped SLO rules and cannot be switched off"
        } else {
            "is not a histogram that can be switched off"
        };
        return Err(cx.top_err(
            "metrics",
            &["disabled"],
            format!("{bad:?} {why}; allowed: {}", allowed.join(", ")),
        ));
    }
    m.disabled = disabled;
    Ok(m)
}

fn buckets(cx: &Ctx<'_>, raw: Option<RawBuckets>) -> Res<Buckets> {
    let mut b = Buckets::default();
    let Some(raw) = raw else { return Ok(b) };
    for (name, given, slot) in [
        (
            "latency_seconds",
            raw.latency_seconds,
            &mut b.latency_seconds,
        ),
        ("itl_seconds", raw.itl_seconds, &mut b.itl_seconds),
        ("phase_seconds", raw.phase_seconds, &mut b.phase_seconds),
        (
            "lateness_seconds",
            raw.lateness_seconds,
            &mut b.lateness_seconds,
        ),
        ("ratio", raw.ratio, &mut b.ratio),
        (
            "tokens_per_second",
            raw.tokens_per_second,
            &mut b.tokens_per_second,
        ),
        ("tokens", raw.tokens, &mut b.tokens),
    ] {
        if let Some(v) = given {
            check_buckets(name, &v).map_err(|m| cx.top_err("buckets", &[name], m))?;
            *slot = v;
        }
    }
    Ok(b)
}

/// The `dialect:` keywords (also the simulator's `--dialect`).
pub(crate) const DIALECTS: &[(&str, Dialect)] =
    &[("vllm", Dialect::Vllm), ("openai", Dialect::OpenAi)];

/// A keyword field: the value `text` names among `choices`, `default` when absent, or the
/// message saying what was expected (`unknown pacing "x": expected realtime or burst`).
pub(crate) fn keyword<T: Copy>(
    what: &str,
    text: Option<&str>,
    default: T,
    choices: &[(&str, T)],
) -> Result<T, String> {
    let Some(text) = text else {
        return Ok(default);
    };
    if let Some((_, v)) = choices.iter().find(|(name, _)| *name == text) {
        return Ok(*v);
    }
    let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
    let expected = match names.split_last() {
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    };
    Err(format!("unknown {what} {text:?}: expected {expected}"))
}

fn otlp_protocol(s: &str) -> Option<OtlpProtocol> {
    match s {
        "grpc" => Some(OtlpProtocol::Grpc),
        "http/protobuf" | "http" => Some(OtlpProtocol::HttpProtobuf),
        _ => None,
    }
}

fn env_millis(cx: &Ctx<'_>, name: &str) -> Res<Option<Duration>> {
    match (cx.env)(name) {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse::<u64>()
            .map(|ms| Some(Duration::from_millis(ms)))
            .map_err(|_| Problem {
                field: name.into(),
                message: format!("environment variable {name}={v:?}: expected milliseconds"),
                pos: None,
            }),
    }
}

/// OTLP settings: the YAML section wins field by field; the standard `OTEL_EXPORTER_OTLP_*`
/// variables fill what it leaves out, and alone turn OTLP on when the section is absent.
fn otlp(cx: &Ctx<'_>, raw: Option<RawOtlp>) -> Res<Option<OtlpSettings>> {
    let env_endpoint = (cx.env)("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
        .or_else(|| (cx.env)("OTEL_EXPORTER_OTLP_ENDPOINT"));
    let present = raw.is_some();
    let raw = raw.unwrap_or_default();
    let Some(endpoint) = raw.endpoint.clone().or(env_endpoint) else {
        if present {
            return Err(cx.top_err(
                "otlp",
                &["endpoint"],
                "otlp.endpoint is required (or set OTEL_EXPORTER_OTLP_ENDPOINT)",
            ));
        }
        return Ok(None);
    };
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
        return Err(cx.top_err(
            "otlp",
            &["endpoint"],
            format!("invalid endpoint {endpoint:?}: expected http:// or https://"),
        ));
    }
    let protocol_text = raw
        .protocol
        .clone()
        .or_else(|| (cx.env)("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"))
        .or_else(|| (cx.env)("OTEL_EXPORTER_OTLP_PROTOCOL"));
    let protocol = match protocol_text {
        None => OtlpProtocol::Grpc,
        Some(p) => otlp_protocol(&p).ok_or_else(|| {
            cx.top_err(
                "otlp",
                &["protocol"],
                format!("unknown protocol {p:?}: expected grpc or http/protobuf"),
            )
        })?,
    };
    let mut headers = Vec::new();
    if raw.headers.is_empty()
        && let Some(h) = (cx.env)("OTEL_EXPORTER_OTLP_HEADERS")
    {
        for pair in h.split(',').filter(|p| !p.trim().is_empty()) {
            let (k, v) = pair.split_once('=').ok_or_else(|| Problem {
                field: "OTEL_EXPORTER_OTLP_HEADERS".into(),
                message: "expected key=value pairs separated by commas".into(),
                pos: None,
            })?;
            headers.push((k.trim().to_string(), Secret::new(v.trim())));
        }
    }
    for (k, v) in &raw.headers {
        let v = expand_env(v, cx.env).map_err(|m| cx.top_err("otlp", &["headers", k], m))?;
        headers.push((k.clone(), Secret::new(v)));
    }
    let interval = match dur(&raw.interval, |m| cx.top_err("otlp", &["interval"], m))? {
        Some(d) => d,
        None => env_millis(cx, "OTEL_METRIC_EXPORT_INTERVAL")?.unwrap_or(Duration::from_secs(15)),
    };
    let timeout = match dur(&raw.timeout, |m| cx.top_err("otlp", &["timeout"], m))? {
        Some(d) => d,
        None => env_millis(cx, "OTEL_EXPORTER_OTLP_TIMEOUT")?.unwrap_or(Duration::from_secs(10)),
    };
    if interval.is_zero() || timeout.is_zero() {
        return Err(cx.top_err(
            "otlp",
            &[if interval.is_zero() {
                "interval"
            } else {
                "timeout"
            }],
            "must be greater than zero",
        ));
    }
    let delta_temporality = keyword(
        "temporality",
        raw.temporality.as_deref(),
        false,
        &[("cumulative", false), ("delta", true)],
    )
    .map_err(|m| cx.top_err("otlp", &["temporality"], m))?;
    let exponential_histograms = keyword(
        "histogram aggregation",
        raw.histograms.as_deref(),
        false,
        &[("explicit", false), ("exponential", true)],
    )
    .map_err(|m| cx.top_err("otlp", &["histograms"], m))?;
    Ok(Some(OtlpSettings {
        endpoint,
        protocol,
        headers,
        interval,
        timeout,
        delta_temporality,
        traces: raw.traces.unwrap_or(false),
        exponential_histograms,
    }))
}

fn probe(cx: &Ctx<'_>, i: usize, p: RawProbe, d: &RawProbeDefaults) -> Res<ProbeSpec> {
    let dialect = dialect_spec(cx, i, &p, d)?;
    let clips = utterance_clips(cx, i, &p);
    let listed = matches!(p.utterances, Some(RawUtterances::List(_)));
    let name = p
        .name
        .ok_or_else(|| cx.probe_err(i, &["name"], "name is required"))?;
    if !valid_probe_name(&name) {
        return Err(cx.probe_err(
            i,
            &["name"],
            format!("invalid probe name {name:?}: expected 1-64 characters of [a-zA-Z0-9_.-]"),
        ));
    }
    let target_text = p.target.ok_or_else(|| {
        cx.probe_err(
            i,
            &["target"],
            "target is required, e.g. http://127.0.0.1:8000",
        )
    })?;
    let target = parse_target_for(&target_text, dialect.kind)
        .map_err(|m| cx.probe_err(i, &["target"], m))?;
    let model = match p.model.or_else(|| d.model.clone()) {
        None => {
            return Err(cx.probe_err(
                i,
                &["model"],
                "model is required: the served model name, or \"auto\"",
            ));
        }
        Some(m) if m == "auto" => ModelChoice::Auto,
        Some(m) => ModelChoice::Named(m),
    };
    let (audio, reference, utterances) = clips?;
    let max_wer = match (p.max_wer, d.max_wer) {
        (Some(v), _) => Some((v, cx.probe_err(i, &["max_wer"], ""))),
        (None, Some(v)) => Some((
            v,
            Problem {
                field: "defaults.max_wer".into(),
                message: String::new(),
                pos: cx.loc.top("defaults", &["max_wer"]),
            },
        )),
        (None, None) => None,
    };
    let max_wer = match max_wer {
        None => None,
        Some((v, at)) if !(v.is_finite() && v >= 0.0) => {
            return Err(Problem {
                message: format!(
                    "max_wer {v} out of range: expected a word error rate ≥ 0, e.g. 0.25"
                ),
                ..at
            });
        }
        Some(_) if reference.is_none() || utterances.iter().any(|u| u.reference.is_none()) => {
            let m = if utterances.len() > 1 {
                "max_wer needs a reference (or reference_file) on every utterance to compare its transcript with"
            } else {
                "max_wer needs a reference (or reference_file) to compare the transcript with"
            };
            return Err(cx.probe_err(i, &["max_wer"], m));
        }
        Some((v, _)) => Some(v),
    };
    let pd = |key: &'static str, v: &Option<DurationText>| dur(v, |m| cx.probe_err(i, &[key], m));
    let dd = |key: &'static str, v: &Option<DurationText>| {
        dur(v, |m| Problem {
            field: format!("defaults.{key}"),
            pos: cx.loc.top("defaults", &[key]),
            message: m,
        })
    };
    let chunk = pd("chunk", &p.chunk)?
        .or(dd("chunk", &d.chunk)?)
        .unwrap_or(Duration::from_millis(100));
    if !(CHUNK_MIN..=CHUNK_MAX).contains(&chunk) {
        return Err(cx.probe_err(
            i,
            &["chunk"],
            format!("chunk {chunk:?} out of range: expected 10ms to 10s"),
        ));
    }
    let pacing = keyword(
        "pacing",
        p.pacing.as_deref().or(d.pacing.as_deref()),
        Pacing::Realtime,
        &[("realtime", Pacing::Realtime), ("burst", Pacing::Burst)],
    )
    .map_err(|m| cx.probe_err(i, &["pacing"], m))?;
    let interval = pd("interval", &p.interval)?
        .or(dd("interval", &d.interval)?)
        .unwrap_or(Duration::from_secs(30));
    let timeout = pd("timeout", &p.timeout)?
        .or(dd("timeout", &d.timeout)?)
        .unwrap_or(interval);
    for (key, v) in [("interval", interval), ("timeout", timeout)] {
        if v.is_zero() {
            return Err(cx.probe_err(i, &[key], format!("{key} must be greater than zero")));
        }
    }
    if timeout > interval {
        return Err(cx.probe_err(i, &["timeout"], format!("timeout {timeout:?} is longer than interval {interval:?}: runs of one probe must not overlap")));
    }
    let mut deadlines = Deadlines::default();
    for (src, in_defaults) in [(d.deadlines.as_ref(), true), (p.deadlines.as_ref(), false)] {
        let Some(src) = src else { continue };
        for (key, text, slot) in [
            ("connect", &src.connect, &mut deadlines.connect),
            ("first_text", &src.first_text, &mut deadlines.first_text),
            ("done", &src.done, &mut deadlines.done),
        ] {
            let parsed = if in_defaults {
                dur(text, |m| Problem {
                    field: format!("defaults.deadlines.{key}"),
                    pos: cx.loc.top("defaults", &["deadlines", key]),
                    message: m,
                })?
            } else {
                dur(text, |m| cx.probe_err(i, &["deadlines", key], m))?
            };
            if let Some(v) = parsed {
                *slot = v;
            }
        }
    }
    for (key, v) in [
        ("connect", deadlines.connect),
        ("first_text", deadlines.first_text),
        ("done", deadlines.done),
    ] {
        if v.is_zero() {
            return Err(cx.probe_err(
                i,
                &["deadlines", key],
                format!("deadlines.{key} must be greater than zero"),
            ));
        }
    }
    let concurrency = p.concurrency.or(d.concurrency).unwrap_or(1);
    if !(1..=1024).contains(&concurrency) {
        return Err(cx.probe_err(
            i,
            &["concurrency"],
            format!("concurrency {concurrency} out of range: expected 1 to 1024"),
        ));
    }
    let jitter = p.jitter.or(d.jitter).unwrap_or(0.1);
    if !(0.0..1.0).contains(&jitter) {
        return Err(cx.probe_err(
            i,
            &["jitter"],
            format!("jitter {jitter} out of range: expected a fraction of the interval in [0, 1)"),
        ));
    }
    let mut headers = Vec::new();
    for (k, v) in &p.headers {
        if k.is_empty()
            || !k
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_!#$%&'*+.^`|~".contains(&b))
        {
            return Err(cx.probe_err(i, &["headers", k], format!("invalid header name {k:?}")));
        }
        if k.eq_ignore_ascii_case("authorization") {
            return Err(cx.probe_err(
                i,
                &["headers", k],
                "set the Authorization header through bearer_token (env or file), not headers",
            ));
        }
        let v = match v {
            RawHeaderValue::Text(t) => {
                Secret::new(expand_env(t, cx.env).map_err(|m| cx.probe_err(i, &["headers", k], m))?)
            }
            // An Azure `api-key` from a mounted Secret: read like a bearer token.
            RawHeaderValue::Secret(b) => {
                bearer(cx, &format!("headers.{k}"), b.clone(), &|m| {
                    cx.probe_err(i, &["headers", k], m)
                })?
                .token
            }
        };
        headers.push((k.clone(), v));
    }
    let bearer = match p.bearer_token {
        None => None,
        Some(b) => Some(bearer(cx, "bearer_token", b, &|m| {
            cx.probe_err(i, &["bearer_token"], m)
        })?),
    };
    let tls = match p.tls {
        None => TlsSettings::default(),
        Some(t) => {
            let ca_file = t.ca_file.map(|f| cx.resolve(&f));
            if let Some(ca) = &ca_file
                && !ca.is_file()
            {
                return Err(cx.probe_err(
                    i,
                    &["tls", "ca_file"],
                    format!("CA file {} does not exist", ca.display()),
                ));
            }
            TlsSettings {
                ca_file,
                server_name: t.server_name,
                insecure_skip_verify: t.insecure_skip_verify,
            }
        }
    };
    let mut labels: BTreeMap<String, String> = d.labels.clone();
    labels.extend(p.labels);
    for k in labels.keys() {
        check_label(k).map_err(|m| cx.probe_err(i, &["labels", k], m))?;
    }
    // A session streams every utterance's clip, one after another, within one timeout.
    let mut clip = Duration::ZERO;
    if utterances.is_empty() {
        clip = cx
            .clip(&audio, chunk, dialect.sample_rate)
            .map_err(|m| cx.probe_err(i, &["audio"], m))?;
    }
    for (k, u) in utterances.iter().enumerate() {
        let idx = k.to_string();
        let path: &[&str] = if listed {
            &["utterances", &idx, "audio"]
        } else {
            &["audio"]
        };
        clip += cx
            .clip(&u.audio, chunk, dialect.sample_rate)
            .map_err(|m| cx.probe_err(i, path, m))?;
    }
    if pacing == Pacing::Realtime && timeout < clip {
        return Err(cx.probe_err(
            i,
            &["timeout"],
            format!(
                "timeout {} is shorter than the clip ({:.2}s of audio, sent in real time): no run could finish; raise timeout above the clip's length plus the server's reply time",
                crate::config::format_duration(timeout),
                clip.as_secs_f64()
            ),
        ));
    }
    Ok(ProbeSpec {
        name,
        target,
        model,
        audio,
        reference,
        max_wer,
        chunk,
        pacing,
        deadlines,
        headers,
        bearer,
        tls,
        labels,
        interval,
        timeout,
        concurrency,
        jitter,
        dialect,
        utterances,
    })
}

/// Upper bound of `utterances`: a session is one scheduled run and must fit its timeout.
const MAX_UTTERANCES: u32 = 100;

/// One clip (`audio` with `reference` or `reference_file`), resolved and checked; `path` is the
/// field path errors name (`[]` for the probe's own keys, `["utterances", "k"]` for a list item).
fn clip(
    cx: &Ctx<'_>,
    i: usize,
    path: &[&str],
    audio: Option<&PathBuf>,
    reference: Option<&String>,
    reference_file: Option<&PathBuf>,
) -> Res<UtteranceSpec> {
    let at = |key: &'static str| -> Vec<&str> {
        let mut v = path.to_vec();
        v.push(key);
        v
    };
    let audio_rel = audio
        .ok_or_else(|| cx.probe_err(i, &at("audio"), "audio is required: a WAV or FLAC file"))?;
    let audio = cx.resolve(audio_rel);
    if !audio.is_file() {
        return Err(cx.probe_err(
            i,
            &at("audio"),
            format!("audio file {} does not exist", audio.display()),
        ));
    }
    let reference = match (reference, reference_file) {
        (Some(_), Some(_)) => {
            return Err(cx.probe_err(
                i,
                &at("reference_file"),
                "set reference or reference_file, not both",
            ));
        }
        (Some(r), None) => Some(r.clone()),
        (None, Some(f)) => {
            let path = cx.resolve(f);
            Some(
                std::fs::read_to_string(&path)
                    .map_err(|e| {
                        cx.probe_err(
                            i,
                            &at("reference_file"),
                            format!("cannot read {}: {e}", path.display()),
                        )
                    })?
                    .trim()
                    .to_string(),
            )
        }
        (None, None) => None,
    };
    Ok(UtteranceSpec { audio, reference })
}

/// The probe's clip and its utterances: `utterances: N` repeats the clip N times; a list gives
/// each utterance its own clip and reference (then the probe's own `audio` is the first one's).
fn utterance_clips(
    cx: &Ctx<'_>,
    i: usize,
    p: &RawProbe,
) -> Res<(PathBuf, Option<String>, Vec<UtteranceSpec>)> {
    // The probe's own `audio` and reference.
    let own = || {
        clip(
            cx,
            i,
            &[],
            p.audio.as_ref(),
            p.reference.as_ref(),
            p.reference_file.as_ref(),
        )
    };
    match &p.utterances {
        None | Some(RawUtterances::Count(1)) => {
            let c = own()?;
            Ok((c.audio, c.reference, Vec::new()))
        }
        Some(RawUtterances::Count(n)) => {
            if !(1..=MAX_UTTERANCES).contains(n) {
                return Err(cx.probe_err(
                    i,
                    &["utterances"],
                    format!("utterances {n} out of range: expected 1 to {MAX_UTTERANCES}, or a list of clips"),
                ));
            }
            let c = own()?;
            let all = vec![c.clone(); *n as usize];
            Ok((c.audio, c.reference, all))
        }
        Some(RawUtterances::List(list)) => {
            if p.audio.is_some() || p.reference.is_some() || p.reference_file.is_some() {
                let key = if p.audio.is_some() {
                    "audio"
                } else if p.reference.is_some() {
                    "reference"
                } else {
                    "reference_file"
                };
                return Err(cx.probe_err(
                    i,
                    &[key],
                    format!("{key} and a list of utterances exclude each other: give each utterance its audio and reference"),
                ));
            }
            if list.is_empty() || list.len() > MAX_UTTERANCES as usize {
                return Err(cx.probe_err(
                    i,
                    &["utterances"],
                    format!("utterances needs 1 to {MAX_UTTERANCES} clips"),
                ));
            }
            let mut all = Vec::with_capacity(list.len());
            for (k, u) in list.iter().enumerate() {
                let idx = k.to_string();
                all.push(clip(
                    cx,
                    i,
                    &["utterances", &idx],
                    u.audio.as_ref(),
                    u.reference.as_ref(),
                    u.reference_file.as_ref(),
                )?);
            }
            Ok((all[0].audio.clone(), all[0].reference.clone(), all))
        }
    }
}

/// The probe's dialect and its settings. A key that belongs to the other dialect is an error
/// on that key's line, so a config never silently ignores what its author meant.
fn dialect_spec(cx: &Ctx<'_>, i: usize, p: &RawProbe, d: &RawProbeDefaults) -> Res<DialectSpec> {
    let (text, on_probe) = match (&p.dialect, &d.dialect) {
        (Some(t), _) => (t.as_str(), true),
        (None, Some(t)) => (t.as_str(), false),
        (None, None) => ("vllm", true),
    };
    let kind = keyword("dialect", Some(text), Dialect::Vllm, DIALECTS).map_err(|m| {
        if on_probe {
            cx.probe_err(i, &["dialect"], m)
        } else {
            cx.top_err("defaults", &["dialect"], m)
        }
    })?;
    let mut spec = DialectSpec::of(kind);
    if let Some(provider) = p.provider.as_ref().or(d.provider.as_ref()) {
        let ok = !provider.is_empty()
            && provider.len() <= 64
            && provider
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_'));
        if !ok {
            let m = format!(
                "invalid provider {provider:?}: expected a gen_ai.provider.name value such as openai, azure.ai.openai or vllm ([a-z0-9._], at most 64)"
            );
            return Err(if p.provider.is_some() {
                cx.probe_err(i, &["provider"], m)
            } else {
                cx.top_err("defaults", &["provider"], m)
            });
        }
        spec.provider = provider.clone();
    }
    if kind == Dialect::Vllm {
        for (key, set) in [
            ("sample_rate", p.sample_rate.is_some()),
            ("language", p.language.is_some()),
            ("prompt", p.prompt.is_some()),
            ("turn_detection", p.turn_detection.is_some()),
            ("vad_silence", p.vad_silence.is_some()),
            ("session_update", p.session_update.is_some()),
        ] {
            if set {
                return Err(cx.probe_err(
                    i,
                    &[key],
                    format!("{key} belongs to the openai dialect; this probe speaks vllm (set dialect: openai, or remove {key})"),
                ));
            }
        }
        return Ok(spec);
    }
    if let Some(rate) = p.sample_rate {
        if !(8_000..=48_000).contains(&rate) {
            return Err(cx.probe_err(
                i,
                &["sample_rate"],
                format!("sample_rate {rate} out of range: expected 8000 to 48000 (OpenAI takes 24000 only)"),
            ));
        }
        spec.sample_rate = rate;
    }
    spec.language = p.language.clone();
    spec.prompt = p.prompt.clone();
    let silence = dur(&p.vad_silence, |m| cx.probe_err(i, &["vad_silence"], m))?;
    spec.turn_detection = match p.turn_detection.as_deref() {
        None | Some("none") | Some("manual") => {
            if silence.is_some() {
                return Err(cx.probe_err(
                    i,
                    &["vad_silence"],
                    "vad_silence needs turn_detection: server_vad",
                ));
            }
            TurnDetection::Manual
        }
        Some("server_vad") => {
            let silence = silence.unwrap_or(Duration::from_millis(500));
            if !(Duration::from_millis(100)..=Duration::from_secs(5)).contains(&silence) {
                return Err(cx.probe_err(
                    i,
                    &["vad_silence"],
                    format!("vad_silence {silence:?} out of range: expected 100ms to 5s"),
                ));
            }
            TurnDetection::ServerVad { silence }
        }
        Some(other) => {
            return Err(cx.probe_err(
                i,
                &["turn_detection"],
                format!("unknown turn_detection {other:?}: expected none or server_vad"),
            ));
        }
    };
    spec.session_update = keyword(
        "session_update",
        p.session_update.as_deref(),
        SessionUpdate::Ga,
        &[("ga", SessionUpdate::Ga), ("beta", SessionUpdate::Beta)],
    )
    .map_err(|m| cx.probe_err(i, &["session_update"], m))?;
    // The beta update declares `pcm16`, which is 24 kHz and nothing else.
    if spec.session_update == SessionUpdate::Beta && spec.sample_rate != 24_000 {
        return Err(cx.probe_err(
            i,
            &["sample_rate"],
            format!(
                "sample_rate {} does not fit session_update: beta, whose pcm16 audio is 24000 Hz only (remove sample_rate, or use session_update: ga)",
                spec.sample_rate
            ),
        ));
    }
    Ok(spec)
}

/// A token from `{env: VAR}` or `{file: PATH}`; `key` names the field in messages and `err`
/// places an error on it (a probe's `bearer_token`, or `server.admin_token`).
fn bearer(
    cx: &Ctx<'_>,
    key: &str,
    b: RawBearer,
    err: &dyn Fn(String) -> Problem,
) -> Res<BearerToken> {
    match (b.env, b.file, b.value) {
        (_, _, Some(_)) => Err(err(format!(
            "inline tokens are not allowed: use {key}: {{env: VAR}} or {{file: /path/to/token}}"
        ))),
        (Some(var), None, None) => {
            let token = (cx.env)(&var)
                .ok_or_else(|| err(format!("environment variable {var} ({key}.env) is not set")))?;
            if token.trim().is_empty() {
                return Err(err(format!(
                    "environment variable {var} ({key}.env) is empty"
                )));
            }
            Ok(BearerToken {
                source: SecretSource::Env(var),
                token: Secret::new(token.trim()),
            })
        }
        (None, Some(file), None) => {
            let file = cx.resolve(&file);
            let token = std::fs::read_to_string(&file).map_err(|e| {
                err(format!(
                    "cannot read token file {}: {}",
                    file.display(),
                    e.kind()
                ))
            })?;
            let token = token.trim_end_matches(['\n', '\r']).to_string();
            if token.is_empty() {
                return Err(err(format!("token file {} is empty", file.display())));
            }
            Ok(BearerToken {
                source: SecretSource::File(file),
                token: Secret::new(token),
            })
        }
        _ => Err(err(format!("{key} needs exactly one of env or file"))),
    }
}
