//! A record batch (v2) written as records arrive: the producer's hot path. Each `push` appends
//! one encoded record to a growing buffer (no per-record allocation once the buffer has grown),
//! and `finish` puts the 61-byte batch header in front, compressing the records first when a
//! codec is asked for, and computes the CRC-32C once. The `kafka-protocol` encoder
//! (`batch::encode_records_with_headers`) is the reference it is tested against.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::compression::{Compressor, Gzip, Lz4, Snappy, Zstd};
use kafka_protocol::records::Compression;

/// Bytes of a v2 batch header, up to and including the record count.
pub const BATCH_HEADER_BYTES: usize = 61;
/// Where the CRC-32C starts (the attributes field) and where the CRC itself sits.
const CRC_START: usize = 21;
const CRC_AT: usize = 17;
const MAGIC: i8 = 2;

fn zigzag64(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn varlong_size(value: i64) -> usize {
    let bits = 64 - (zigzag64(value) | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

fn put_varlong(buf: &mut BytesMut, value: i64) {
    let mut v = zigzag64(value);
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

fn nullable_size(bytes: Option<&[u8]>) -> usize {
    match bytes {
        Some(b) => varlong_size(b.len() as i64) + b.len(),
        None => varlong_size(-1),
    }
}

fn put_nullable(buf: &mut BytesMut, bytes: Option<&[u8]>) {
    match bytes {
        Some(b) => {
            put_varlong(buf, b.len() as i64);
            buf.put_slice(b);
        }
        None => put_varlong(buf, -1),
    }
}

/// The records of one batch, encoded as they come.
#[derive(Debug)]
pub struct BatchBuilder {
    records: BytesMut,
    count: i32,
    base_timestamp: i64,
    max_timestamp: i64,
}

impl BatchBuilder {
    /// `capacity`: the bytes of records expected (the producer's `batch.size`).
    pub fn with_capacity(capacity: usize) -> Self {
        BatchBuilder {
            records: BytesMut::with_capacity(capacity),
            count: 0,
            base_timestamp: 0,
            max_timestamp: i64::MIN,
        }
    }

    pub fn record_count(&self) -> i32 {
        self.count
    }

    /// Bytes of the batch without compression, header included.
    pub fn size_bytes(&self) -> usize {
        BATCH_HEADER_BYTES + self.records.len()
    }

    /// Appends one record; the offset delta is its index in the batch.
    pub fn push(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(String, Option<Bytes>)],
    ) {
        if self.count == 0 {
            self.base_timestamp = timestamp;
        }
        self.max_timestamp = self.max_timestamp.max(timestamp);
        let timestamp_delta = timestamp.wrapping_sub(self.base_timestamp);
        let offset_delta = i64::from(self.count);
        let headers_size: usize = headers
            .iter()
            .map(|(name, value)| {
                nullable_size(Some(name.as_bytes())) + nullable_size(value.as_deref())
            })
            .sum();
        let body = 1 // attributes
            + varlong_size(timestamp_delta)
            + varlong_size(offset_delta)
            + nullable_size(key)
            + nullable_size(value)
            + varlong_size(headers.len() as i64)
            + headers_size;
        self.records.reserve(varlong_size(body as i64) + body);
        put_varlong(&mut self.records, body as i64);
        self.records.put_i8(0);
        put_varlong(&mut self.records, timestamp_delta);
        put_varlong(&mut self.records, offset_delta);
        put_nullable(&mut self.records, key);
        put_nullable(&mut self.records, value);
        put_varlong(&mut self.records, headers.len() as i64);
        for (name, value) in headers {
            put_nullable(&mut self.records, Some(name.as_bytes()));
            put_nullable(&mut self.records, value.as_deref());
        }
        self.count += 1;
    }

    /// The finished batch: base offset 0 (the broker assigns offsets), the records compressed
    /// with `compression`, the CRC-32C over everything from the attributes on.
    /// `producer`: id, epoch and first sequence, `(-1, -1, -1)` for none.
    pub fn finish(
        &self,
        (producer_id, producer_epoch, base_sequence): (i64, i16, i32),
        compression: Compression,
    ) -> Result<Bytes, String> {
        let mut out = BytesMut::with_capacity(BATCH_HEADER_BYTES + self.records.len());
        out.put_i64(0); // base offset
        out.put_i32(0); // batch length, set below
        out.put_i32(-1); // partition leader epoch: the broker's to set
        out.put_i8(MAGIC);
        out.put_u32(0); // CRC, set below
        let codec: i16 = match compression {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        };
        out.put_i16(codec);
        out.put_i32(self.count - 1);
        out.put_i64(self.base_timestamp);
        out.put_i64(if self.count == 0 {
            self.base_timestamp
        } else {
            self.max_timestamp
        });
        out.put_i64(producer_id);
        out.put_i16(producer_epoch);
        out.put_i32(base_sequence);
        out.put_i32(self.count);
        let records = &self.records[..];
        let copy = |tmp: &mut BytesMut| {
            tmp.put_slice(records);
            Ok(())
        };
        let compressed = match compression {
            Compression::None => {
                out.put_slice(records);
                Ok(())
            }
            Compression::Gzip => <Gzip as Compressor<BytesMut>>::compress(&mut out, copy),
            Compression::Snappy => <Snappy as Compressor<BytesMut>>::compress(&mut out, copy),
            Compression::Lz4 => <Lz4 as Compressor<BytesMut>>::compress(&mut out, copy),
            Compression::Zstd => <Zstd as Compressor<BytesMut>>::compress(&mut out, copy),
        };
        compressed.map_err(|e| format!("cannot compress a batch: {e}"))?;
        let length = (out.len() - 12) as i32;
        out[8..12].copy_from_slice(&length.to_be_bytes());
        let crc = crc32c::crc32c(&out[CRC_START..]);
        out[CRC_AT..CRC_START].copy_from_slice(&crc.to_be_bytes());
        Ok(out.freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::RecordBatchDecoder;
    use proptest::prelude::*;

    type Input = (
        i64,
        Option<Vec<u8>>,
        Option<Vec<u8>>,
        Vec<(String, Option<Vec<u8>>)>,
    );

    fn codec(i: u8) -> Compression {
        match i % 5 {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            _ => Compression::Zstd,
        }
    }

    fn headers_of(headers: &[(String, Option<Vec<u8>>)]) -> Vec<(String, Option<Bytes>)> {
        headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().map(Bytes::from)))
            .collect()
    }

    fn built(records: &[Input], producer: (i64, i16, i32), compression: Compression) -> Bytes {
        let mut builder = BatchBuilder::with_capacity(16);
        for (timestamp, key, value, headers) in records {
            builder.push(
                *timestamp,
                key.as_deref(),
                value.as_deref(),
                &headers_of(headers),
            );
        }
        builder.finish(producer, compression).unwrap()
    }

    fn records() -> impl Strategy<Value = Vec<Input>> {
        let bytes = || proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300));
        proptest::collection::vec(
            (
                1_600_000_000_000i64..1_900_000_000_000,
                bytes(),
                bytes(),
                // Distinct names: the reference decoder keeps headers in a map.
                proptest::collection::btree_map("[a-z]{1,8}", bytes(), 0..3)
                    .prop_map(|m| m.into_iter().collect::<Vec<_>>()),
            ),
            1..40,
        )
    }

    proptest! {
        /// What the builder writes, the `kafka-protocol` decoder reads back record for record,
        /// in every codec, and the broker's own validation accepts.
        #[test]
        fn the_library_decodes_what_the_builder_writes(
            records in records(),
            which in 0u8..5,
            sequence in 0i32..1000,
        ) {
            let compression = codec(which);
            let bytes = built(&records, (7, 1, sequence), compression);
            crate::protocol::batch::validate_record_set(&bytes, usize::MAX)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let mut buf = bytes.clone();
            let set = RecordBatchDecoder::decode(&mut buf).unwrap();
            prop_assert_eq!(set.records.len(), records.len());
            for (i, (record, (timestamp, key, value, headers))) in
                set.records.iter().zip(&records).enumerate()
            {
                prop_assert_eq!(record.offset, i as i64);
                prop_assert_eq!(record.timestamp, *timestamp);
                prop_assert_eq!(record.key.as_deref(), key.as_deref());
                prop_assert_eq!(record.value.as_deref(), value.as_deref());
                prop_assert_eq!(record.producer_id, 7);
                prop_assert_eq!(record.sequence, sequence + i as i32);
                let decoded: Vec<(String, Option<Vec<u8>>)> = record
                    .headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.as_ref().map(|b| b.to_vec())))
                    .collect();
                prop_assert_eq!(&decoded, headers);
            }
        }

        /// Uncompressed, the builder's bytes are the library encoder's, but for the leader
        /// epoch (outside the CRC; the broker sets it) and therefore equal once it is patched.
        /// Timestamps rise, as a producer's do: the base timestamp is the first record's here
        /// (as in the Java client) and the smallest in the library, the same when they rise.
        #[test]
        fn uncompressed_batches_match_the_library_byte_for_byte(mut records in records()) {
            let mut timestamps: Vec<i64> = records.iter().map(|r| r.0).collect();
            timestamps.sort_unstable();
            for (record, timestamp) in records.iter_mut().zip(timestamps) {
                record.0 = timestamp;
            }
            let mut ours = built(&records, (-1, -1, -1), Compression::None).to_vec();
            let theirs = crate::protocol::batch::encode_records_with_headers(
                records.iter().map(|(t, k, v, h)| {
                    (k.clone().map(Bytes::from), v.clone().map(Bytes::from), *t, headers_of(h))
                }),
                (-1, -1, -1),
                Compression::None,
            )
            .unwrap();
            ours[12..16].copy_from_slice(&theirs[12..16]);
            prop_assert_eq!(&ours[..], &theirs[..]);
        }
    }

    proptest! {
        /// The in-place walker (`batch::for_each_record`, the consumer's path for uncompressed
        /// batches) reads what the builder wrote, headers included.
        #[test]
        fn the_in_place_walker_reads_every_field(records in records()) {
            let bytes = built(&records, (-1, -1, -1), Compression::None);
            let header = crate::protocol::batch::parse_checked(&bytes).unwrap();
            let mut seen = Vec::new();
            crate::protocol::batch::for_each_record(&bytes, &header, |r| {
                let headers: Vec<(String, Option<Vec<u8>>)> = r
                    .headers()
                    .unwrap()
                    .into_iter()
                    .map(|(k, v)| (String::from_utf8(k.to_vec()).unwrap(), v.map(<[u8]>::to_vec)))
                    .collect();
                seen.push((r.timestamp, r.key.map(<[u8]>::to_vec), r.value.map(<[u8]>::to_vec), headers));
            })
            .unwrap();
            prop_assert_eq!(seen, records);
        }
    }

    #[test]
    fn varlong_sizes_match_what_is_written() {
        for value in [
            0i64,
            1,
            -1,
            63,
            64,
            -64,
            -65,
            8191,
            8192,
            i64::MAX,
            i64::MIN,
        ] {
            let mut buf = BytesMut::new();
            put_varlong(&mut buf, value);
            assert_eq!(buf.len(), varlong_size(value), "{value}");
        }
    }
}
