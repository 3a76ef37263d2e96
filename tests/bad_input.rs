//! Bad input over a raw socket: each gets Kafka's answer (an error code, or a closed
//! connection where Kafka closes), nothing acknowledged is lost, and other clients carry on.

mod common;

use common::raw::{batch, create_topic, latest_offset, produce, Client};
use common::Broker;
use kafka_protocol::messages::{self as m, ApiKey, ApiVersionsResponse, ResponseHeader};
use kafka_protocol::protocol::{Decodable, StrBytes};

fn api_versions_works(bootstrap: &str) {
    let mut client = Client::connect(bootstrap);
    let response: ApiVersionsResponse =
        client.call(ApiKey::ApiVersions, 3, &m::ApiVersionsRequest::default());
    assert_eq!(response.error_code, 0);
}

#[test]
fn bad_batches_get_kafka_errors_and_append_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), &[]);
    let mut client = Client::connect(&broker.bootstrap);
    create_topic(&mut client, "strict", &[("max.message.bytes", "2000")]);

    assert_eq!(produce(&mut client, "strict", 0, batch(3, 10), -1), Some(0));
    assert_eq!(latest_offset(&mut client, "strict"), 3);

    let mut bad_crc = batch(2, 10);
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 0xff;
    assert_eq!(
        produce(&mut client, "strict", 0, bad_crc, -1),
        Some(2),
        "CORRUPT_MESSAGE"
    );

    let mut old_magic = batch(2, 10);
    old_magic[16] = 1;
    assert_eq!(
        produce(&mut client, "strict", 0, old_magic, -1),
        Some(43),
        "UNSUPPORTED_FOR_MESSAGE_FORMAT"
    );
    let mut bad_magic = batch(2, 10);
    bad_magic[16] = 9;
    assert_eq!(
        produce(&mut client, "strict", 0, bad_magic, -1),
        Some(2),
        "CORRUPT_MESSAGE"
    );

    let mut truncated = batch(2, 10);
    truncated.truncate(truncated.len() - 5);
    assert_eq!(
        produce(&mut client, "strict", 0, truncated, -1),
        Some(2),
        "CORRUPT_MESSAGE"
    );

    assert_eq!(
        produce(&mut client, "strict", 0, batch(1, 3000), -1),
        Some(10),
        "MESSAGE_TOO_LARGE"
    );
    assert_eq!(
        produce(&mut client, "strict", 7, batch(1, 10), -1),
        Some(3),
        "UNKNOWN_TOPIC_OR_PARTITION"
    );
    assert_eq!(
        produce(&mut client, "no-such-topic-x", 0, batch(1, 10), -1),
        Some(3)
    );
    assert_eq!(
        produce(&mut client, "strict", 0, batch(1, 10), 5),
        Some(21),
        "INVALID_REQUIRED_ACKS"
    );

    // Configs of a topic that does not exist: an error for that resource only.
    let mut describe = m::DescribeConfigsRequest::default();
    for name in ["strict", "no-such-topic-x"] {
        let mut resource = m::describe_configs_request::DescribeConfigsResource::default();
        resource.resource_type = 2;
        resource.resource_name = StrBytes::from_string(name.into());
        describe.resources.push(resource);
    }
    let described: m::DescribeConfigsResponse = client.call(ApiKey::DescribeConfigs, 4, &describe);
    assert_eq!(described.results[0].error_code, 0);
    let max = described.results[0]
        .configs
        .iter()
        .find(|c| c.name.as_str() == "max.message.bytes")
        .unwrap();
    assert_eq!(max.value.as_ref().unwrap().as_str(), "2000");
    assert_eq!(max.config_source, 1, "DYNAMIC_TOPIC_CONFIG");
    assert_eq!(described.results[1].error_code, 3);

    // None of those appended anything; a good batch still lands right after the first.
    assert_eq!(latest_offset(&mut client, "strict"), 3);
    // acks=0 gets no response; the next request's response is the next thing on the wire.
    assert_eq!(produce(&mut client, "strict", 0, batch(2, 10), 0), None);
    assert_eq!(produce(&mut client, "strict", 0, batch(1, 10), 1), Some(0));
    assert_eq!(latest_offset(&mut client, "strict"), 6);
}

#[test]
fn malformed_frames_close_only_their_own_connection() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(
        &dir.path().join("data"),
        &[("socket.request.max.bytes", "65536")],
    );
    let mut bystander = Client::connect(&broker.bootstrap);
    let _: ApiVersionsResponse =
        bystander.call(ApiKey::ApiVersions, 0, &m::ApiVersionsRequest::default());

    // A frame over socket.request.max.bytes: closed before the body is read.
    let mut oversized = Client::connect(&broker.bootstrap);
    oversized.send_raw(&(1_000_000i32).to_be_bytes());
    assert!(oversized.is_closed());

    // A negative size.
    let mut negative = Client::connect(&broker.bootstrap);
    negative.send_raw(&(-7i32).to_be_bytes());
    assert!(negative.is_closed());

    // A truncated frame, then the client goes away.
    let mut truncated = Client::connect(&broker.bootstrap);
    truncated.send_raw(&[0, 0, 0, 100, 0, 18, 0]);
    truncated
        .stream
        .shutdown(std::net::Shutdown::Write)
        .unwrap();
    assert!(truncated.is_closed());

    // An unknown API key.
    let mut unknown = Client::connect(&broker.bootstrap);
    let mut frame = unknown.frame(ApiKey::ApiVersions, 0, &m::ApiVersionsRequest::default());
    frame[4..6].copy_from_slice(&999i16.to_be_bytes());
    unknown.send_raw(&frame);
    assert!(unknown.is_closed());

    // A version of a known API that we do not serve.
    let mut unsupported = Client::connect(&broker.bootstrap);
    let mut frame = unsupported.frame(ApiKey::Metadata, 0, &m::MetadataRequest::default());
    frame[6..8].copy_from_slice(&99i16.to_be_bytes());
    unsupported.send_raw(&frame);
    assert!(unsupported.is_closed());

    // A request body that does not parse.
    let mut garbage = Client::connect(&broker.bootstrap);
    let mut frame = garbage.frame(ApiKey::CreateTopics, 5, &m::CreateTopicsRequest::default());
    frame.extend_from_slice(&[0xff; 3]);
    let size = (frame.len() - 4) as i32;
    frame[..4].copy_from_slice(&size.to_be_bytes());
    frame[18..22].copy_from_slice(&[0x7f, 0xff, 0xff, 0xff]);
    garbage.send_raw(&frame);
    assert!(garbage.is_closed());

    // The bystander never noticed, and new connections work.
    let response: ApiVersionsResponse =
        bystander.call(ApiKey::ApiVersions, 3, &m::ApiVersionsRequest::default());
    assert_eq!(response.error_code, 0);
    api_versions_works(&broker.bootstrap);
    assert!(broker.is_running());
}

#[test]
fn api_versions_answers_unknown_versions_in_v0_and_sends_no_tagged_fields() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), &[]);
    let mut client = Client::connect(&broker.bootstrap);
    let mut frame = client.frame(ApiKey::ApiVersions, 3, &m::ApiVersionsRequest::default());
    frame[6..8].copy_from_slice(&42i16.to_be_bytes());
    client.send_raw(&frame);
    let mut response = client.read_frame().expect("answered");
    let header = ResponseHeader::decode(&mut response, 0).unwrap();
    assert_eq!(header.correlation_id, client.correlation);
    let body = ApiVersionsResponse::decode(&mut response, 0).unwrap();
    assert_eq!(body.error_code, 35, "UNSUPPORTED_VERSION");
    let produce = body
        .api_keys
        .iter()
        .find(|k| k.api_key == 0)
        .expect("Produce listed");
    assert_eq!(produce.min_version, 0, "Produce is advertised from v0");

    // v3: the body ends with an empty tagged-field section (old librdkafka cannot skip tags).
    let frame = client.frame(ApiKey::ApiVersions, 3, &m::ApiVersionsRequest::default());
    client.send_raw(&frame);
    let raw = client.read_frame().unwrap();
    assert_eq!(*raw.last().unwrap(), 0);
    let mut bytes = raw.clone();
    let _ = ResponseHeader::decode(&mut bytes, 0).unwrap();
    let body = ApiVersionsResponse::decode(&mut bytes, 3).unwrap();
    assert!(body.supported_features.is_empty() && body.finalized_features.is_empty());
    assert!(body.unknown_tagged_fields.is_empty());
}

#[test]
fn garbage_connections_do_not_disturb_a_working_client() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(&dir.path().join("data"), &[]);
    let mut good = Client::connect(&broker.bootstrap);
    create_topic(&mut good, "steady", &[]);
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for round in 0..200u64 {
        let mut noise = Client::connect(&broker.bootstrap);
        let length = 1 + (round as usize * 37) % 300;
        let mut bytes = Vec::with_capacity(length);
        for _ in 0..length {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            bytes.push(state as u8);
        }
        // Half the time, a plausible frame header in front of the noise.
        if round % 2 == 0 {
            let mut framed = ((length + 4) as i32).to_be_bytes().to_vec();
            framed.extend_from_slice(&(state as u16 % 80).to_be_bytes());
            framed.extend_from_slice(&(state as u16 % 20).to_be_bytes());
            framed.extend_from_slice(&bytes);
            bytes = framed;
        }
        noise.send_raw(&bytes);
        drop(noise);
        if round % 20 == 0 {
            assert_eq!(produce(&mut good, "steady", 0, batch(1, 10), -1), Some(0));
        }
    }
    assert_eq!(latest_offset(&mut good, "steady"), 10);
    assert!(
        broker.is_running(),
        "the broker survived:\n{}",
        broker.log()
    );
}

#[test]
fn produce_v13_by_topic_id_and_an_unknown_id_is_answered_with_that_id() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), &[]);
    let mut client = Client::connect(&broker.bootstrap);
    create_topic(&mut client, "by-id", &[]);
    let mut metadata = m::MetadataRequest::default();
    metadata.topics = None;
    let response: m::MetadataResponse = client.call(ApiKey::Metadata, 12, &metadata);
    let known = response.topics[0].topic_id;
    let unknown = uuid::Uuid::from_bytes([7; 16]);
    let mut request = m::ProduceRequest::default();
    request.acks = -1;
    request.timeout_ms = 5000;
    for id in [known, unknown] {
        let mut data = m::produce_request::TopicProduceData::default();
        data.topic_id = id;
        let mut p = m::produce_request::PartitionProduceData::default();
        p.records = Some(batch(2, 10).into());
        data.partition_data.push(p);
        request.topic_data.push(data);
    }
    let response: m::ProduceResponse = client.call(ApiKey::Produce, 13, &request);
    let by_id = |id| {
        response
            .responses
            .iter()
            .find(|t| t.topic_id == id)
            .map(|t| t.partition_responses[0].error_code)
    };
    assert_eq!(by_id(known), Some(0));
    assert_eq!(by_id(unknown), Some(100), "UNKNOWN_TOPIC_ID");
    assert_eq!(latest_offset(&mut client, "by-id"), 2);
}
