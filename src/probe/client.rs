//! One probe run: connect, session, paced sends and a concurrent reader, every step under a
//! deadline, recorded into a `Timeline`. No metrics and no statistics here (see
//! `metrics::derive`); the hot path only sends pre-built frames and pushes timestamps.
//!
//! Sequence (realtime-protocol.md §6.1): `session.created` → `session.update{model}` →
//! `commit{final:false}` → appends at `t_first + i·chunk` → `commit{final:true}` → read until
//! `transcription.done` → close 1000. `Pacing::Burst` uses guidellm's order (§6.2).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use futures_util::{SinkExt, StreamExt};
use tokio::sync::Notify;
use tokio::time::{sleep_until, timeout_at};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::audio::PreparedAudio;
use crate::config::{ModelChoice, Pacing, ProbeSpec};
use crate::probe::connect::{self, Ws, classify_ws_error};
use crate::probe::error::{ErrorType, ProbeError, ServerCode};
use crate::probe::events::{self, ServerEvent};
use crate::probe::timeline::{Delta, Done, Sent, SentKind, Timeline};
use crate::probe::{models, pacer, tls};

/// Events that are not deltas, done or errors (e.g. `session.updated`), tolerated up to this
/// many per run; a peer flooding them ends the run as `limit`.
pub const MAX_IGNORED_EVENTS: u64 = 10_000;
/// Transcript bytes kept per run; more ends the run as `limit`.
pub const MAX_TRANSCRIPT_BYTES: usize = 1 << 20;
/// How long to wait for the server's close echo after our close 1000 (not part of any metric).
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// Progress of a run, for a terminal progress line. Emitted from the run's own task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProgressEvent {
    Connected,
    SessionCreated,
    ChunkSent { index: usize, total: usize },
    Text { chars_total: usize },
    Done,
}

/// Run one probe. Never panics; always returns a timeline with `ended` set.
pub async fn run(spec: &ProbeSpec, audio: &PreparedAudio) -> Timeline {
    run_observed(spec, audio, &mut |_| {}).await
}

/// As `run`, calling `observer` as the run progresses.
pub async fn run_observed(
    spec: &ProbeSpec,
    audio: &PreparedAudio,
    observer: &mut (dyn FnMut(&ProgressEvent) + Send),
) -> Timeline {
    let started = SystemTime::now();
    // Everything that can be prepared is prepared before t0: TLS config, frames, model name.
    let mut tl = Timeline::new(started);
    let prepared = prepare(spec, audio).await;
    let t0 = Instant::now();
    let result = match prepared {
        Ok(p) => session(spec, audio, &p, t0, &mut tl, observer).await,
        Err(e) => Err(e),
    };
    tl.ended = t0.elapsed();
    if let Err(e) = result {
        tl.outcome = Err(e);
    }
    tl
}

struct Prepared {
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    update: Utf8Bytes,
    frames: Vec<Utf8Bytes>,
}

const START_COMMIT: &str = r#"{"type":"input_audio_buffer.commit","final":false}"#;
const FINAL_COMMIT: &str = r#"{"type":"input_audio_buffer.commit","final":true}"#;

async fn prepare(spec: &ProbeSpec, audio: &PreparedAudio) -> Result<Prepared, ProbeError> {
    let tls = if spec.target.secure {
        Some(
            tls::client_config(&spec.tls)
                .map_err(|e| ProbeError::new(ErrorType::Tls, e.to_string()))?,
        )
    } else {
        None
    };
    let model = match &spec.model {
        ModelChoice::Named(m) => m.clone(),
        ModelChoice::Auto => models::first_model(spec, tls.clone()).await?,
    };
    let update = serde_json::json!({"type": "session.update", "model": model}).to_string();
    let frames = audio
        .chunks
        .iter()
        .map(|c| Utf8Bytes::from(c.frame.to_string()))
        .collect();
    Ok(Prepared {
        tls,
        update: update.into(),
        frames,
    })
}

/// Shared between the sender and the reader (both polled by this task): when the first append
/// and the final commit left, as nanoseconds since t0 (0 = not yet).
#[derive(Default)]
struct Progress {
    first_append_ns: AtomicU64,
    final_commit_ns: AtomicU64,
    chunks_sent: AtomicU64,
    changed: Notify,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1)
}

fn get(a: &AtomicU64) -> Option<Duration> {
    match a.load(Ordering::Acquire) {
        0 => None,
        n => Some(Duration::from_nanos(n)),
    }
}

async fn session(
    spec: &ProbeSpec,
    audio: &PreparedAudio,
    p: &Prepared,
    t0: Instant,
    tl: &mut Timeline,
    observer: &mut (dyn FnMut(&ProgressEvent) + Send),
) -> Result<(), ProbeError> {
    let overall = t0 + spec.timeout;
    let connect_deadline = (t0 + spec.deadlines.connect).min(overall);
    let timeout_connect = || {
        ProbeError::new(
            ErrorType::TimeoutConnect,
            format!(
                "no session.created within {:?}",
                spec.deadlines.connect.min(spec.timeout)
            ),
        )
    };

    let mut ws = timeout_at(connect_deadline.into(), async {
        let stream = connect::open_stream(spec, p.tls.clone(), t0, &mut tl.phases).await?;
        connect::upgrade(spec, stream, t0, &mut tl.phases).await
    })
    .await
    .map_err(|_| timeout_connect())??;
    observer(&ProgressEvent::Connected);

    // The first event must be session.created.
    loop {
        let msg = timeout_at(connect_deadline.into(), ws.next())
            .await
            .map_err(|_| timeout_connect())?;
        match msg {
            None => {
                return Err(ProbeError::new(
                    ErrorType::ClosedEarly,
                    "closed before session.created",
                ));
            }
            Some(Err(e)) => return Err(classify_ws_error(&e, "waiting for session.created")),
            Some(Ok(Message::Text(text))) => match events::parse(text.as_str()) {
                Ok(ServerEvent::SessionCreated) => {
                    tl.phases.session_created = Some(t0.elapsed());
                    break;
                }
                Ok(ServerEvent::Error { code, message }) => {
                    return Err(server_error(code, &message));
                }
                Ok(_) => {
                    return Err(ProbeError::new(
                        ErrorType::Protocol,
                        "first server event was not session.created",
                    ));
                }
                Err(e) => return Err(ProbeError::new(ErrorType::Protocol, e.to_string())),
            },
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            Some(Ok(Message::Close(frame))) => {
                return Err(closed(frame.as_ref(), "before session.created"));
            }
            Some(Ok(_)) => {
                return Err(ProbeError::new(
                    ErrorType::Protocol,
                    "binary frame before session.created",
                ));
            }
        }
    }
    observer(&ProgressEvent::SessionCreated);

    let progress = Progress::default();
    let mut sent = Vec::with_capacity(audio.chunks.len() + 3);
    let result = {
        let (mut sink, mut stream) = (&mut ws).split();
        let sender = send_all(spec, audio, p, t0, &mut sink, &mut sent, &progress);
        let reader = read_until_done(
            spec,
            t0,
            overall,
            &mut stream,
            tl,
            &progress,
            audio.chunks.len(),
            observer,
        );
        tokio::pin!(sender, reader);
        let mut sender_done = false;
        loop {
            tokio::select! {
                biased;
                r = &mut reader => break r,
                s = &mut sender, if !sender_done => {
                    if let Err(e) = s { break Err(e); }
                    sender_done = true;
                }
            }
        }
    };
    tl.sent = sent;
    tl.audio_sent = tl
        .sent
        .iter()
        .filter_map(|s| s.audio_end)
        .max()
        .unwrap_or(Duration::ZERO);
    if result.is_ok() {
        observer(&ProgressEvent::Done);
        close(&mut ws).await;
    }
    result
}

/// Polite close: 1000, then wait briefly for the echo so the server sees a clean end.
async fn close(ws: &mut Ws) {
    let frame = CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    };
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        if ws.send(Message::Close(Some(frame))).await.is_err() {
            return;
        }
        while let Some(Ok(msg)) = ws.next().await {
            if matches!(msg, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

async fn send_frame<S>(sink: &mut S, text: Utf8Bytes) -> Result<(), ProbeError>
where
    S: futures_util::Sink<Message, Error = tokio_tungstenite::tungstenite::Error> + Unpin,
{
    sink.send(Message::Text(text))
        .await
        .map_err(|e| classify_ws_error(&e, "sending"))
}

async fn send_all<S>(
    spec: &ProbeSpec,
    audio: &PreparedAudio,
    p: &Prepared,
    t0: Instant,
    sink: &mut S,
    sent: &mut Vec<Sent>,
    progress: &Progress,
) -> Result<(), ProbeError>
where
    S: futures_util::Sink<Message, Error = tokio_tungstenite::tungstenite::Error> + Unpin,
{
    let record = |sent: &mut Vec<Sent>, kind, scheduled: Option<Instant>, audio_end| {
        let at = t0.elapsed();
        sent.push(Sent {
            kind,
            at,
            scheduled: scheduled.map(|s| s.saturating_duration_since(t0)),
            audio_end,
        });
        at
    };
    let start_commit: Utf8Bytes = Utf8Bytes::from_static(START_COMMIT);
    let final_commit: Utf8Bytes = Utf8Bytes::from_static(FINAL_COMMIT);

    send_frame(sink, p.update.clone()).await?;
    record(sent, SentKind::SessionUpdate, None, None);
    if spec.pacing == Pacing::Realtime {
        send_frame(sink, start_commit.clone()).await?;
        record(sent, SentKind::StartCommit, None, None);
    }
    let mut audio_end = Duration::ZERO;
    let mut first: Option<Instant> = None;
    for (i, (frame, chunk)) in p.frames.iter().zip(audio.chunks.iter()).enumerate() {
        let due = match (spec.pacing, first) {
            (Pacing::Realtime, Some(f)) => {
                // Absolute schedule: lateness of one send never shifts the next.
                let due = f + audio.chunk * u32::try_from(i).unwrap_or(u32::MAX);
                pacer::sleep_until(due).await;
                due
            }
            _ => Instant::now(),
        };
        first.get_or_insert(due);
        send_frame(sink, frame.clone()).await?;
        audio_end += chunk.duration();
        let at = record(sent, SentKind::Append, Some(due), Some(audio_end));
        if i == 0 {
            progress.first_append_ns.store(nanos(at), Ordering::Release);
        }
        progress.chunks_sent.store(i as u64 + 1, Ordering::Release);
        progress.changed.notify_one();
    }
    if spec.pacing == Pacing::Burst {
        send_frame(sink, start_commit).await?;
        record(sent, SentKind::StartCommit, None, None);
    }
    send_frame(sink, final_commit).await?;
    let at = record(sent, SentKind::FinalCommit, None, None);
    progress.final_commit_ns.store(nanos(at), Ordering::Release);
    progress.changed.notify_one();
    Ok(())
}

fn server_error(code: Option<String>, message: &str) -> ProbeError {
    let code_str = code.as_deref().unwrap_or("");
    ProbeError::new(
        ErrorType::ServerError(ServerCode::from_wire(code_str)),
        format!("server error {code_str:?}: {message}"),
    )
}

fn closed(frame: Option<&CloseFrame>, when: &str) -> ProbeError {
    let detail = match frame {
        Some(f) => format!("server closed {when} with code {}", u16::from(f.code)),
        None => format!("server closed {when}"),
    };
    ProbeError::new(ErrorType::ClosedEarly, detail)
}

#[allow(clippy::too_many_arguments)] // one call site; grouping them would only rename the list
async fn read_until_done<S>(
    spec: &ProbeSpec,
    t0: Instant,
    overall: Instant,
    stream: &mut S,
    tl: &mut Timeline,
    progress: &Progress,
    total_chunks: usize,
    observer: &mut (dyn FnMut(&ProgressEvent) + Send),
) -> Result<(), ProbeError>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let mut seen_text = false;
    let mut chunks_reported = 0;
    loop {
        let chunks = progress.chunks_sent.load(Ordering::Acquire);
        if chunks != chunks_reported {
            chunks_reported = chunks;
            observer(&ProgressEvent::ChunkSent {
                index: chunks as usize,
                total: total_chunks,
            });
        }
        // The pending stage decides both the deadline and the error a miss becomes.
        let (deadline, kind, what) = match (
            get(&progress.final_commit_ns),
            get(&progress.first_append_ns),
        ) {
            (Some(fin), _) => (
                (t0 + fin + spec.deadlines.done).min(overall),
                ErrorType::TimeoutDone,
                "transcription.done",
            ),
            (None, Some(first)) if !seen_text => (
                (t0 + first + spec.deadlines.first_text).min(overall),
                ErrorType::TimeoutFirstText,
                "the first text",
            ),
            (None, _) if seen_text => (overall, ErrorType::TimeoutDone, "transcription.done"),
            _ => (overall, ErrorType::TimeoutFirstText, "the first text"),
        };
        let msg = tokio::select! {
            biased;
            m = stream.next() => m,
            _ = progress.changed.notified() => continue,
            _ = sleep_until(deadline.into()) => {
                return Err(ProbeError::new(kind, format!("no {what} after {:.3} s", t0.elapsed().as_secs_f64())));
            }
        };
        let at = t0.elapsed();
        let text = match msg {
            None => {
                return Err(ProbeError::new(
                    ErrorType::ClosedEarly,
                    "connection ended before transcription.done",
                ));
            }
            Some(Err(e)) => return Err(classify_ws_error(&e, "reading")),
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
            Some(Ok(Message::Close(frame))) => {
                return Err(closed(frame.as_ref(), "before transcription.done"));
            }
            Some(Ok(Message::Binary(_))) => {
                return Err(ProbeError::new(
                    ErrorType::Protocol,
                    "server sent a binary frame",
                ));
            }
        };
        match events::parse(text.as_str()) {
            Err(e) => return Err(ProbeError::new(ErrorType::Protocol, e.to_string())),
            Ok(ServerEvent::Delta(d)) => {
                let nonempty = !d.is_empty();
                tl.deltas.push(Delta { at, nonempty });
                if nonempty {
                    seen_text = true;
                    if tl.delta_text.len() + d.len() > MAX_TRANSCRIPT_BYTES {
                        return Err(ProbeError::new(
                            ErrorType::Limit,
                            "transcript exceeds 1 MiB",
                        ));
                    }
                    tl.delta_text.push_str(&d);
                    observer(&ProgressEvent::Text {
                        chars_total: tl.delta_text.chars().count(),
                    });
                }
            }
            Ok(ServerEvent::Done { text, usage }) => {
                if text.len() > MAX_TRANSCRIPT_BYTES {
                    return Err(ProbeError::new(
                        ErrorType::Limit,
                        "transcript exceeds 1 MiB",
                    ));
                }
                tl.done = Some(Done { at, text, usage });
                if get(&progress.final_commit_ns).is_none() {
                    tl.truncated = true;
                    return Err(ProbeError::new(
                        ErrorType::Truncated,
                        "transcription.done arrived before the final commit was sent: the transcript covers part of the audio",
                    ));
                }
                return Ok(());
            }
            Ok(ServerEvent::Error { code, message }) => return Err(server_error(code, &message)),
            Ok(ServerEvent::SessionCreated | ServerEvent::Other) => {
                tl.ignored_events += 1;
                if tl.ignored_events > MAX_IGNORED_EVENTS {
                    return Err(ProbeError::new(
                        ErrorType::Limit,
                        "more than 10000 ignored server events",
                    ));
                }
            }
        }
    }
}
