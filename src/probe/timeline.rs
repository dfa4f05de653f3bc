//! The raw record of one probe run: monotonic offsets from `t0`, the transcript and the outcome.
//!
//! This is the only thing the probe client hands back (the oha model: the client records raw
//! timestamps, statistics are derived elsewhere, see `derive`). Every instant is a
//! `Duration` since `t0` (taken just before name resolution/TCP connect), read from a monotonic
//! clock, so derivations are pure arithmetic and unit tests can use exact numbers.

use std::time::{Duration, Instant, SystemTime};

use crate::config::Dialect;
use crate::probe::error::ProbeError;

/// Token counts reported by the server in `transcription.done.usage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
}

/// One `transcription.delta` as received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Delta {
    /// Receive time since `t0`.
    pub at: Duration,
    /// `delta` was not the empty string. Only non-empty deltas count as text (tokens).
    pub nonempty: bool,
    /// Byte offset in `Timeline::delta_text` where this delta's text ends (it starts where the
    /// previous delta's ended), so pictures can show each delta's words without the client
    /// keeping a string per delta. Past `delta_text`'s end only when the transcript cap stopped
    /// the run at this delta.
    pub text_end: usize,
}

/// What kind of client frame a send was; every send takes part in Avg RTT (guidellm's
/// `request_sent_sum / request_sent_count`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SentKind {
    SessionUpdate,
    StartCommit,
    Append,
    FinalCommit,
}

/// One client frame, stamped when the WebSocket `send` returned (buffer hand-off, as guidellm).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Sent {
    pub kind: SentKind,
    pub at: Duration,
    /// For appends: when this chunk was scheduled to go out (t_first_append + i·chunk in
    /// real-time pacing; equal to `at`'s schedule origin in burst mode). Pacing lateness is
    /// `at - scheduled`.
    pub scheduled: Option<Duration>,
    /// For appends: cumulative audio sent including this chunk.
    pub audio_end: Option<Duration>,
}

impl Sent {
    /// A frame that carries no audio (an update or a commit) sent at `at`.
    pub fn control(kind: SentKind, at: Duration) -> Sent {
        Sent {
            kind,
            at,
            scheduled: None,
            audio_end: None,
        }
    }
}

/// Connection phases, each an offset since `t0` at which the phase *ended*.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Phases {
    /// Name resolution finished (None when the host was an IP literal, or it failed).
    pub dns_done: Option<Duration>,
    /// TCP connected.
    pub tcp_connected: Option<Duration>,
    /// TLS handshake finished (wss only).
    pub tls_done: Option<Duration>,
    /// HTTP 101 Switching Protocols received.
    pub upgraded: Option<Duration>,
    /// `session.created` received.
    pub session_created: Option<Duration>,
}

/// `transcription.done` as received.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Done {
    pub at: Duration,
    pub text: String,
    pub usage: Option<Usage>,
}

/// Server acknowledgements that only some dialects send (OpenAI: docs/protocol-openai.md), each
/// the first one received, since `t0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Acks {
    /// `session.updated`.
    pub session_updated: Option<Duration>,
    /// `input_audio_buffer.committed`.
    pub committed: Option<Duration>,
    /// `input_audio_buffer.speech_started` (server VAD).
    pub speech_started: Option<Duration>,
    /// `input_audio_buffer.speech_stopped` (server VAD): the end of the utterance when the
    /// server decides turns; round trips and finalize count from here.
    pub speech_stopped: Option<Duration>,
}

/// Where one utterance of a multi-utterance session lies in the session's vectors, and what only
/// it has (its final text, its acknowledgements). `Timeline::utterance` turns it into a
/// one-utterance `Timeline` that `derive` reads like any other.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct UtteranceSlice {
    /// Index in `sent` of the utterance's first frame (the session's update belongs to the first).
    pub sent_from: usize,
    /// End (exclusive) of its deltas in `deltas`, once its final text arrived.
    pub deltas_end: Option<usize>,
    /// End (exclusive, bytes) of its text in `delta_text`, once its final text arrived.
    pub text_end: Option<usize>,
    pub done: Option<Done>,
    pub acks: Acks,
    pub truncated: bool,
}

/// The full record of one run. Built by `probe::run`; read by `derive` and reports.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Timeline {
    /// Wall-clock start, for logs and status pages only (never used in arithmetic).
    #[serde(with = "system_time_secs")]
    pub started: SystemTime,
    pub phases: Phases,
    /// Every client frame in send order.
    pub sent: Vec<Sent>,
    /// Every `transcription.delta` in receive order.
    pub deltas: Vec<Delta>,
    /// Concatenated non-empty delta text (bounded by the client's transcript cap).
    pub delta_text: String,
    pub done: Option<Done>,
    /// Total audio duration streamed (sum of appended chunks).
    pub audio_sent: Duration,
    /// `transcription.done` arrived before the final commit was sent (e.g. Voxtral hit
    /// `max_model_len`). The transcript covers only part of the audio.
    pub truncated: bool,
    /// Server `error` events and ignored unknown events seen (for debug output).
    pub ignored_events: u64,
    /// When the run ended (done received, error, or deadline), since `t0`.
    pub ended: Duration,
    /// `Ok(())` for a complete run; the failure otherwise.
    pub outcome: Result<(), ProbeError>,
    /// The wire dialect the run spoke.
    pub dialect: Dialect,
    /// Dialect acknowledgements (OpenAI dialect; all `None` for vLLM): the first of each kind.
    pub acks: Acks,
    /// One slice per utterance begun (a one-utterance run has one). The fields above hold the
    /// whole session: every send and delta, the last final text.
    pub utterances: Vec<UtteranceSlice>,
    /// 0-based utterance in which the run failed (a failure in utterance k fails the run).
    pub failed_utterance: Option<usize>,
    /// The monotonic instant every offset above counts from, when the run got that far. Lets
    /// in-process tests compare offsets with another component's `Instant`s (the simulator's
    /// ground truth); never serialized.
    #[serde(skip)]
    pub t0: Option<Instant>,
}

impl Timeline {
    /// An empty timeline starting now; the client fills it in as the run progresses.
    pub fn new(started: SystemTime) -> Self {
        Timeline {
            started,
            phases: Phases::default(),
            sent: Vec::new(),
            deltas: Vec::new(),
            delta_text: String::new(),
            done: None,
            audio_sent: Duration::ZERO,
            truncated: false,
            ignored_events: 0,
            ended: Duration::ZERO,
            outcome: Ok(()),
            dialect: Dialect::Vllm,
            acks: Acks::default(),
            utterances: Vec::new(),
            failed_utterance: None,
            t0: None,
        }
    }

    /// The transcript: `done.text` when the server sent one (it replaces the deltas, as in
    /// guidellm), else the concatenated deltas.
    pub fn transcript(&self) -> &str {
        match &self.done {
            Some(d) if !d.text.is_empty() => &d.text,
            _ => &self.delta_text,
        }
    }

    /// The text of `deltas[i]` (empty for an empty delta, or one the transcript cap cut off).
    pub fn delta_words(&self, i: usize) -> &str {
        let start = match i.checked_sub(1) {
            Some(prev) => self.deltas.get(prev).map_or(0, |d| d.text_end),
            None => 0,
        };
        let end = self.deltas.get(i).map_or(start, |d| d.text_end);
        self.delta_text.get(start..end).unwrap_or("")
    }

    /// When the utterance's audio ended: `speech_stopped` when the server decides turns, else
    /// the send of the commit that ended it.
    pub fn end_of_audio(&self) -> Option<Duration> {
        self.acks.speech_stopped.or_else(|| {
            self.sent
                .iter()
                .find(|s| s.kind == SentKind::FinalCommit)
                .map(|s| s.at)
        })
    }

    /// Utterances in this session's record (at least 1).
    pub fn utterance_count(&self) -> usize {
        self.utterances.len().max(1)
    }

    /// Utterance `k` as a one-utterance timeline, for `derive`. The first keeps the
    /// session's origin (`t0` = connect start, its phases); a later one is rebased to its own
    /// first send (the connection is warm: no connect phases, TTFT and end to end count from the
    /// utterance's start). `None` past the utterance that failed, or past the last begun.
    pub fn utterance(&self, k: usize) -> Option<Timeline> {
        if self.utterances.len() <= 1 {
            return (k == 0).then(|| {
                let mut t = self.clone();
                t.utterances.clear();
                t.failed_utterance = None;
                t
            });
        }
        let s = self.utterances.get(k)?;
        let outcome = match self.failed_utterance {
            Some(f) if f < k => return None,
            Some(f) if f == k => self.outcome.clone(),
            _ => Ok(()),
        };
        let sent_to = self
            .utterances
            .get(k + 1)
            .map_or(self.sent.len(), |n| n.sent_from)
            .min(self.sent.len());
        let from = |i: usize| {
            if i == 0 {
                (0, 0)
            } else {
                let p = &self.utterances[i - 1];
                (p.deltas_end.unwrap_or(0), p.text_end.unwrap_or(0))
            }
        };
        let (d_from, t_from) = from(k);
        let d_to = s
            .deltas_end
            .unwrap_or(self.deltas.len())
            .min(self.deltas.len());
        let t_to = s
            .text_end
            .unwrap_or(self.delta_text.len())
            .min(self.delta_text.len());
        let sent_from = s.sent_from.min(sent_to);
        let origin = if k == 0 {
            Duration::ZERO
        } else {
            self.sent.get(sent_from).map_or(Duration::ZERO, |x| x.at)
        };
        let re = |d: Duration| d.saturating_sub(origin);
        let re_opt = |d: Option<Duration>| d.map(re);
        let sent: Vec<Sent> = self.sent[sent_from..sent_to]
            .iter()
            .map(|x| Sent {
                at: re(x.at),
                scheduled: re_opt(x.scheduled),
                ..*x
            })
            .collect();
        let deltas = self.deltas[d_from.min(d_to)..d_to]
            .iter()
            .map(|d| Delta {
                at: re(d.at),
                // Offsets into the sliced text, which starts at `t_from`.
                text_end: d.text_end.saturating_sub(t_from),
                ..*d
            })
            .collect();
        let done = s.done.clone().map(|d| Done { at: re(d.at), ..d });
        let ended = match (&done, &outcome) {
            (Some(d), Ok(())) => d.at,
            _ => re(self.ended),
        };
        Some(Timeline {
            started: self.started,
            phases: if k == 0 {
                self.phases
            } else {
                Phases::default()
            },
            audio_sent: sent
                .iter()
                .rev()
                .find_map(|x| x.audio_end)
                .unwrap_or_default(),
            sent,
            deltas,
            delta_text: self
                .delta_text
                .get(t_from.min(t_to)..t_to)
                .unwrap_or_default()
                .to_string(),
            done,
            truncated: s.truncated,
            ignored_events: if k == 0 { self.ignored_events } else { 0 },
            ended,
            outcome,
            dialect: self.dialect,
            acks: Acks {
                session_updated: re_opt(s.acks.session_updated),
                committed: re_opt(s.acks.committed),
                speech_started: re_opt(s.acks.speech_started),
                speech_stopped: re_opt(s.acks.speech_stopped),
            },
            utterances: Vec::new(),
            failed_utterance: None,
            t0: self.t0.map(|t| t + origin),
        })
    }

    pub fn succeeded(&self) -> bool {
        self.outcome.is_ok()
    }
}

mod system_time_secs {
    use std::time::{SystemTime, UNIX_EPOCH};

    pub fn serialize<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        let secs = t
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        s.serialize_f64(secs)
    }
}

/// Shorthands for the timelines unit tests build by hand, in whole milliseconds since `t0`.
#[cfg(test)]
pub(crate) mod fixtures {
    use std::time::Duration;

    use super::{Delta, Done, Sent, SentKind, Timeline, UtteranceSlice};

    pub(crate) fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    /// An update or a commit sent at `at`.
    pub(crate) fn sent(kind: SentKind, at: u64) -> Sent {
        Sent::control(kind, ms(at))
    }

    /// An append sent at `at`, due at `scheduled`, its audio ending at `audio_end`.
    pub(crate) fn append(at: u64, scheduled: u64, audio_end: u64) -> Sent {
        Sent {
            kind: SentKind::Append,
            at: ms(at),
            scheduled: Some(ms(scheduled)),
            audio_end: Some(ms(audio_end)),
        }
    }

    /// Two utterances: update, start, append, final (0–30 ms); text at 40 and 50, done at 60;
    /// start, append, final (100–120 ms); text at 150, done at 170.
    pub(crate) fn two() -> Timeline {
        use SentKind::*;
        let mut t = Timeline::new(std::time::SystemTime::UNIX_EPOCH);
        t.phases.session_created = Some(ms(5));
        t.sent = vec![
            sent(SessionUpdate, 0),
            sent(StartCommit, 10),
            append(20, 20, 100),
            sent(FinalCommit, 30),
            sent(StartCommit, 100),
            append(110, 110, 100),
            sent(FinalCommit, 120),
        ];
        let d = |at, nonempty, text_end| Delta {
            at: ms(at),
            nonempty,
            text_end,
        };
        t.deltas = vec![
            d(40, true, 2),
            d(45, false, 2),
            d(50, true, 4),
            d(150, true, 6),
        ];
        t.delta_text = " a b c".into();
        let done = |at, text: &str| Done {
            at: ms(at),
            text: text.into(),
            usage: None,
        };
        t.utterances = vec![
            UtteranceSlice {
                sent_from: 0,
                deltas_end: Some(3),
                text_end: Some(4),
                done: Some(done(60, " a b")),
                ..UtteranceSlice::default()
            },
            UtteranceSlice {
                sent_from: 4,
                deltas_end: Some(4),
                text_end: Some(6),
                done: Some(done(170, " c")),
                ..UtteranceSlice::default()
            },
        ];
        t.done = Some(done(170, " c"));
        t.ended = ms(170);
        t
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{ms, two};
    use super::*;

    #[test]
    fn utterance_views_slice_and_rebase() {
        let t = two();
        let a = t.utterance(0).unwrap();
        assert_eq!(a.sent.len(), 4);
        assert_eq!(a.deltas.len(), 3);
        assert_eq!(a.delta_text, " a b");
        assert_eq!(a.end_of_audio(), Some(ms(30)));
        assert_eq!(a.done.as_ref().unwrap().at, ms(60));
        assert_eq!(a.phases.session_created, Some(ms(5)));
        assert_eq!(a.ended, ms(60));
        let b = t.utterance(1).unwrap();
        // Rebased to its first send (100 ms): start 0, append 10, final 20, text 50, done 70.
        assert_eq!(
            b.sent.iter().map(|s| s.at).collect::<Vec<_>>(),
            [ms(0), ms(10), ms(20)]
        );
        assert_eq!(b.sent[1].scheduled, Some(ms(10)));
        assert_eq!(
            b.deltas,
            [Delta {
                at: ms(50),
                nonempty: true,
                text_end: 2,
            }]
        );
        assert_eq!(b.delta_text, " c");
        assert_eq!(b.delta_words(0), " c");
        assert_eq!(b.transcript(), " c");
        assert_eq!(b.done.as_ref().unwrap().at, ms(70));
        assert_eq!(b.phases, Phases::default());
        assert_eq!(b.audio_sent, ms(100));
        assert!(b.succeeded());
        assert!(t.utterance(2).is_none());
        assert_eq!(t.utterance_count(), 2);
    }

    #[test]
    fn the_failed_utterance_carries_the_outcome() {
        let mut t = two();
        t.utterances[1].done = None;
        t.utterances[1].deltas_end = None;
        t.utterances[1].text_end = None;
        t.failed_utterance = Some(1);
        t.ended = ms(400);
        t.outcome = Err(ProbeError::new(
            crate::probe::error::ErrorType::TimeoutDone,
            "x",
        ));
        assert!(t.utterance(0).unwrap().succeeded());
        let b = t.utterance(1).unwrap();
        assert!(!b.succeeded());
        assert_eq!(b.ended, ms(300));
        assert_eq!(b.deltas.len(), 1, "the text it got before failing");
        t.failed_utterance = Some(0);
        assert!(t.utterance(1).is_none());
    }

    #[test]
    fn a_single_utterance_view_is_the_run() {
        let mut t = two();
        t.utterances.truncate(1);
        let v = t.utterance(0).unwrap();
        assert_eq!(v.sent, t.sent);
        assert_eq!(v.deltas, t.deltas);
        assert!(v.utterances.is_empty());
        assert!(t.utterance(1).is_none());
    }
}
