//! The cluster's own requests, carried on the Kafka port in Kafka's framing (size, request
//! header v1 with an API key of our own, body; responses: size, correlation id, body).
//! Pure encoders and decoders; `transport.rs` moves the bytes.
//!
//! - `QUORUM_API_KEY`: a batch of Raft messages from one voter to another, with the sender's
//!   id, cluster id and voter ids so that a misconfigured peer is named, not obeyed. The answer
//!   is an error code (0, or `ANSWER_MISMATCH` with a message).
//! - `CONTROLLER_API_KEY`: a broker's call on the active controller (register, heartbeat,
//!   topic and config changes forwarded from any broker, producer-id blocks), JSON both ways.

use bytes::{BufMut, BytesMut};
use protobuf::Message as _;
use raft::eraftpb::Message;

use super::controller::{HeartbeatAnswer, Registration};
use crate::broker::ops::{ControlOutcome, ControlRequest};

pub const QUORUM_API_KEY: i16 = 32_100;
pub const CONTROLLER_API_KEY: i16 = 32_101;

pub fn is_internal(api_key: i16) -> bool {
    api_key == QUORUM_API_KEY || api_key == CONTROLLER_API_KEY
}

pub const ANSWER_OK: i16 = 0;
pub const ANSWER_MISMATCH: i16 = 1;

/// A request frame: size, header v1 (key, version 0, correlation id, client id), body.
pub fn request_frame(api_key: i16, correlation_id: i32, body: &[u8]) -> BytesMut {
    const CLIENT: &[u8] = b"shardlog-cluster";
    let mut frame = BytesMut::with_capacity(4 + 10 + CLIENT.len() + body.len());
    frame.put_i32((2 + 2 + 4 + 2 + CLIENT.len() + body.len()) as i32);
    frame.put_i16(api_key);
    frame.put_i16(0);
    frame.put_i32(correlation_id);
    frame.put_i16(CLIENT.len() as i16);
    frame.put_slice(CLIENT);
    frame.put_slice(body);
    frame
}

/// A response frame: size, correlation id, body.
pub fn response_frame(correlation_id: i32, body: &[u8]) -> BytesMut {
    let mut frame = BytesMut::with_capacity(8 + body.len());
    frame.put_i32((4 + body.len()) as i32);
    frame.put_i32(correlation_id);
    frame.put_slice(body);
    frame
}

/// Who sends a batch of Raft messages, and the quorum it believes in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumHeader {
    pub from: i32,
    pub cluster_id: String,
    pub voters: Vec<i32>,
}

pub fn encode_messages(header: &QuorumHeader, messages: &[Message]) -> Vec<u8> {
    let mut body = Vec::new();
    body.put_i32(header.from);
    body.put_u16(header.cluster_id.len() as u16);
    body.put_slice(header.cluster_id.as_bytes());
    body.put_u16(header.voters.len() as u16);
    for voter in &header.voters {
        body.put_i32(*voter);
    }
    body.put_u32(messages.len() as u32);
    for message in messages {
        let bytes = message.write_to_bytes().unwrap_or_default();
        body.put_u32(bytes.len() as u32);
        body.put_slice(&bytes);
    }
    body
}

struct Cursor<'a> {
    bytes: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.bytes.len() < n {
            return Err(format!(
                "quorum message truncated: {} bytes left, {n} wanted",
                self.bytes.len()
            ));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into().unwrap()))
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().unwrap()))
    }

    fn i32(&mut self) -> Result<i32, String> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into().unwrap()))
    }
}

pub fn decode_messages(bytes: &[u8]) -> Result<(QuorumHeader, Vec<Message>), String> {
    let mut cursor = Cursor { bytes };
    let from = cursor.i32()?;
    let len = cursor.u16()? as usize;
    let cluster_id = String::from_utf8(cursor.take(len)?.to_vec())
        .map_err(|_| "cluster id is not UTF-8".to_string())?;
    let count = cursor.u16()? as usize;
    let mut voters = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        voters.push(cursor.i32()?);
    }
    let count = cursor.u32()? as usize;
    let mut messages = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        let len = cursor.u32()? as usize;
        let message = Message::parse_from_bytes(cursor.take(len)?)
            .map_err(|e| format!("malformed Raft message: {e}"))?;
        messages.push(message);
    }
    if !cursor.bytes.is_empty() {
        return Err(format!(
            "{} bytes after the last message",
            cursor.bytes.len()
        ));
    }
    Ok((
        QuorumHeader {
            from,
            cluster_id,
            voters,
        },
        messages,
    ))
}

pub fn encode_quorum_answer(code: i16, message: &str) -> Vec<u8> {
    let mut body = Vec::with_capacity(4 + message.len());
    body.put_i16(code);
    body.put_u16(message.len().min(u16::MAX as usize) as u16);
    body.put_slice(&message.as_bytes()[..message.len().min(u16::MAX as usize)]);
    body
}

pub fn decode_quorum_answer(bytes: &[u8]) -> Result<(i16, String), String> {
    let mut cursor = Cursor { bytes };
    let code = cursor.u16()? as i16;
    let len = cursor.u16()? as usize;
    let message = String::from_utf8_lossy(cursor.take(len)?).into_owned();
    Ok((code, message))
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum ControllerCall {
    Register {
        registration: Registration,
        cluster_id: String,
        voters: Vec<i32>,
    },
    Heartbeat {
        id: i32,
        epoch: u64,
        want_shutdown: bool,
    },
    Control(ControlRequest),
    AllocateProducerIds {
        broker: i32,
        count: i64,
    },
    /// The quorum as the leader sees it (DescribeQuorum).
    DescribeQuorum,
    /// Before a node joins the quorum: is its id held by another live broker?
    CheckId {
        registration: Registration,
    },
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum ControllerAnswer {
    /// This node is not the active controller; it names the one it knows of.
    NotController {
        leader: Option<i32>,
    },
    Registered {
        epoch: u64,
    },
    /// Another live broker at another address has this node id.
    DuplicateId {
        host: String,
        port: u16,
    },
    /// No other live broker has this node id.
    IdFree,
    /// The caller's cluster id or voter list is not the controller's.
    Mismatch(String),
    Heartbeat(HeartbeatAnswer),
    /// The outcomes, and the metadata log index that holds the change (0 if none).
    Control(Vec<ControlOutcome>, u64),
    ProducerIds {
        start: i64,
    },
    Quorum(super::node::QuorumStatus),
    Failed(String),
}

pub fn encode_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

pub fn decode_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("malformed controller call: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn quorum_batches_round_trip() {
        let header = QuorumHeader {
            from: 2,
            cluster_id: "c".into(),
            voters: vec![0, 1, 2],
        };
        let message = Message {
            to: 1,
            from: 3,
            term: 9,
            ..Default::default()
        };
        let body = encode_messages(&header, &[message.clone(), message.clone()]);
        let (got, messages) = decode_messages(&body).unwrap();
        assert_eq!(got, header);
        assert_eq!(messages, vec![message.clone(), message]);
        let answer = encode_quorum_answer(ANSWER_MISMATCH, "voters differ");
        assert_eq!(
            decode_quorum_answer(&answer).unwrap(),
            (ANSWER_MISMATCH, "voters differ".to_string())
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_the_decoders(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_messages(&bytes);
            let _ = decode_quorum_answer(&bytes);
            let _ = decode_json::<ControllerCall>(&bytes);
        }
    }
}
