//! `ModelChoice::Auto`: ask the server which model it serves (`GET {http_base}/v1/models`, the
//! first `data[].id`), over the same hand-made connection as the WebSocket (same DNS, TLS
//! settings and bearer), so failures classify exactly like the upgrade's.

use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::Request;
use hyper_util::rt::TokioIo;

use crate::config::ProbeSpec;
use crate::probe::connect;
use crate::probe::error::{ErrorType, ProbeError};
use crate::probe::timeline::Phases;

/// A model list is a few hundred bytes; anything near this is not a model list.
const MAX_BODY: usize = 1024 * 1024;

/// Host header value and request path (`{base path}/v1/models`) from the HTTP base URL.
fn authority_and_path(http_base: &str) -> (&str, String) {
    let rest = http_base
        .split_once("://")
        .map_or(http_base, |(_, rest)| rest);
    let (authority, base) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    (authority, format!("{base}/v1/models"))
}

/// Resolve the served model name. The caller bounds this with a deadline.
pub async fn resolve(spec: &ProbeSpec) -> Result<String, ProbeError> {
    let mut phases = Phases::default();
    let stream = connect::open_stream(
        spec,
        connect::prepare_tls(spec)?,
        Instant::now(),
        &mut phases,
    )
    .await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ProbeError::new(ErrorType::ClosedEarly, format!("GET /v1/models: {e}")))?;
    let (authority, path) = authority_and_path(&spec.target.http_base);
    let mut request = Request::get(path.as_str())
        .header(hyper::header::HOST, authority)
        .body(Empty::<Bytes>::new())
        .map_err(|e| ProbeError::new(ErrorType::Protocol, format!("GET {path}: {e}")))?;
    for (name, value) in connect::request_headers(spec)? {
        request.headers_mut().insert(name, value);
    }
    let exchange = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| ProbeError::new(ErrorType::ClosedEarly, format!("GET {path}: {e}")))?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(ProbeError::new(
                ErrorType::from_http_status(status),
                format!("GET {path} answered HTTP {status}"),
            ));
        }
        let body = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| ProbeError::new(ErrorType::Limit, format!("GET {path} body: {e}")))?
            .to_bytes();
        first_model_id(&body).ok_or_else(|| {
            ProbeError::new(ErrorType::Protocol, format!("GET {path}: no data[].id"))
        })
    };
    // The connection is driven in this task, next to the request: nothing outlives the call.
    // When the server closes after answering, the buffered response is still read out.
    tokio::pin!(conn, exchange);
    tokio::select! {
        biased;
        r = &mut exchange => r,
        r = &mut conn => match r {
            Ok(()) => exchange.await,
            Err(e) => Err(ProbeError::new(ErrorType::ClosedEarly, format!("GET {path}: {e}"))),
        },
    }
}

fn first_model_id(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v.get("data")?
        .as_array()?
        .first()?
        .get("id")?
        .as_str()
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_keeps_the_base() {
        assert_eq!(
            authority_and_path("http://h:8000"),
            ("h:8000", "/v1/models".to_string())
        );
        assert_eq!(
            authority_and_path("https://h:443/base/"),
            ("h:443", "/base/v1/models".to_string())
        );
    }

    #[test]
    fn first_id_or_nothing() {
        assert_eq!(
            first_model_id(br#"{"object":"list","data":[{"id":"m1"},{"id":"m2"}]}"#),
            Some("m1".into())
        );
        assert_eq!(first_model_id(br#"{"data":[]}"#), None);
        assert_eq!(first_model_id(b"<html>"), None);
    }
}
