//! A raw Kafka client over a blocking socket, for tests that need to send exactly what they
//! mean (including what real clients never send).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{self as m, ApiKey, RequestHeader, ResponseHeader, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use shardlog::protocol::batch::sample::{self, Compression};

pub struct Client {
    pub stream: TcpStream,
    pub correlation: i32,
}

impl Client {
    pub fn connect(bootstrap: &str) -> Client {
        let stream = TcpStream::connect(bootstrap).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        Client {
            stream,
            correlation: 0,
        }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    pub fn frame<M: Encodable>(&mut self, key: ApiKey, version: i16, body: &M) -> Vec<u8> {
        self.correlation += 1;
        let mut header = RequestHeader::default();
        header.request_api_key = key as i16;
        header.request_api_version = version;
        header.correlation_id = self.correlation;
        header.client_id = Some(StrBytes::from_static_str("bad-input-test"));
        let mut buf = BytesMut::new();
        header
            .encode(&mut buf, key.request_header_version(version))
            .unwrap();
        body.encode(&mut buf, version).unwrap();
        let mut frame = (buf.len() as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(&buf);
        frame
    }

    /// Reads one response frame; `None` if the broker closed the connection.
    pub fn read_frame(&mut self) -> Option<Bytes> {
        let mut size = [0u8; 4];
        if self.stream.read_exact(&mut size).is_err() {
            return None;
        }
        let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
        self.stream.read_exact(&mut body).ok()?;
        Some(Bytes::from(body))
    }

    pub fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        body: &Req,
    ) -> Resp {
        let frame = self.frame(key, version, body);
        self.send_raw(&frame);
        let mut response = self.read_frame().expect("a response");
        let header =
            ResponseHeader::decode(&mut response, key.response_header_version(version)).unwrap();
        assert_eq!(header.correlation_id, self.correlation);
        Resp::decode(&mut response, version).unwrap()
    }

    pub fn is_closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        matches!(self.stream.read(&mut byte), Ok(0) | Err(_))
    }
}

pub fn produce(
    client: &mut Client,
    topic: &str,
    partition: i32,
    records: Vec<u8>,
    acks: i16,
) -> Option<i16> {
    let mut request = m::ProduceRequest::default();
    request.acks = acks;
    request.timeout_ms = 5000;
    let mut data = m::produce_request::TopicProduceData::default();
    data.name = TopicName(StrBytes::from_string(topic.into()));
    let mut p = m::produce_request::PartitionProduceData::default();
    p.index = partition;
    p.records = Some(Bytes::from(records));
    data.partition_data.push(p);
    request.topic_data.push(data);
    if acks == 0 {
        let frame = client.frame(ApiKey::Produce, 9, &request);
        client.send_raw(&frame);
        return None;
    }
    let response: m::ProduceResponse = client.call(ApiKey::Produce, 9, &request);
    Some(response.responses[0].partition_responses[0].error_code)
}

pub fn latest_offset(client: &mut Client, topic: &str) -> i64 {
    let mut request = m::ListOffsetsRequest::default();
    request.replica_id = m::BrokerId(-1);
    let mut t = m::list_offsets_request::ListOffsetsTopic::default();
    t.name = TopicName(StrBytes::from_string(topic.into()));
    let mut p = m::list_offsets_request::ListOffsetsPartition::default();
    p.partition_index = 0;
    p.timestamp = -1;
    t.partitions.push(p);
    request.topics.push(t);
    let response: m::ListOffsetsResponse = client.call(ApiKey::ListOffsets, 5, &request);
    let partition = &response.topics[0].partitions[0];
    assert_eq!(partition.error_code, 0);
    partition.offset
}

pub fn create_topic(client: &mut Client, name: &str, configs: &[(&str, &str)]) {
    create_topic_full(client, name, 1, configs)
}

pub fn create_topic_with_partitions(client: &mut Client, name: &str, partitions: i32) {
    create_topic_full(client, name, partitions, &[])
}

fn create_topic_full(client: &mut Client, name: &str, partitions: i32, configs: &[(&str, &str)]) {
    let mut request = m::CreateTopicsRequest::default();
    request.timeout_ms = 5000;
    let mut topic = m::create_topics_request::CreatableTopic::default();
    topic.name = TopicName(StrBytes::from_string(name.into()));
    topic.num_partitions = partitions;
    topic.replication_factor = 1;
    for (k, v) in configs {
        let mut c = m::create_topics_request::CreatableTopicConfig::default();
        c.name = StrBytes::from_string(k.to_string());
        c.value = Some(StrBytes::from_string(v.to_string()));
        topic.configs.push(c);
    }
    request.topics.push(topic);
    let response: m::CreateTopicsResponse = client.call(ApiKey::CreateTopics, 5, &request);
    assert_eq!(
        response.topics[0].error_code, 0,
        "{:?}",
        response.topics[0].error_message
    );
}

pub fn batch(records: usize, value_size: usize) -> Vec<u8> {
    sample::batch(records, value_size, Compression::None)
}

/// A fetch request for `(partition, offset, partition_max_bytes)` of one topic.
pub fn fetch_request(
    topic: &str,
    partitions: &[(i32, i64, i32)],
    max_wait_ms: i32,
    min_bytes: i32,
    max_bytes: i32,
) -> m::FetchRequest {
    let mut request = m::FetchRequest::default();
    request.replica_id = m::BrokerId(-1);
    request.max_wait_ms = max_wait_ms;
    request.min_bytes = min_bytes;
    request.max_bytes = max_bytes;
    request.session_epoch = -1;
    let mut t = m::fetch_request::FetchTopic::default();
    t.topic = TopicName(StrBytes::from_string(topic.into()));
    for &(partition, offset, partition_max_bytes) in partitions {
        let mut p = m::fetch_request::FetchPartition::default();
        p.partition = partition;
        p.fetch_offset = offset;
        p.partition_max_bytes = partition_max_bytes;
        t.partitions.push(p);
    }
    request.topics.push(t);
    request
}

/// The base offsets of the whole batches in a fetched record set.
pub fn batch_bases(records: &Option<Bytes>) -> Vec<i64> {
    let mut bases = Vec::new();
    let mut data: &[u8] = records.as_deref().unwrap_or_default();
    while !data.is_empty() {
        let header = shardlog::protocol::batch::parse_checked(data).expect("whole, valid batches");
        bases.push(header.base_offset);
        data = &data[header.size..];
    }
    bases
}
