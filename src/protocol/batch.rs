//! Record batch (magic v2) header: parsing, validation and the in-place patches the broker makes.
//!
//! The broker stores batches exactly as clients send them, so this module only reads the
//! 61-byte header and checks the CRC-32C; it never decodes individual records.
//!
//! Layout (big-endian): base_offset i64 @0, batch_length i32 @8 (bytes after this field),
//! partition_leader_epoch i32 @12, magic i8 @16, crc u32 @17 (covers bytes 21..end),
//! attributes i16 @21, last_offset_delta i32 @23, base_timestamp i64 @27, max_timestamp i64 @35,
//! producer_id i64 @43, producer_epoch i16 @51, base_sequence i32 @53, record_count i32 @57.

pub const HEADER_BYTES: usize = 61;
/// Bytes before (and including) the batch_length field.
pub const LOG_OVERHEAD_BYTES: usize = 12;

pub(crate) const OFFSET_BASE: usize = 0;
pub(crate) const OFFSET_LENGTH: usize = 8;
pub(crate) const OFFSET_LEADER_EPOCH: usize = 12;
pub(crate) const OFFSET_MAGIC: usize = 16;
pub(crate) const OFFSET_CRC: usize = 17;
pub(crate) const OFFSET_ATTRIBUTES: usize = 21;
pub(crate) const OFFSET_LAST_DELTA: usize = 23;
pub(crate) const OFFSET_BASE_TIMESTAMP: usize = 27;
pub(crate) const OFFSET_MAX_TIMESTAMP: usize = 35;
pub(crate) const OFFSET_PRODUCER_ID: usize = 43;
pub(crate) const OFFSET_PRODUCER_EPOCH: usize = 51;
pub(crate) const OFFSET_BASE_SEQUENCE: usize = 53;
pub(crate) const OFFSET_RECORD_COUNT: usize = 57;

pub(crate) const ATTRIBUTE_COMPRESSION_MASK: i16 = 0x07;
const ATTRIBUTE_LOG_APPEND_TIME: i16 = 0x08;
const ATTRIBUTE_TRANSACTIONAL: i16 = 0x10;
const ATTRIBUTE_CONTROL: i16 = 0x20;

/// Why a produced batch was refused. Each maps to a Kafka error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("record set truncated: {0} bytes left, not a whole batch")]
    Truncated(usize),
    #[error("batch length {0} is invalid")]
    BadLength(i32),
    #[error("magic byte {0} is not supported (only v2 record batches)")]
    OldMagic(i8),
    #[error("magic byte {0} is invalid")]
    BadMagic(i8),
    #[error("CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    BadCrc { stored: u32, computed: u32 },
    #[error("compression codec {0} is unknown")]
    BadCompression(i16),
    #[error("record count {count} does not match last offset delta {last_offset_delta}")]
    BadRecordCount { count: i32, last_offset_delta: i32 },
    #[error("control batches may not be produced by clients")]
    ControlBatch,
    #[error("batch of {size} bytes exceeds max.message.bytes {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("empty record set")]
    Empty,
    #[error("a compacted topic cannot accept a record without a key")]
    MissingKey,
    #[error("a record inside the batch is malformed")]
    BadRecord,
    #[error(
        "timestamp {timestamp} is outside the topic's window of {before_ms} ms before and \
         {after_ms} ms after the broker's time {now_ms}"
    )]
    TimestampOutOfRange {
        timestamp: i64,
        now_ms: i64,
        before_ms: i64,
        after_ms: i64,
    },
}

impl BatchError {
    /// The Kafka error code a produce response carries for this error.
    pub fn kafka_code(&self) -> i16 {
        match self {
            BatchError::OldMagic(_) => 43,     // UNSUPPORTED_FOR_MESSAGE_FORMAT
            BatchError::TooLarge { .. } => 10, // MESSAGE_TOO_LARGE
            BatchError::TimestampOutOfRange { .. } => 32, // INVALID_TIMESTAMP
            BatchError::BadRecordCount { .. }
            | BatchError::ControlBatch
            | BatchError::Empty
            | BatchError::MissingKey => 87, // INVALID_RECORD
            _ => 2,                            // CORRUPT_MESSAGE
        }
    }
}

/// The header fields of one batch that the log needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// Whole batch size in bytes, including the offset and length fields.
    pub size: usize,
    pub leader_epoch: i32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

impl BatchHeader {
    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    pub fn compression(&self) -> i16 {
        self.attributes & ATTRIBUTE_COMPRESSION_MASK
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTRIBUTE_TRANSACTIONAL != 0
    }

    /// The broker set the timestamps (LogAppendTime): every record has `max_timestamp`.
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & ATTRIBUTE_LOG_APPEND_TIME != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & ATTRIBUTE_CONTROL != 0
    }

    /// The sequence number of the batch's last record (sequences wrap at i32::MAX).
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence < 0 {
            return self.base_sequence;
        }
        let last = i64::from(self.base_sequence) + i64::from(self.last_offset_delta);
        if last > i64::from(i32::MAX) {
            (last - i64::from(i32::MAX) - 1) as i32
        } else {
            last as i32
        }
    }
}

fn read_i16(bytes: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([bytes[at], bytes[at + 1]])
}

fn read_i32(bytes: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn read_i64(bytes: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

/// Parses the header of the batch at the start of `bytes` without checking the CRC.
/// Used when scanning a log, where the caller decides what a bad batch means.
pub fn parse_header(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
    if bytes.len() < HEADER_BYTES {
        return Err(BatchError::Truncated(bytes.len()));
    }
    let length = read_i32(bytes, OFFSET_LENGTH);
    let magic = bytes[OFFSET_MAGIC] as i8;
    if magic != 2 {
        return Err(if magic == 0 || magic == 1 {
            BatchError::OldMagic(magic)
        } else {
            BatchError::BadMagic(magic)
        });
    }
    if length < (HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32 {
        return Err(BatchError::BadLength(length));
    }
    let size = LOG_OVERHEAD_BYTES + length as usize;
    if bytes.len() < size {
        return Err(BatchError::Truncated(bytes.len()));
    }
    Ok(BatchHeader {
        base_offset: read_i64(bytes, OFFSET_BASE),
        size,
        leader_epoch: read_i32(bytes, OFFSET_LEADER_EPOCH),
        attributes: read_i16(bytes, OFFSET_ATTRIBUTES),
        last_offset_delta: read_i32(bytes, OFFSET_LAST_DELTA),
        base_timestamp: read_i64(bytes, OFFSET_BASE_TIMESTAMP),
        max_timestamp: read_i64(bytes, OFFSET_MAX_TIMESTAMP),
        producer_id: read_i64(bytes, OFFSET_PRODUCER_ID),
        producer_epoch: read_i16(bytes, OFFSET_PRODUCER_EPOCH),
        base_sequence: read_i32(bytes, OFFSET_BASE_SEQUENCE),
        record_count: read_i32(bytes, OFFSET_RECORD_COUNT),
    })
}

/// Parses the header and checks the CRC of the batch at the start of `bytes`.
pub fn parse_checked(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = parse_header(bytes)?;
    let stored = u32::from_be_bytes(bytes[OFFSET_CRC..OFFSET_CRC + 4].try_into().expect("4"));
    let computed = crc32c::crc32c(&bytes[OFFSET_ATTRIBUTES..header.size]);
    if stored != computed {
        return Err(BatchError::BadCrc { stored, computed });
    }
    Ok(header)
}

/// Checks a batch a client produced: CRC, magic, codec, record count.
pub fn validate_produced(bytes: &[u8], max_batch_bytes: usize) -> Result<BatchHeader, BatchError> {
    let header = parse_checked(bytes)?;
    if header.size > max_batch_bytes {
        return Err(BatchError::TooLarge {
            size: header.size,
            limit: max_batch_bytes,
        });
    }
    if header.compression() > 4 {
        return Err(BatchError::BadCompression(header.compression()));
    }
    if header.is_control() {
        return Err(BatchError::ControlBatch);
    }
    if header.record_count <= 0 || header.last_offset_delta != header.record_count - 1 {
        return Err(BatchError::BadRecordCount {
            count: header.record_count,
            last_offset_delta: header.last_offset_delta,
        });
    }
    Ok(header)
}

/// Splits a produced record set into its batches, validating each.
/// Returns the headers; the set is refused whole if any batch is bad.
pub fn validate_record_set(
    bytes: &[u8],
    max_batch_bytes: usize,
) -> Result<Vec<BatchHeader>, BatchError> {
    if bytes.is_empty() {
        return Err(BatchError::Empty);
    }
    let mut headers = Vec::with_capacity(1);
    let mut position = 0;
    while position < bytes.len() {
        let header = validate_produced(&bytes[position..], max_batch_bytes)?;
        position += header.size;
        headers.push(header);
    }
    Ok(headers)
}

/// Kafka's CreateTime rule (`message.timestamp.before.max.ms` / `.after.max.ms`): every
/// record's timestamp lies within `[now - before_ms, now + after_ms]`. The batch's base and
/// maximum timestamps bound its records (producers write non-negative deltas), so those two
/// are checked rather than each record; `-1` (no timestamp) is not checked, as in Kafka.
pub fn check_timestamps(
    headers: &[BatchHeader],
    now_ms: i64,
    before_ms: i64,
    after_ms: i64,
) -> Result<(), BatchError> {
    let earliest = now_ms.saturating_sub(before_ms);
    let latest = now_ms.saturating_add(after_ms);
    for header in headers {
        for timestamp in [header.base_timestamp, header.max_timestamp] {
            if timestamp != -1 && (timestamp < earliest || timestamp > latest) {
                return Err(BatchError::TimestampOutOfRange {
                    timestamp,
                    now_ms,
                    before_ms,
                    after_ms,
                });
            }
        }
    }
    Ok(())
}

/// Kafka's rule for compacted topics: every record has a key. Returns the index (counted from
/// the first record of the set) of every record without one, which a produce answers as
/// KIP-467 record errors. Records are walked in place, in the decompressed section of a
/// compressed batch. `headers` are those `validate_record_set` returned for `bytes`.
pub fn keyless_records(bytes: &[u8], headers: &[BatchHeader]) -> Result<Vec<i32>, BatchError> {
    let mut keyless = Vec::new();
    let (mut position, mut index) = (0, 0i32);
    for header in headers {
        let batch = &bytes[position..position + header.size];
        position += header.size;
        let mut visit = |record: RecordView<'_>| {
            if record.key.is_none() {
                keyless.push(index);
            }
            index += 1;
        };
        if header.compression() == 0 {
            for_each_record(batch, header, &mut visit)?;
        } else {
            let owned = bytes::Bytes::copy_from_slice(batch);
            let section = crate::protocol::records::section(&owned, header)?;
            walk_records(&section, header, &mut visit)?;
        }
    }
    Ok(keyless)
}

/// One record of an uncompressed batch, in place: for the cleaner, the key check and the
/// client's consumer.
pub struct RecordView<'a> {
    pub offset: i64,
    /// The record's own timestamp (base plus delta); with LogAppendTime the batch's maximum
    /// is every record's timestamp, which the caller applies.
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    /// A null value: a tombstone.
    pub tombstone: bool,
    pub value: Option<&'a [u8]>,
    /// The encoded headers (a count, then name and value of each): `headers()` reads them.
    headers: &'a [u8],
    /// The whole encoded record, its length prefix included: what a rewritten batch copies.
    pub raw: &'a [u8],
}

/// A record header in place: its name and its value, if any.
pub type HeaderView<'a> = (&'a [u8], Option<&'a [u8]>);

impl<'a> RecordView<'a> {
    /// The record's headers: names and optional values, in order.
    pub fn headers(&self) -> Result<Vec<HeaderView<'a>>, BatchError> {
        let mut reader = crate::protocol::wire::Reader::new(self.headers);
        let count = varint(&mut reader)?;
        let count = usize::try_from(count).map_err(|_| BatchError::BadRecord)?;
        // A header takes at least two bytes: a count larger than that is a lie.
        if count > self.headers.len() / 2 {
            return Err(BatchError::BadRecord);
        }
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            let name = nullable(&mut reader)?.ok_or(BatchError::BadRecord)?;
            let value = nullable(&mut reader)?;
            out.push((name, value));
        }
        if reader.remaining() != 0 {
            return Err(BatchError::BadRecord);
        }
        Ok(out)
    }
}

/// A varint length, then that many bytes; -1 is null.
fn nullable<'a>(
    reader: &mut crate::protocol::wire::Reader<'a>,
) -> Result<Option<&'a [u8]>, BatchError> {
    let length = varint(reader)?;
    if length < 0 {
        return Ok(None);
    }
    reader
        .take(length as usize)
        .map(Some)
        .map_err(|_| BatchError::BadRecord)
}

/// Walks the records of an uncompressed batch (`header.compression() == 0`) in place.
pub fn for_each_record<'a>(
    batch: &'a [u8],
    header: &BatchHeader,
    visit: impl FnMut(RecordView<'a>),
) -> Result<(), BatchError> {
    if header.compression() != 0 || batch.len() < HEADER_BYTES {
        return Err(BatchError::BadRecord);
    }
    walk_records(&batch[HEADER_BYTES..], header, visit)
}

/// Walks `header.record_count` records of a batch's record section: the bytes after the
/// header of an uncompressed batch, or what a compressed one decompresses to
/// (`protocol::records::section`). The section must hold exactly those records.
pub fn walk_records<'a>(
    section: &'a [u8],
    header: &BatchHeader,
    mut visit: impl FnMut(RecordView<'a>),
) -> Result<(), BatchError> {
    let mut reader = crate::protocol::wire::Reader::new(section);
    for _ in 0..header.record_count {
        let begin = reader.position();
        let length = varint(&mut reader)?;
        let start = reader.position();
        reader.i8().map_err(|_| BatchError::BadRecord)?; // attributes
        let timestamp_delta = varlong(&mut reader)?;
        let offset_delta = varint(&mut reader)?;
        let key = nullable(&mut reader)?;
        let value = nullable(&mut reader)?;
        let end = start
            .checked_add(usize::try_from(length).map_err(|_| BatchError::BadRecord)?)
            .ok_or(BatchError::BadRecord)?;
        let rest = end
            .checked_sub(reader.position())
            .ok_or(BatchError::BadRecord)?;
        let headers = reader.take(rest).map_err(|_| BatchError::BadRecord)?;
        if offset_delta < 0 || offset_delta > header.last_offset_delta {
            return Err(BatchError::BadRecord);
        }
        visit(RecordView {
            offset: header.base_offset + i64::from(offset_delta),
            timestamp: header.base_timestamp.saturating_add(timestamp_delta),
            key,
            tombstone: value.is_none(),
            value,
            headers,
            raw: &section[begin..end],
        });
    }
    if reader.remaining() != 0 {
        return Err(BatchError::BadRecord);
    }
    Ok(())
}

/// A zigzag-encoded signed varlong (record fields).
fn varlong(reader: &mut crate::protocol::wire::Reader<'_>) -> Result<i64, BatchError> {
    let mut raw: u64 = 0;
    for shift in (0..70).step_by(7) {
        let byte = reader.take(1).map_err(|_| BatchError::BadRecord)?[0];
        raw |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64));
        }
    }
    Err(BatchError::BadRecord)
}

/// A zigzag-encoded signed varint (record fields).
fn varint(reader: &mut crate::protocol::wire::Reader<'_>) -> Result<i32, BatchError> {
    let raw = reader
        .unsigned_varint()
        .map_err(|_| BatchError::BadRecord)?;
    Ok(((raw >> 1) as i32) ^ -((raw & 1) as i32))
}

/// Assigns the batch's base offset and stamps the leader epoch; both are outside the CRC.
pub fn assign_offset(bytes: &mut [u8], base_offset: i64, leader_epoch: i32) {
    bytes[OFFSET_BASE..OFFSET_BASE + 8].copy_from_slice(&base_offset.to_be_bytes());
    bytes[OFFSET_LEADER_EPOCH..OFFSET_LEADER_EPOCH + 4]
        .copy_from_slice(&leader_epoch.to_be_bytes());
}

/// Marks the batch as LogAppendTime with `timestamp_ms` as its max timestamp; the CRC is
/// recomputed because both fields are inside it.
pub fn set_log_append_time(bytes: &mut [u8], size: usize, timestamp_ms: i64) {
    let attributes = read_i16(bytes, OFFSET_ATTRIBUTES) | ATTRIBUTE_LOG_APPEND_TIME;
    bytes[OFFSET_ATTRIBUTES..OFFSET_ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    bytes[OFFSET_MAX_TIMESTAMP..OFFSET_MAX_TIMESTAMP + 8]
        .copy_from_slice(&timestamp_ms.to_be_bytes());
    let crc = crc32c::crc32c(&bytes[OFFSET_ATTRIBUTES..size]);
    bytes[OFFSET_CRC..OFFSET_CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Sample batches encoded by the kafka-protocol crate: the reference the hand-written code is
/// checked against in tests and measured against in benchmarks.
#[doc(hidden)]
pub mod sample {
    use bytes::Bytes;
    pub use kafka_protocol::records::Compression;

    /// One batch of `records` records with keys `key-N`, values of `value_size` bytes and
    /// timestamps 1_700_000_000_000 + N.
    pub fn batch(records: usize, value_size: usize, compression: Compression) -> Vec<u8> {
        encode(records, value_size, compression, (-1, -1, 0))
    }

    /// A batch from an idempotent producer: `(producer id, epoch, first sequence)`.
    pub fn idempotent_batch(records: usize, producer: (i64, i16, i32)) -> Vec<u8> {
        encode(records, 10, Compression::None, producer)
    }

    fn encode(
        records: usize,
        value_size: usize,
        compression: Compression,
        producer: (i64, i16, i32),
    ) -> Vec<u8> {
        let records = (0..records).map(|i| {
            (
                Some(Bytes::from(format!("key-{i}"))),
                Some(Bytes::from(vec![b'v'; value_size])),
                1_700_000_000_000 + i as i64,
            )
        });
        super::encode_records(records, producer, compression)
            .expect("encode a sample batch")
            .to_vec()
    }
}

/// Encodes `(key, value, timestamp)` records as one v2 batch with the `kafka-protocol` encoder
/// (`producer`: id, epoch, first sequence; `(-1, -1, -1)` for none). For the broker's own
/// writes (group records), compaction and tests; produced batches never pass through here.
pub fn encode_records(
    records: impl IntoIterator<Item = (Option<bytes::Bytes>, Option<bytes::Bytes>, i64)>,
    producer: (i64, i16, i32),
    compression: kafka_protocol::records::Compression,
) -> Result<bytes::BytesMut, String> {
    encode_records_with_headers(
        records
            .into_iter()
            .map(|(key, value, timestamp)| (key, value, timestamp, Vec::new())),
        producer,
        compression,
    )
}

/// A record's headers: names and optional values, in order.
pub type Headers = Vec<(String, Option<bytes::Bytes>)>;

/// `encode_records`, with headers on each record (the client's producer).
pub fn encode_records_with_headers(
    records: impl IntoIterator<Item = (Option<bytes::Bytes>, Option<bytes::Bytes>, i64, Headers)>,
    (producer_id, producer_epoch, first_sequence): (i64, i16, i32),
    compression: kafka_protocol::records::Compression,
) -> Result<bytes::BytesMut, String> {
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::records::{Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
    let records: Vec<Record> = records
        .into_iter()
        .enumerate()
        .map(|(i, (key, value, timestamp, headers))| Record {
            transactional: false,
            control: false,
            partition_leader_epoch: 0,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder keeps records in one batch only while offset minus sequence is
            // constant; a base sequence of -1 (none) is kept that way too.
            sequence: first_sequence.wrapping_add(i as i32),
            timestamp,
            key,
            value,
            headers: headers
                .into_iter()
                .map(|(name, value)| (StrBytes::from_string(name), value))
                .collect(),
            delete_horizon: false,
        })
        .collect();
    let mut buf = bytes::BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options).map_err(|e| e.to_string())?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::sample::{batch as encoded_batch, Compression};
    use super::*;
    use kafka_protocol::records::TimestampType;

    #[test]
    fn parses_what_the_library_encodes() {
        let bytes = encoded_batch(5, 10, Compression::None);
        let header = validate_produced(&bytes, usize::MAX).unwrap();
        assert_eq!(header.size, bytes.len());
        assert_eq!(header.record_count, 5);
        assert_eq!(header.last_offset_delta, 4);
        assert_eq!(header.max_timestamp, 1_700_000_000_004);
    }

    #[test]
    fn every_flipped_bit_inside_the_crc_is_caught() {
        let bytes = encoded_batch(3, 4, Compression::None);
        for at in OFFSET_ATTRIBUTES..bytes.len() {
            let mut copy = bytes.clone();
            copy[at] ^= 0x01;
            assert!(validate_produced(&copy, usize::MAX).is_err(), "byte {at}");
        }
    }

    #[test]
    fn offset_patch_keeps_the_crc_valid_and_library_reads_it() {
        let mut bytes = encoded_batch(3, 4, Compression::None);
        assign_offset(&mut bytes, 1234, 7);
        let header = parse_checked(&bytes).unwrap();
        assert_eq!(header.base_offset, 1234);
        assert_eq!(header.leader_epoch, 7);
        let mut buf = bytes::Bytes::from(bytes);
        let decoded = kafka_protocol::records::RecordBatchDecoder::decode(&mut buf).unwrap();
        assert_eq!(decoded.records[2].offset, 1236);
    }

    #[test]
    fn log_append_time_rewrites_timestamp_and_crc() {
        let mut bytes = encoded_batch(2, 4, Compression::None);
        let size = bytes.len();
        set_log_append_time(&mut bytes, size, 42);
        let header = parse_checked(&bytes).unwrap();
        assert_eq!(header.max_timestamp, 42);
        let mut buf = bytes::Bytes::from(bytes);
        let decoded = kafka_protocol::records::RecordBatchDecoder::decode(&mut buf).unwrap();
        assert_eq!(decoded.records[0].timestamp_type, TimestampType::LogAppend);
    }

    #[test]
    fn wrong_magic_and_oversize_map_to_kafka_codes() {
        let mut bytes = encoded_batch(1, 4, Compression::None);
        let size = bytes.len();
        assert_eq!(
            validate_produced(&bytes, size - 1)
                .unwrap_err()
                .kafka_code(),
            10
        );
        bytes[OFFSET_MAGIC] = 1;
        assert_eq!(
            validate_produced(&bytes, usize::MAX)
                .unwrap_err()
                .kafka_code(),
            43
        );
        bytes[OFFSET_MAGIC] = 9;
        assert_eq!(
            validate_produced(&bytes, usize::MAX)
                .unwrap_err()
                .kafka_code(),
            2
        );
    }

    #[test]
    fn compressed_batches_validate() {
        for codec in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let bytes = encoded_batch(20, 100, codec);
            let header = validate_produced(&bytes, usize::MAX).unwrap();
            assert_ne!(header.compression(), 0);
        }
    }

    #[test]
    fn records_without_a_key_are_found_in_plain_and_compressed_batches() {
        for codec in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let keyed = [
                (
                    Some(bytes::Bytes::from_static(b"k1")),
                    Some(bytes::Bytes::from_static(b"v")),
                ),
                (Some(bytes::Bytes::from_static(b"k2")), None),
            ];
            let bytes = encode_records(
                keyed.iter().map(|(k, v)| (k.clone(), v.clone(), 1)),
                (-1, -1, -1),
                codec,
            )
            .unwrap();
            let headers = validate_record_set(&bytes, usize::MAX).unwrap();
            assert_eq!(keyless_records(&bytes, &headers), Ok(vec![]), "{codec:?}");
            let keyless = [
                (Some(bytes::Bytes::from_static(b"k1")), None),
                (None, Some(bytes::Bytes::from_static(b"v"))),
            ];
            let bytes = encode_records(
                keyless.iter().map(|(k, v)| (k.clone(), v.clone(), 1)),
                (-1, -1, -1),
                codec,
            )
            .unwrap();
            let headers = validate_record_set(&bytes, usize::MAX).unwrap();
            assert_eq!(keyless_records(&bytes, &headers), Ok(vec![1]), "{codec:?}");
            assert_eq!(BatchError::MissingKey.kafka_code(), 87);
        }
    }

    #[test]
    fn the_in_place_record_walk_agrees_with_the_library() {
        let records: Vec<_> = (0..300)
            .map(|i: i64| {
                let key =
                    (i % 7 != 3).then(|| bytes::Bytes::from(format!("key-{}", i * 1_000_003)));
                let value =
                    (i % 5 != 0).then(|| bytes::Bytes::from(vec![b'x'; (i * 13 % 200) as usize]));
                (key, value, 1_700_000_000_000 + i * 997)
            })
            .collect();
        let mut bytes = encode_records(records.clone(), (-1, -1, -1), Compression::None).unwrap();
        assign_offset(&mut bytes, 5_000, 0);
        let header = parse_checked(&bytes).unwrap();
        let mut walked = Vec::new();
        for_each_record(&bytes, &header, |r| {
            walked.push((
                r.offset,
                r.timestamp,
                r.key.map(<[u8]>::to_vec),
                r.tombstone,
            ))
        })
        .unwrap();
        let decoded =
            kafka_protocol::records::RecordBatchDecoder::decode(&mut bytes.freeze()).unwrap();
        let expected: Vec<_> = decoded
            .records
            .iter()
            .map(|r| {
                (
                    r.offset,
                    r.timestamp,
                    r.key.as_ref().map(|k| k.to_vec()),
                    r.value.is_none(),
                )
            })
            .collect();
        assert_eq!(walked, expected);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            if let Ok(headers) = validate_record_set(&data, 1 << 20) {
                let _ = keyless_records(&data, &headers);
                if let Some(header) = headers.first() {
                    let _ = for_each_record(&data[..header.size], header, |_| {});
                }
            }
            let _ = parse_header(&data);
        }
    }
}
