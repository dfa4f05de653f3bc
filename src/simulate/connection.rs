//! The connection loop both dialects share: the delay before the first server event, the
//! keepalive ping, shutdown, the close a generation asks for, and the control frames and
//! protocol errors every client can send. What a text frame (or a binary one) means is the
//! dialect's (`session.rs` for vLLM, `openai.rs`), behind `Dialect`.
//!
//! A client frame is stamped the moment `stream.next()` yields it, before anything else runs:
//! those stamps are the ground truth the timing tests compare the probe against, so nothing may
//! come between the read and the stamp (the dialects are static, no boxing or task hop).

use std::future::Future;
use std::time::Instant;

use futures_util::StreamExt;
use futures_util::stream::SplitStream;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::config::Fault;
use super::generation::Control;
use super::record::{ClientFrame, ClientFrameKind, Emission, EmitKind, RecordHandle};
use super::session::SessionCtx;
use super::wire::{Sink, close_and_linger, send};

/// One dialect's part of a connection: its session state and how it answers client frames.
pub(crate) trait Dialect: Send {
    /// The utterance a connection-level event (ping, close, error) is filed under.
    fn last_utterance(&self) -> u32;
    /// Abort the running generation(s): the connection is ending.
    fn stop(&mut self);
    /// A binary frame came (already recorded); `false` ends the connection without a close.
    fn on_binary(&mut self) -> impl Future<Output = bool> + Send;
    /// The client's close frame came (already recorded), received at `at`.
    fn on_close(&mut self, at: Instant);
    /// A text frame received at `at`; the dialect records it and acts on it.
    fn on_text(&mut self, text: &str, at: Instant) -> impl Future<Output = ()> + Send;
}

pub(crate) async fn shutdown_requested(rx: &mut watch::Receiver<bool>) {
    // A dropped sender also means the server is going away.
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Wait the configured delay before `session.created` (the slow-session fault's when it is
/// injected); `false` when the server shuts down meanwhile.
pub(crate) async fn delay_hello(ctx: &mut SessionCtx) -> bool {
    let delay = if ctx.fault == Fault::SlowSession {
        ctx.cfg.slow_session_delay
    } else {
        ctx.cfg.session_created_delay
    };
    if !delay.is_zero() {
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown_requested(&mut ctx.shutdown) => return false,
        }
    }
    true
}

async fn tick(pinger: &mut Option<tokio::time::Interval>) {
    match pinger {
        Some(p) => {
            p.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Serve the connection after the first server event until the client leaves, a fault ends it,
/// or shutdown.
pub(crate) async fn serve<S, D>(
    sink: Sink<S>,
    mut stream: SplitStream<WebSocketStream<S>>,
    mut ctx: SessionCtx,
    mut ctl_rx: mpsc::UnboundedReceiver<Control>,
    mut d: D,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    D: Dialect,
{
    let record: RecordHandle = ctx.record.clone();
    let keepalive = ctx.cfg.keepalive.filter(|k| !k.is_zero());
    let mut pinger = keepalive.map(|k| tokio::time::interval_at((Instant::now() + k).into(), k));
    let mut awaiting_pong = false;
    loop {
        tokio::select! {
            _ = shutdown_requested(&mut ctx.shutdown) => {
                d.stop();
                // vLLM (uvicorn) closes with 1012 when the server shuts down.
                close_and_linger(&sink, &mut stream, 1012, &record, d.last_utterance()).await;
                return;
            }
            _ = tick(&mut pinger) => {
                if awaiting_pong {
                    // uvicorn: "keepalive ping timeout".
                    d.stop();
                    close_and_linger(&sink, &mut stream, 1011, &record, d.last_utterance()).await;
                    return;
                }
                awaiting_pong = true;
                if let Ok(at) = send(&sink, Message::Ping(b"rtprobe-sim".as_slice().into())).await {
                    let utterance = d.last_utterance();
                    record.update(|r| r.emissions.push(Emission {
                        utterance, kind: EmitKind::Ping, deadline: None, jitter_ns: 0, at,
                    }));
                }
            }
            Some(ctl) = ctl_rx.recv() => {
                d.stop();
                match ctl {
                    Control::DropTcp => return,
                    Control::Close(code) => {
                        close_and_linger(&sink, &mut stream, code, &record, d.last_utterance()).await;
                        return;
                    }
                }
            }
            msg = stream.next() => {
                let at = Instant::now();
                let note = |kind: ClientFrameKind| {
                    record.update(|r| r.client_frames.push(ClientFrame { at, kind }))
                };
                match msg {
                    None => return,
                    Some(Err(WsError::Capacity(_))) => {
                        d.stop();
                        close_and_linger(&sink, &mut stream, 1009, &record, d.last_utterance()).await;
                        return;
                    }
                    Some(Err(WsError::Utf8(_))) => {
                        d.stop();
                        close_and_linger(&sink, &mut stream, 1007, &record, d.last_utterance()).await;
                        return;
                    }
                    Some(Err(_)) => return,
                    Some(Ok(Message::Binary(_))) => {
                        note(ClientFrameKind::Binary);
                        if !d.on_binary().await {
                            return;
                        }
                    }
                    Some(Ok(Message::Ping(_))) => note(ClientFrameKind::Ping),
                    Some(Ok(Message::Pong(_))) => {
                        awaiting_pong = false;
                        note(ClientFrameKind::Pong);
                    }
                    Some(Ok(Message::Close(_))) => {
                        // The reply close is queued by tungstenite and flushed by the next read.
                        note(ClientFrameKind::Close);
                        d.on_close(at);
                    }
                    Some(Ok(Message::Frame(_))) => {}
                    Some(Ok(Message::Text(text))) => d.on_text(text.as_str(), at).await,
                }
            }
        }
    }
}
