//! One probe run (realtime-protocol.md §6.1/§6.2): connect, wait for `session.created`, send
//! `session.update` and the audio, read deltas until `transcription.done`, close 1000.
//!
//! The reader runs from the first byte, concurrently with the sender: both are futures polled
//! together in the caller's task (no spawned task), so dropping the run cancels everything, and
//! a delta is stamped when it arrives even while the sender sleeps. Every deadline is enforced
//! here; the caller gets a `Timeline` whatever happened, never a panic.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::time::{sleep_until, timeout_at};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::audio::PreparedAudio;
use crate::config::{ModelChoice, Pacing, ProbeSpec};
use crate::probe::connect::{self, Ws, map_ws_error};
use crate::probe::error::{ErrorType, ProbeError, ServerCode};
use crate::probe::events::{self, ServerEvent};
use crate::probe::timeline::{Delta, Done, Sent, SentKind, Timeline};
use crate::probe::{models, pacer};

/// Ignored events (unknown types, non-fatal errors) tolerated per run.
pub const MAX_IGNORED_EVENTS: u64 = 10_000;
/// Transcript bytes kept per run (deltas, and `done.text`).
pub const MAX_TRANSCRIPT: usize = 1024 * 1024;
/// Deltas kept per run (empty ones included); a flood of empty deltas ends the run as `limit`
/// instead of growing memory until a deadline.
pub const MAX_DELTAS: usize = 200_000;
/// How long the closing handshake may take after `done` (not part of any measured value).
const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// After a failed send, how long the reader gets to report the cause (an error event, a close
/// frame) before the send failure itself is reported.
const SEND_FAILURE_GRACE: Duration = Duration::from_secs(1);

const START_COMMIT: &str = r#"{"type":"input_audio_buffer.commit","final":false}"#;
const FINAL_COMMIT: &str = r#"{"type":"input_audio_buffer.commit","final":true}"#;

/// What a CLI progress line can show while a run goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProgressEvent {
    /// The WebSocket upgrade succeeded.
    Connected,
    SessionCreated,
    /// Audio chunk `index` (0-based) of `total` was sent.
    ChunkSent {
        index: usize,
        total: usize,
    },
    /// A non-empty delta arrived; the transcript now has this many characters.
    Text {
        chars_total: usize,
    },
    /// `transcription.done` arrived.
    Done,
}

type Observer<'o> = Mutex<&'o mut (dyn FnMut(&ProgressEvent) + Send)>;

fn notify(observer: &Observer<'_>, event: ProgressEvent) {
    // A panicking observer poisoned the lock; progress lines are not worth failing a run for.
    let mut f = observer.lock().unwrap_or_else(|p| p.into_inner());
    (*f)(&event);
}

/// Run one probe: the `Timeline` records everything, including the failure if any.
pub async fn run(spec: &ProbeSpec, audio: &PreparedAudio) -> Timeline {
    run_observed(spec, audio, &mut |_: &ProgressEvent| {}).await
}

/// `run`, reporting progress to `observer` (called from the run's own task, briefly).
pub async fn run_observed(
    spec: &ProbeSpec,
    audio: &PreparedAudio,
    observer: &mut (dyn FnMut(&ProgressEvent) + Send),
) -> Timeline {
    let run_start = Instant::now();
    let mut tl = Timeline::new(SystemTime::now());
    tl.t0 = Some(run_start);
    let observer = Mutex::new(observer);
    let bound = (run_start + spec.timeout).into();
    match timeout_at(bound, drive(spec, audio, &mut tl, &observer)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            if tl.ended.is_zero() {
                tl.ended = tl.t0.unwrap_or(run_start).elapsed();
            }
            tl.outcome = Err(e);
        }
        // A bound that passes while closing after the outcome was decided changes nothing.
        Err(_) if !tl.ended.is_zero() => {}
        Err(_) => {
            tl.ended = tl.t0.unwrap_or(run_start).elapsed();
            tl.outcome = Err(ProbeError::new(
                pending_timeout(&tl),
                format!("run timeout of {:?} passed", spec.timeout),
            ));
        }
    }
    tl
}

/// The timeout kind of the stage a run was in when its whole-run bound passed.
fn pending_timeout(tl: &Timeline) -> ErrorType {
    if tl.phases.session_created.is_none() {
        ErrorType::TimeoutConnect
    } else if !tl.sent.iter().any(|s| s.kind == SentKind::FinalCommit) {
        ErrorType::TimeoutSending
    } else if tl.done.is_none() && !tl.deltas.iter().any(|d| d.nonempty) {
        ErrorType::TimeoutFirstText
    } else {
        ErrorType::TimeoutDone
    }
}

/// Progress shared between the sender and the reader (both run in one task; atomics only so
/// the run's future stays `Send`).
#[derive(Default)]
struct Flags {
    start_sent: AtomicBool,
    final_sent: AtomicBool,
    text_seen: AtomicBool,
}

/// Everything up to `done`, then the closing handshake; `Ok` only for a complete, non-truncated
/// run. Once the outcome is decided it sets `tl.ended` and `tl.outcome` before closing; errors
/// returned earlier (connect, session) leave `ended` at zero for the caller to fill in.
async fn drive(
    spec: &ProbeSpec,
    audio: &PreparedAudio,
    tl: &mut Timeline,
    observer: &Observer<'_>,
) -> Result<(), ProbeError> {
    let model = match &spec.model {
        ModelChoice::Named(name) => name.clone(),
        ModelChoice::Auto => {
            let start = Instant::now();
            match timeout_at(
                (start + spec.deadlines.connect).into(),
                models::resolve(spec),
            )
            .await
            {
                Ok(r) => r?,
                Err(_) => {
                    return Err(ProbeError::new(
                        ErrorType::TimeoutConnect,
                        "GET /v1/models: connect deadline passed",
                    ));
                }
            }
        }
    };

    let tls_config = connect::prepare_tls(spec)?;
    let t0 = Instant::now();
    tl.t0 = Some(t0);
    let connect_deadline = (t0 + spec.deadlines.connect).into();
    let connect_timeout = || {
        ProbeError::new(
            ErrorType::TimeoutConnect,
            format!("no session.created within {:?}", spec.deadlines.connect),
        )
    };
    let ws: Ws = timeout_at(connect_deadline, async {
        let stream = connect::open_stream(spec, tls_config, t0, &mut tl.phases).await?;
        let ws = connect::upgrade(spec, stream).await?;
        tl.phases.upgraded = Some(t0.elapsed());
        Ok::<_, ProbeError>(ws)
    })
    .await
    .map_err(|_| connect_timeout())??;
    notify(observer, ProgressEvent::Connected);
    let (mut sink, mut stream) = ws.split();

    // Control frames (a keepalive ping) may come first; the first event must be session.created.
    let first = timeout_at(connect_deadline, async {
        loop {
            match stream.next().await {
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                other => return other,
            }
        }
    })
    .await
    .map_err(|_| connect_timeout())?;
    let at = t0.elapsed();
    match first {
        Some(Ok(Message::Text(text))) => match events::parse(&text) {
            Ok(ServerEvent::SessionCreated) => {}
            Ok(_) => {
                return Err(ProbeError::new(
                    ErrorType::Protocol,
                    "first event was not session.created",
                ));
            }
            Err(e) => return Err(ProbeError::new(ErrorType::Protocol, e.to_string())),
        },
        Some(Ok(Message::Close(frame))) => {
            return Err(ProbeError::new(
                ErrorType::ClosedEarly,
                format!(
                    "closed before session.created ({})",
                    close_code(frame.as_ref())
                ),
            ));
        }
        Some(Ok(_)) => {
            return Err(ProbeError::new(
                ErrorType::Protocol,
                "first frame was not a session.created text frame",
            ));
        }
        Some(Err(e)) => return Err(map_ws_error(&e, "waiting for session.created")),
        None => {
            return Err(ProbeError::new(
                ErrorType::ClosedEarly,
                "connection ended before session.created",
            ));
        }
    }
    tl.phases.session_created = Some(at);
    notify(observer, ProgressEvent::SessionCreated);

    // Every frame is built before the first timed send: the hot path only clones `Bytes`.
    let update =
        Utf8Bytes::from(serde_json::json!({"type": "session.update", "model": model}).to_string());
    let frames: Vec<Utf8Bytes> = audio.chunks.iter().map(|c| utf8_frame(&c.frame)).collect();
    let chunk_ends: Vec<Duration> = audio
        .chunks
        .iter()
        .scan(0u64, |samples, c| {
            *samples += u64::from(c.samples);
            Some(Duration::from_secs_f64(
                *samples as f64 / f64::from(crate::audio::SAMPLE_RATE),
            ))
        })
        .collect();
    tl.sent.reserve(frames.len() + 3);

    let flags = Flags::default();
    let outcome = {
        let Timeline {
            sent,
            deltas,
            delta_text,
            done,
            audio_sent,
            truncated,
            ignored_events,
            ..
        } = &mut *tl;
        let sender = send_all(
            spec,
            audio,
            SendPlan {
                update,
                frames,
                chunk_ends,
            },
            t0,
            &mut sink,
            sent,
            audio_sent,
            &flags,
            observer,
        );
        let reader = read_all(
            &mut stream,
            t0,
            Received {
                deltas,
                delta_text,
                done,
                truncated,
                ignored_events,
            },
            &flags,
            observer,
        );
        tokio::pin!(sender, reader);
        // Reader first: a `done` and a deadline in the same poll resolve as the `done`.
        tokio::select! {
            biased;
            r = &mut reader => r,
            e = &mut sender => Err(e),
        }
    };
    let outcome = match outcome {
        Ok(()) if tl.truncated => Err(ProbeError::new(
            ErrorType::Truncated,
            "transcription.done arrived before the final commit was sent",
        )),
        other => other,
    };
    tl.ended = match &tl.done {
        Some(d) if outcome.is_ok() || tl.truncated => d.at,
        _ => t0.elapsed(),
    };
    tl.outcome = outcome.clone();
    // Close politely while the socket may still work; bounded, and after `ended` was taken.
    let broken =
        matches!(&outcome, Err(e) if matches!(e.kind, ErrorType::ClosedEarly | ErrorType::Limit));
    if !broken {
        close(&mut sink, &mut stream).await;
    }
    outcome
}

/// `Utf8Bytes` sharing the prepared frame's bytes (no copy of the base64).
fn utf8_frame(frame: &std::sync::Arc<str>) -> Utf8Bytes {
    struct Owner(std::sync::Arc<str>);
    impl AsRef<[u8]> for Owner {
        fn as_ref(&self) -> &[u8] {
            self.0.as_bytes()
        }
    }
    let bytes = Bytes::from_owner(Owner(frame.clone()));
    // The bytes come from a `str`, so they are UTF-8; the check runs once per run, untimed.
    Utf8Bytes::try_from(bytes).unwrap_or_else(|_| Utf8Bytes::from(&**frame))
}

fn close_code(frame: Option<&CloseFrame>) -> String {
    match frame {
        Some(f) => format!("close {}", u16::from(f.code)),
        None => "close without code".into(),
    }
}

/// Send close 1000 and wait (bounded) for the echo, so the server sees a clean end.
async fn close(sink: &mut SplitSink<Ws, Message>, stream: &mut SplitStream<Ws>) {
    let until = tokio::time::Instant::now() + CLOSE_WAIT;
    let _ = timeout_at(until, async {
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: Utf8Bytes::from_static(""),
        };
        if sink.send(Message::Close(Some(frame))).await.is_err() {
            return;
        }
        while let Some(Ok(m)) = stream.next().await {
            if m.is_close() {
                break;
            }
        }
    })
    .await;
}

struct SendPlan {
    update: Utf8Bytes,
    frames: Vec<Utf8Bytes>,
    chunk_ends: Vec<Duration>,
}

/// Send every client frame in the pacing order, then watch the first-text and done deadlines.
/// Never returns while the run is healthy: it ends only with the error that fails the run.
#[allow(clippy::too_many_arguments)]
async fn send_all(
    spec: &ProbeSpec,
    audio: &PreparedAudio,
    plan: SendPlan,
    t0: Instant,
    sink: &mut SplitSink<Ws, Message>,
    sent: &mut Vec<Sent>,
    audio_sent: &mut Duration,
    flags: &Flags,
    observer: &Observer<'_>,
) -> ProbeError {
    let first_text_deadline = |first_append: Instant| first_append + spec.deadlines.first_text;
    let mut first_append: Option<Instant> = None;
    let total = plan.frames.len();

    macro_rules! send {
        ($msg:expr, $kind:expr, $scheduled:expr, $audio_end:expr) => {{
            if let Err(e) = sink.send(Message::Text($msg)).await {
                let err = map_ws_error(&e, "send");
                tokio::time::sleep(SEND_FAILURE_GRACE).await;
                return err;
            }
            let now = Instant::now();
            sent.push(Sent {
                kind: $kind,
                at: now.saturating_duration_since(t0),
                scheduled: $scheduled,
                audio_end: $audio_end,
            });
            now
        }};
    }
    // Realtime sends it before the audio, burst (guidellm's order) after it.
    macro_rules! start_commit {
        () => {{
            send!(
                Utf8Bytes::from_static(START_COMMIT),
                SentKind::StartCommit,
                None,
                None
            );
            flags.start_sent.store(true, Ordering::Release);
        }};
    }

    send!(plan.update, SentKind::SessionUpdate, None, None);
    if spec.pacing == Pacing::Realtime {
        start_commit!();
    }
    let origin = Instant::now();
    for (i, (frame, end)) in plan.frames.into_iter().zip(plan.chunk_ends).enumerate() {
        let scheduled = match spec.pacing {
            Pacing::Realtime => origin + audio.chunk * i as u32,
            Pacing::Burst => origin,
        };
        if spec.pacing == Pacing::Realtime
            && let Some(fa) = first_append
            && let Err(e) = sleep_watching_text(scheduled, first_text_deadline(fa), flags).await
        {
            return e;
        }
        let at = send!(
            frame,
            SentKind::Append,
            Some(scheduled.saturating_duration_since(t0)),
            Some(end)
        );
        first_append.get_or_insert(at);
        *audio_sent = end;
        notify(observer, ProgressEvent::ChunkSent { index: i, total });
    }
    if spec.pacing == Pacing::Burst {
        start_commit!();
    }
    send!(
        Utf8Bytes::from_static(FINAL_COMMIT),
        SentKind::FinalCommit,
        None,
        None
    );
    flags.final_sent.store(true, Ordering::Release);
    let done_deadline = Instant::now() + spec.deadlines.done;

    if let Some(fa) = first_append
        && let Err(e) = sleep_watching_text(done_deadline, first_text_deadline(fa), flags).await
    {
        return e;
    }
    sleep_until(done_deadline.into()).await;
    ProbeError::new(
        ErrorType::TimeoutDone,
        format!(
            "no transcription.done within {:?} of the final commit",
            spec.deadlines.done
        ),
    )
}

/// Sleep until `until`, failing with `TimeoutFirstText` if the first-text deadline passes first
/// with no text seen. The flag is only read when a deadline is reached: no wake-ups in between.
async fn sleep_watching_text(
    until: Instant,
    first_text: Instant,
    flags: &Flags,
) -> Result<(), ProbeError> {
    if first_text < until && !flags.text_seen.load(Ordering::Acquire) {
        sleep_until(first_text.into()).await;
        if !flags.text_seen.load(Ordering::Acquire) {
            return Err(ProbeError::new(
                ErrorType::TimeoutFirstText,
                "no text within the first-text deadline after the first audio",
            ));
        }
    }
    pacer::sleep_until(until).await;
    Ok(())
}

struct Received<'a> {
    deltas: &'a mut Vec<Delta>,
    delta_text: &'a mut String,
    done: &'a mut Option<Done>,
    truncated: &'a mut bool,
    ignored_events: &'a mut u64,
}

/// Read until `transcription.done` (`Ok`) or the first failure.
async fn read_all(
    stream: &mut SplitStream<Ws>,
    t0: Instant,
    r: Received<'_>,
    flags: &Flags,
    observer: &Observer<'_>,
) -> Result<(), ProbeError> {
    let Received {
        deltas,
        delta_text,
        done,
        truncated,
        ignored_events,
    } = r;
    let mut chars_total = 0usize;
    deltas.reserve(256);
    loop {
        let msg = stream.next().await;
        let at = t0.elapsed();
        let text = match msg {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Binary(b))) => {
                return Err(ProbeError::new(
                    ErrorType::Protocol,
                    format!("binary frame of {} bytes from the server", b.len()),
                ));
            }
            Some(Ok(Message::Close(frame))) => {
                return Err(ProbeError::new(
                    ErrorType::ClosedEarly,
                    format!(
                        "server closed before transcription.done ({})",
                        close_code(frame.as_ref())
                    ),
                ));
            }
            // Pings are answered by the library on the next read or write.
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(map_ws_error(&e, "read")),
            None => {
                return Err(ProbeError::new(
                    ErrorType::ClosedEarly,
                    "connection ended before transcription.done",
                ));
            }
        };
        let event = events::parse(&text)
            .map_err(|e| ProbeError::new(ErrorType::Protocol, e.to_string()))?;
        match event {
            ServerEvent::Delta(piece) => {
                let nonempty = !piece.is_empty();
                if deltas.len() >= MAX_DELTAS {
                    return Err(ProbeError::new(
                        ErrorType::Limit,
                        format!("more than {MAX_DELTAS} transcription.delta events"),
                    ));
                }
                deltas.push(Delta { at, nonempty });
                if nonempty {
                    if delta_text.len() + piece.len() > MAX_TRANSCRIPT {
                        return Err(ProbeError::new(
                            ErrorType::Limit,
                            format!("transcript longer than {MAX_TRANSCRIPT} bytes"),
                        ));
                    }
                    delta_text.push_str(&piece);
                    chars_total += piece.chars().count();
                    flags.text_seen.store(true, Ordering::Release);
                    notify(observer, ProgressEvent::Text { chars_total });
                }
            }
            ServerEvent::Done { text, usage } => {
                if text.len() > MAX_TRANSCRIPT {
                    return Err(ProbeError::new(
                        ErrorType::Limit,
                        format!("final text longer than {MAX_TRANSCRIPT} bytes"),
                    ));
                }
                *truncated = !flags.final_sent.load(Ordering::Acquire);
                *done = Some(Done { at, text, usage });
                notify(observer, ProgressEvent::Done);
                return Ok(());
            }
            ServerEvent::Error { message, code } => {
                let server_code = code
                    .as_deref()
                    .map_or(ServerCode::Other, ServerCode::from_wire);
                if fails_run(server_code, flags.start_sent.load(Ordering::Acquire)) {
                    return Err(ProbeError::new(
                        ErrorType::ServerError(server_code),
                        format!(
                            "server error {}: {}",
                            code.as_deref().unwrap_or("(no code)"),
                            truncate_chars(&message, 200)
                        ),
                    ));
                }
                ignore(ignored_events)?;
            }
            ServerEvent::SessionCreated | ServerEvent::Other => ignore(ignored_events)?,
        }
    }
}

/// Whether a server `error` event fails the run. Set-up errors and a rejected chunk always do
/// (a dropped chunk leaves a gap in the audio, so the transcript no longer answers the clip,
/// also in burst mode where every append precedes the start commit; see
/// docs/exact-values.md); anything else only once the start commit was sent.
fn fails_run(code: ServerCode, start_sent: bool) -> bool {
    let always = matches!(
        code,
        ServerCode::ModelNotFound
            | ServerCode::InvalidEvent
            | ServerCode::ModelNotValidated
            | ServerCode::InvalidAudio
    );
    always || start_sent
}

fn ignore(count: &mut u64) -> Result<(), ProbeError> {
    *count += 1;
    if *count > MAX_IGNORED_EVENTS {
        return Err(ProbeError::new(
            ErrorType::Limit,
            format!("more than {MAX_IGNORED_EVENTS} ignored server events"),
        ));
    }
    Ok(())
}

/// Server messages go to logs; keep them one bounded line.
fn truncate_chars(s: &str, max: usize) -> String {
    let mut out: String = s.chars().take(max).filter(|c| !c.is_control()).collect();
    if s.chars().count() > max {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::timeline::Delta;

    fn at(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    fn sent(kind: SentKind, ms: u64) -> Sent {
        Sent {
            kind,
            at: at(ms),
            scheduled: None,
            audio_end: None,
        }
    }

    #[test]
    fn run_timeout_is_named_after_the_pending_stage() {
        let mut tl = Timeline::new(SystemTime::UNIX_EPOCH);
        assert_eq!(pending_timeout(&tl), ErrorType::TimeoutConnect);
        tl.phases.session_created = Some(at(20));
        tl.sent = vec![
            sent(SentKind::SessionUpdate, 21),
            sent(SentKind::StartCommit, 22),
            sent(SentKind::Append, 23),
            sent(SentKind::Append, 123),
        ];
        // Audio still going out, with or without text: the clip was not delivered in time.
        assert_eq!(pending_timeout(&tl), ErrorType::TimeoutSending);
        tl.deltas.push(Delta {
            at: at(110),
            nonempty: true,
        });
        assert_eq!(pending_timeout(&tl), ErrorType::TimeoutSending);
        tl.sent.push(sent(SentKind::FinalCommit, 124));
        assert_eq!(pending_timeout(&tl), ErrorType::TimeoutDone);
        tl.deltas.clear();
        assert_eq!(pending_timeout(&tl), ErrorType::TimeoutFirstText);
    }

    #[test]
    fn rejected_audio_fails_the_run_before_the_start_commit() {
        assert!(fails_run(ServerCode::InvalidAudio, false));
        assert!(fails_run(ServerCode::ModelNotFound, false));
        assert!(!fails_run(ServerCode::ProcessingError, false));
        assert!(!fails_run(ServerCode::Other, false));
        for code in ServerCode::ALL {
            assert!(fails_run(code, true), "{code:?}");
        }
    }
}
