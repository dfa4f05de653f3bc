//! The little HTTP/1.1 the simulator speaks before a WebSocket takes over: read one bounded
//! request head, answer plain requests (`/health`, `/v1/models`, errors) and the upgrade.
//! Hand-rolled because the upgrade has to be answered differently per fault (401, 403, any
//! status, or silence), which an off-the-shelf acceptor does not allow.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

/// Request heads larger than this are refused with 431.
pub(crate) const MAX_HEAD: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub(crate) enum HeadError {
    #[error("request head larger than {MAX_HEAD} bytes")]
    TooLarge,
    #[error("malformed request head: {0}")]
    Malformed(&'static str),
    #[error("connection closed before the request head was complete")]
    Eof,
    #[error("reading the request head: {0}")]
    Io(#[from] std::io::Error),
}

#[derive(Debug, Clone)]
pub(crate) struct RequestHead {
    pub(crate) method: String,
    /// The request target as sent (path plus query).
    pub(crate) target: String,
    headers: Vec<(String, String)>,
}

impl RequestHead {
    /// The target without its query string (vLLM ignores `?model=` and the like).
    pub(crate) fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Does a header hold `token` among its comma-separated values (case-insensitive)?
    pub(crate) fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    pub(crate) fn is_websocket_upgrade(&self) -> bool {
        self.header_has_token("upgrade", "websocket")
    }
}

fn parse_head(bytes: &[u8]) -> Result<RequestHead, HeadError> {
    let text = std::str::from_utf8(bytes).map_err(|_| HeadError::Malformed("not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let request_line = lines.next().ok_or(HeadError::Malformed("empty"))?;
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::Malformed("bad request line"));
    };
    if !version.starts_with("HTTP/1.") || method.is_empty() || !target.starts_with('/') {
        return Err(HeadError::Malformed("bad request line"));
    }
    let mut headers = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or(HeadError::Malformed("header without colon"))?;
        if name.is_empty() || name.contains(' ') {
            return Err(HeadError::Malformed("bad header name"));
        }
        headers.push((name.to_string(), value.trim().to_string()));
    }
    Ok(RequestHead {
        method: method.to_string(),
        target: target.to_string(),
        headers,
    })
}

/// Read one request head (up to the blank line). Returns the head and any bytes read past it,
/// which belong to the next protocol (a client may pipeline frames after the upgrade).
pub(crate) async fn read_head<S: AsyncRead + Unpin>(
    io: &mut S,
) -> Result<(RequestHead, Vec<u8>), HeadError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let n = io.read(&mut chunk).await?;
        if n == 0 {
            return Err(HeadError::Eof);
        }
        let scan_from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        if let Some(pos) = buf[scan_from..].windows(4).position(|w| w == b"\r\n\r\n") {
            let end = scan_from + pos;
            if end > MAX_HEAD {
                return Err(HeadError::TooLarge);
            }
            let head = parse_head(&buf[..end])?;
            return Ok((head, buf[end + 4..].to_vec()));
        }
        if buf.len() > MAX_HEAD {
            return Err(HeadError::TooLarge);
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// Write a complete response and close our side; the connection is not kept alive.
pub(crate) async fn respond<S: AsyncWrite + Unpin>(
    io: &mut S,
    status: u16,
    json_body: Option<&str>,
) -> std::io::Result<()> {
    let body = json_body.unwrap_or("");
    let content_type = if json_body.is_some() {
        "content-type: application/json\r\n"
    } else {
        ""
    };
    let head = format!(
        "HTTP/1.1 {status} {}\r\n{content_type}content-length: {}\r\nconnection: close\r\n\r\n",
        reason(status),
        body.len()
    );
    io.write_all(head.as_bytes()).await?;
    io.write_all(body.as_bytes()).await?;
    io.flush().await?;
    io.shutdown().await
}

pub(crate) async fn switching_protocols<S: AsyncWrite + Unpin>(
    io: &mut S,
    accept_key: &str,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: {accept_key}\r\n\r\n"
    );
    io.write_all(head.as_bytes()).await?;
    io.flush().await
}

/// A stream that first replays bytes already read past the request head.
pub(crate) struct Prefixed<S> {
    prefix: Vec<u8>,
    pos: usize,
    inner: S,
}

impl<S> Prefixed<S> {
    pub(crate) fn new(prefix: Vec<u8>, inner: S) -> Self {
        Prefixed {
            prefix,
            pos: 0,
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.pos < this.prefix.len() {
            let n = buf.remaining().min(this.prefix.len() - this.pos);
            buf.put_slice(&this.prefix[this.pos..this.pos + n]);
            this.pos += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_head_and_keeps_the_rest() {
        let raw = b"GET /v1/realtime?model=x HTTP/1.1\r\nHost: a\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\n\r\nXYZ";
        let mut r = &raw[..];
        let (head, rest) = read_head(&mut r).await.unwrap();
        assert_eq!(head.method, "GET");
        assert_eq!(head.path(), "/v1/realtime");
        assert!(head.is_websocket_upgrade());
        assert!(head.header_has_token("connection", "upgrade"));
        assert_eq!(head.header("HOST"), Some("a"));
        assert_eq!(rest, b"XYZ");
    }

    #[tokio::test]
    async fn bounded_and_strict() {
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        let mut r = big.as_bytes();
        assert!(matches!(read_head(&mut r).await, Err(HeadError::TooLarge)));
        let endless = vec![b'a'; MAX_HEAD * 2];
        let mut r = &endless[..];
        assert!(matches!(read_head(&mut r).await, Err(HeadError::TooLarge)));
        let mut r = &b"GARBAGE\r\n\r\n"[..];
        assert!(matches!(
            read_head(&mut r).await,
            Err(HeadError::Malformed(_))
        ));
        let mut r = &b"GET / HTTP/1.1\r\n"[..];
        assert!(matches!(read_head(&mut r).await, Err(HeadError::Eof)));
    }
}
