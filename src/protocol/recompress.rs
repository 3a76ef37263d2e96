//! Recompression of produced batches into a topic's `compression.type`, as Kafka's broker does
//! when that setting names a codec rather than `producer`.
//!
//! The records section of a batch is a run of length-prefixed records; it is decompressed and
//! compressed again as opaque bytes. Records are never decoded, so everything in them (keys,
//! values, repeated header names, timestamps and offset deltas) is kept exactly. The 61-byte
//! batch header is copied with its codec bits, length and CRC-32C rewritten; producer id,
//! epoch and sequence stay, so idempotence works the same on recompressed batches.
//!
//! Pure: no I/O. Runs on the shard that owns the partition, before the append.

use std::io::{Read, Write};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::compression::{Compressor, Decompressor, Snappy};

use super::batch::{BatchHeader, HEADER_BYTES};

const CODEC_NONE: i16 = 0;
const CODEC_GZIP: i16 = 1;
const CODEC_SNAPPY: i16 = 2;
const CODEC_LZ4: i16 = 3;
const CODEC_ZSTD: i16 = 4;
const CODEC_MASK: i16 = 0x07;
const OFFSET_LENGTH: usize = 8;
const OFFSET_CRC: usize = 17;
const OFFSET_ATTRIBUTES: usize = 21;
const LOG_OVERHEAD_BYTES: usize = 12;
/// Bound on a batch's decompressed records: a small compressed batch must not make the broker
/// allocate without limit (a "zip bomb"). Kafka's own limit is the heap; this is generous.
pub const DECOMPRESSED_BYTES_MAX: usize = 256 << 20;

/// The codec (record batch attribute bits) and level batches are stored with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub codec: i16,
    /// Codec-specific; ignored by snappy and none. `-1` for gzip is its default level.
    pub level: i32,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecompressError {
    #[error("cannot decompress a batch ({codec}): {reason}")]
    Decompress { codec: &'static str, reason: String },
    #[error("batch decompresses to more than {DECOMPRESSED_BYTES_MAX} bytes")]
    TooLarge,
    #[error("cannot compress a batch ({codec}): {reason}")]
    Compress { codec: &'static str, reason: String },
    #[error("recompressed batch of {size} bytes is over max.message.bytes ({limit})")]
    OverLimit { size: usize, limit: usize },
}

impl RecompressError {
    pub fn kafka_code(&self) -> i16 {
        match self {
            RecompressError::OverLimit { .. } => 10, // MESSAGE_TOO_LARGE
            RecompressError::Compress { .. } => -1,  // UNKNOWN_SERVER_ERROR: the broker failed
            _ => 2,                                  // CORRUPT_MESSAGE
        }
    }
}

fn codec_name(codec: i16) -> &'static str {
    match codec {
        CODEC_NONE => "none",
        CODEC_GZIP => "gzip",
        CODEC_SNAPPY => "snappy",
        CODEC_LZ4 => "lz4",
        CODEC_ZSTD => "zstd",
        _ => "unknown",
    }
}

/// Whether any batch of the set must be rewritten to be stored in `target`.
pub fn needed(headers: &[BatchHeader], target: Target) -> bool {
    headers
        .iter()
        .any(|h| !h.is_control() && h.compression() != target.codec)
}

/// Rewrites every batch of a validated record set (`headers` as `validate_record_set` gave
/// them) into `target`; batches already in it are copied as they are. Returns the new set and
/// its headers. A rewritten batch larger than `max_batch_bytes` is refused, as Kafka refuses it.
pub fn recompress(
    records: &[u8],
    headers: &[BatchHeader],
    target: Target,
    max_batch_bytes: usize,
) -> Result<(BytesMut, Vec<BatchHeader>), RecompressError> {
    let mut out = BytesMut::with_capacity(records.len());
    let mut rewritten = Vec::with_capacity(headers.len());
    let mut position = 0;
    for header in headers {
        let batch = &records[position..position + header.size];
        position += header.size;
        if header.is_control() || header.compression() == target.codec {
            out.extend_from_slice(batch);
            rewritten.push(*header);
            continue;
        }
        let raw = decompress(header.compression(), &batch[HEADER_BYTES..])?;
        let start = out.len();
        out.extend_from_slice(&batch[..HEADER_BYTES]);
        compress(target, &raw, &mut out)?;
        let size = out.len() - start;
        if size > max_batch_bytes {
            return Err(RecompressError::OverLimit {
                size,
                limit: max_batch_bytes,
            });
        }
        let bytes = &mut out[start..];
        let length = (size - LOG_OVERHEAD_BYTES) as i32;
        bytes[OFFSET_LENGTH..OFFSET_LENGTH + 4].copy_from_slice(&length.to_be_bytes());
        let attributes = (header.attributes & !CODEC_MASK) | target.codec;
        bytes[OFFSET_ATTRIBUTES..OFFSET_ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
        let crc = crc32c::crc32c(&bytes[OFFSET_ATTRIBUTES..]);
        bytes[OFFSET_CRC..OFFSET_CRC + 4].copy_from_slice(&crc.to_be_bytes());
        rewritten.push(BatchHeader {
            size,
            attributes,
            ..*header
        });
    }
    Ok((out, rewritten))
}

/// Reads at most `DECOMPRESSED_BYTES_MAX` from a decoder.
fn read_bounded(reader: impl Read, codec: i16) -> Result<Vec<u8>, RecompressError> {
    let mut raw = Vec::new();
    reader
        .take(DECOMPRESSED_BYTES_MAX as u64 + 1)
        .read_to_end(&mut raw)
        .map_err(|e| RecompressError::Decompress {
            codec: codec_name(codec),
            reason: e.to_string(),
        })?;
    if raw.len() > DECOMPRESSED_BYTES_MAX {
        return Err(RecompressError::TooLarge);
    }
    Ok(raw)
}

/// Decompresses a record section written with Kafka codec `codec`, at most
/// `DECOMPRESSED_BYTES_MAX` of it.
pub(crate) fn decompress(codec: i16, payload: &[u8]) -> Result<Vec<u8>, RecompressError> {
    let failed = |reason: String| RecompressError::Decompress {
        codec: codec_name(codec),
        reason,
    };
    match codec {
        CODEC_NONE => Ok(payload.to_vec()),
        CODEC_GZIP => read_bounded(flate2::read::GzDecoder::new(payload), codec),
        CODEC_LZ4 => {
            let decoder = lz4::Decoder::new(payload).map_err(|e| failed(e.to_string()))?;
            read_bounded(decoder, codec)
        }
        CODEC_ZSTD => {
            let decoder =
                zstd::stream::read::Decoder::new(payload).map_err(|e| failed(e.to_string()))?;
            read_bounded(decoder, codec)
        }
        CODEC_SNAPPY => {
            // Raw or xerial-framed, as the Java client writes it: the crate's reader knows both.
            // Snappy records its decompressed length up front, so the bound is checked first.
            if snappy_claimed_length(payload).is_some_and(|n| n > DECOMPRESSED_BYTES_MAX) {
                return Err(RecompressError::TooLarge);
            }
            let mut input = Bytes::copy_from_slice(payload);
            <Snappy as Decompressor<Bytes>>::decompress(&mut input, |raw: &mut Bytes| {
                Ok(raw.copy_to_bytes(raw.remaining()).to_vec())
            })
            .map_err(|e| failed(e.to_string()))
        }
        other => Err(failed(format!("unknown codec {other}"))),
    }
}

/// The decompressed length a raw snappy block declares (its leading varint); `None` for
/// xerial framing, whose chunks are each bounded by the crate.
fn snappy_claimed_length(payload: &[u8]) -> Option<usize> {
    const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
    if payload.starts_with(XERIAL_MAGIC) {
        return None;
    }
    let mut value: u64 = 0;
    for (index, byte) in payload.iter().take(10).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            return usize::try_from(value).ok();
        }
    }
    None
}

/// Appends `raw` (a record section) to `out`, compressed as `target` says.
pub(crate) fn compress(
    target: Target,
    raw: &[u8],
    out: &mut BytesMut,
) -> Result<(), RecompressError> {
    let failed = |reason: String| RecompressError::Compress {
        codec: codec_name(target.codec),
        reason,
    };
    match target.codec {
        CODEC_NONE => {
            out.extend_from_slice(raw);
            Ok(())
        }
        CODEC_GZIP => {
            let level = if target.level < 0 {
                flate2::Compression::default()
            } else {
                flate2::Compression::new(target.level as u32)
            };
            let mut encoder = flate2::write::GzEncoder::new(out.writer(), level);
            encoder
                .write_all(raw)
                .and_then(|_| encoder.finish().map(drop))
                .map_err(|e| failed(e.to_string()))
        }
        CODEC_LZ4 => {
            let mut encoder = lz4::EncoderBuilder::new()
                .level(target.level.max(0) as u32)
                .block_mode(lz4::BlockMode::Independent)
                .build(out.writer())
                .map_err(|e| failed(e.to_string()))?;
            encoder.write_all(raw).map_err(|e| failed(e.to_string()))?;
            encoder.finish().1.map_err(|e| failed(e.to_string()))
        }
        CODEC_ZSTD => zstd::stream::copy_encode(raw, out.writer(), target.level)
            .map_err(|e| failed(e.to_string())),
        CODEC_SNAPPY => <Snappy as Compressor<BytesMut>>::compress(out, |tmp: &mut BytesMut| {
            tmp.put_slice(raw);
            Ok(())
        })
        .map_err(|e| failed(e.to_string())),
        other => Err(failed(format!("unknown codec {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::batch::{self, sample::Compression};
    use kafka_protocol::records::RecordBatchDecoder;

    fn encoded(compression: Compression, records: usize) -> BytesMut {
        batch::encode_records(
            (0..records).map(|i| {
                (
                    Some(Bytes::from(format!("key-{i}"))),
                    Some(Bytes::from(vec![b'v'; 200])),
                    1_000 + i as i64,
                )
            }),
            (7, 1, 0),
            compression,
        )
        .unwrap()
    }

    /// A batch with records whose header names repeat, built byte by byte (the protocol
    /// crate keeps headers in a map and could not encode them).
    fn repeated_headers() -> BytesMut {
        let mut builder = crate::protocol::builder::BatchBuilder::with_capacity(256);
        let headers = [
            ("h".to_string(), Some(Bytes::from_static(b"1"))),
            ("h".to_string(), Some(Bytes::from_static(b"2"))),
        ];
        builder.push(5, Some(b"k"), Some(b"v"), &headers);
        let bytes = builder.finish((-1, -1, -1), Compression::Gzip).unwrap();
        BytesMut::from(&bytes[..])
    }

    fn all_codecs() -> [Compression; 5] {
        [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ]
    }

    fn attribute(compression: Compression) -> i16 {
        match compression {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    #[test]
    fn every_codec_to_every_codec_keeps_the_records() {
        for from in all_codecs() {
            for to in all_codecs() {
                let input = encoded(from, 20);
                let headers = batch::validate_record_set(&input, usize::MAX).unwrap();
                let target = Target {
                    codec: attribute(to),
                    level: if to == Compression::Gzip { -1 } else { 3 },
                };
                let (output, rewritten) = recompress(&input, &headers, target, usize::MAX).unwrap();
                let checked = batch::validate_record_set(&output, usize::MAX).unwrap();
                assert_eq!(
                    checked, rewritten,
                    "{from:?} -> {to:?}: headers and CRC agree"
                );
                assert_eq!(checked[0].compression(), attribute(to));
                assert_eq!(checked[0].producer_id, 7);
                let mut a = input.clone().freeze();
                let mut b = output.freeze();
                let before = RecordBatchDecoder::decode(&mut a).unwrap().records;
                let after = RecordBatchDecoder::decode(&mut b).unwrap().records;
                assert_eq!(before, after, "{from:?} -> {to:?}");
            }
        }
    }

    #[test]
    fn repeated_header_names_survive() {
        let input = repeated_headers();
        let headers = batch::validate_record_set(&input, usize::MAX).unwrap();
        let (output, rewritten) = recompress(
            &input,
            &headers,
            Target {
                codec: CODEC_NONE,
                level: 0,
            },
            usize::MAX,
        )
        .unwrap();
        let mut seen = Vec::new();
        batch::for_each_record(&output, &rewritten[0], |record| {
            for (name, value) in record.headers().unwrap() {
                seen.push((name.to_vec(), value.map(<[u8]>::to_vec)));
            }
        })
        .unwrap();
        assert_eq!(
            seen,
            [
                (b"h".to_vec(), Some(b"1".to_vec())),
                (b"h".to_vec(), Some(b"2".to_vec()))
            ]
        );
    }

    #[test]
    fn a_batch_already_in_the_target_codec_is_copied() {
        let input = encoded(Compression::Zstd, 3);
        let headers = batch::validate_record_set(&input, usize::MAX).unwrap();
        let target = Target {
            codec: CODEC_ZSTD,
            level: 3,
        };
        assert!(!needed(&headers, target));
        let (output, _) = recompress(&input, &headers, target, usize::MAX).unwrap();
        assert_eq!(output, input);
    }

    #[test]
    fn garbage_and_oversize_are_errors_not_panics() {
        let mut input = encoded(Compression::Gzip, 3);
        let headers = batch::validate_record_set(&input, usize::MAX).unwrap();
        for byte in &mut input[HEADER_BYTES + 10..] {
            *byte = 0x55;
        }
        let target = Target {
            codec: CODEC_ZSTD,
            level: 3,
        };
        let error = recompress(&input, &headers, target, usize::MAX).unwrap_err();
        assert_eq!(error.kafka_code(), 2);

        let input = encoded(Compression::None, 50);
        let headers = batch::validate_record_set(&input, usize::MAX).unwrap();
        let error = recompress(
            &input,
            &headers,
            Target {
                codec: CODEC_NONE,
                level: 0,
            },
            100,
        );
        assert_eq!(error, Ok((input.clone(), headers.clone())));
        let error = recompress(&input, &headers, target, 100).unwrap_err();
        assert_eq!(error.kafka_code(), 10);
    }

    proptest::proptest! {
        /// Whatever the bytes after a valid header, every codec's decompression answers with
        /// an error or a bounded section, and recompressing a set built on them never panics.
        #[test]
        fn arbitrary_payloads_never_panic(
            payload in proptest::collection::vec(proptest::num::u8::ANY, 0..600),
            codec in 0i16..5,
            target in 0i16..5,
        ) {
            if let Ok(raw) = decompress(codec, &payload) {
                proptest::prop_assert!(raw.len() <= DECOMPRESSED_BYTES_MAX);
            }
            let mut out = BytesMut::new();
            let _ = compress(Target { codec: target, level: 3 }, &payload, &mut out);
            // A validated header in front of garbage records of any codec.
            let mut batch = encoded(Compression::None, 3);
            batch.truncate(HEADER_BYTES);
            batch.extend_from_slice(&payload);
            let length = (batch.len() - LOG_OVERHEAD_BYTES) as i32;
            batch[OFFSET_LENGTH..OFFSET_LENGTH + 4].copy_from_slice(&length.to_be_bytes());
            let attributes = codec;
            batch[OFFSET_ATTRIBUTES..OFFSET_ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
            let crc = crc32c::crc32c(&batch[OFFSET_ATTRIBUTES..]);
            batch[OFFSET_CRC..OFFSET_CRC + 4].copy_from_slice(&crc.to_be_bytes());
            if let Ok(headers) = batch::validate_record_set(&batch, usize::MAX) {
                let _ = recompress(&batch, &headers, Target { codec: target, level: 1 }, usize::MAX);
            }
        }
    }
}
