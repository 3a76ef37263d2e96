//! Fetch response encoding (v4–v16), by hand: the response is a list of parts, encoded header
//! bytes interleaved with the stored record buffers, so the connection writes it with one
//! vectored send and record bytes are never copied in user space.

use bytes::{BufMut, Bytes, BytesMut};

use super::wire::{
    put_array_length, put_bytes_length, put_null_array, put_string, put_unsigned_varint,
};

pub const MIN_VERSION: i16 = 4;
pub const MAX_VERSION: i16 = 16;

#[derive(Debug, Clone)]
pub struct FetchPartitionResponse<R> {
    pub partition: i32,
    pub error_code: i16,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    /// `None` is encoded as a null array (read_uncommitted), `Some` as an array.
    pub aborted_transactions: Option<Vec<(i64, i64)>>,
    pub records: Vec<R>,
}

#[derive(Debug, Clone)]
pub struct FetchTopicResponse<R> {
    pub name: String,
    pub topic_id: [u8; 16],
    pub partitions: Vec<FetchPartitionResponse<R>>,
}

#[derive(Debug, Clone)]
pub struct FetchResponse<R> {
    pub throttle_time_ms: i32,
    pub error_code: i16,
    pub session_id: i32,
    pub topics: Vec<FetchTopicResponse<R>>,
}

/// One piece of an encoded response: encoded protocol bytes or a stored record buffer.
#[derive(Debug, Clone)]
pub enum Part<R> {
    Encoded(Bytes),
    Records(R),
}

impl<R: AsRef<[u8]>> AsRef<[u8]> for Part<R> {
    fn as_ref(&self) -> &[u8] {
        match self {
            Part::Encoded(b) => b,
            Part::Records(r) => r.as_ref(),
        }
    }
}

/// Encodes a whole response frame (size prefix, header, body) as parts.
pub fn encode_frame<R: AsRef<[u8]>>(
    response: FetchResponse<R>,
    correlation_id: i32,
    version: i16,
) -> Vec<Part<R>> {
    debug_assert!((MIN_VERSION..=MAX_VERSION).contains(&version));
    let flexible = version >= 12;
    let mut parts = Vec::with_capacity(4);
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0); // frame size, patched below
    buf.put_i32(correlation_id);
    if flexible {
        put_unsigned_varint(&mut buf, 0);
    }
    buf.put_i32(response.throttle_time_ms);
    if version >= 7 {
        buf.put_i16(response.error_code);
        buf.put_i32(response.session_id);
    }
    put_array_length(&mut buf, response.topics.len(), flexible);
    for topic in response.topics {
        if version >= 13 {
            buf.put_slice(&topic.topic_id);
        } else {
            put_string(&mut buf, &topic.name, flexible);
        }
        put_array_length(&mut buf, topic.partitions.len(), flexible);
        for partition in topic.partitions {
            buf.put_i32(partition.partition);
            buf.put_i16(partition.error_code);
            buf.put_i64(partition.high_watermark);
            buf.put_i64(partition.last_stable_offset);
            if version >= 5 {
                buf.put_i64(partition.log_start_offset);
            }
            match &partition.aborted_transactions {
                None => put_null_array(&mut buf, flexible),
                Some(aborted) => {
                    put_array_length(&mut buf, aborted.len(), flexible);
                    for (producer_id, first_offset) in aborted {
                        buf.put_i64(*producer_id);
                        buf.put_i64(*first_offset);
                        if flexible {
                            put_unsigned_varint(&mut buf, 0);
                        }
                    }
                }
            }
            if version >= 11 {
                // Only the leader serves reads: no follower is ever preferred.
                buf.put_i32(-1);
            }
            let records_size: usize = partition.records.iter().map(|r| r.as_ref().len()).sum();
            put_bytes_length(&mut buf, records_size, flexible);
            if records_size > 0 {
                parts.push(Part::Encoded(buf.split().freeze()));
                parts.extend(
                    partition
                        .records
                        .into_iter()
                        .filter(|r| !r.as_ref().is_empty())
                        .map(Part::Records),
                );
            }
            if flexible {
                put_unsigned_varint(&mut buf, 0);
            }
        }
        if flexible {
            put_unsigned_varint(&mut buf, 0);
        }
    }
    if flexible {
        put_unsigned_varint(&mut buf, 0);
    }
    parts.push(Part::Encoded(buf.freeze()));
    let total: usize = parts.iter().map(|p| p.as_ref().len()).sum();
    let mut first = match parts.remove(0) {
        Part::Encoded(bytes) => BytesMut::from(bytes.as_ref()),
        Part::Records(_) => unreachable!("the first part is always the header"),
    };
    first[..4].copy_from_slice(&((total - 4) as i32).to_be_bytes());
    parts.insert(0, Part::Encoded(first.freeze()));
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::{
        AbortedTransaction, FetchableTopicResponse, PartitionData,
    };
    use kafka_protocol::messages::{FetchResponse as Lib, ResponseHeader, TopicName};
    use kafka_protocol::protocol::{Encodable, StrBytes};

    fn sample(with_aborted: bool) -> FetchResponse<Bytes> {
        FetchResponse {
            throttle_time_ms: 0,
            error_code: 0,
            session_id: 0,
            topics: vec![
                FetchTopicResponse {
                    name: "orders".into(),
                    topic_id: [3; 16],
                    partitions: vec![
                        FetchPartitionResponse {
                            partition: 0,
                            error_code: 0,
                            high_watermark: 10,
                            last_stable_offset: 10,
                            log_start_offset: 0,
                            aborted_transactions: with_aborted.then(|| vec![(5, 6)]),
                            records: vec![Bytes::from_static(b"abc"), Bytes::from_static(b"defg")],
                        },
                        FetchPartitionResponse {
                            partition: 1,
                            error_code: 1,
                            high_watermark: -1,
                            last_stable_offset: -1,
                            log_start_offset: -1,
                            aborted_transactions: None,
                            records: vec![],
                        },
                    ],
                },
                FetchTopicResponse {
                    name: "empty".into(),
                    topic_id: [4; 16],
                    partitions: vec![],
                },
            ],
        }
    }

    fn library_frame(response: &FetchResponse<Bytes>, version: i16) -> Vec<u8> {
        let mut lib = Lib::default();
        lib.throttle_time_ms = response.throttle_time_ms;
        lib.error_code = response.error_code;
        lib.session_id = response.session_id;
        for topic in &response.topics {
            let mut t = FetchableTopicResponse::default();
            t.topic = TopicName(StrBytes::from_string(topic.name.clone()));
            t.topic_id = uuid::Uuid::from_bytes(topic.topic_id);
            for p in &topic.partitions {
                let mut d = PartitionData::default();
                d.partition_index = p.partition;
                d.error_code = p.error_code;
                d.high_watermark = p.high_watermark;
                d.last_stable_offset = p.last_stable_offset;
                d.log_start_offset = p.log_start_offset;
                d.aborted_transactions = p.aborted_transactions.as_ref().map(|a| {
                    a.iter()
                        .map(|(pid, first)| {
                            let mut x = AbortedTransaction::default();
                            x.producer_id = (*pid).into();
                            x.first_offset = *first;
                            x
                        })
                        .collect()
                });
                d.preferred_read_replica = (-1).into();
                let concatenated: Vec<u8> = p.records.iter().flat_map(|r| r.to_vec()).collect();
                d.records = Some(Bytes::from(concatenated));
                t.partitions.push(d);
            }
            lib.responses.push(t);
        }
        let mut header = ResponseHeader::default();
        header.correlation_id = 99;
        let header_version = if version >= 12 { 1 } else { 0 };
        let mut body = BytesMut::new();
        header.encode(&mut body, header_version).unwrap();
        lib.encode(&mut body, version).unwrap();
        let mut frame = (body.len() as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(&body);
        frame
    }

    #[test]
    fn matches_library_encoding_for_every_version() {
        for version in MIN_VERSION..=MAX_VERSION {
            for with_aborted in [false, true] {
                let response = sample(with_aborted);
                let expected = library_frame(&response, version);
                let parts = encode_frame(response, 99, version);
                let flat: Vec<u8> = parts.iter().flat_map(|p| p.as_ref().to_vec()).collect();
                assert_eq!(flat, expected, "version {version}");
            }
        }
    }

    #[test]
    fn record_buffers_are_passed_through_not_copied() {
        let records = Bytes::from_static(b"stored-batch-bytes");
        let mut response = sample(false);
        response.topics[0].partitions[0].records = vec![records.clone()];
        let parts = encode_frame(response, 1, 12);
        let passed = parts.iter().any(|p| match p {
            Part::Records(r) => r.as_ptr() == records.as_ptr(),
            Part::Encoded(_) => false,
        });
        assert!(passed);
    }
}
