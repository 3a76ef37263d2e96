//! Choosing a partition for a record, as Kafka's clients do.
//!
//! - Keyed records: `murmur2(key) & 0x7fffffff % partitions`, bit for bit Kafka's
//!   `Utils.murmur2` and `toPositive`, so the Java client, librdkafka's `murmur2_random` and this
//!   client agree on every key.
//! - Unkeyed records, by default: sticky (KIP-480). A producer keeps sending to one partition
//!   until the batch it is filling is closed, then moves on, so batches fill up instead of
//!   spreading a few records over every partition.
//! - Round-robin, when asked for: one partition after another, keys ignored.
//! - Anything else: implement `Partitioner`.

/// Decides the partition of each record. `on_new_batch` tells a sticky partitioner that the
/// batch it was filling for `topic` has been closed.
pub trait Partitioner {
    fn partition(&mut self, topic: &str, key: Option<&[u8]>, partitions: i32) -> i32;

    fn on_new_batch(&mut self, _topic: &str, _partitions: i32) {}
}

/// Kafka's murmur2 (the 32-bit variant with seed 0x9747b28c), as `Utils.murmur2` computes it.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes(chunk.try_into().expect("4 bytes"));
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Kafka's default partitioner gives a keyed record.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    (murmur2(key) & 0x7fff_ffff) % partitions.max(1)
}

/// A small generator for picking sticky partitions; no global state, no locks.
#[derive(Debug, Clone)]
struct Xorshift(u64);

impl Xorshift {
    fn seeded() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x2545_f491_4f6c_dd1d, |d| d.as_nanos() as u64);
        Xorshift(seed | 1)
    }

    fn below(&mut self, bound: i32) -> i32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % bound.max(1) as u64) as i32
    }
}

/// Kafka's default: murmur2 for keys, sticky for unkeyed records.
#[derive(Debug, Clone)]
pub struct DefaultPartitioner {
    sticky: ahash::AHashMap<String, i32>,
    random: Xorshift,
}

impl Default for DefaultPartitioner {
    fn default() -> Self {
        DefaultPartitioner {
            sticky: ahash::AHashMap::new(),
            random: Xorshift::seeded(),
        }
    }
}

impl Partitioner for DefaultPartitioner {
    fn partition(&mut self, topic: &str, key: Option<&[u8]>, partitions: i32) -> i32 {
        if let Some(key) = key {
            return partition_for_key(key, partitions);
        }
        match self.sticky.get(topic) {
            Some(&p) if p < partitions => p,
            _ => {
                let p = self.random.below(partitions);
                self.sticky.insert(topic.to_owned(), p);
                p
            }
        }
    }

    fn on_new_batch(&mut self, topic: &str, partitions: i32) {
        // Move to another partition (any other, when there is one).
        let previous = self.sticky.get(topic).copied();
        let mut next = self.random.below(partitions);
        if partitions > 1 && Some(next) == previous {
            next = (next + 1 + self.random.below(partitions - 1)) % partitions;
        }
        self.sticky.insert(topic.to_owned(), next);
    }
}

/// One partition after another per topic, keys ignored.
#[derive(Debug, Default, Clone)]
pub struct RoundRobinPartitioner {
    next: ahash::AHashMap<String, i32>,
}

impl Partitioner for RoundRobinPartitioner {
    fn partition(&mut self, topic: &str, _key: Option<&[u8]>, partitions: i32) -> i32 {
        let counter = self.next.entry(topic.to_owned()).or_insert(0);
        let p = *counter % partitions.max(1);
        *counter = counter.wrapping_add(1) & i32::MAX;
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_the_java_algorithm() {
        // Values of org.apache.kafka.common.utils.Utils.murmur2 for these inputs.
        let cases: [(&[u8], i32); 7] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
            (b"", 275_646_681),
        ];
        for (input, expected) in cases {
            assert_eq!(
                murmur2(input),
                expected,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        assert_eq!(
            partition_for_key(b"21", 10),
            (-973_932_308i32 & 0x7fff_ffff) % 10
        );
    }

    #[test]
    fn unkeyed_records_stick_until_the_batch_closes_then_move() {
        let mut p = DefaultPartitioner::default();
        let first = p.partition("t", None, 8);
        for _ in 0..100 {
            assert_eq!(p.partition("t", None, 8), first);
        }
        p.on_new_batch("t", 8);
        assert_ne!(p.partition("t", None, 8), first);
        // Keys are not sticky.
        assert_eq!(
            p.partition("t", Some(b"21"), 8),
            partition_for_key(b"21", 8)
        );
        // A single partition is always chosen.
        p.on_new_batch("one", 1);
        assert_eq!(p.partition("one", None, 1), 0);
    }

    #[test]
    fn round_robin_cycles_through_every_partition() {
        let mut p = RoundRobinPartitioner::default();
        let seen: Vec<i32> = (0..6).map(|_| p.partition("t", Some(b"k"), 3)).collect();
        assert_eq!(seen, vec![0, 1, 2, 0, 1, 2]);
    }
}
