//! Ground truth: what the simulator received and sent, and when, per connection. Tests and
//! benchmarks run in the same process as the simulator, so these `Instant`s compare directly
//! with the probe's own timestamps; the simulator's timing error is thereby separated out.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::config::Fault;
use crate::sync::lock;

/// What a client frame turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientFrameKind {
    SessionUpdate,
    /// `bytes` is the decoded audio length; `None` when the audio was rejected.
    Append {
        bytes: Option<usize>,
    },
    /// `final` as parsed; `None` when it was rejected (or the model was not validated).
    Commit {
        final_: Option<bool>,
    },
    /// An event of another type (`None` when `type` was missing).
    Unknown(Option<String>),
    /// OpenAI dialect: `input_audio_buffer.clear`.
    Clear,
    InvalidJson,
    NotObject,
    Binary,
    Ping,
    Pong,
    Close,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFrame {
    /// When the frame was handed over by the WebSocket reader.
    pub at: Instant,
    pub kind: ClientFrameKind,
}

/// What the simulator sent. `Delta`/`Done` are the protocol; the rest are injected faults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmitKind {
    Delta {
        nonempty: bool,
    },
    Done,
    Error {
        code: String,
    },
    UnknownEvent,
    Oversized {
        bytes: usize,
    },
    Malformed,
    Binary,
    Close {
        code: u16,
    },
    DropTcp,
    /// A keepalive ping.
    Ping,
    /// OpenAI dialect: `session.updated`.
    SessionUpdated,
    /// OpenAI dialect: `input_audio_buffer.committed` (after the client's commit, or the
    /// server VAD's own).
    Committed,
    /// OpenAI dialect, server VAD: `input_audio_buffer.speech_started`.
    SpeechStarted,
    /// OpenAI dialect, server VAD: `input_audio_buffer.speech_stopped`.
    SpeechStopped,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emission {
    /// 0-based utterance (generation) index within the connection.
    pub utterance: u32,
    pub kind: EmitKind,
    /// The deadline it was scheduled for (jitter included), for timed emissions.
    pub deadline: Option<Instant>,
    /// The seeded jitter applied to this emission, in nanoseconds.
    pub jitter_ns: i64,
    /// Right after the send returned (buffer hand-off, like the probe's send times).
    pub at: Instant,
}

/// One generation, started by `commit final:false` (vLLM) or by the first append of an item
/// (OpenAI dialect).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UtteranceRecord {
    /// Receipt of the start commit.
    pub started_at: Instant,
    /// Receipt of the first audio chunk the generation consumed.
    pub first_audio_at: Option<Instant>,
    /// Receipt of the final commit whose sentinel the generation consumed (OpenAI server VAD:
    /// the send of `speech_stopped`).
    pub end_at: Option<Instant>,
    /// OpenAI dialect: the item's id.
    pub item_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// 0-based TCP accept index.
    pub connection: u64,
    pub peer: SocketAddr,
    pub accepted_at: Instant,
    /// Method and path (query included) of the HTTP request head, once read.
    pub request: Option<(String, String)>,
    /// The HTTP status answered (101 for an upgrade).
    pub status: Option<u16>,
    /// 0-based index among `/v1/realtime` upgrade requests (what selects the fault).
    pub realtime_index: Option<u64>,
    pub fault: Option<Fault>,
    /// After the 101 response was written.
    pub upgraded_at: Option<Instant>,
    pub session_created_at: Option<Instant>,
    pub client_frames: Vec<ClientFrame>,
    pub utterances: Vec<UtteranceRecord>,
    pub emissions: Vec<Emission>,
    /// When the connection task ended.
    pub ended_at: Option<Instant>,
}

impl SessionRecord {
    /// Emit times of the deltas of one utterance, with their non-empty flag.
    pub fn deltas(&self, utterance: u32) -> Vec<(Instant, bool)> {
        self.emissions
            .iter()
            .filter(|e| e.utterance == utterance)
            .filter_map(|e| match e.kind {
                EmitKind::Delta { nonempty } => Some((e.at, nonempty)),
                _ => None,
            })
            .collect()
    }

    /// Emit time of the first emission of `kind` for one utterance.
    pub fn emitted_at(&self, utterance: u32, kind: &EmitKind) -> Option<Instant> {
        self.emissions
            .iter()
            .find(|e| e.utterance == utterance && e.kind == *kind)
            .map(|e| e.at)
    }

    /// Emit time of the `done` of one utterance.
    pub fn done_at(&self, utterance: u32) -> Option<Instant> {
        self.emissions
            .iter()
            .find(|e| e.utterance == utterance && e.kind == EmitKind::Done)
            .map(|e| e.at)
    }
}

/// One connection's record, written only by that connection's tasks.
#[derive(Debug, Clone)]
pub(crate) struct RecordHandle(Option<Arc<Mutex<SessionRecord>>>);

impl RecordHandle {
    pub(crate) fn update(&self, f: impl FnOnce(&mut SessionRecord)) {
        if let Some(r) = &self.0 {
            f(&mut lock(r));
        }
    }
}

/// All records, newest last, bounded by `SimConfig::max_records`.
#[derive(Debug, Clone)]
pub struct RecordStore {
    inner: Arc<Mutex<VecDeque<Arc<Mutex<SessionRecord>>>>>,
    max: usize,
}

impl RecordStore {
    pub(crate) fn new(max: usize) -> Self {
        RecordStore {
            inner: Arc::default(),
            max,
        }
    }

    pub(crate) fn open(&self, connection: u64, peer: SocketAddr, at: Instant) -> RecordHandle {
        if self.max == 0 {
            return RecordHandle(None);
        }
        let rec = Arc::new(Mutex::new(SessionRecord {
            connection,
            peer,
            accepted_at: at,
            request: None,
            status: None,
            realtime_index: None,
            fault: None,
            upgraded_at: None,
            session_created_at: None,
            client_frames: Vec::new(),
            utterances: Vec::new(),
            emissions: Vec::new(),
            ended_at: None,
        }));
        let mut all = lock(&self.inner);
        while all.len() >= self.max {
            all.pop_front();
        }
        all.push_back(rec.clone());
        RecordHandle(Some(rec))
    }

    /// A snapshot of every kept record, oldest first.
    pub fn sessions(&self) -> Vec<SessionRecord> {
        lock(&self.inner).iter().map(|r| lock(r).clone()).collect()
    }

    /// Like `sessions`, and forget them (live connections keep writing to their own copy, which
    /// is no longer listed).
    pub fn take(&self) -> Vec<SessionRecord> {
        let taken: Vec<_> = lock(&self.inner).drain(..).collect();
        taken.iter().map(|r| lock(r).clone()).collect()
    }

    /// Records of WebSocket sessions only (those that got a 101), oldest first.
    pub fn realtime_sessions(&self) -> Vec<SessionRecord> {
        self.sessions()
            .into_iter()
            .filter(|s| s.status == Some(101))
            .collect()
    }
}
