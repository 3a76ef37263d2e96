//! Metrics primitives: counters and fixed-bucket histograms that one shard writes, the
//! Prometheus text format they are rendered in (`exposition`), and the minimal HTTP/1.1 the
//! endpoint speaks (`http`). Pure: no I/O, no runtime, no knowledge of Kafka.
//!
//! Why `Cell`s and not atomics: every recorder lives on one shard and is written only by that
//! shard's thread, and a scrape reads it on that same thread (the endpoint asks each shard for
//! a [`HistogramSnapshot`]-style copy over the mesh). So recording is a plain load-add-store
//! with no `lock` prefix and no cache line shared between cores, a nanosecond or two, and a
//! scrape never races a writer. The price is that a scrape needs every shard's executor to
//! answer, which a stalled shard will not do; the endpoint reports that instead of guessing.
//!
//! Invariants: recording never allocates and never fails; a histogram's buckets are fixed at
//! compile time, increasing, and the last one is followed by an implicit `+Inf`; counters only
//! grow (wrapping at 2^64 is centuries away at any rate a shard can reach).

pub mod exposition;
pub mod http;

use std::cell::Cell;

/// Upper bounds (inclusive) of the latency buckets, in microseconds: 1-2.5-5 steps from 50 µs
/// to 10 s, so both a healthy NVMe sync (~50-500 µs) and a stalled request (seconds) land in a
/// bucket that tells them apart.
pub const LATENCY_BOUNDS_US: [u64; 17] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// Upper bounds (inclusive) of the bytes-per-sync buckets: powers of four from one 4 KiB block
/// (a lone small produce) to 64 MiB (a large group commit).
pub const SYNC_BYTES_BOUNDS: [u64; 8] = [
    4 << 10,
    16 << 10,
    64 << 10,
    256 << 10,
    1 << 20,
    4 << 20,
    16 << 20,
    64 << 20,
];

/// A histogram of latencies in microseconds over [`LATENCY_BOUNDS_US`].
pub type LatencyHistogram = Histogram<{ LATENCY_BOUNDS_US.len() }>;
/// A histogram of byte counts over [`SYNC_BYTES_BOUNDS`].
pub type SyncBytesHistogram = Histogram<{ SYNC_BYTES_BOUNDS.len() }>;

impl Default for LatencyHistogram {
    fn default() -> Self {
        Histogram::new(&LATENCY_BOUNDS_US)
    }
}

impl Default for SyncBytesHistogram {
    fn default() -> Self {
        Histogram::new(&SYNC_BYTES_BOUNDS)
    }
}

/// A monotonic count, written by one thread.
#[derive(Default)]
pub struct Counter(Cell<u64>);

impl Counter {
    #[inline]
    pub fn add(&self, amount: u64) {
        self.0.set(self.0.get().wrapping_add(amount));
    }

    #[inline]
    pub fn increment(&self) {
        self.add(1);
    }

    pub fn get(&self) -> u64 {
        self.0.get()
    }
}

/// A histogram with fixed upper bounds, written by one thread. `N` bounds give `N + 1`
/// buckets; values above the last bound go to the overflow (`+Inf`) bucket.
pub struct Histogram<const N: usize> {
    bounds: &'static [u64; N],
    buckets: [Cell<u64>; N],
    overflow: Cell<u64>,
    sum: Cell<u64>,
}

impl<const N: usize> Histogram<N> {
    pub fn new(bounds: &'static [u64; N]) -> Self {
        debug_assert!(bounds.windows(2).all(|pair| pair[0] < pair[1]));
        Histogram {
            bounds,
            buckets: std::array::from_fn(|_| Cell::new(0)),
            overflow: Cell::new(0),
            sum: Cell::new(0),
        }
    }

    /// Adds one observation. A binary search over `N` (at most 17) bounds and two adds.
    #[inline]
    pub fn record(&self, value: u64) {
        let index = bucket_index(self.bounds, value);
        let cell = self.buckets.get(index).unwrap_or(&self.overflow);
        cell.set(cell.get().wrapping_add(1));
        self.sum.set(self.sum.get().wrapping_add(value));
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut counts: Vec<u64> = self.buckets.iter().map(Cell::get).collect();
        counts.push(self.overflow.get());
        HistogramSnapshot {
            bounds: self.bounds,
            counts,
            sum: self.sum.get(),
        }
    }
}

/// The bucket a value falls in: the first bound at or above it, `bounds.len()` for overflow.
/// Prometheus buckets are `le` (less than or equal), so a value equal to a bound counts there.
pub fn bucket_index(bounds: &[u64], value: u64) -> usize {
    bounds.partition_point(|&bound| bound < value)
}

/// A copy of a histogram that can cross shards. `counts` are per bucket (not cumulative), one
/// per bound plus the overflow bucket last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistogramSnapshot {
    pub bounds: &'static [u64],
    pub counts: Vec<u64>,
    pub sum: u64,
}

impl HistogramSnapshot {
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_land_in_the_first_bucket_at_or_above_them() {
        let bounds = &LATENCY_BOUNDS_US;
        assert_eq!(bucket_index(bounds, 0), 0);
        assert_eq!(
            bucket_index(bounds, 50),
            0,
            "a value equal to a bound is `le` it"
        );
        assert_eq!(bucket_index(bounds, 51), 1);
        assert_eq!(bucket_index(bounds, 999), 4);
        assert_eq!(bucket_index(bounds, 1_000), 4);
        assert_eq!(bucket_index(bounds, 10_000_000), 16);
        assert_eq!(bucket_index(bounds, 10_000_001), 17, "overflow");
        assert_eq!(bucket_index(bounds, u64::MAX), 17);
    }

    #[test]
    fn bounds_are_increasing_and_log_spaced() {
        for bounds in [&LATENCY_BOUNDS_US[..], &SYNC_BYTES_BOUNDS[..]] {
            for pair in bounds.windows(2) {
                let ratio = pair[1] as f64 / pair[0] as f64;
                assert!((2.0..=4.0).contains(&ratio), "{pair:?}");
            }
        }
        assert_eq!(LATENCY_BOUNDS_US[0], 50);
        assert_eq!(LATENCY_BOUNDS_US[LATENCY_BOUNDS_US.len() - 1], 10_000_000);
    }

    #[test]
    fn histogram_counts_sums_and_overflows() {
        let histogram = Histogram::new(&LATENCY_BOUNDS_US);
        for value in [10, 50, 60, 2_000, 20_000_000] {
            histogram.record(value);
        }
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.counts.len(), LATENCY_BOUNDS_US.len() + 1);
        assert_eq!(snapshot.counts[0], 2);
        assert_eq!(snapshot.counts[1], 1);
        assert_eq!(snapshot.counts[5], 1);
        assert_eq!(snapshot.counts[17], 1);
        assert_eq!(snapshot.count(), 5);
        assert_eq!(snapshot.sum, 10 + 50 + 60 + 2_000 + 20_000_000);
    }

    #[test]
    fn counters_add() {
        let counter = Counter::default();
        counter.increment();
        counter.add(41);
        assert_eq!(counter.get(), 42);
    }
}
