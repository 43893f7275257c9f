//! A histogram whose observations are two relaxed atomic adds (the bucket and the sum): no lock
//! on the data path. The count is the sum of the buckets, computed when rendered.

use std::sync::atomic::{AtomicU64, Ordering};

/// Istio's buckets for `istio_request_duration_milliseconds`, in milliseconds.
pub const DURATION_MS: &[f64] = &[
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

/// Istio's buckets for `istio_request_bytes` and `istio_response_bytes`: 1 to 10⁹ by powers
/// of ten.
pub const BYTES: &[f64] = &[
    1.0,
    10.0,
    100.0,
    1000.0,
    10000.0,
    100000.0,
    1000000.0,
    10000000.0,
    100000000.0,
    1000000000.0,
];

/// Fixed buckets; observations are integers in a unit `scale` times smaller than the rendered
/// one (durations are observed in microseconds and rendered in milliseconds).
#[derive(Debug)]
pub struct Histogram {
    /// Upper bounds in the observed unit.
    bounds: Box<[u64]>,
    /// Rendered bounds.
    rendered: &'static [f64],
    /// One per bound, then `+Inf`.
    counts: Box<[AtomicU64]>,
    sum: AtomicU64,
    scale: f64,
}

impl Histogram {
    /// Buckets `bounds` (rendered unit); observations are `scale` times the rendered unit's
    /// resolution.
    pub fn new(bounds: &'static [f64], scale: f64) -> Self {
        Self {
            // Bounds are small positive constants: the conversion is exact.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            bounds: bounds.iter().map(|b| (b * scale).ceil() as u64).collect(),
            rendered: bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
            scale,
        }
    }

    /// Records one value, in the observed unit.
    pub fn observe(&self, value: u64) {
        let i = self.bounds.partition_point(|b| *b < value);
        if let Some(bucket) = self.counts.get(i) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        self.sum.fetch_add(value, Ordering::Relaxed);
    }

    /// `(sum, count, buckets)` in the rendered unit; buckets are per bucket (not cumulative),
    /// the last one `+Inf`.
    pub fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let mut count = 0;
        let buckets = self
            .rendered
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.counts.iter())
            .map(|(bound, n)| {
                let n = n.load(Ordering::Relaxed);
                count += n;
                (bound, n)
            })
            .collect();
        #[allow(clippy::cast_precision_loss)] // Sums beyond 2⁵³ lose precision, as any f64 sum.
        let sum = self.sum.load(Ordering::Relaxed) as f64 / self.scale;
        (sum, count, buckets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_inclusive_upper_bounds() {
        let h = Histogram::new(DURATION_MS, 1000.0);
        h.observe(500); // 0.5 ms: in the first bucket (le="0.5")
        h.observe(501);
        h.observe(4_000_000_000); // past the last bound: +Inf
        let (sum, count, buckets) = h.snapshot();
        assert_eq!(count, 3);
        assert_eq!(buckets[0], (0.5, 1));
        assert_eq!(buckets[1], (1.0, 1));
        assert_eq!(buckets.last().copied(), Some((f64::INFINITY, 1)));
        assert!((sum - 4_000_001.001).abs() < 1e-6, "{sum}");
        let bytes = Histogram::new(BYTES, 1.0);
        bytes.observe(0);
        bytes.observe(10);
        let (_, _, buckets) = bytes.snapshot();
        assert_eq!((buckets[0].1, buckets[1].1), (1, 1));
    }
}
