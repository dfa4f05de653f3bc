//! A streaming quantile sketch with a fixed memory bound, for runs that last hours: keeping every
//! sample (as `stats::quantile` needs) would grow without limit at hundreds of streams.
//!
//! Values go into logarithmic buckets `(γ^(i-1), γ^i]` with γ = 1.02, so any quantile is
//! returned within 1 % of a value of the sample at that rank (DDSketch's guarantee). Buckets
//! cover 1 µs … ~10⁴ s (or ratios of the same magnitudes) on both signs; smaller magnitudes
//! count as zero, larger ones land in the outermost bucket. Count, sum, min and max are exact.

/// Growth factor of the bucket boundaries: relative error ≤ (γ−1)/(γ+1) < 1 %.
const GAMMA: f64 = 1.02;
/// Magnitudes below this count as zero (1 µs when the unit is seconds).
const MIN_MAGNITUDE: f64 = 1e-6;
/// Buckets per sign: γ^1163 ≈ 10¹⁰, so the buckets span 10⁻⁶ … 10⁴.
const BUCKETS: usize = 1164;

/// One store of bucket counts for one sign. Allocated on first use (most sketches only see
/// positive values).
#[derive(Debug, Clone, Default)]
struct Store {
    counts: Vec<u64>,
}

impl Store {
    fn add(&mut self, index: usize) {
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS];
        }
        self.counts[index] += 1;
    }
}

/// Streaming quantiles of `f64` samples in bounded memory (at most 2 × 1164 counters).
#[derive(Debug, Clone, Default)]
pub struct Sketch {
    neg: Store,
    zero: u64,
    pos: Store,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

fn bucket_of(magnitude: f64) -> usize {
    let i = ((magnitude / MIN_MAGNITUDE).ln() / GAMMA.ln()).ceil();
    (i.max(0.0) as usize).min(BUCKETS - 1)
}

/// The representative of bucket `i`: the point of least relative error within it.
fn value_of(index: usize) -> f64 {
    let upper = MIN_MAGNITUDE * GAMMA.powi(index as i32);
    2.0 * upper / (GAMMA + 1.0)
}

impl Sketch {
    pub fn new() -> Sketch {
        Sketch::default()
    }

    /// Add one sample; NaN and infinities are ignored (a derived value is finite or absent).
    pub fn add(&mut self, v: f64) {
        if !v.is_finite() {
            return;
        }
        if self.count == 0 {
            self.min = v;
            self.max = v;
        } else {
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
        self.count += 1;
        self.sum += v;
        if v.abs() < MIN_MAGNITUDE {
            self.zero += 1;
        } else if v > 0.0 {
            self.pos.add(bucket_of(v));
        } else {
            self.neg.add(bucket_of(-v));
        }
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }

    pub fn min(&self) -> Option<f64> {
        (self.count > 0).then_some(self.min)
    }

    pub fn max(&self) -> Option<f64> {
        (self.count > 0).then_some(self.max)
    }

    /// The `q`-quantile (0 ≤ q ≤ 1) by nearest rank: the ⌈q·n⌉-th smallest sample (the
    /// smallest for q = 0), within 1 % relative error, clamped to the exact min and max.
    /// `None` before the first sample.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let q = if q.is_nan() { 0.5 } else { q.clamp(0.0, 1.0) };
        // The epsilon keeps 0.9·1000 at rank 900 despite binary rounding.
        let nth = ((q * self.count as f64) - 1e-9).ceil().max(1.0) as u64;
        let rank = nth.min(self.count) - 1;
        if rank == 0 {
            return Some(self.min);
        }
        if rank == self.count - 1 {
            return Some(self.max);
        }
        let mut seen = 0u64;
        // Ascending: most negative first (high indices of the negative store), zero, positive.
        for (i, c) in self.neg.counts.iter().enumerate().rev() {
            seen += c;
            if seen > rank {
                return Some((-value_of(i)).clamp(self.min, self.max));
            }
        }
        seen += self.zero;
        if seen > rank {
            return Some(0.0f64.clamp(self.min, self.max));
        }
        for (i, c) in self.pos.counts.iter().enumerate() {
            seen += c;
            if seen > rank {
                return Some(value_of(i).clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(got: Option<f64>, want: f64) {
        let got = got.expect("a value");
        assert!(
            (got - want).abs() <= want.abs() * 0.01 + 1e-12,
            "got {got}, want {want} within 1 %"
        );
    }

    #[test]
    fn empty_has_no_quantiles() {
        let s = Sketch::new();
        assert_eq!(s.quantile(0.5), None);
        assert_eq!(s.mean(), None);
        assert_eq!(s.max(), None);
        assert_eq!(s.count(), 0);
    }

    #[test]
    fn one_sample_is_exact() {
        let mut s = Sketch::new();
        s.add(0.3125);
        for q in [0.0, 0.5, 0.9, 0.99, 1.0] {
            assert_eq!(s.quantile(q), Some(0.3125));
        }
        assert_eq!(s.mean(), Some(0.3125));
    }

    #[test]
    fn ranks_of_one_to_a_thousand_within_one_percent() {
        let mut s = Sketch::new();
        // Shuffled order must not matter.
        for i in (1..=1000).rev() {
            s.add(i as f64 / 1000.0);
        }
        // The ⌈q·1000⌉-th of 0.001 … 1.000 is q itself.
        close(s.quantile(0.5), 0.500);
        close(s.quantile(0.9), 0.900);
        close(s.quantile(0.99), 0.990);
        assert_eq!(s.quantile(0.0), Some(0.001));
        assert_eq!(s.quantile(1.0), Some(1.0));
        assert_eq!(s.count(), 1000);
        let mut two = Sketch::new();
        two.add(0.26);
        two.add(0.25);
        assert_eq!(two.quantile(0.5), Some(0.25));
        assert_eq!(two.quantile(0.9), Some(0.26));
        close(s.mean(), 0.5005);
    }

    #[test]
    fn negatives_zeros_and_out_of_range() {
        let mut s = Sketch::new();
        for v in [-0.2, -0.1, 0.0, 0.1, 0.2, f64::NAN, f64::INFINITY] {
            s.add(v);
        }
        assert_eq!(s.count(), 5);
        close(s.quantile(0.25), -0.1);
        assert_eq!(s.quantile(0.5), Some(0.0));
        close(s.quantile(0.75), 0.1);
        assert_eq!(s.min(), Some(-0.2));
        let mut big = Sketch::new();
        big.add(1e9);
        big.add(2e9);
        big.add(3e9);
        // Beyond the covered range the outermost bucket answers, clamped to the exact extremes.
        assert_eq!(big.quantile(0.5), Some(1e9));
    }

    #[test]
    fn memory_is_bounded() {
        let mut s = Sketch::new();
        for i in 0..200_000u64 {
            s.add((i % 977) as f64 * 0.013 + 1e-3);
        }
        assert_eq!(s.pos.counts.len(), BUCKETS);
        assert!(s.neg.counts.is_empty());
    }
}
