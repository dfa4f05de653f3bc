//! The emission plan of one utterance: which token comes next, when it is due, and the seeded
//! jitter on top. Pure arithmetic on `Instant`s so the timing rules are unit-tested without
//! sockets. Deadlines are always `base + k·interval`, never a sum of sleeps, so they cannot drift.

use std::time::{Duration, Instant};

use super::config::SimConfig;

pub(crate) use crate::rng::SplitMix64;

/// The seed of one utterance: distinct per connection and per utterance, stable for a seed.
pub(crate) fn utterance_seed(seed: u64, connection: u64, utterance: u32) -> u64 {
    let mut m = SplitMix64::new(seed ^ connection.wrapping_mul(0xA24B_AED4_963E_E407));
    let a = m.next_u64();
    a ^ u64::from(utterance).wrapping_mul(0x9FB2_1C65_1E98_DF25)
}

/// Apply a signed nanosecond offset to an instant, saturating at the base on underflow.
pub(crate) fn shift(base: Instant, offset_ns: i64) -> Instant {
    if offset_ns >= 0 {
        base + Duration::from_nanos(offset_ns as u64)
    } else {
        base.checked_sub(Duration::from_nanos(offset_ns.unsigned_abs()))
            .unwrap_or(base)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Token {
    Word(String),
    Empty,
}

/// The token sequence of one utterance and the timing rules of `SimConfig`.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) tokens: Vec<Token>,
    /// Index of the first token that waits for the end of audio (`tokens.len()` if none).
    pub(crate) first_held: usize,
    first_text_delay: Duration,
    interval: Duration,
    tail: Duration,
    done_delay: Duration,
}

impl Plan {
    pub(crate) fn new(cfg: &SimConfig) -> Plan {
        let words = cfg.words();
        let n = words.len();
        let gap = cfg.empty_deltas_per_word as usize;
        let mut tokens = Vec::with_capacity(n + gap * n.saturating_sub(1));
        for (i, w) in words.into_iter().enumerate() {
            tokens.push(Token::Word(w));
            if i + 1 < n {
                tokens.extend(std::iter::repeat_n(Token::Empty, gap));
            }
        }
        let held_words = cfg.hold_last_words.min(n);
        let first_held = if held_words == 0 {
            tokens.len()
        } else {
            (n - held_words) * (gap + 1)
        };
        Plan {
            tokens,
            first_held,
            first_text_delay: cfg.first_text_delay,
            interval: cfg.token_interval,
            tail: cfg.tail_delay,
            done_delay: cfg.done_delay,
        }
    }

    /// Delay the first text (and so the whole token grid) and the held words' release by
    /// `extra`: the simulator's load knob.
    pub(crate) fn delay_by(&mut self, extra: Duration) {
        self.first_text_delay += extra;
        self.tail += extra;
    }

    fn grid(&self, t_audio: Instant, i: usize) -> Instant {
        t_audio + self.first_text_delay + self.interval * i as u32
    }

    /// When token `i` is due (before jitter); `None` while it waits for the end of audio.
    pub(crate) fn token_base(
        &self,
        i: usize,
        t_audio: Instant,
        t_end: Option<Instant>,
    ) -> Option<Instant> {
        if i < self.first_held {
            return Some(self.grid(t_audio, i));
        }
        let release = (t_end? + self.tail).max(self.grid(t_audio, self.first_held));
        Some(release + self.interval * (i - self.first_held) as u32)
    }

    /// When `done` is due (before jitter) after `emitted` tokens; `None` until the end of audio.
    pub(crate) fn done_base(
        &self,
        emitted: usize,
        t_audio: Instant,
        t_end: Option<Instant>,
    ) -> Option<Instant> {
        let t_end = t_end?;
        let last = match emitted {
            0 => t_end + self.tail,
            k => self.token_base(k - 1, t_audio, Some(t_end))?,
        };
        Some(last.max(t_end + self.tail) + self.done_delay)
    }

    /// When a truncated `done` is due: right after the last emitted token, audio end or not.
    pub(crate) fn truncated_done_base(&self, emitted: usize, t_audio: Instant) -> Instant {
        match emitted {
            0 => t_audio + self.first_text_delay + self.done_delay,
            k => self.grid(t_audio, k - 1) + self.done_delay,
        }
    }

    /// Tokens up to and including the `words`-th word (for truncation), capped to the tokens
    /// that do not wait for the end of audio.
    pub(crate) fn tokens_through_word(&self, words: usize) -> usize {
        if words == 0 {
            return 0;
        }
        let mut seen = 0;
        for (i, t) in self.tokens.iter().enumerate().take(self.first_held) {
            if matches!(t, Token::Word(_)) {
                seen += 1;
                if seen == words {
                    return i + 1;
                }
            }
        }
        // Fewer free words than asked: stop after the last free word, not after its pads.
        self.tokens[..self.first_held]
            .iter()
            .rposition(|t| matches!(t, Token::Word(_)))
            .map_or(0, |i| i + 1)
    }

    pub(crate) fn word_count(&self) -> usize {
        self.tokens
            .iter()
            .filter(|t| matches!(t, Token::Word(_)))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn cfg(transcript: &str, empties: u32, hold: usize) -> SimConfig {
        SimConfig {
            transcript: transcript.into(),
            empty_deltas_per_word: empties,
            hold_last_words: hold,
            first_text_delay: ms(300),
            token_interval: ms(80),
            tail_delay: ms(50),
            done_delay: ms(10),
            ..SimConfig::default()
        }
    }

    #[test]
    fn tokens_interleave_empties_between_words_only() {
        let p = Plan::new(&cfg("a b c", 2, 1));
        let kinds: Vec<bool> = p
            .tokens
            .iter()
            .map(|t| matches!(t, Token::Word(_)))
            .collect();
        assert_eq!(
            kinds,
            [true, false, false, true, false, false, true],
            "{:?}",
            p.tokens
        );
        assert_eq!(p.tokens[0], Token::Word(" a".into()));
        assert_eq!(p.first_held, 6);
        assert_eq!(p.word_count(), 3);
    }

    /// "a b c" with the last word held: first text at 300 ms, tokens 80 ms apart, the held
    /// word 50 ms after END; a load delay shifts the first text and the tail alike.
    fn grid_shifted_by(delay: u64) {
        let mut p = Plan::new(&cfg("a b c", 0, 1));
        p.delay_by(ms(delay));
        let t0 = Instant::now();
        assert_eq!(p.token_base(0, t0, None), Some(t0 + ms(300 + delay)));
        assert_eq!(p.token_base(1, t0, None), Some(t0 + ms(380 + delay)));
        assert_eq!(p.token_base(2, t0, None), None, "held until END");
        // END long after the grid: released tail after END.
        let end = t0 + ms(2000);
        assert_eq!(p.token_base(2, t0, Some(end)), Some(end + ms(50 + delay)));
    }

    #[test]
    fn load_delay_shifts_first_text_and_tail() {
        grid_shifted_by(40);
    }

    #[test]
    fn grid_and_held_release() {
        grid_shifted_by(0);
        let p = Plan::new(&cfg("a b c", 0, 1));
        let t0 = Instant::now();
        let end = t0 + ms(2000);
        assert_eq!(p.done_base(3, t0, Some(end)), Some(end + ms(60)));
        // END early: the grid still wins, so words keep token_interval.
        let early = t0 + ms(10);
        assert_eq!(p.token_base(2, t0, Some(early)), Some(t0 + ms(460)));
    }

    #[test]
    fn no_hold_done_waits_for_end_plus_tail() {
        let p = Plan::new(&cfg("a b", 0, 0));
        let t0 = Instant::now();
        assert_eq!(p.first_held, 2);
        assert_eq!(p.done_base(2, t0, None), None);
        let end = t0 + ms(1000);
        assert_eq!(p.done_base(2, t0, Some(end)), Some(end + ms(60)));
        assert_eq!(p.done_base(0, t0, Some(end)), Some(end + ms(60)));
    }

    #[test]
    fn truncation_points() {
        let p = Plan::new(&cfg("a b c d", 1, 1));
        assert_eq!(p.tokens_through_word(0), 0);
        assert_eq!(p.tokens_through_word(1), 1);
        assert_eq!(p.tokens_through_word(2), 3);
        assert_eq!(p.tokens_through_word(9), 5, "capped to the free words");
        let t0 = Instant::now();
        assert_eq!(p.truncated_done_base(3, t0), t0 + ms(300 + 160 + 10));
    }

    #[test]
    fn jitter_is_bounded_and_reproducible() {
        let max = ms(5);
        let draw = |seed| {
            let mut r = SplitMix64::new(seed);
            (0..1000).map(|_| r.offset_ns(max)).collect::<Vec<_>>()
        };
        let a = draw(42);
        assert_eq!(a, draw(42));
        assert_ne!(a, draw(43));
        assert!(a.iter().all(|o| o.abs() <= 5_000_000));
        assert!(a.iter().any(|o| *o > 2_500_000) && a.iter().any(|o| *o < -2_500_000));
        assert_eq!(SplitMix64::new(1).offset_ns(Duration::ZERO), 0);
        assert_ne!(utterance_seed(1, 0, 0), utterance_seed(1, 1, 0));
        assert_ne!(utterance_seed(1, 0, 0), utterance_seed(1, 0, 1));
    }
}
