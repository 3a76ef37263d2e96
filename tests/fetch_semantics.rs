//! Fetch as Kafka defines it: long polling, byte limits, whole batches, sessionless requests.

mod common;

use std::time::Duration;

use common::raw::{
    batch, batch_bases, create_topic_with_partitions, fetch_request, produce, Client,
};
use common::Broker;
use kafka_protocol::messages::{self as m, ApiKey, ResponseHeader};
use kafka_protocol::protocol::Decodable;

const VERSION: i16 = 12;

fn partition(response: &m::FetchResponse, index: i32) -> &m::fetch_response::PartitionData {
    response.responses[0]
        .partitions
        .iter()
        .find(|p| p.partition_index == index)
        .expect("partition in the response")
}

#[test]
fn a_long_poll_wakes_when_data_arrives_on_any_shard() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), &[]);
    let mut producer = Client::connect(&broker.bootstrap);
    // Four partitions over the two shards.
    create_topic_with_partitions(&mut producer, "poll", 4);
    let mut consumer = Client::connect(&broker.bootstrap);
    // Far longer than the socket timeout: only a wake-up can answer in time.
    consumer
        .stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    for target in 0..4 {
        let offsets: Vec<(i32, i64, i32)> = (0..4)
            .map(|p| (p, if p < target { 1 } else { 0 }, 1 << 20))
            .collect();
        let request = fetch_request("poll", &offsets, 25_000, 1, 1 << 20);
        let frame = consumer.frame(ApiKey::Fetch, VERSION, &request);
        consumer.send_raw(&frame);
        assert_eq!(
            produce(&mut producer, "poll", target, batch(1, 10), -1),
            Some(0)
        );
        let mut response = consumer.read_frame().expect("the fetch was answered");
        ResponseHeader::decode(&mut response, 1).unwrap();
        let response = m::FetchResponse::decode(&mut response, VERSION).unwrap();
        let data = partition(&response, target);
        assert_eq!(data.error_code, 0);
        assert_eq!(batch_bases(&data.records), vec![0], "partition {target}");
        assert_eq!(data.high_watermark, 1);
        assert_eq!(data.preferred_read_replica, -1);
    }
}

#[test]
fn min_bytes_not_reached_answers_empty_after_max_wait() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), &[]);
    let mut client = Client::connect(&broker.bootstrap);
    create_topic_with_partitions(&mut client, "quiet", 1);
    produce(&mut client, "quiet", 0, batch(2, 10), -1);
    // Data is there but less than min_bytes: after max_wait the broker answers with what it has.
    let request = fetch_request("quiet", &[(0, 0, 1 << 20)], 100, 1 << 20, 1 << 20);
    let response: m::FetchResponse = client.call(ApiKey::Fetch, VERSION, &request);
    assert_eq!(batch_bases(&partition(&response, 0).records), vec![0]);
    // At the end of the log: an empty record set, not an error.
    let request = fetch_request("quiet", &[(0, 2, 1 << 20)], 100, 1, 1 << 20);
    let response: m::FetchResponse = client.call(ApiKey::Fetch, VERSION, &request);
    let data = partition(&response, 0);
    assert_eq!(data.error_code, 0);
    assert!(batch_bases(&data.records).is_empty());
}

#[test]
fn byte_limits_cut_at_whole_batches_and_never_starve() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), &[]);
    let mut client = Client::connect(&broker.bootstrap);
    create_topic_with_partitions(&mut client, "limits", 2);
    let one = batch(10, 100);
    for p in 0..2 {
        for _ in 0..3 {
            assert_eq!(produce(&mut client, "limits", p, one.clone(), -1), Some(0));
        }
    }
    let size = one.len() as i32;
    // Inside the first batch, with a limit smaller than a batch: the whole first batch.
    let request = fetch_request("limits", &[(0, 5, 10)], 0, 1, 1 << 20);
    let response: m::FetchResponse = client.call(ApiKey::Fetch, VERSION, &request);
    assert_eq!(batch_bases(&partition(&response, 0).records), vec![0]);
    // Room for two batches and a bit: two.
    let request = fetch_request("limits", &[(0, 0, 2 * size + 10)], 0, 1, 1 << 20);
    let response: m::FetchResponse = client.call(ApiKey::Fetch, VERSION, &request);
    assert_eq!(batch_bases(&partition(&response, 0).records), vec![0, 10]);
    // A response limit of one batch over two partitions: the first gets its batch, the second
    // waits for the next request.
    let request = fetch_request("limits", &[(0, 0, 1 << 20), (1, 0, 1 << 20)], 0, 1, size);
    let response: m::FetchResponse = client.call(ApiKey::Fetch, VERSION, &request);
    assert!(!batch_bases(&partition(&response, 0).records).is_empty());
    assert!(batch_bases(&partition(&response, 1).records).is_empty());
}

#[test]
fn sessionless_fetches_are_served_and_unknown_sessions_refused() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), &[]);
    let mut client = Client::connect(&broker.bootstrap);
    create_topic_with_partitions(&mut client, "sessions", 1);
    produce(&mut client, "sessions", 0, batch(1, 10), -1);
    for version in [4, 7, 11, 12, 13, 15, 16] {
        let mut request = fetch_request("sessions", &[(0, 0, 1 << 20)], 0, 1, 1 << 20);
        if version >= 13 {
            // Topic ids from v13: learn it from Metadata.
            let mut metadata = m::MetadataRequest::default();
            metadata.topics = None;
            let response: m::MetadataResponse = client.call(ApiKey::Metadata, 12, &metadata);
            request.topics[0].topic_id = response.topics[0].topic_id;
        }
        let response: m::FetchResponse = client.call(ApiKey::Fetch, version, &request);
        assert_eq!(response.error_code, 0, "v{version}");
        assert_eq!(response.session_id, 0, "no session is created");
        assert_eq!(
            batch_bases(&response.responses[0].partitions[0].records),
            vec![0]
        );
    }
    let mut request = fetch_request("sessions", &[], 0, 1, 1 << 20);
    request.session_id = 77;
    request.session_epoch = 3;
    let response: m::FetchResponse = client.call(ApiKey::Fetch, VERSION, &request);
    assert_eq!(response.error_code, 70, "FETCH_SESSION_ID_NOT_FOUND");
}

#[test]
fn out_of_range_and_unknown_partitions_get_their_errors() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), &[]);
    let mut client = Client::connect(&broker.bootstrap);
    create_topic_with_partitions(&mut client, "ranges", 1);
    produce(&mut client, "ranges", 0, batch(3, 10), -1);
    let request = fetch_request(
        "ranges",
        &[(0, 99, 1 << 20), (5, 0, 1 << 20)],
        0,
        1,
        1 << 20,
    );
    let response: m::FetchResponse = client.call(ApiKey::Fetch, VERSION, &request);
    assert_eq!(partition(&response, 0).error_code, 1, "OFFSET_OUT_OF_RANGE");
    assert_eq!(partition(&response, 0).high_watermark, 3);
    assert_eq!(
        partition(&response, 5).error_code,
        3,
        "UNKNOWN_TOPIC_OR_PARTITION"
    );
}

/// The record bytes of every partition in a response, in response order.
fn record_bytes(response: &m::FetchResponse) -> Vec<usize> {
    response.responses[0]
        .partitions
        .iter()
        .map(|p| p.records.as_ref().map_or(0, |r| r.len()))
        .collect()
}

#[test]
fn max_bytes_bounds_the_whole_response_across_partitions_and_shards() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), &[]);
    let mut client = Client::connect(&broker.bootstrap);
    // Six partitions: consecutive ones live on different shards.
    create_topic_with_partitions(&mut client, "budget", 6);
    let one = batch(1, 100_000);
    let size = one.len();
    for p in 0..6 {
        for _ in 0..3 {
            assert_eq!(produce(&mut client, "budget", p, one.clone(), -1), Some(0));
        }
    }
    let call = |client: &mut Client, order: &[i32], partition_max: i32, max_bytes: i32| {
        let partitions: Vec<(i32, i64, i32)> =
            order.iter().map(|&p| (p, 0, partition_max)).collect();
        let request = fetch_request("budget", &partitions, 0, 1, max_bytes);
        let frame = client.frame(ApiKey::Fetch, VERSION, &request);
        client.send_raw(&frame);
        let mut response = client.read_frame().expect("a response");
        let frame_size = response.len();
        ResponseHeader::decode(&mut response, 1).unwrap();
        let response = m::FetchResponse::decode(&mut response, VERSION).unwrap();
        (frame_size, record_bytes(&response))
    };
    // Headers of six partitions fit in well under a KiB.
    let overhead = 1024;
    for order in [[0, 1, 2, 3, 4, 5], [3, 4, 5, 0, 1, 2], [1, 0, 3, 2, 5, 4]] {
        // Room for two and a half batches: two whole ones from the first partition, then the
        // others are left for the next request.
        let max = (2 * size + size / 2) as i32;
        let (frame, bytes) = call(&mut client, &order, 1 << 20, max);
        assert_eq!(bytes, vec![2 * size, 0, 0, 0, 0, 0], "order {order:?}");
        assert!(frame <= max as usize + overhead, "{frame} bytes");
        // Partition limits share the response budget in request order, across shards.
        let max = (4 * size + size / 2) as i32;
        let (frame, bytes) = call(&mut client, &order, (2 * size + 10) as i32, max);
        assert_eq!(
            bytes,
            vec![2 * size, 2 * size, 0, 0, 0, 0],
            "order {order:?}"
        );
        assert!(frame <= max as usize + overhead);
        // A budget smaller than a batch: exactly one batch, the first partition's.
        let (frame, bytes) = call(&mut client, &order, 1 << 20, 50_000);
        assert_eq!(bytes, vec![size, 0, 0, 0, 0, 0], "order {order:?}");
        assert!(frame <= size + overhead);
        // A partition limit smaller than a batch: only the first partition may exceed it.
        let (_, bytes) = call(&mut client, &order, 50_000, 16 << 20);
        assert_eq!(bytes, vec![size, 0, 0, 0, 0, 0], "order {order:?}");
    }
    // An empty partition first does not use up the first-batch exception.
    let mut partitions = vec![(0, 3, 1 << 20)];
    partitions.extend((1..6).map(|p| (p, 0, 1 << 20)));
    let request = fetch_request("budget", &partitions, 0, 1, 50_000);
    let response: m::FetchResponse = client.call(ApiKey::Fetch, VERSION, &request);
    assert_eq!(record_bytes(&response), vec![0, size, 0, 0, 0, 0]);
}
