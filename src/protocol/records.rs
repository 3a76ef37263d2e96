//! The records inside a stored v2 batch: getting at them (decompressing when the batch is
//! compressed), and building a batch again from a subset of them.
//!
//! Pure: no I/O. Records are handled as the bytes they were written as (`RecordView::raw`),
//! never decoded into owned values, so nothing about a record changes on the way through:
//! repeated header names, null values, and the offset and timestamp deltas (which stay valid
//! because a rebuilt batch keeps the original's base offset and base timestamp).
//!
//! Used by the cleaner (a batch that keeps some of its records), by recompression on append
//! and by the client's consumer (the records of a compressed batch).

use bytes::{BufMut, Bytes, BytesMut};

use super::recompress;

use super::batch::{
    self, BatchError, BatchHeader, ATTRIBUTE_COMPRESSION_MASK, HEADER_BYTES, LOG_OVERHEAD_BYTES,
    OFFSET_ATTRIBUTES, OFFSET_CRC, OFFSET_LENGTH, OFFSET_MAX_TIMESTAMP, OFFSET_RECORD_COUNT,
};

/// The record section of `batch` (one whole batch, `header` its parsed header): a view of the
/// stored bytes when it is uncompressed, else a new buffer with the decompressed records.
pub fn section(batch: &Bytes, header: &BatchHeader) -> Result<Bytes, BatchError> {
    if batch.len() < HEADER_BYTES || batch.len() < header.size {
        return Err(BatchError::Truncated(batch.len()));
    }
    let stored = batch.slice(HEADER_BYTES..header.size);
    match header.compression() {
        0 => Ok(stored),
        codec => decompress(codec, stored),
    }
}

/// Decompresses a record section written with Kafka codec `codec` (1 gzip, 2 snappy in
/// Kafka's xerial framing or raw, 3 lz4 frame, 4 zstd), at most
/// `recompress::DECOMPRESSED_BYTES_MAX` of it.
pub fn decompress(codec: i16, compressed: Bytes) -> Result<Bytes, BatchError> {
    if !(1..=4).contains(&codec) {
        return Err(BatchError::BadCompression(codec));
    }
    recompress::decompress(codec, &compressed)
        .map(Bytes::from)
        .map_err(|_| BatchError::BadRecord)
}

/// Appends a record section, given as the concatenation of `parts`, to `out`, compressed
/// with Kafka codec `codec` at `level` (the codec's, as `compression.*.level` gives it).
pub fn compress(
    codec: i16,
    level: i32,
    parts: &[&[u8]],
    out: &mut BytesMut,
) -> Result<(), BatchError> {
    if codec == 0 {
        for part in parts {
            out.put_slice(part);
        }
        return Ok(());
    }
    let raw = parts.concat();
    recompress::compress(recompress::Target { codec, level }, &raw, out)
        .map_err(|_| BatchError::BadRecord)
}

/// What a rebuilt batch holds: `count` records whose encodings, concatenated, are `records`,
/// and their largest timestamp (ignored under LogAppendTime, where the batch's stays).
pub struct Kept<'a> {
    pub records: &'a [&'a [u8]],
    pub count: i32,
    pub max_timestamp: i64,
}

/// A batch like `original` holding only `kept`, as Kafka's cleaner writes it: the base offset,
/// last offset delta (so the batch still ends where it ended, and its record count may be
/// smaller than `last_offset_delta + 1`), base timestamp, producer id, epoch and base sequence,
/// partition leader epoch and attributes (codec, timestamp type, transactional) of the
/// original; a new record count, max timestamp, length and CRC. With no records the batch is
/// an empty uncompressed one with the original max timestamp, which is how the last batch of a producer keeps its sequence
/// numbers in a compacted log.
pub fn rebuild(
    original_bytes: &[u8],
    original: &BatchHeader,
    kept: Kept<'_>,
    level: i32,
) -> Result<Bytes, BatchError> {
    if original_bytes.len() < HEADER_BYTES {
        return Err(BatchError::Truncated(original_bytes.len()));
    }
    let raw_bytes: usize = kept.records.iter().map(|r| r.len()).sum();
    let mut out = BytesMut::with_capacity(HEADER_BYTES + raw_bytes);
    out.put_slice(&original_bytes[..HEADER_BYTES]);
    let mut attributes = original.attributes;
    if kept.count == 0 {
        attributes &= !ATTRIBUTE_COMPRESSION_MASK;
    }
    out[OFFSET_ATTRIBUTES..OFFSET_ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    let max_timestamp = if original.is_log_append_time() {
        original.max_timestamp
    } else if kept.count == 0 {
        // As Kafka's empty batches: the original's, which producer expiry goes by.
        original.max_timestamp
    } else {
        kept.max_timestamp
    };
    out[OFFSET_MAX_TIMESTAMP..OFFSET_MAX_TIMESTAMP + 8]
        .copy_from_slice(&max_timestamp.to_be_bytes());
    out[OFFSET_RECORD_COUNT..OFFSET_RECORD_COUNT + 4].copy_from_slice(&kept.count.to_be_bytes());
    compress(
        attributes & ATTRIBUTE_COMPRESSION_MASK,
        level,
        kept.records,
        &mut out,
    )?;
    let length = i32::try_from(out.len() - LOG_OVERHEAD_BYTES)
        .map_err(|_| BatchError::BadLength(i32::MAX))?;
    out[OFFSET_LENGTH..OFFSET_LENGTH + 4].copy_from_slice(&length.to_be_bytes());
    let crc = crc32c::crc32c(&out[OFFSET_ATTRIBUTES..]);
    out[OFFSET_CRC..OFFSET_CRC + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(out.freeze())
}

/// Checks a batch read back from a log: CRC, codec, and a record count that fits its offset
/// range. Unlike produce-time validation (`batch::validate_produced`) a count smaller than
/// `last_offset_delta + 1` is fine (a compacted batch), and so is zero (a producer's last batch
/// kept empty) or a control batch.
pub fn validate_stored(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = batch::parse_checked(bytes)?;
    if header.compression() > 4 {
        return Err(BatchError::BadCompression(header.compression()));
    }
    if header.record_count < 0
        || header.last_offset_delta < 0
        || i64::from(header.record_count) > i64::from(header.last_offset_delta) + 1
    {
        return Err(BatchError::BadRecordCount {
            count: header.record_count,
            last_offset_delta: header.last_offset_delta,
        });
    }
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::batch::{assign_offset, encode_records_with_headers, Headers};
    use kafka_protocol::records::{Compression, RecordBatchDecoder};

    const CODECS: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    type Input = (Option<Bytes>, Option<Bytes>, i64, Headers);

    fn records(count: usize) -> Vec<Input> {
        (0..count)
            .map(|i| {
                let key = (i % 9 != 4).then(|| Bytes::from(format!("key-{}", i % 13)));
                let value = (i % 6 != 1).then(|| Bytes::from(vec![b'a' + (i % 26) as u8; i % 70]));
                let headers = if i % 3 == 0 {
                    Vec::new()
                } else {
                    vec![
                        ("h".to_string(), Some(Bytes::from(format!("first-{i}")))),
                        ("h".to_string(), None),
                        ("h".to_string(), Some(Bytes::from_static(b"third"))),
                    ]
                };
                (
                    key,
                    value,
                    1_700_000_000_000 + (i as i64 * 37) % 500,
                    headers,
                )
            })
            .collect()
    }

    /// Each record as the in-place walker sees it: offset, timestamp, key, value and headers.
    type Seen = (
        i64,
        i64,
        Option<Vec<u8>>,
        Option<Vec<u8>>,
        Vec<(Vec<u8>, Option<Vec<u8>>)>,
    );

    fn walk(batch: &Bytes) -> (BatchHeader, Vec<Seen>) {
        let header = validate_stored(batch).unwrap();
        let section = section(batch, &header).unwrap();
        let mut seen = Vec::new();
        batch::walk_records(&section, &header, |r| {
            let headers = r
                .headers()
                .unwrap()
                .into_iter()
                .map(|(n, v)| (n.to_vec(), v.map(<[u8]>::to_vec)))
                .collect();
            seen.push((
                r.offset,
                r.timestamp,
                r.key.map(<[u8]>::to_vec),
                r.value.map(<[u8]>::to_vec),
                headers,
            ));
        })
        .unwrap();
        (header, seen)
    }

    #[test]
    fn the_walk_of_a_compressed_batch_agrees_with_the_library() {
        for codec in CODECS {
            let mut bytes = encode_records_with_headers(records(200), (-1, -1, -1), codec).unwrap();
            assign_offset(&mut bytes, 1_000, 3);
            let bytes = bytes.freeze();
            let (_, seen) = walk(&bytes);
            let decoded = RecordBatchDecoder::decode(&mut bytes.clone()).unwrap();
            assert_eq!(seen.len(), decoded.records.len(), "{codec:?}");
            for (ours, theirs) in seen.iter().zip(&decoded.records) {
                assert_eq!(ours.0, theirs.offset);
                assert_eq!(ours.1, theirs.timestamp);
                assert_eq!(ours.2.as_deref(), theirs.key.as_deref());
                assert_eq!(ours.3.as_deref(), theirs.value.as_deref());
            }
        }
    }

    #[test]
    fn a_rebuilt_batch_keeps_offsets_producer_fields_and_repeated_headers() {
        for codec in CODECS {
            let mut bytes =
                encode_records_with_headers(records(300), (77, 2, 1_000), codec).unwrap();
            assign_offset(&mut bytes, 5_000, 9);
            let bytes = bytes.freeze();
            let (header, seen) = walk(&bytes);
            let section = section(&bytes, &header).unwrap();
            // Keep every third record.
            let mut raw: Vec<&[u8]> = Vec::new();
            let (mut count, mut max_timestamp) = (0, i64::MIN);
            let mut index = 0;
            batch::walk_records(&section, &header, |r| {
                if index % 3 == 0 {
                    raw.push(r.raw);
                    count += 1;
                    max_timestamp = max_timestamp.max(r.timestamp);
                }
                index += 1;
            })
            .unwrap();
            let kept = Kept {
                records: &raw,
                count,
                max_timestamp,
            };
            let rebuilt = rebuild(&bytes, &header, kept, 3).unwrap();
            let (new_header, new_seen) = walk(&rebuilt);
            assert_eq!(new_header.base_offset, 5_000);
            assert_eq!(new_header.last_offset(), header.last_offset(), "{codec:?}");
            assert_eq!(new_header.leader_epoch, 9);
            assert_eq!(new_header.compression(), header.compression());
            assert_eq!(
                (
                    new_header.producer_id,
                    new_header.producer_epoch,
                    new_header.base_sequence
                ),
                (77, 2, 1_000)
            );
            assert_eq!(new_header.record_count, 100);
            assert!(batch::validate_produced(&rebuilt, usize::MAX).is_err());
            let expected: Vec<_> = seen.into_iter().step_by(3).collect();
            assert_eq!(
                new_header.max_timestamp,
                expected.iter().map(|r| r.1).max().unwrap()
            );
            assert_eq!(new_seen, expected, "{codec:?}");
            // The library reads it too.
            let decoded = RecordBatchDecoder::decode(&mut rebuilt.clone()).unwrap();
            assert_eq!(decoded.records.len(), 100);
            assert_eq!(decoded.records[1].offset, 5_003);
        }
    }

    #[test]
    fn an_emptied_batch_is_an_uncompressed_header_with_the_same_range() {
        let mut bytes =
            encode_records_with_headers(records(10), (5, 0, 40), Compression::Lz4).unwrap();
        assign_offset(&mut bytes, 100, 1);
        let header = validate_stored(&bytes).unwrap();
        let empty = Kept {
            records: &[],
            count: 0,
            max_timestamp: 0,
        };
        let rebuilt = rebuild(&bytes, &header, empty, 3).unwrap();
        let new_header = validate_stored(&rebuilt).unwrap();
        assert_eq!(rebuilt.len(), HEADER_BYTES);
        assert_eq!(new_header.record_count, 0);
        assert_eq!(new_header.compression(), 0);
        assert_eq!(new_header.last_offset(), 109);
        assert_eq!(new_header.last_sequence(), header.last_sequence());
    }

    #[test]
    fn stored_validation_refuses_what_no_log_can_hold() {
        let bytes = batch::sample::batch(5, 3, Compression::None);
        assert!(validate_stored(&bytes).is_ok());
        let mut more = bytes.clone();
        // Six records claimed in a range of five offsets: the CRC is fixed, the count is not.
        more[OFFSET_RECORD_COUNT..OFFSET_RECORD_COUNT + 4].copy_from_slice(&6i32.to_be_bytes());
        let crc = crc32c::crc32c(&more[OFFSET_ATTRIBUTES..]);
        more[OFFSET_CRC..OFFSET_CRC + 4].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            validate_stored(&more),
            Err(BatchError::BadRecordCount { .. })
        ));
        let mut flipped = bytes.clone();
        flipped[70] ^= 1;
        assert!(matches!(
            validate_stored(&flipped),
            Err(BatchError::BadCrc { .. })
        ));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_sections_never_panic(
            data in proptest::collection::vec(proptest::num::u8::ANY, 0..512),
            codec in 0i16..6,
        ) {
            let _ = decompress(codec, Bytes::from(data.clone()));
            let header = BatchHeader {
                base_offset: 0, size: 0, leader_epoch: 0, attributes: 0, last_offset_delta: 20,
                base_timestamp: 0, max_timestamp: 0, producer_id: -1, producer_epoch: -1,
                base_sequence: -1, record_count: 20,
            };
            let _ = batch::walk_records(&data, &header, |_| {});
        }
    }
}
