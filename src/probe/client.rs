//! One probe run (docs/protocol-vllm.md §6.1/§6.2; docs/protocol-openai.md): connect, wait for
//! `session.created`, send `session.update` and the audio, read deltas until the final text,
//! close 1000. The frames and the reading of events come from the probe's dialect
//! (`probe::dialect`); pacing, deadlines and the `Timeline` are the same for every dialect.
//!
//! The reader runs from the first byte, concurrently with the sender: both are futures polled
//! together in the caller's task (no spawned task), so dropping the run cancels everything, and
//! a delta is stamped when it arrives even while the sender sleeps. Every deadline is enforced
//! here; the caller gets a `Timeline` whatever happened, never a panic.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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
use crate::probe::dialect::{self, Event, Frames};
use crate::probe::error::{ErrorType, ProbeError, ServerCode};
use crate::probe::timeline::{Acks, Delta, Done, Sent, SentKind, Timeline, UtteranceSlice};
use crate::probe::{models, pacer};
use crate::sync;

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
    let mut f = sync::lock(observer);
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
    run_session(spec, &[audio], observer).await
}

/// A session of several utterances on one connection, one clip each, in order: utterance k+1
/// starts when utterance k's final text arrived. A failure in utterance k fails the run; the
/// detail names the utterance and `Timeline::failed_utterance` holds it.
pub async fn run_session(
    spec: &ProbeSpec,
    clips: &[&PreparedAudio],
    observer: &mut (dyn FnMut(&ProgressEvent) + Send),
) -> Timeline {
    let run_start = Instant::now();
    let mut tl = Timeline::new(SystemTime::now());
    tl.t0 = Some(run_start);
    tl.dialect = spec.dialect.kind;
    let observer = Mutex::new(observer);
    let slices = Mutex::new(Vec::<UtteranceSlice>::new());
    let bound = (run_start + spec.timeout).into();
    let driven = timeout_at(bound, drive(spec, clips, &mut tl, &slices, &observer)).await;
    tl.utterances = sync::into_inner(slices);
    match driven {
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
    if let Err(e) = &mut tl.outcome {
        // The utterance that was in progress: the first without its final text.
        let k = tl
            .utterances
            .iter()
            .position(|u| u.done.is_none() || u.truncated)
            .unwrap_or(tl.utterances.len().saturating_sub(1));
        tl.failed_utterance = Some(k);
        if clips.len() > 1 {
            e.detail = format!("utterance {} of {}: {}", k + 1, clips.len(), e.detail);
        }
    }
    tl
}

/// The timeout kind of the stage a run was in when its whole-run bound passed.
fn pending_timeout(tl: &Timeline) -> ErrorType {
    // The utterance in progress: its deltas follow the last one that got its final text.
    let from = tl
        .utterances
        .iter()
        .rev()
        .find_map(|u| u.deltas_end)
        .unwrap_or(0)
        .min(tl.deltas.len());
    let waiting = tl.utterances.last().is_none_or(|u| u.done.is_none());
    let no_text = waiting && !tl.deltas[from..].iter().any(|d| d.nonempty);
    // Still sending audio: the utterance in progress has not ended (no ending commit sent, and
    // no `speech_stopped` from a server that decides turns).
    let current = tl.utterances.last();
    let sent_from = current.map_or(0, |u| u.sent_from).min(tl.sent.len());
    let stopped = current.map_or(tl.acks.speech_stopped, |u| u.acks.speech_stopped);
    let sending = stopped.is_none()
        && !tl.sent[sent_from..]
            .iter()
            .any(|s| s.kind == SentKind::FinalCommit);
    if tl.phases.session_created.is_none() {
        ErrorType::TimeoutConnect
    } else if sending {
        ErrorType::TimeoutSending
    } else if no_text {
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
    /// Utterances whose final text arrived; the sender starts the next one after it.
    done_count: AtomicUsize,
    done_notify: tokio::sync::Notify,
}

/// The per-utterance slices, written by the sender (where an utterance's sends begin) and the
/// reader (its final text and acks); both run in one task and never hold the lock across an
/// await.
type Slices = Mutex<Vec<UtteranceSlice>>;

fn with_slice(slices: &Slices, k: usize, f: impl FnOnce(&mut UtteranceSlice)) {
    let mut v = sync::lock(slices);
    if let Some(s) = v.get_mut(k) {
        f(s);
    }
}

/// An acknowledgement received at `at`: the first of its kind counts, for the run and for the
/// utterance under way.
fn ack(
    acks: &mut Acks,
    slices: &Slices,
    flags: &Flags,
    at: Duration,
    field: fn(&mut Acks) -> &mut Option<Duration>,
) {
    field(acks).get_or_insert(at);
    let k = flags.done_count.load(Ordering::Acquire);
    with_slice(slices, k, |s| {
        field(&mut s.acks).get_or_insert(at);
    });
}

/// Everything up to `done`, then the closing handshake; `Ok` only for a complete, non-truncated
/// run. Once the outcome is decided it sets `tl.ended` and `tl.outcome` before closing; errors
/// returned earlier (connect, session) leave `ended` at zero for the caller to fill in.
async fn drive(
    spec: &ProbeSpec,
    clips: &[&PreparedAudio],
    tl: &mut Timeline,
    slices: &Slices,
    observer: &Observer<'_>,
) -> Result<(), ProbeError> {
    let Some(&audio) = clips.first() else {
        return Err(ProbeError::new(
            ErrorType::Internal,
            "a session needs a clip",
        ));
    };
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
        Some(Ok(Message::Text(text))) => match dialect::parse(spec.dialect.kind, &text) {
            Ok(Event::SessionCreated) => {}
            Ok(_) => {
                return Err(ProbeError::new(
                    ErrorType::Protocol,
                    "first event was not session.created",
                ));
            }
            Err(e) => return Err(ProbeError::new(ErrorType::Protocol, e.to_string())),
        },
        Some(Ok(Message::Close(frame))) => {
            return Err(closed_before("session.created", frame.as_ref()));
        }
        Some(Ok(_)) => {
            return Err(ProbeError::new(
                ErrorType::Protocol,
                "first frame was not a session.created text frame",
            ));
        }
        Some(Err(e)) => return Err(map_ws_error(&e, "waiting for session.created")),
        None => return Err(ended_before("session.created")),
    }
    tl.phases.session_created = Some(at);
    notify(observer, ProgressEvent::SessionCreated);

    // Every frame is built before the first timed send: the hot path only clones `Bytes`.
    let Frames {
        update,
        start_commit,
        end_commit,
        vad_tail,
    } = dialect::frames(spec, &model);
    // Trailing silence for a server VAD, in chunks of the clip's size.
    let tail: Option<(Utf8Bytes, u32, usize)> = (!vad_tail.is_zero()).then(|| {
        let per_chunk = ((audio.chunk.as_secs_f64() * f64::from(audio.rate)).round() as u32).max(1);
        let silence =
            crate::audio::prepare_pcm_at(&vec![0i16; per_chunk as usize], audio.chunk, audio.rate);
        let n = vad_tail.as_nanos().div_ceil(audio.chunk.as_nanos().max(1)) as usize;
        let c = &silence.chunks[0];
        (utf8_frame(&c.frame), c.samples, n)
    });
    let utterances: Vec<UtterancePlan> = clips
        .iter()
        .map(|clip| {
            let mut frames: Vec<Utf8Bytes> =
                clip.chunks.iter().map(|c| utf8_frame(&c.frame)).collect();
            let mut chunk_samples: Vec<u32> = clip.chunks.iter().map(|c| c.samples).collect();
            if let Some((frame, samples, n)) = &tail {
                frames.extend(std::iter::repeat_n(frame.clone(), *n));
                chunk_samples.extend(std::iter::repeat_n(*samples, *n));
            }
            let chunk_ends = chunk_samples
                .iter()
                .scan(0u64, |samples, c| {
                    *samples += u64::from(*c);
                    Some(Duration::from_secs_f64(
                        *samples as f64 / f64::from(clip.rate),
                    ))
                })
                .collect();
            UtterancePlan { frames, chunk_ends }
        })
        .collect();
    tl.sent
        .reserve(utterances.iter().map(|u| u.frames.len() + 2).sum::<usize>() + 1);

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
            acks,
            ..
        } = &mut *tl;
        let sender = send_all(
            spec,
            audio,
            SendPlan {
                update: Utf8Bytes::from(update),
                start_commit: start_commit.map(Utf8Bytes::from),
                end_commit: end_commit.map(Utf8Bytes::from),
                utterances,
            },
            t0,
            &mut sink,
            sent,
            audio_sent,
            &flags,
            slices,
            observer,
        );
        let reader = read_all(
            &mut stream,
            t0,
            spec.dialect.kind,
            Received {
                deltas,
                delta_text,
                done,
                truncated,
                ignored_events,
                acks,
            },
            clips.len(),
            &flags,
            slices,
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
            "the final text arrived before the utterance's audio ended",
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

/// The server sent a close frame before `what` came.
fn closed_before(what: &str, frame: Option<&CloseFrame>) -> ProbeError {
    let code = match frame {
        Some(f) => format!("close {}", u16::from(f.code)),
        None => "close without code".into(),
    };
    ProbeError::new(
        ErrorType::ClosedEarly,
        format!("server closed before {what} ({code})"),
    )
}

/// The stream ended, without a close frame, before `what` came.
fn ended_before(what: &str) -> ProbeError {
    ProbeError::new(
        ErrorType::ClosedEarly,
        format!("connection ended before {what}"),
    )
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

/// One utterance's append frames and the cumulative audio at the end of each.
struct UtterancePlan {
    frames: Vec<Utf8Bytes>,
    chunk_ends: Vec<Duration>,
}

struct SendPlan {
    update: Utf8Bytes,
    /// vLLM's `commit final:false`; `None` in dialects where appends open the utterance.
    start_commit: Option<Utf8Bytes>,
    /// The commit that ends the utterance; `None` when the server commits (VAD).
    end_commit: Option<Utf8Bytes>,
    utterances: Vec<UtterancePlan>,
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
    slices: &Slices,
    observer: &Observer<'_>,
) -> ProbeError {
    let first_text_deadline = |first_append: Instant| first_append + spec.deadlines.first_text;

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
    let start_commit = plan.start_commit;
    macro_rules! start_commit {
        () => {{
            if let Some(frame) = start_commit.clone() {
                send!(frame, SentKind::StartCommit, None, None);
                flags.start_sent.store(true, Ordering::Release);
            }
        }};
    }

    let count = plan.utterances.len();
    let mut audio_before = Duration::ZERO;
    for (u, utterance) in plan.utterances.into_iter().enumerate() {
        {
            let mut v = sync::lock(slices);
            v.push(UtteranceSlice {
                sent_from: sent.len(),
                ..UtteranceSlice::default()
            });
        }
        flags.final_sent.store(false, Ordering::Release);
        flags.text_seen.store(false, Ordering::Release);
        if u == 0 {
            send!(plan.update.clone(), SentKind::SessionUpdate, None, None);
        }
        if spec.pacing == Pacing::Realtime {
            start_commit!();
        }
        let mut first_append: Option<Instant> = None;
        let total = utterance.frames.len();
        let origin = Instant::now();
        for (i, (frame, end)) in utterance
            .frames
            .into_iter()
            .zip(utterance.chunk_ends)
            .enumerate()
        {
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
            *audio_sent = audio_before + end;
            notify(observer, ProgressEvent::ChunkSent { index: i, total });
        }
        audio_before = *audio_sent;
        if spec.pacing == Pacing::Burst {
            start_commit!();
        }
        if let Some(frame) = plan.end_commit.clone() {
            send!(frame, SentKind::FinalCommit, None, None);
            flags.final_sent.store(true, Ordering::Release);
        }
        let done_deadline = Instant::now() + spec.deadlines.done;
        let deadline = async {
            if let Some(fa) = first_append {
                sleep_watching_text(done_deadline, first_text_deadline(fa), flags).await?;
            }
            sleep_until(done_deadline.into()).await;
            Err::<(), _>(ProbeError::new(
                ErrorType::TimeoutDone,
                format!(
                    "no final text within {:?} of the end of the audio",
                    spec.deadlines.done
                ),
            ))
        };
        if u + 1 == count {
            // The reader ends the run at the last final text.
            return match deadline.await {
                Err(e) => e,
                Ok(()) => ProbeError::new(ErrorType::Internal, "deadline returned"),
            };
        }
        // The next utterance starts once this one's final text arrived.
        let done = async {
            while flags.done_count.load(Ordering::Acquire) <= u {
                flags.done_notify.notified().await;
            }
        };
        tokio::select! {
            biased;
            () = done => {}
            r = deadline => {
                if let Err(e) = r {
                    return e;
                }
            }
        }
    }
    ProbeError::new(ErrorType::Internal, "a session needs a clip")
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
    acks: &'a mut Acks,
}

/// Read until the last utterance's final text (`Ok`) or the first failure.
#[allow(clippy::too_many_arguments)]
async fn read_all(
    stream: &mut SplitStream<Ws>,
    t0: Instant,
    wire: crate::config::Dialect,
    r: Received<'_>,
    utterances: usize,
    flags: &Flags,
    slices: &Slices,
    observer: &Observer<'_>,
) -> Result<(), ProbeError> {
    let Received {
        deltas,
        delta_text,
        done,
        truncated,
        ignored_events,
        acks,
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
                return Err(closed_before("transcription.done", frame.as_ref()));
            }
            // Pings are answered by the library on the next read or write.
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(map_ws_error(&e, "read")),
            None => return Err(ended_before("transcription.done")),
        };
        let event = dialect::parse(wire, &text)
            .map_err(|e| ProbeError::new(ErrorType::Protocol, e.to_string()))?;
        match event {
            Event::Delta(piece) => {
                let nonempty = !piece.is_empty();
                if deltas.len() >= MAX_DELTAS {
                    return Err(ProbeError::new(
                        ErrorType::Limit,
                        format!("more than {MAX_DELTAS} transcription.delta events"),
                    ));
                }
                let text_end = delta_text.len() + piece.len();
                deltas.push(Delta {
                    at,
                    nonempty,
                    text_end,
                });
                if nonempty {
                    if text_end > MAX_TRANSCRIPT {
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
            Event::Done { text, usage } => {
                if text.len() > MAX_TRANSCRIPT {
                    return Err(ProbeError::new(
                        ErrorType::Limit,
                        format!("final text longer than {MAX_TRANSCRIPT} bytes"),
                    ));
                }
                let cut = !flags.final_sent.load(Ordering::Acquire);
                *truncated |= cut;
                let d = Done { at, text, usage };
                let k = flags.done_count.load(Ordering::Acquire);
                with_slice(slices, k, |s| {
                    s.deltas_end = Some(deltas.len());
                    s.text_end = Some(delta_text.len());
                    s.done = Some(d.clone());
                    s.truncated = cut;
                });
                *done = Some(d);
                notify(observer, ProgressEvent::Done);
                // A cut utterance ends the session: the next one's audio would be misread.
                if cut || k + 1 >= utterances {
                    return Ok(());
                }
                flags.done_count.store(k + 1, Ordering::Release);
                flags.done_notify.notify_one();
            }
            Event::Error { message, code } => {
                let server_code = code
                    .as_deref()
                    .map_or(ServerCode::Other, ServerCode::from_wire);
                if dialect::error_fails(wire, server_code, flags.start_sent.load(Ordering::Acquire))
                {
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
            Event::Failed { code, message } => {
                return Err(ProbeError::new(
                    ErrorType::ServerError(code),
                    format!("transcription failed: {}", truncate_chars(&message, 200)),
                ));
            }
            Event::SessionUpdated => {
                ack(acks, slices, flags, at, |a| &mut a.session_updated);
            }
            Event::Committed => {
                ack(acks, slices, flags, at, |a| &mut a.committed);
            }
            Event::SpeechStarted => {
                ack(acks, slices, flags, at, |a| &mut a.speech_started);
            }
            Event::SpeechStopped => {
                acks.speech_stopped.get_or_insert(at);
                let k = flags.done_count.load(Ordering::Acquire);
                let mut first = false;
                with_slice(slices, k, |s| {
                    first = s.acks.speech_stopped.is_none();
                    s.acks.speech_stopped.get_or_insert(at);
                });
                if first {
                    // The server ended the utterance: its final text is not truncated.
                    flags.final_sent.store(true, Ordering::Release);
                }
            }
            Event::SessionCreated | Event::Other => ignore(ignored_events)?,
        }
    }
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
    use crate::probe::timeline::fixtures::{ms as at, sent};

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
            text_end: 0,
        });
        assert_eq!(pending_timeout(&tl), ErrorType::TimeoutSending);
        tl.sent.push(sent(SentKind::FinalCommit, 124));
        assert_eq!(pending_timeout(&tl), ErrorType::TimeoutDone);
        tl.deltas.clear();
        assert_eq!(pending_timeout(&tl), ErrorType::TimeoutFirstText);
    }

    #[test]
    fn rejected_audio_fails_the_run_before_the_start_commit() {
        let fails =
            |code, start_sent| dialect::error_fails(crate::config::Dialect::Vllm, code, start_sent);
        assert!(fails(ServerCode::InvalidAudio, false));
        assert!(fails(ServerCode::ModelNotFound, false));
        assert!(!fails(ServerCode::ProcessingError, false));
        assert!(!fails(ServerCode::Other, false));
        for code in ServerCode::ALL {
            assert!(fails(code, true), "{code:?}");
        }
    }
}
