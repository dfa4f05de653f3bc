//! The connection loop both dialects share: the delay before the first server event, the
//! keepalive ping, shutdown, the close a generation asks for, and the control frames and
//! protocol errors every client can send. What a text frame (or a binary one) means is the
//! dialect's (`session.rs` for vLLM, `openai.rs`), behind `Dialect`.
//!
//! A client frame is stamped the moment `stream.next()` yields it, before anything else runs:
//! those stamps are the ground truth the timing tests compare the probe against, so nothing may
//! come between the read and the stamp (the dialects are static, no boxing or task hop).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use futures_util::StreamExt;
use futures_util::stream::SplitStream;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Mutex, mpsc, watch};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::config::{Fault, SimConfig};
use super::generation::{AbortOnDrop, Control, Generation, Item};
use super::record::{
    ClientFrame, ClientFrameKind, Emission, EmitKind, RecordHandle, UtteranceRecord,
};
use super::schedule::utterance_seed;
use super::session::SessionCtx;
use super::wire::{Sink, Wire, close_and_linger, send, send_text};

/// What a dialect's session and its generations share on one connection.
pub(crate) struct Connection<S> {
    pub(crate) cfg: Arc<SimConfig>,
    pub(crate) fault: Fault,
    pub(crate) record: RecordHandle,
    pub(crate) sink: Sink<S>,
    pub(crate) realtime_index: u64,
    /// Realtime sessions open on the whole simulator now (the load knob's multiplier).
    open_sessions: Arc<AtomicU64>,
    /// The single FIFO of audio chunks and ends every generation of the connection reads.
    pub(crate) queue_tx: mpsc::UnboundedSender<Item>,
    queue: Arc<Mutex<mpsc::UnboundedReceiver<Item>>>,
    ctl_tx: mpsc::UnboundedSender<Control>,
    /// Utterances started so far.
    utterances: u32,
}

impl<S: Io> Connection<S> {
    /// Split the upgraded socket and wait the delay before the first server event
    /// (`delay_hello`); `None` when the server shuts down meanwhile. The receiver takes what
    /// a generation asks of the transport (`serve` acts on it).
    pub(crate) async fn open(
        ws: WebSocketStream<S>,
        ctx: &mut SessionCtx,
    ) -> Option<(
        Self,
        SplitStream<WebSocketStream<S>>,
        mpsc::UnboundedReceiver<Control>,
    )> {
        let (sink, stream) = ws.split();
        if !delay_hello(ctx).await {
            return None;
        }
        let (queue_tx, queue_rx) = mpsc::unbounded_channel::<Item>();
        let (ctl_tx, ctl_rx) = mpsc::unbounded_channel::<Control>();
        let conn = Connection {
            cfg: ctx.cfg.clone(),
            fault: ctx.fault,
            record: ctx.record.clone(),
            sink: Arc::new(Mutex::new(sink)),
            realtime_index: ctx.realtime_index,
            open_sessions: ctx.open_sessions.clone(),
            queue_tx,
            queue: Arc::new(Mutex::new(queue_rx)),
            ctl_tx,
            utterances: 0,
        };
        Some((conn, stream, ctl_rx))
    }

    /// Send the session's first event and record when it left; `false` when the send failed.
    pub(crate) async fn hello(&self, text: String) -> bool {
        match send_text(&self.sink, text).await {
            Ok(at) => {
                self.record.update(|r| r.session_created_at = Some(at));
                true
            }
            Err(_) => false,
        }
    }

    /// The utterance a connection-level event (ping, close, error) is filed under.
    pub(crate) fn last_utterance(&self) -> u32 {
        self.utterances.saturating_sub(1)
    }

    /// Send one server event outside a generation and record it under the last utterance.
    pub(crate) async fn emit(&self, text: String, kind: EmitKind) -> Option<Instant> {
        let at = send_text(&self.sink, text).await.ok()?;
        let utterance = self.last_utterance();
        self.record.update(|r| {
            r.emissions.push(Emission {
                utterance,
                kind,
                deadline: None,
                jitter_ns: 0,
                at,
            })
        });
        Some(at)
    }

    /// Record the next utterance as started at `at` and spawn its generation.
    pub(crate) fn start_generation(&mut self, at: Instant, wire: Wire) -> AbortOnDrop {
        let utterance = self.utterances;
        self.utterances += 1;
        let item_id = match &wire {
            Wire::Vllm => None,
            Wire::OpenAi { item_id } => Some(item_id.clone()),
        };
        self.record.update(|r| {
            r.utterances.push(UtteranceRecord {
                started_at: at,
                first_audio_at: None,
                end_at: None,
                item_id,
            })
        });
        let g = Generation {
            cfg: self.cfg.clone(),
            fault: self.fault,
            sink: self.sink.clone(),
            queue: self.queue.clone(),
            ctl: self.ctl_tx.clone(),
            record: self.record.clone(),
            utterance,
            seed: utterance_seed(self.cfg.seed, self.realtime_index, utterance),
            wire,
            open_sessions: self.open_sessions.clone(),
        };
        AbortOnDrop(tokio::spawn(g.run()))
    }
}

/// The byte stream under a simulated connection (plain TCP or TLS).
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// One dialect's part of a connection: its session state and how it answers client frames.
pub(crate) trait Dialect: Send {
    type Io: Io;
    /// What the dialect shares with the loop: the sink and the utterance count.
    fn conn(&self) -> &Connection<Self::Io>;
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
pub(crate) async fn serve<D: Dialect>(
    mut stream: SplitStream<WebSocketStream<D::Io>>,
    mut ctx: SessionCtx,
    mut ctl_rx: mpsc::UnboundedReceiver<Control>,
    mut d: D,
) {
    let sink = d.conn().sink.clone();
    let record: RecordHandle = ctx.record.clone();
    let keepalive = ctx.cfg.keepalive.filter(|k| !k.is_zero());
    let mut pinger = keepalive.map(|k| tokio::time::interval_at((Instant::now() + k).into(), k));
    let mut awaiting_pong = false;
    loop {
        tokio::select! {
            _ = shutdown_requested(&mut ctx.shutdown) => {
                d.stop();
                // vLLM (uvicorn) closes with 1012 when the server shuts down.
                close_and_linger(&sink, &mut stream, 1012, &record, d.conn().last_utterance()).await;
                return;
            }
            _ = tick(&mut pinger) => {
                if awaiting_pong {
                    // uvicorn: "keepalive ping timeout".
                    d.stop();
                    close_and_linger(&sink, &mut stream, 1011, &record, d.conn().last_utterance()).await;
                    return;
                }
                awaiting_pong = true;
                if let Ok(at) = send(&sink, Message::Ping(b"rtprobe-sim".as_slice().into())).await {
                    let utterance = d.conn().last_utterance();
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
                        close_and_linger(&sink, &mut stream, code, &record, d.conn().last_utterance()).await;
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
                        close_and_linger(&sink, &mut stream, 1009, &record, d.conn().last_utterance()).await;
                        return;
                    }
                    Some(Err(WsError::Utf8(_))) => {
                        d.stop();
                        close_and_linger(&sink, &mut stream, 1007, &record, d.conn().last_utterance()).await;
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
