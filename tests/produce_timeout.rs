//! Produce `timeout_ms`: an acks=all produce whose records are not durable in time is answered
//! REQUEST_TIMED_OUT, as Kafka answers one whose replication did not finish; the records still
//! become durable and readable, and acks=1 is not bounded (Kafka's acks=1 does not wait).

mod common;

use bytes::Bytes;
use common::raw::{self, Client};
use common::Broker;
use kafka_protocol::messages::{self as m, ApiKey, TopicName};
use kafka_protocol::protocol::StrBytes;

/// 32 MiB of records: writing and syncing them takes several milliseconds on any disk (about
/// 7 ms at 4.6 GB/s), far past a 1 ms timeout.
const BIG_RECORDS: usize = 64;
const BIG_VALUE: usize = 512 * 1024;

fn produce(client: &mut Client, topic: &str, records: Bytes, acks: i16, timeout_ms: i32) -> i16 {
    let mut request = m::ProduceRequest::default();
    request.acks = acks;
    request.timeout_ms = timeout_ms;
    let mut data = m::produce_request::TopicProduceData::default();
    data.name = TopicName(StrBytes::from_string(topic.into()));
    let mut p = m::produce_request::PartitionProduceData::default();
    p.records = Some(records);
    data.partition_data.push(p);
    request.topic_data.push(data);
    let response: m::ProduceResponse = client.call(ApiKey::Produce, 9, &request);
    response.responses[0].partition_responses[0].error_code
}

#[test]
fn acks_all_not_durable_within_the_timeout_is_answered_request_timed_out() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), &[]);
    let mut client = Client::connect(&broker.bootstrap);
    raw::create_topic(&mut client, "slow", &[("max.message.bytes", "67108864")]);
    let big = Bytes::from(raw::batch(BIG_RECORDS, BIG_VALUE));
    assert_eq!(
        produce(&mut client, "slow", big.clone(), -1, 1),
        7,
        "REQUEST_TIMED_OUT"
    );
    // The same with time enough, and acks=1 with the same short timeout, succeed.
    assert_eq!(produce(&mut client, "slow", big.clone(), -1, 30_000), 0);
    assert_eq!(produce(&mut client, "slow", big, 1, 1), 0);
    // The timed-out records were appended all the same and are readable.
    assert_eq!(
        raw::latest_offset(&mut client, "slow"),
        3 * BIG_RECORDS as i64
    );
}
