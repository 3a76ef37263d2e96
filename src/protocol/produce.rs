//! Produce request decoding (v3–v13), by hand so that each partition's record set becomes its
//! own mutable view of the request frame: the broker patches offsets in place and stores those
//! very bytes, with no copy.

use bytes::BytesMut;

use super::wire::{DecodeResult, Reader};

/// Which topic a produce entry names: by name up to v12, by id from v13.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicRef {
    Name(String),
    Id([u8; 16]),
}

#[derive(Debug)]
pub struct ProducePartition {
    pub partition: i32,
    /// `None` when the client sent null records.
    pub records: Option<BytesMut>,
}

#[derive(Debug)]
pub struct ProduceTopic {
    pub topic: TopicRef,
    pub partitions: Vec<ProducePartition>,
}

#[derive(Debug)]
pub struct ProduceRequest {
    pub transactional_id: Option<String>,
    pub acks: i16,
    pub timeout_ms: i32,
    pub topics: Vec<ProduceTopic>,
}

struct PartitionRange {
    partition: i32,
    records: Option<std::ops::Range<usize>>,
}

/// Decodes the body of a produce request. `body` is the frame with the header removed; it is
/// consumed and carved into the record sets.
pub fn decode(mut body: BytesMut, version: i16) -> DecodeResult<ProduceRequest> {
    let flexible = version >= 9;
    let mut reader = Reader::new(&body);
    let transactional_id = reader.nullable_string(flexible)?.map(str::to_owned);
    let acks = reader.i16()?;
    let timeout_ms = reader.i32()?;
    let topic_count = reader.array_length(flexible)?;
    let mut layout = Vec::with_capacity(topic_count);
    for _ in 0..topic_count {
        let topic = if version >= 13 {
            TopicRef::Id(reader.uuid()?)
        } else {
            TopicRef::Name(reader.string(flexible)?.to_owned())
        };
        let partition_count = reader.array_length(flexible)?;
        let mut partitions = Vec::with_capacity(partition_count);
        for _ in 0..partition_count {
            let partition = reader.i32()?;
            let records = reader.nullable_bytes_range(flexible)?;
            if flexible {
                reader.skip_tagged_fields()?;
            }
            partitions.push(PartitionRange { partition, records });
        }
        if flexible {
            reader.skip_tagged_fields()?;
        }
        layout.push((topic, partitions));
    }
    if flexible {
        reader.skip_tagged_fields()?;
    }
    // The ranges are increasing and disjoint, so the body can be carved front to back.
    let mut consumed = 0;
    let mut topics = Vec::with_capacity(layout.len());
    for (topic, ranges) in layout {
        let mut partitions = Vec::with_capacity(ranges.len());
        for range in ranges {
            let records = range.records.map(|r| {
                let _ = body.split_to(r.start - consumed);
                consumed = r.end;
                body.split_to(r.end - r.start)
            });
            partitions.push(ProducePartition {
                partition: range.partition,
                records,
            });
        }
        topics.push(ProduceTopic { topic, partitions });
    }
    Ok(ProduceRequest {
        transactional_id,
        acks,
        timeout_ms,
        topics,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::produce_request::{
        PartitionProduceData, ProduceRequest as Lib, TopicProduceData,
    };
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::{Encodable, StrBytes};

    fn library_request(version: i16) -> BytesMut {
        let mut request = Lib::default();
        request.transactional_id = Some(kafka_protocol::messages::TransactionalId(
            StrBytes::from_static_str("tx"),
        ));
        request.acks = -1;
        request.timeout_ms = 1500;
        for (name, id) in [("alpha", 1u8), ("beta", 2)] {
            let mut topic = TopicProduceData::default();
            topic.name = TopicName(StrBytes::from_static_str(name));
            topic.topic_id = uuid::Uuid::from_bytes([id; 16]);
            for p in 0..3 {
                let mut partition = PartitionProduceData::default();
                partition.index = p;
                partition.records = if p == 1 {
                    None
                } else {
                    Some(bytes::Bytes::from(vec![id * 10 + p as u8; 5 + p as usize]))
                };
                topic.partition_data.push(partition);
            }
            request.topic_data.push(topic);
        }
        let mut buf = BytesMut::new();
        request.encode(&mut buf, version).unwrap();
        buf
    }

    #[test]
    fn matches_library_encoding_for_every_version() {
        for version in 3..=13 {
            let decoded = decode(library_request(version), version).unwrap();
            assert_eq!(decoded.acks, -1, "v{version}");
            assert_eq!(decoded.timeout_ms, 1500);
            assert_eq!(decoded.transactional_id.as_deref(), Some("tx"));
            assert_eq!(decoded.topics.len(), 2);
            for (t, topic) in decoded.topics.iter().enumerate() {
                let id = t as u8 + 1;
                if version >= 13 {
                    assert_eq!(topic.topic, TopicRef::Id([id; 16]));
                } else {
                    let name = if t == 0 { "alpha" } else { "beta" };
                    assert_eq!(topic.topic, TopicRef::Name(name.into()));
                }
                for (p, partition) in topic.partitions.iter().enumerate() {
                    assert_eq!(partition.partition, p as i32);
                    match &partition.records {
                        None => assert_eq!(p, 1),
                        Some(r) => assert_eq!(r.as_ref(), &vec![id * 10 + p as u8; 5 + p][..]),
                    }
                }
            }
        }
    }

    #[test]
    fn truncated_requests_are_errors() {
        let full = library_request(9);
        for cut in 0..full.len() {
            assert!(
                decode(BytesMut::from(&full[..cut]), 9).is_err(),
                "cut at {cut}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bodies_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..256), version in 3i16..=13) {
            let _ = decode(BytesMut::from(&data[..]), version);
        }
    }
}

/// Encodes the body of a Produce request (v3–v12) for a client as buffers to write one after
/// another: the record sets are not copied but put between the encoded fields, so a batch goes
/// from the producer's buffer to the socket as it is. `topics`: name and (partition, records)
/// pairs.
pub fn encode_request_parts(
    version: i16,
    acks: i16,
    timeout_ms: i32,
    topics: &[(&str, Vec<(i32, bytes::Bytes)>)],
) -> Vec<bytes::Bytes> {
    use super::wire::{put_array_length, put_bytes_length, put_string};
    use bytes::BufMut;
    assert!((3..=12).contains(&version), "Produce v{version} by name");
    let flexible = version >= 9;
    let mut parts = Vec::with_capacity(1 + 2 * topics.iter().map(|t| t.1.len()).sum::<usize>());
    let mut fields = BytesMut::with_capacity(64);
    // No transactional id: a null string.
    if flexible {
        super::wire::put_unsigned_varint(&mut fields, 0);
    } else {
        fields.put_i16(-1);
    }
    fields.put_i16(acks);
    fields.put_i32(timeout_ms);
    put_array_length(&mut fields, topics.len(), flexible);
    for (name, partitions) in topics {
        put_string(&mut fields, name, flexible);
        put_array_length(&mut fields, partitions.len(), flexible);
        for (partition, records) in partitions {
            fields.put_i32(*partition);
            put_bytes_length(&mut fields, records.len(), flexible);
            parts.push(fields.split().freeze());
            parts.push(records.clone());
            if flexible {
                // The partition's tagged fields.
                fields.put_u8(0);
            }
        }
        if flexible {
            fields.put_u8(0);
        }
    }
    if flexible {
        fields.put_u8(0);
    }
    parts.push(fields.freeze());
    parts
}

#[cfg(test)]
mod encode_tests {
    use super::*;
    use bytes::Bytes;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ProduceRequest as Request, TopicName};
    use kafka_protocol::protocol::{Encodable, StrBytes};
    use proptest::prelude::*;

    proptest! {
        /// The parts, joined, are the bytes the `kafka-protocol` encoder writes.
        #[test]
        fn request_parts_join_to_the_library_encoding(
            version in 3i16..=12,
            acks in prop_oneof![Just(-1i16), Just(0), Just(1)],
            timeout in any::<i32>(),
            topics in proptest::collection::vec(
                ("[a-z.]{1,20}", proptest::collection::vec(
                    (0i32..100, proptest::collection::vec(any::<u8>(), 0..200)), 1..4)),
                1..4),
        ) {
            let owned: Vec<(String, Vec<(i32, Bytes)>)> = topics
                .iter()
                .map(|(t, ps)| (t.clone(), ps.iter().map(|(p, r)| (*p, Bytes::from(r.clone()))).collect()))
                .collect();
            let borrowed: Vec<(&str, Vec<(i32, Bytes)>)> =
                owned.iter().map(|(t, ps)| (t.as_str(), ps.clone())).collect();
            let ours: Vec<u8> = encode_request_parts(version, acks, timeout, &borrowed)
                .iter()
                .flat_map(|b| b.to_vec())
                .collect();
            let mut request = Request::default();
            request.acks = acks;
            request.timeout_ms = timeout;
            request.topic_data = owned
                .iter()
                .map(|(t, ps)| {
                    let mut topic = TopicProduceData::default();
                    topic.name = TopicName(StrBytes::from_string(t.clone()));
                    topic.partition_data = ps
                        .iter()
                        .map(|(p, r)| {
                            let mut partition = PartitionProduceData::default();
                            partition.index = *p;
                            partition.records = Some(r.clone());
                            partition
                        })
                        .collect();
                    topic
                })
                .collect();
            let mut theirs = BytesMut::new();
            request.encode(&mut theirs, version).unwrap();
            prop_assert_eq!(&ours[..], &theirs[..]);
        }
    }
}
