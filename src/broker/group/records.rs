//! The records of `__consumer_offsets`, in Kafka's own layouts so that Kafka's tools can read
//! them: an offset commit (key v1, value v3) and a group's metadata (key v2, value v3). A record
//! with a null value (a tombstone) deletes its key.

use bytes::{BufMut, Bytes, BytesMut};

use crate::protocol::wire::{put_string, DecodeError, DecodeResult, Reader};

const OFFSET_KEY_VERSION: i16 = 1;
const GROUP_KEY_VERSION: i16 = 2;
const OFFSET_VALUE_VERSION: i16 = 3;
const GROUP_VALUE_VERSION: i16 = 3;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RecordKey {
    Offset {
        group: String,
        topic: String,
        partition: i32,
    },
    Group(String),
}

impl RecordKey {
    pub fn group(&self) -> &str {
        match self {
            RecordKey::Offset { group, .. } | RecordKey::Group(group) => group,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub subscription: Bytes,
    pub assignment: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredGroup {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub state_timestamp_ms: i64,
    pub members: Vec<StoredMember>,
}

pub fn encode_key(key: &RecordKey) -> Bytes {
    let mut buf = BytesMut::new();
    match key {
        RecordKey::Offset {
            group,
            topic,
            partition,
        } => {
            buf.put_i16(OFFSET_KEY_VERSION);
            put_string(&mut buf, group, false);
            put_string(&mut buf, topic, false);
            buf.put_i32(*partition);
        }
        RecordKey::Group(group) => {
            buf.put_i16(GROUP_KEY_VERSION);
            put_string(&mut buf, group, false);
        }
    }
    buf.freeze()
}

pub fn decode_key(bytes: &[u8]) -> DecodeResult<RecordKey> {
    let mut r = Reader::new(bytes);
    match r.i16()? {
        0 | 1 => Ok(RecordKey::Offset {
            group: r.string(false)?.to_owned(),
            topic: r.string(false)?.to_owned(),
            partition: r.i32()?,
        }),
        2 => Ok(RecordKey::Group(r.string(false)?.to_owned())),
        _ => Err(DecodeError::Invalid {
            what: "record key version",
            at: 0,
        }),
    }
}

pub fn encode_offset(value: &CommittedOffset) -> Bytes {
    let mut buf = BytesMut::with_capacity(32 + value.metadata.len());
    buf.put_i16(OFFSET_VALUE_VERSION);
    buf.put_i64(value.offset);
    buf.put_i32(value.leader_epoch);
    put_string(&mut buf, &value.metadata, false);
    buf.put_i64(value.commit_timestamp_ms);
    buf.freeze()
}

/// Decodes offset values v0–v3 (the layouts Kafka wrote before flexible versions).
pub fn decode_offset(bytes: &[u8]) -> DecodeResult<CommittedOffset> {
    let mut r = Reader::new(bytes);
    let version = r.i16()?;
    if !(0..=3).contains(&version) {
        return Err(DecodeError::Invalid {
            what: "offset value version",
            at: 0,
        });
    }
    let offset = r.i64()?;
    let leader_epoch = if version >= 3 { r.i32()? } else { -1 };
    let metadata = r.string(false)?.to_owned();
    let commit_timestamp_ms = r.i64()?;
    if version == 1 {
        r.i64()?; // expire timestamp: superseded by the broker's retention setting
    }
    Ok(CommittedOffset {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp_ms,
    })
}

fn put_nullable_string(buf: &mut BytesMut, value: Option<&str>) {
    match value {
        Some(s) => put_string(buf, s, false),
        None => buf.put_i16(-1),
    }
}

fn put_bytes(buf: &mut BytesMut, value: &[u8]) {
    buf.put_i32(value.len() as i32);
    buf.put_slice(value);
}

pub fn encode_group(value: &StoredGroup) -> Bytes {
    let mut buf = BytesMut::with_capacity(128);
    buf.put_i16(GROUP_VALUE_VERSION);
    put_string(&mut buf, &value.protocol_type, false);
    buf.put_i32(value.generation);
    put_nullable_string(&mut buf, value.protocol.as_deref());
    put_nullable_string(&mut buf, value.leader.as_deref());
    buf.put_i64(value.state_timestamp_ms);
    buf.put_i32(value.members.len() as i32);
    for m in &value.members {
        put_string(&mut buf, &m.member_id, false);
        put_nullable_string(&mut buf, m.instance_id.as_deref());
        put_string(&mut buf, &m.client_id, false);
        put_string(&mut buf, &m.client_host, false);
        buf.put_i32(m.rebalance_timeout_ms);
        buf.put_i32(m.session_timeout_ms);
        put_bytes(&mut buf, &m.subscription);
        put_bytes(&mut buf, &m.assignment);
    }
    buf.freeze()
}

/// Decodes group values v0–v3.
pub fn decode_group(bytes: &[u8]) -> DecodeResult<StoredGroup> {
    let mut r = Reader::new(bytes);
    let version = r.i16()?;
    if !(0..=3).contains(&version) {
        return Err(DecodeError::Invalid {
            what: "group value version",
            at: 0,
        });
    }
    let protocol_type = r.string(false)?.to_owned();
    let generation = r.i32()?;
    let protocol = r.nullable_string(false)?.map(str::to_owned);
    let leader = r.nullable_string(false)?.map(str::to_owned);
    let state_timestamp_ms = if version >= 2 { r.i64()? } else { -1 };
    let count = r.array_length(false)?;
    let mut members = Vec::with_capacity(count);
    for _ in 0..count {
        let member_id = r.string(false)?.to_owned();
        let instance_id = if version >= 3 {
            r.nullable_string(false)?.map(str::to_owned)
        } else {
            None
        };
        let client_id = r.string(false)?.to_owned();
        let client_host = r.string(false)?.to_owned();
        let session_timeout_ms;
        let rebalance_timeout_ms;
        if version >= 1 {
            rebalance_timeout_ms = r.i32()?;
            session_timeout_ms = r.i32()?;
        } else {
            session_timeout_ms = r.i32()?;
            rebalance_timeout_ms = session_timeout_ms;
        }
        let subscription = bytes_field(&mut r)?;
        let assignment = bytes_field(&mut r)?;
        members.push(StoredMember {
            member_id,
            instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            subscription,
            assignment,
        });
    }
    Ok(StoredGroup {
        protocol_type,
        generation,
        protocol,
        leader,
        state_timestamp_ms,
        members,
    })
}

fn bytes_field(r: &mut Reader<'_>) -> DecodeResult<Bytes> {
    let at = r.position();
    let length = r.i32()?;
    if length < 0 {
        return Err(DecodeError::Invalid {
            what: "bytes length",
            at,
        });
    }
    Ok(Bytes::copy_from_slice(r.take(length as usize)?))
}

/// The partition of `__consumer_offsets` that holds `group`: Kafka's rule, the non-negative
/// Java `String.hashCode` of the id modulo the partition count.
pub fn partition_for(group: &str, partitions: i32) -> i32 {
    let mut hash: i32 = 0;
    for unit in group.encode_utf16() {
        hash = hash.wrapping_mul(31).wrapping_add(i32::from(unit));
    }
    // Kafka's Utils.abs: i32::MIN maps to 0 rather than overflowing.
    let positive = if hash == i32::MIN { 0 } else { hash.abs() };
    positive % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_round_trip() {
        let key = RecordKey::Offset {
            group: "g".into(),
            topic: "t".into(),
            partition: 7,
        };
        assert_eq!(decode_key(&encode_key(&key)).unwrap(), key);
        let key = RecordKey::Group("g".into());
        assert_eq!(decode_key(&encode_key(&key)).unwrap(), key);
        let offset = CommittedOffset {
            offset: 42,
            leader_epoch: 3,
            metadata: "meta".into(),
            commit_timestamp_ms: 1_700_000_000_000,
        };
        assert_eq!(decode_offset(&encode_offset(&offset)).unwrap(), offset);
        let group = StoredGroup {
            protocol_type: "consumer".into(),
            generation: 5,
            protocol: Some("range".into()),
            leader: Some("m-1".into()),
            state_timestamp_ms: 9,
            members: vec![StoredMember {
                member_id: "m-1".into(),
                instance_id: Some("i-1".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout_ms: 300_000,
                session_timeout_ms: 45_000,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"asg"),
            }],
        };
        assert_eq!(decode_group(&encode_group(&group)).unwrap(), group);
    }

    #[test]
    fn offset_value_v1_from_older_kafka_decodes() {
        // version 1: offset, metadata, commit timestamp, expire timestamp
        let mut buf = BytesMut::new();
        buf.put_i16(1);
        buf.put_i64(10);
        put_string(&mut buf, "", false);
        buf.put_i64(100);
        buf.put_i64(200);
        let value = decode_offset(&buf).unwrap();
        assert_eq!((value.offset, value.leader_epoch), (10, -1));
        assert_eq!(value.commit_timestamp_ms, 100);
    }

    #[test]
    fn partition_matches_java_string_hash() {
        // "group".hashCode() == 98629247 in Java; 98629247 % 50 == 47.
        assert_eq!(partition_for("group", 50), 47);
        // "my-group".hashCode() == -1906497762: the absolute value is taken; % 50 == 12.
        assert_eq!(partition_for("my-group", 50), 12);
        assert_eq!(partition_for("", 50), 0);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bytes in [
            &b""[..],
            &b"\x00"[..],
            &b"\x00\x09abc"[..],
            &b"\x00\x03\xff\xff"[..],
        ] {
            assert!(decode_key(bytes).is_err());
            assert!(decode_offset(bytes).is_err());
            assert!(decode_group(bytes).is_err());
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let _ = decode_key(&data);
            let _ = decode_offset(&data);
            let _ = decode_group(&data);
        }
    }
}
