//! splitmix64: a tiny, well-mixed PRNG shared by the simulator (reproducible jitter, session
//! ids) and the scheduler (start offsets and jitter). Not for anything secret.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// Seeded from the clock and the process id, for schedules that differ between sidecars.
    pub fn from_entropy() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        SplitMix64(nanos ^ (u64::from(std::process::id()) << 32))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform signed offset in nanoseconds within `[-max, +max]`.
    pub fn offset_ns(&mut self, max: Duration) -> i64 {
        let max_ns = i64::try_from(max.as_nanos()).unwrap_or(i64::MAX / 2);
        if max_ns == 0 {
            return 0;
        }
        ((self.unit() * 2.0 - 1.0) * max_ns as f64).round() as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reproducible_and_in_range() {
        let (mut a, mut b) = (SplitMix64::new(7), SplitMix64::new(7));
        for _ in 0..1000 {
            let u = a.unit();
            assert_eq!(u, b.unit());
            assert!((0.0..1.0).contains(&u));
        }
        let mut c = SplitMix64::new(1);
        for _ in 0..1000 {
            assert!(c.offset_ns(Duration::from_millis(5)).abs() <= 5_000_000);
        }
    }
}
