//! Sparse per-segment indexes, in Kafka's on-disk formats.
//!
//! Offset index: entries of (offset relative to the segment base: u32, file position: u32),
//! 8 bytes each, one per `index.interval.bytes` of log. Time index: entries of (max timestamp so
//! far: i64, relative offset: u32), 12 bytes each. Both are kept in memory for every segment (a
//! 1 GiB segment with the default interval needs 2 MiB of entries) and written when a segment is
//! sealed, and for the active segment now and then as a recovery checkpoint (entries of
//! durable batches only). Both are derivable from the log, so a missing or bad index file is
//! rebuilt, never trusted.

pub const OFFSET_ENTRY_BYTES: usize = 8;
pub const TIME_ENTRY_BYTES: usize = 12;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OffsetIndex {
    entries: Vec<(u32, u32)>,
}

impl OffsetIndex {
    pub fn push(&mut self, relative_offset: u32, position: u32) {
        debug_assert!(self
            .entries
            .last()
            .is_none_or(|&(o, p)| o < relative_offset && p < position));
        self.entries.push((relative_offset, position));
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn last(&self) -> Option<(u32, u32)> {
        self.entries.last().copied()
    }

    /// Position of the last indexed batch that starts at or before `relative_offset`.
    pub fn lookup(&self, relative_offset: u32) -> u32 {
        let index = self.entries.partition_point(|&(o, _)| o <= relative_offset);
        if index == 0 {
            0
        } else {
            self.entries[index - 1].1
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        self.encode_before(u32::MAX)
    }

    /// The index file of the entries for batches before `relative_end` (a recovery
    /// checkpoint names only batches known to be durable).
    pub fn encode_before(&self, relative_end: u32) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * OFFSET_ENTRY_BYTES);
        for (offset, position) in self.entries.iter().take_while(|(o, _)| *o < relative_end) {
            out.extend_from_slice(&offset.to_be_bytes());
            out.extend_from_slice(&position.to_be_bytes());
        }
        out
    }

    /// Decodes an index file; `None` if it cannot be right for a log of `log_bytes` bytes.
    pub fn decode(bytes: &[u8], log_bytes: u64) -> Option<OffsetIndex> {
        if bytes.len() % OFFSET_ENTRY_BYTES != 0 {
            return None;
        }
        let mut index = OffsetIndex::default();
        for entry in bytes.chunks_exact(OFFSET_ENTRY_BYTES) {
            let offset = u32::from_be_bytes(entry[..4].try_into().ok()?);
            let position = u32::from_be_bytes(entry[4..].try_into().ok()?);
            if u64::from(position) >= log_bytes {
                return None;
            }
            if let Some((o, p)) = index.last() {
                if offset <= o || position <= p {
                    return None;
                }
            }
            index.entries.push((offset, position));
        }
        Some(index)
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TimeIndex {
    entries: Vec<(i64, u32)>,
}

impl TimeIndex {
    /// Records that the batch at `relative_offset` raised the segment's max timestamp.
    pub fn push(&mut self, timestamp: i64, relative_offset: u32) {
        if self.entries.last().is_none_or(|&(t, _)| timestamp > t) {
            self.entries.push((timestamp, relative_offset));
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn last(&self) -> Option<(i64, u32)> {
        self.entries.last().copied()
    }

    /// The first entry: the first batch's max timestamp, which is Kafka's "first batch
    /// timestamp" of a segment.
    pub fn first(&self) -> Option<(i64, u32)> {
        self.entries.first().copied()
    }

    /// The relative offset from which to scan for the first batch with a timestamp >= `target`:
    /// every batch before it has a smaller max timestamp.
    pub fn lookup(&self, target: i64) -> u32 {
        let index = self.entries.partition_point(|&(t, _)| t < target);
        if index == 0 {
            0
        } else {
            self.entries[index - 1].1
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        self.encode_before(u32::MAX)
    }

    /// The index file of the entries for batches before `relative_end`.
    pub fn encode_before(&self, relative_end: u32) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * TIME_ENTRY_BYTES);
        for (timestamp, offset) in self.entries.iter().take_while(|(_, o)| *o < relative_end) {
            out.extend_from_slice(&timestamp.to_be_bytes());
            out.extend_from_slice(&offset.to_be_bytes());
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<TimeIndex> {
        if bytes.len() % TIME_ENTRY_BYTES != 0 {
            return None;
        }
        let mut index = TimeIndex::default();
        for entry in bytes.chunks_exact(TIME_ENTRY_BYTES) {
            let timestamp = i64::from_be_bytes(entry[..8].try_into().ok()?);
            let offset = u32::from_be_bytes(entry[8..].try_into().ok()?);
            if let Some((t, o)) = index.last() {
                if timestamp <= t || offset < o {
                    return None;
                }
            }
            index.entries.push((timestamp, offset));
        }
        Some(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_finds_the_entry_at_or_before() {
        let mut index = OffsetIndex::default();
        index.push(0, 0);
        index.push(10, 4096);
        index.push(20, 8192);
        assert_eq!(index.lookup(0), 0);
        assert_eq!(index.lookup(15), 4096);
        assert_eq!(index.lookup(20), 8192);
        assert_eq!(index.lookup(1000), 8192);
    }

    #[test]
    fn encode_decode_round_trip_and_rejects_bad_files() {
        let mut index = OffsetIndex::default();
        index.push(0, 0);
        index.push(7, 5000);
        let bytes = index.encode();
        assert_eq!(OffsetIndex::decode(&bytes, 6000), Some(index.clone()));
        assert_eq!(
            OffsetIndex::decode(&bytes, 4000),
            None,
            "position past the log"
        );
        assert_eq!(OffsetIndex::decode(&bytes[..5], 6000), None, "torn entry");
        let mut time = TimeIndex::default();
        time.push(100, 0);
        time.push(90, 3);
        time.push(200, 5);
        assert_eq!(TimeIndex::decode(&time.encode()), Some(time.clone()));
        assert_eq!(time.lookup(50), 0);
        assert_eq!(time.lookup(150), 0);
        assert_eq!(time.lookup(201), 5);
    }
}
