//! The generation: one utterance's timed token task. It waits for the queued audio, then emits
//! the planned deltas and `done` at their deadlines (`schedule::Plan`), fires the configured
//! fault, and records every emission as ground truth. It runs as its own task so emissions
//! keep their deadlines while the connection handles client events; the vLLM session
//! (`session.rs`) and the OpenAI one (`openai.rs`) both drive it, through their `Wire`.

use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use super::config::{Fault, SimConfig};
use super::record::{Emission, EmitKind, RecordHandle, UtteranceRecord};
use super::schedule::{Plan, SplitMix64, Token, shift};
use super::wire::{Sink, Wire, error_json, send, send_text};

/// The message of an exception inside the engine (what vLLM relays as `processing_error`).
pub(crate) const ENGINE_FAILURE: &str =
    "EngineCore encountered an issue. See stack trace (above) for the root cause.";

/// One entry of the connection's single FIFO queue, stamped with the receipt of its event.
#[derive(Debug)]
pub(crate) enum Item {
    Audio { at: Instant },
    End { at: Instant },
}

/// What the generation asks the connection to do to the transport.
#[derive(Debug)]
pub(crate) enum Control {
    DropTcp,
    Close(u16),
}

pub(crate) struct AbortOnDrop(pub(crate) JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One utterance's generation task.
pub(crate) struct Generation<S> {
    pub(crate) cfg: Arc<SimConfig>,
    pub(crate) fault: Fault,
    pub(crate) sink: Sink<S>,
    pub(crate) queue: Arc<Mutex<mpsc::UnboundedReceiver<Item>>>,
    pub(crate) ctl: mpsc::UnboundedSender<Control>,
    pub(crate) record: RecordHandle,
    pub(crate) utterance: u32,
    pub(crate) seed: u64,
    pub(crate) wire: Wire,
    pub(crate) open_sessions: Arc<std::sync::atomic::AtomicU64>,
}

impl<S> Generation<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    fn emitted(&self, kind: EmitKind, deadline: Option<Instant>, jitter_ns: i64, at: Instant) {
        let utterance = self.utterance;
        self.record.update(|r| {
            r.emissions.push(Emission {
                utterance,
                kind,
                deadline,
                jitter_ns,
                at,
            })
        });
    }

    fn mark(&self, f: impl FnOnce(&mut UtteranceRecord)) {
        let i = self.utterance as usize;
        self.record.update(|r| {
            if let Some(u) = r.utterances.get_mut(i) {
                f(u)
            }
        });
    }

    /// Inject the mid-stream fault. Returns whether the generation goes on.
    async fn fire_fault(&self) -> bool {
        match self.fault {
            Fault::ErrorMidStream => {
                let (msg, code) = match &self.wire {
                    Wire::Vllm => (
                        error_json(ENGINE_FAILURE, "processing_error"),
                        "processing_error",
                    ),
                    // The OpenAI dialect fails the item instead (Dynamo's code).
                    Wire::OpenAi { item_id } => (
                        super::openai::failed_json(item_id, ENGINE_FAILURE),
                        "transcription_error",
                    ),
                };
                if let Ok(at) = send_text(&self.sink, msg).await {
                    let code = code.to_string();
                    self.emitted(EmitKind::Error { code }, None, 0, at);
                }
                false
            }
            Fault::DropTcp => {
                self.emitted(EmitKind::DropTcp, None, 0, Instant::now());
                let _ = self.ctl.send(Control::DropTcp);
                false
            }
            Fault::Close1011 | Fault::Close1012 => {
                let code = if self.fault == Fault::Close1011 {
                    1011
                } else {
                    1012
                };
                let _ = self.ctl.send(Control::Close(code));
                false
            }
            Fault::OversizedFrame => {
                let bytes = self.cfg.oversized_frame_bytes;
                let head = r#"{"type":"transcription.delta","delta":""#;
                let tail = r#""}"#;
                let fill = bytes.saturating_sub(head.len() + tail.len());
                let mut frame = String::with_capacity(bytes);
                frame.push_str(head);
                frame.extend(std::iter::repeat_n('x', fill));
                frame.push_str(tail);
                let len = frame.len();
                match send_text(&self.sink, frame).await {
                    Ok(at) => {
                        self.emitted(EmitKind::Oversized { bytes: len }, None, 0, at);
                        true
                    }
                    Err(_) => false,
                }
            }
            Fault::MalformedJson => {
                let frame = r#"{"type":"transcription.delta","delta":" cut sho"#.to_string();
                match send_text(&self.sink, frame).await {
                    Ok(at) => {
                        self.emitted(EmitKind::Malformed, None, 0, at);
                        true
                    }
                    Err(_) => false,
                }
            }
            Fault::BinaryFrame => {
                let payload = vec![0x00u8, 0xff, 0x10, 0x20];
                match send(&self.sink, Message::Binary(payload.into())).await {
                    Ok(at) => {
                        self.emitted(EmitKind::Binary, None, 0, at);
                        true
                    }
                    Err(_) => false,
                }
            }
            _ => true,
        }
    }

    pub(crate) async fn run(mut self) {
        if self.utterance < self.cfg.fault_from_utterance {
            self.fault = Fault::None;
        }
        let queue = self.queue.clone();
        let mut queue = queue.lock().await;
        let cfg = self.cfg.clone();
        let mut plan = Plan::new(&cfg);

        let t_audio = match queue.recv().await {
            Some(Item::Audio { at }) => at,
            Some(Item::End { at }) => {
                // END before any audio: the generation ends at once with an empty transcript.
                self.mark(|u| u.end_at = Some(at));
                if self.fault == Fault::NeverDone {
                    std::future::pending::<()>().await;
                }
                if let Ok(sent) =
                    send_text(&self.sink, self.wire.done("", cfg.prompt_tokens, 0)).await
                {
                    self.emitted(EmitKind::Done, None, 0, sent);
                }
                if matches!(self.wire, Wire::Vllm) {
                    while queue.try_recv().is_ok() {}
                }
                return;
            }
            None => return,
        };
        self.mark(|u| u.first_audio_at = Some(t_audio));
        if !cfg.load_delay_per_stream.is_zero() {
            let open = self
                .open_sessions
                .load(std::sync::atomic::Ordering::Relaxed);
            plan.delay_by(cfg.load_delay_per_stream * open.min(u64::from(u32::MAX)) as u32);
        }

        if self.fault == Fault::UnknownEventFlood {
            for seq in 0..cfg.flood_events {
                let frame = format!(r#"{{"type":"rtprobe.simulated_noise","seq":{seq}}}"#);
                match send_text(&self.sink, frame).await {
                    Ok(at) => self.emitted(EmitKind::UnknownEvent, None, 0, at),
                    Err(_) => return,
                }
            }
        }

        let truncate = self.fault == Fault::Truncate;
        let total = if truncate {
            plan.tokens_through_word(cfg.fault_after_words)
        } else {
            plan.tokens.len()
        };
        let fire_after = cfg.fault_after_words.min(plan.word_count());
        if fire_after == 0 && !self.fire_fault().await {
            return;
        }

        let mut rng = SplitMix64::new(self.seed);
        let mut t_end: Option<Instant> = None;
        let mut next = 0usize;
        let mut words = 0usize;
        let mut text = String::new();
        let mut pending: Option<(Instant, i64)> = None;
        let mut floor = t_audio;
        loop {
            let at_done = next >= total;
            if pending.is_none() {
                let base = if !at_done {
                    plan.token_base(next, t_audio, t_end)
                } else if truncate {
                    Some(plan.truncated_done_base(next, t_audio))
                } else {
                    plan.done_base(next, t_audio, t_end)
                };
                pending = base.map(|b| {
                    let jitter = rng.offset_ns(cfg.jitter);
                    (shift(b, jitter).max(floor), jitter)
                });
            }
            let deadline = pending.map(|(d, _)| d);
            tokio::select! {
                biased;
                item = queue.recv(), if t_end.is_none() => match item {
                    Some(Item::Audio { .. }) => {}
                    Some(Item::End { at }) => {
                        t_end = Some(at);
                        self.mark(|u| u.end_at = Some(at));
                    }
                    None => return,
                },
                _ = sleep_until_opt(deadline), if deadline.is_some() => {
                    let Some((deadline, jitter)) = pending.take() else { return };
                    floor = deadline;
                    if at_done {
                        if self.fault == Fault::NeverDone {
                            std::future::pending::<()>().await;
                        }
                        let msg = self.wire.done(&text, cfg.prompt_tokens, next as u64);
                        if let Ok(at) = send_text(&self.sink, msg).await {
                            self.emitted(EmitKind::Done, Some(deadline), jitter, at);
                        }
                        // vLLM discards whatever is left in the queue after `done`; the OpenAI
                        // dialect keeps it: it is the next item's audio.
                        if matches!(self.wire, Wire::Vllm) {
                            while queue.try_recv().is_ok() {}
                        }
                        return;
                    }
                    let (delta, nonempty) = match &plan.tokens[next] {
                        Token::Word(w) => (w.as_str(), true),
                        Token::Empty => ("", false),
                    };
                    next += 1;
                    text.push_str(delta);
                    if self.fault != Fault::DoneOnly {
                        match send_text(&self.sink, self.wire.delta(delta)).await {
                            Ok(at) => self.emitted(EmitKind::Delta { nonempty }, Some(deadline), jitter, at),
                            Err(_) => return,
                        }
                    }
                    if nonempty {
                        words += 1;
                        if words == fire_after && !self.fire_fault().await {
                            return;
                        }
                    }
                }
                else => return,
            }
        }
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}
