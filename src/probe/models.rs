//! `model: auto`: ask the target's `GET /v1/models` (over the same timed connect code, with the
//! bearer token) and use the first id. Done before a run's clock starts, so it never counts
//! toward TTFT; bounded by the connect deadline.

use std::sync::Arc;
use std::time::Instant;

use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;

use crate::config::ProbeSpec;
use crate::probe::connect;
use crate::probe::error::{ErrorType, ProbeError};
use crate::probe::timeline::Phases;

const MAX_BODY: usize = 1 << 20;

#[derive(serde::Deserialize)]
struct ModelList {
    data: Vec<ModelEntry>,
}

#[derive(serde::Deserialize)]
struct ModelEntry {
    id: String,
}

/// The first model id the server lists.
pub async fn first_model(
    spec: &ProbeSpec,
    tls: Option<Arc<ClientConfig>>,
) -> Result<String, ProbeError> {
    let deadline = tokio::time::Instant::now() + spec.deadlines.connect;
    tokio::time::timeout_at(deadline, fetch(spec, tls))
        .await
        .map_err(|_| {
            ProbeError::new(
                ErrorType::TimeoutConnect,
                "GET /v1/models did not answer within the connect deadline",
            )
        })?
}

async fn fetch(spec: &ProbeSpec, tls: Option<Arc<ClientConfig>>) -> Result<String, ProbeError> {
    let mut phases = Phases::default();
    let stream = connect::open_stream(spec, tls, Instant::now(), &mut phases).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ProbeError::new(ErrorType::ClosedEarly, format!("GET /v1/models: {e}")))?;
    let conn = tokio::spawn(conn);
    let url = format!("{}/v1/models", spec.target.http_base.trim_end_matches('/'));
    let authority = if spec.target.host.contains(':') && !spec.target.host.starts_with('[') {
        format!("[{}]:{}", spec.target.host, spec.target.port)
    } else {
        format!("{}:{}", spec.target.host, spec.target.port)
    };
    let path = url
        .split_once("://")
        .map(|(_, rest)| rest.find('/').map_or("/", |i| &rest[i..]))
        .unwrap_or("/v1/models");
    let mut req = hyper::Request::get(path).header(hyper::header::HOST, authority);
    for (name, value) in &spec.headers {
        req = req.header(name.as_str(), value.expose());
    }
    if let Some(b) = &spec.bearer {
        req = req.header(
            hyper::header::AUTHORIZATION,
            format!("Bearer {}", b.token.expose()),
        );
    }
    let req = req.body(Empty::<bytes::Bytes>::new()).map_err(|_| {
        ProbeError::new(
            ErrorType::Protocol,
            "GET /v1/models: invalid request header",
        )
    })?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| ProbeError::new(ErrorType::ClosedEarly, format!("GET /v1/models: {e}")))?;
    let status = resp.status();
    if !status.is_success() {
        conn.abort();
        return Err(ProbeError::new(
            ErrorType::from_http_status(status.as_u16()),
            format!("GET /v1/models answered HTTP {status}"),
        ));
    }
    let body = Limited::new(resp.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| ProbeError::new(ErrorType::Limit, format!("GET /v1/models body: {e}")))?
        .to_bytes();
    conn.abort();
    let list: ModelList = serde_json::from_slice(&body).map_err(|e| {
        ProbeError::new(
            ErrorType::Protocol,
            format!("GET /v1/models: not a model list ({e})"),
        )
    })?;
    list.data
        .into_iter()
        .next()
        .map(|m| m.id)
        .ok_or_else(|| ProbeError::new(ErrorType::Protocol, "GET /v1/models listed no model"))
}
