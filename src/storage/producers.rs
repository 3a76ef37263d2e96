//! Idempotent producers, per partition: for each producer id, its epoch and the sequence
//! ranges of its last five batches (as Kafka keeps them), so that a retried batch is
//! recognised and answered with its first offsets, and a gap or a stale epoch is refused.
//!
//! The state is rebuilt on recovery from a snapshot (written when a segment is sealed and at a
//! clean close) plus a scan of the active segment.

use std::collections::VecDeque;

use ahash::AHashMap;

use super::Offset;
use crate::protocol::batch::BatchHeader;

/// Batches remembered per producer, as in Kafka: clients keep at most five in flight.
pub const BATCHES_PER_PRODUCER_MAX: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct BatchRange {
    pub first_sequence: i32,
    pub last_sequence: i32,
    pub base_offset: Offset,
    pub last_offset: Offset,
    /// The batch's max timestamp: a producer whose newest batch is older than
    /// `producer.id.expiration.ms` is forgotten.
    pub max_timestamp: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ProducerEntry {
    pub producer_id: i64,
    pub epoch: i16,
    pub batches: Vec<BatchRange>,
}

/// What to do with a batch from an idempotent producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    Append,
    /// A retry of a batch already in the log, at these offsets.
    Duplicate(BatchRange),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SequenceError {
    #[error("producer epoch {got} is older than the current {current}")]
    InvalidEpoch { got: i16, current: i16 },
    #[error("sequence {got} where {expected} was expected")]
    OutOfOrder { expected: i32, got: i32 },
}

impl SequenceError {
    pub fn kafka_code(&self) -> i16 {
        match self {
            SequenceError::InvalidEpoch { .. } => 47, // INVALID_PRODUCER_EPOCH
            SequenceError::OutOfOrder { .. } => 45,   // OUT_OF_ORDER_SEQUENCE_NUMBER
        }
    }
}

#[derive(Debug, Default, Clone)]
pub struct ProducerStates {
    entries: AHashMap<i64, (i16, VecDeque<BatchRange>)>,
}

fn next_sequence(sequence: i32) -> i32 {
    if sequence == i32::MAX {
        0
    } else {
        sequence + 1
    }
}

impl ProducerStates {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Checks a batch (its header as produced) against the producer's state.
    pub fn check(&self, header: &BatchHeader) -> Result<SequenceCheck, SequenceError> {
        let Some((epoch, batches)) = self.entries.get(&header.producer_id) else {
            // A producer this partition has not seen (or whose state has expired).
            return Ok(SequenceCheck::Append);
        };
        if header.producer_epoch < *epoch {
            return Err(SequenceError::InvalidEpoch {
                got: header.producer_epoch,
                current: *epoch,
            });
        }
        if header.producer_epoch > *epoch {
            // A new epoch starts its sequences again at 0.
            return if header.base_sequence == 0 {
                Ok(SequenceCheck::Append)
            } else {
                Err(SequenceError::OutOfOrder {
                    expected: 0,
                    got: header.base_sequence,
                })
            };
        }
        let last_sequence = header.last_sequence();
        if let Some(range) = batches
            .iter()
            .find(|b| b.first_sequence == header.base_sequence && b.last_sequence == last_sequence)
        {
            return Ok(SequenceCheck::Duplicate(*range));
        }
        let expected = batches
            .back()
            .map_or(header.base_sequence, |b| next_sequence(b.last_sequence));
        if header.base_sequence == expected {
            Ok(SequenceCheck::Append)
        } else {
            Err(SequenceError::OutOfOrder {
                expected,
                got: header.base_sequence,
            })
        }
    }

    /// Records an appended batch; `header.base_offset` is its assigned offset. A batch older
    /// than what is already known (replayed from the log after a snapshot) is ignored.
    pub fn record(&mut self, header: &BatchHeader) {
        if header.producer_id < 0 {
            return;
        }
        let range = BatchRange {
            first_sequence: header.base_sequence,
            last_sequence: header.last_sequence(),
            base_offset: header.base_offset,
            last_offset: header.last_offset(),
            max_timestamp: header.max_timestamp,
        };
        let (epoch, batches) = self
            .entries
            .entry(header.producer_id)
            .or_insert_with(|| (header.producer_epoch, VecDeque::new()));
        if header.producer_epoch < *epoch {
            return;
        }
        if header.producer_epoch > *epoch {
            *epoch = header.producer_epoch;
            batches.clear();
        }
        if batches
            .back()
            .is_some_and(|b| b.last_offset >= range.last_offset)
        {
            return;
        }
        batches.push_back(range);
        while batches.len() > BATCHES_PER_PRODUCER_MAX {
            batches.pop_front();
        }
    }

    /// Forgets batches at or past `end` (after a truncated tail they are not in the log).
    pub fn truncate(&mut self, end: Offset) {
        for (_, batches) in self.entries.values_mut() {
            batches.retain(|b| b.last_offset < end);
        }
        self.entries.retain(|_, (_, batches)| !batches.is_empty());
    }

    /// Forgets producers whose newest batch is older than `expiration_ms` (Kafka's
    /// `producer.id.expiration.ms`): their retries are long over. Returns how many went.
    pub fn expire(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.entries.len();
        self.entries.retain(|_, (_, batches)| {
            batches
                .back()
                .is_some_and(|b| now_ms.saturating_sub(b.max_timestamp) < expiration_ms)
        });
        before - self.entries.len()
    }

    /// Each producer's newest batch's last offset: the batch compaction keeps (empty, if need
    /// be) so that the producer's sequence numbers stay in the log.
    pub fn last_offsets(&self) -> AHashMap<i64, Offset> {
        self.entries
            .iter()
            .filter_map(|(id, (_, batches))| batches.back().map(|b| (*id, b.last_offset)))
            .collect()
    }

    pub fn entry(&self, producer_id: i64) -> Option<(i16, Vec<BatchRange>)> {
        self.entries
            .get(&producer_id)
            .map(|(epoch, batches)| (*epoch, batches.iter().copied().collect()))
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut entries: Vec<ProducerEntry> = self
            .entries
            .iter()
            .map(|(&producer_id, (epoch, batches))| ProducerEntry {
                producer_id,
                epoch: *epoch,
                batches: batches.iter().copied().collect(),
            })
            .collect();
        entries.sort_by_key(|e| e.producer_id);
        rkyv::to_bytes::<rkyv::rancor::Error>(&entries)
            .map(|bytes| bytes.to_vec())
            .unwrap_or_default()
    }

    /// `None` for a snapshot that does not decode (a torn write): the state is then rebuilt
    /// from the active segment alone.
    pub fn decode(bytes: &[u8]) -> Option<ProducerStates> {
        let entries = rkyv::from_bytes::<Vec<ProducerEntry>, rkyv::rancor::Error>(bytes).ok()?;
        let mut states = ProducerStates::default();
        for entry in entries {
            states.entries.insert(
                entry.producer_id,
                (entry.epoch, entry.batches.into_iter().collect()),
            );
        }
        Some(states)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(
        producer_id: i64,
        epoch: i16,
        base_sequence: i32,
        records: i32,
        base_offset: Offset,
    ) -> BatchHeader {
        BatchHeader {
            base_offset,
            size: 100,
            leader_epoch: 0,
            attributes: 0,
            last_offset_delta: records - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id,
            producer_epoch: epoch,
            base_sequence,
            record_count: records,
        }
    }

    #[test]
    fn sequences_continue_duplicates_are_found_gaps_and_old_epochs_refused() {
        let mut states = ProducerStates::default();
        let first = header(7, 0, 0, 5, 100);
        assert_eq!(states.check(&first), Ok(SequenceCheck::Append));
        states.record(&first);
        let second = header(7, 0, 5, 5, 105);
        assert_eq!(states.check(&second), Ok(SequenceCheck::Append));
        states.record(&second);
        // A retry of the first batch, as the client sends it again.
        match states.check(&header(7, 0, 0, 5, -1)) {
            Ok(SequenceCheck::Duplicate(range)) => {
                assert_eq!((range.base_offset, range.last_offset), (100, 104))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            states.check(&header(7, 0, 12, 1, -1)),
            Err(SequenceError::OutOfOrder {
                expected: 10,
                got: 12
            })
        );
        // A new epoch starts at 0; then the old epoch is fenced.
        assert!(states.check(&header(7, 1, 3, 1, -1)).is_err());
        let bumped = header(7, 1, 0, 1, 110);
        assert_eq!(states.check(&bumped), Ok(SequenceCheck::Append));
        states.record(&bumped);
        assert_eq!(
            states.check(&header(7, 0, 10, 1, -1)),
            Err(SequenceError::InvalidEpoch { got: 0, current: 1 })
        );
    }

    #[test]
    fn only_the_last_five_batches_are_kept_and_snapshots_round_trip() {
        let mut states = ProducerStates::default();
        for i in 0..8 {
            states.record(&header(3, 2, i * 2, 2, 1000 + i as i64 * 2));
        }
        let (epoch, batches) = states.entry(3).unwrap();
        assert_eq!(epoch, 2);
        assert_eq!(batches.len(), BATCHES_PER_PRODUCER_MAX);
        assert_eq!(batches[0].first_sequence, 6);
        let decoded = ProducerStates::decode(&states.encode()).unwrap();
        assert_eq!(decoded.entry(3), states.entry(3));
        assert!(ProducerStates::decode(b"torn").is_none());
        // Replaying an older batch changes nothing; truncation forgets batches past the end.
        let mut replayed = decoded.clone();
        replayed.record(&header(3, 2, 0, 2, 1000));
        assert_eq!(replayed.entry(3), states.entry(3));
        replayed.truncate(1012);
        assert_eq!(replayed.entry(3).unwrap().1.len(), 3);
    }

    #[test]
    fn sequences_wrap_at_the_maximum() {
        let mut states = ProducerStates::default();
        states.record(&header(1, 0, i32::MAX - 1, 2, 0));
        assert_eq!(
            states.check(&header(1, 0, 0, 1, -1)),
            Ok(SequenceCheck::Append)
        );
    }

    #[test]
    fn idle_producers_expire() {
        let mut states = ProducerStates::default();
        let mut old = header(1, 0, 0, 1, 0);
        old.max_timestamp = 1_000;
        let mut recent = header(2, 0, 0, 1, 1);
        recent.max_timestamp = 9_000;
        states.record(&old);
        states.record(&recent);
        assert_eq!(states.expire(10_000, 5_000), 1);
        assert!(states.entry(1).is_none());
        assert!(states.entry(2).is_some());
        // A forgotten producer is taken as a new one: any sequence is accepted.
        assert!(states.check(&header(1, 0, 7, 1, 2)).is_ok());
    }
}
