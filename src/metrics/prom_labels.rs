//! Prometheus labels of the SDK's attribute sets, converted once and kept across renders.
//!
//! A fleet's `/metrics` repeats a few attribute sets (one per probe, outcome, phase and token
//! type) in every family, scrape after scrape. Converting each data point's attributes anew
//! (sanitise, sort, merge, escape) and keying series by the resulting strings was most of a
//! render's time at 100 probes; see BENCHMARKS.md, "`/metrics` at fleet scale". The
//! [`LabelCache`] converts an attribute set the first time a render sees it, hands out one shared
//! [`LabelSet`] per distinct label content, and ranks the sets once so that every family sorts its
//! series by an integer. A render drops the entries it did not use, so the cache holds the live
//! series' label sets only, whatever reloads did to the config.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering as AtomicOrdering};

use opentelemetry::{KeyValue, Value};

use crate::metrics::prom_proto as pb;

/// Sanitised label `(name, value)` pairs, sorted by name.
pub(crate) type Labels = Vec<(String, String)>;

/// One series' labels in every form a render writes them.
#[derive(Debug)]
pub(crate) struct LabelSet {
    labels: Labels,
    /// `a="x",b="y"`, escaped: what every text line of the series carries.
    text: String,
    /// The `label` fields of a protobuf `Metric`, encoded.
    proto: Vec<u8>,
    /// Position in [`LabelSet::order`] among the cached sets (see [`LabelCache::finish`]).
    rank: AtomicU32,
}

impl LabelSet {
    fn new(labels: Labels) -> LabelSet {
        let text = label_text(&labels);
        let mut proto = Vec::new();
        for (name, value) in &labels {
            let pair = pb::LabelPair {
                name: Some(name.clone()),
                value: Some(value.clone()),
            };
            prost::encoding::message::encode(1, &pair, &mut proto);
        }
        LabelSet {
            labels,
            text,
            proto,
            rank: AtomicU32::new(0),
        }
    }

    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    pub(crate) fn proto(&self) -> &[u8] {
        &self.proto
    }

    pub(crate) fn rank(&self) -> u32 {
        self.rank.load(AtomicOrdering::Relaxed)
    }

    /// The order series are written in (the bridge's): by label count, then label values, then
    /// names, so that two different sets never tie.
    fn order(&self, other: &LabelSet) -> Ordering {
        let (a, b) = (&self.labels, &other.labels);
        a.len()
            .cmp(&b.len())
            .then_with(|| a.iter().map(|l| &l.1).cmp(b.iter().map(|l| &l.1)))
            .then_with(|| a.cmp(b))
    }
}

/// The Fx hash (rustc's): a word at a time, a rotate, a xor and a multiply. The keys are
/// config strings, not attacker-chosen input, and SipHash over every data point's attributes was
/// a tenth of a render.
#[derive(Debug, Default)]
pub(crate) struct FxHasher(u64);

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }
    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }
    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
    fn finish(&self) -> u64 {
        // The multiply leaves the low bits, which pick a table's bucket, depending on the low
        // input bits only; rotating brings the well-mixed high bits down (as rustc-hash 2 does).
        self.0.rotate_left(26)
    }
}

pub(crate) type Fx = BuildHasherDefault<FxHasher>;

/// An attribute sequence seen by a render and the label set it converts to.
#[derive(Debug)]
struct Seen {
    attrs: Vec<KeyValue>,
    set: Arc<LabelSet>,
    /// The render that last used it.
    used: u64,
}

/// Attribute sequences → label sets, across renders. Renders run one at a time (the caller
/// holds it under its render lock): [`LabelCache::start`], then [`LabelCache::get`] per data
/// point, then [`LabelCache::finish`] before any series is sorted.
#[derive(Debug, Default)]
pub(crate) struct LabelCache {
    /// By a hash of the attribute sequence (the SDK may hand out one series' attributes in
    /// either of two orders, so both sequences can map to one set).
    seen: HashMap<u64, Vec<Seen>, Fx>,
    /// The one set per distinct label content.
    sets: HashMap<String, Arc<LabelSet>, Fx>,
    render: u64,
    /// A set was added since ranks were last assigned.
    unranked: bool,
}

impl LabelCache {
    /// Begins a render.
    pub(crate) fn start(&mut self) {
        self.render += 1;
    }

    /// The label set of one data point's attributes.
    pub(crate) fn get<'a>(&mut self, attrs: impl Iterator<Item = &'a KeyValue>) -> Arc<LabelSet> {
        let attrs: Vec<&KeyValue> = attrs.collect();
        let mut hasher = FxHasher::default();
        for kv in &attrs {
            hash_attr(kv, &mut hasher);
        }
        let render = self.render;
        let seen = self.seen.entry(hasher.finish()).or_default();
        if let Some(s) = seen.iter_mut().find(|s| {
            s.attrs.len() == attrs.len() && s.attrs.iter().zip(&attrs).all(|(a, b)| same(a, b))
        }) {
            s.used = render;
            return Arc::clone(&s.set);
        }
        let labels = labels(attrs.iter().copied());
        let text = label_text(&labels);
        let set = match self.sets.get(&text) {
            Some(set) => Arc::clone(set),
            None => {
                self.unranked = true;
                let set = Arc::new(LabelSet::new(labels));
                self.sets.insert(text, Arc::clone(&set));
                set
            }
        };
        seen.push(Seen {
            attrs: attrs.iter().map(|kv| (*kv).clone()).collect(),
            set: Arc::clone(&set),
            used: render,
        });
        set
    }

    /// Ends a render's lookups: forgets what it did not use and, when sets were added, ranks
    /// them all. Removing sets keeps the others' relative order, so only additions re-rank.
    pub(crate) fn finish(&mut self) {
        let render = self.render;
        self.seen.retain(|_, seen| {
            seen.retain(|s| s.used == render);
            !seen.is_empty()
        });
        // A set no remaining sequence converts to is held by this map alone.
        self.sets.retain(|_, set| Arc::strong_count(set) > 1);
        if std::mem::take(&mut self.unranked) {
            let mut all: Vec<&Arc<LabelSet>> = self.sets.values().collect();
            all.sort_by(|a, b| a.order(b));
            for (rank, set) in all.into_iter().enumerate() {
                let rank = u32::try_from(rank).unwrap_or(u32::MAX);
                set.rank.store(rank, AtomicOrdering::Relaxed);
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.sets.len()
    }

    /// Renders started so far.
    #[cfg(test)]
    pub(crate) fn renders(&self) -> u64 {
        self.render
    }
}

/// Hashes an attribute by the address of its strings. rtprobe's attribute strings are static or
/// reference-counted (see `instruments`), so every collect's clone of a series' attributes points
/// at the same bytes, and an address is cheaper to hash than the text. A cached sequence keeps
/// its strings alive, so an address cannot come back with other text while it is cached. The
/// same text at another address (an owned string) only misses: it is converted again and
/// [`LabelCache::sets`] merges it with its twin, never a wrong label set.
fn hash_attr(kv: &KeyValue, h: &mut FxHasher) {
    let mut address = |s: &str| {
        h.write_usize(s.as_ptr() as usize);
        h.write_usize(s.len());
    };
    match &kv.value {
        Value::String(v) => {
            address(kv.key.as_str());
            address(v.as_str());
        }
        _ => kv.hash(h),
    }
}

/// Attribute equality, by address first (see [`hash_attr`]).
fn same(a: &KeyValue, b: &KeyValue) -> bool {
    let same_str = |x: &str, y: &str| std::ptr::eq(x, y) || x == y;
    match (&a.value, &b.value) {
        (Value::String(x), Value::String(y)) => {
            same_str(a.key.as_str(), b.key.as_str()) && same_str(x.as_str(), y.as_str())
        }
        _ => a == b,
    }
}

/// Label name sanitising, as the OTel Prometheus compatibility spec (and the bridge) does it.
fn label_name(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Sanitised, sorted labels; keys that sanitise to the same name join their values with `;`
/// in the order of the original keys.
fn labels<'a>(attrs: impl Iterator<Item = &'a KeyValue>) -> Labels {
    let mut by_name: std::collections::BTreeMap<String, Vec<(String, String)>> =
        std::collections::BTreeMap::new();
    for kv in attrs {
        let value = match &kv.value {
            Value::String(s) => s.as_str().to_owned(),
            other => other.to_string(),
        };
        by_name
            .entry(label_name(kv.key.as_str()))
            .or_default()
            .push((kv.key.as_str().to_owned(), value));
    }
    by_name
        .into_iter()
        .map(|(name, mut values)| {
            values.sort();
            let joined: Vec<String> = values.into_iter().map(|(_, v)| v).collect();
            (name, joined.join(";"))
        })
        .collect()
}

/// Text-format escaping: `\` and newline always, `"` inside label values.
pub(crate) fn escape_into(out: &mut String, v: &str, quote: bool) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// A series' labels as written in every one of its lines, escaped once: `a="x",b="y"`.
fn label_text(labels: &Labels) -> String {
    let mut out = String::with_capacity(labels.len() * 32);
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(k);
        out.push_str("=\"");
        escape_into(&mut out, v, true);
        out.push('"');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn labels_are_sanitised_sorted_merged_and_escaped() {
        let kvs = [
            KeyValue::new("server.port", 8000i64),
            KeyValue::new("a.b", "x"),
            KeyValue::new("a_b", "y"),
            KeyValue::new("q", "say \"hi\""),
        ];
        let mut cache = LabelCache::default();
        cache.start();
        let set = cache.get(kvs.iter());
        assert_eq!(
            set.labels,
            vec![
                ("a_b".to_owned(), "x;y".to_owned()),
                ("q".to_owned(), "say \"hi\"".to_owned()),
                ("server_port".to_owned(), "8000".to_owned()),
            ]
        );
        assert_eq!(
            set.text(),
            "a_b=\"x;y\",q=\"say \\\"hi\\\"\",server_port=\"8000\""
        );
        let decoded = pb::Metric::decode(set.proto()).expect("label fields decode");
        assert_eq!(decoded.label.len(), 3);
        assert_eq!(decoded.label[1].value.as_deref(), Some("say \"hi\""));
    }

    #[test]
    fn one_set_per_content_and_unused_sets_are_forgotten() {
        let a = [KeyValue::new("p", "1"), KeyValue::new("o", "x")];
        let reversed = [KeyValue::new("o", "x"), KeyValue::new("p", "1")];
        let b = [KeyValue::new("p", "2")];
        let mut cache = LabelCache::default();
        cache.start();
        let first = cache.get(a.iter());
        // The same series' attributes in the other order: the same set.
        assert!(Arc::ptr_eq(&first, &cache.get(reversed.iter())));
        let other = cache.get(b.iter());
        cache.finish();
        assert_eq!(cache.len(), 2);
        // By label count first: {p="2"} before {o="x",p="1"}.
        assert!(other.rank() < first.rank());
        drop((first, other));
        cache.start();
        let again = cache.get(b.iter());
        cache.finish();
        assert_eq!(cache.len(), 1, "the set no render used is gone");
        assert_eq!(again.rank(), 0);
    }
}
