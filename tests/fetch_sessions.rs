//! Incremental fetch sessions (KIP-227) over the raw protocol: opening, incremental requests
//! and responses that leave out unchanged partitions, forgetting, closing, every session
//! error, the cache limit, and long polls inside a session.

mod common;

use std::time::Duration;

use common::raw::{
    batch, batch_bases, create_topic_with_partitions, fetch_request, produce, Client,
};
use common::Broker;
use kafka_protocol::messages::{self as m, ApiKey, ResponseHeader, TopicName};
use kafka_protocol::protocol::{Decodable, StrBytes};

const VERSION: i16 = 12;
const FETCH_SESSION_ID_NOT_FOUND: i16 = 70;
const INVALID_FETCH_SESSION_EPOCH: i16 = 71;
const FETCH_SESSION_TOPIC_ID_ERROR: i16 = 106;

/// A fetch of `partitions` (partition, offset) of `topic` in session `id` at `epoch`.
fn session_fetch(
    topic: &str,
    partitions: &[(i32, i64)],
    id: i32,
    epoch: i32,
    max_wait_ms: i32,
) -> m::FetchRequest {
    let with_limits: Vec<(i32, i64, i32)> =
        partitions.iter().map(|&(p, o)| (p, o, 1 << 20)).collect();
    let mut request = fetch_request(topic, &with_limits, max_wait_ms, 1, 16 << 20);
    if partitions.is_empty() {
        request.topics.clear();
    }
    request.session_id = id;
    request.session_epoch = epoch;
    request
}

fn forget(request: &mut m::FetchRequest, topic: &str, partitions: Vec<i32>) {
    let mut forgotten = m::fetch_request::ForgottenTopic::default();
    forgotten.topic = TopicName(StrBytes::from_string(topic.into()));
    forgotten.partitions = partitions;
    request.forgotten_topics_data.push(forgotten);
}

/// (partition, base offsets of the returned batches, high watermark) of every partition in the
/// response, in response order.
fn answered(response: &m::FetchResponse) -> Vec<(i32, Vec<i64>, i64)> {
    response
        .responses
        .iter()
        .flat_map(|t| &t.partitions)
        .map(|p| (p.partition_index, batch_bases(&p.records), p.high_watermark))
        .collect()
}

/// A broker with a topic of four partitions (over both shards), one batch of one record in
/// each, and a consumer connection.
fn setup(overrides: &[(&str, &str)]) -> (tempfile::TempDir, Broker, Client, Client) {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), overrides);
    let mut producer = Client::connect(&broker.bootstrap);
    create_topic_with_partitions(&mut producer, "s", 4);
    for p in 0..4 {
        assert_eq!(produce(&mut producer, "s", p, batch(1, 10), -1), Some(0));
    }
    let consumer = Client::connect(&broker.bootstrap);
    (dir, broker, producer, consumer)
}

fn open_session(consumer: &mut Client) -> i32 {
    let all: Vec<(i32, i64)> = (0..4).map(|p| (p, 0)).collect();
    let response: m::FetchResponse =
        consumer.call(ApiKey::Fetch, VERSION, &session_fetch("s", &all, 0, 0, 0));
    assert_eq!(response.error_code, 0);
    assert_ne!(response.session_id, 0, "a session was opened");
    // A full response: every partition, with its data.
    assert_eq!(
        answered(&response),
        (0..4).map(|p| (p, vec![0], 1)).collect::<Vec<_>>()
    );
    response.session_id
}

#[test]
fn incremental_responses_carry_only_partitions_with_changes() {
    let (_dir, _broker, mut producer, mut consumer) = setup(&[]);
    let id = open_session(&mut consumer);
    // The client moved its offsets past what it got: every partition is sent as changed.
    let moved: Vec<(i32, i64)> = (0..4).map(|p| (p, 1)).collect();
    let response: m::FetchResponse = consumer.call(
        ApiKey::Fetch,
        VERSION,
        &session_fetch("s", &moved, id, 1, 0),
    );
    assert_eq!((response.error_code, response.session_id), (0, id));
    assert!(
        answered(&response).is_empty(),
        "nothing new anywhere: {:?}",
        answered(&response)
    );
    // New data on partition 2 only.
    assert_eq!(produce(&mut producer, "s", 2, batch(1, 10), -1), Some(0));
    let response: m::FetchResponse =
        consumer.call(ApiKey::Fetch, VERSION, &session_fetch("s", &[], id, 2, 0));
    assert_eq!(answered(&response), vec![(2, vec![1], 2)]);
    // The client moves partition 2's offset on; nothing else changed.
    let response: m::FetchResponse = consumer.call(
        ApiKey::Fetch,
        VERSION,
        &session_fetch("s", &[(2, 2)], id, 3, 0),
    );
    assert!(answered(&response).is_empty(), "{:?}", answered(&response));
    // Without the client moving an offset, the broker reads from the session's offsets: a
    // partition the client does not update is read again from where it was.
    assert_eq!(produce(&mut producer, "s", 0, batch(1, 10), -1), Some(0));
    let response: m::FetchResponse =
        consumer.call(ApiKey::Fetch, VERSION, &session_fetch("s", &[], id, 4, 0));
    assert_eq!(answered(&response), vec![(0, vec![1], 2)]);
}

#[test]
fn forgotten_partitions_leave_the_session_and_added_ones_join_it() {
    let (_dir, _broker, mut producer, mut consumer) = setup(&[]);
    let all: Vec<(i32, i64)> = (0..2).map(|p| (p, 0)).collect();
    let response: m::FetchResponse =
        consumer.call(ApiKey::Fetch, VERSION, &session_fetch("s", &all, 0, 0, 0));
    let id = response.session_id;
    assert_eq!(answered(&response).len(), 2);
    // Forget 0, move 1 on, add 3 (new to the session: sent in full once).
    let mut request = session_fetch("s", &[(1, 1), (3, 0)], id, 1, 0);
    forget(&mut request, "s", vec![0]);
    let response: m::FetchResponse = consumer.call(ApiKey::Fetch, VERSION, &request);
    assert_eq!(answered(&response), vec![(3, vec![0], 1)]);
    // Data on the forgotten partition is not reported any more; on a member it is.
    for p in [0, 1] {
        assert_eq!(produce(&mut producer, "s", p, batch(1, 10), -1), Some(0));
    }
    let response: m::FetchResponse = consumer.call(
        ApiKey::Fetch,
        VERSION,
        &session_fetch("s", &[(3, 1)], id, 2, 0),
    );
    assert_eq!(answered(&response), vec![(1, vec![1], 2)]);
    // Forgetting every partition ends the session: the answer has session id 0.
    let mut request = session_fetch("s", &[], id, 3, 0);
    forget(&mut request, "s", vec![1, 3]);
    let response: m::FetchResponse = consumer.call(ApiKey::Fetch, VERSION, &request);
    assert_eq!((response.error_code, response.session_id), (0, 0));
    let response: m::FetchResponse =
        consumer.call(ApiKey::Fetch, VERSION, &session_fetch("s", &[], id, 4, 0));
    assert_eq!(response.error_code, FETCH_SESSION_ID_NOT_FOUND);
}

#[test]
fn session_errors_are_answered_as_kafka_does() {
    let (_dir, broker, _producer, mut consumer) = setup(&[]);
    let id = open_session(&mut consumer);
    // An unknown id.
    let response: m::FetchResponse = consumer.call(
        ApiKey::Fetch,
        VERSION,
        &session_fetch("s", &[], id ^ 0x4000_0000, 1, 0),
    );
    assert_eq!(response.error_code, FETCH_SESSION_ID_NOT_FOUND);
    assert_eq!(response.session_id, 0);
    assert!(response.responses.is_empty());
    // An epoch from the future, then one from the past: refused, and the session still
    // expects the right one.
    for epoch in [5, 0x7fff_ffff] {
        let response: m::FetchResponse = consumer.call(
            ApiKey::Fetch,
            VERSION,
            &session_fetch("s", &[], id, epoch, 0),
        );
        assert_eq!(
            response.error_code, INVALID_FETCH_SESSION_EPOCH,
            "epoch {epoch}"
        );
        assert!(response.responses.is_empty());
    }
    let response: m::FetchResponse =
        consumer.call(ApiKey::Fetch, VERSION, &session_fetch("s", &[], id, 1, 0));
    assert_eq!((response.error_code, response.session_id), (0, id));
    let response: m::FetchResponse =
        consumer.call(ApiKey::Fetch, VERSION, &session_fetch("s", &[], id, 1, 0));
    assert_eq!(
        response.error_code, INVALID_FETCH_SESSION_EPOCH,
        "epoch 1 again"
    );
    // A session opened with topic names cannot go on with topic ids (v13).
    let mut metadata = m::MetadataRequest::default();
    metadata.topics = None;
    let topics: m::MetadataResponse = consumer.call(ApiKey::Metadata, 12, &metadata);
    let mut request = session_fetch("s", &[], id, 2, 0);
    request.topics.clear();
    let response: m::FetchResponse = consumer.call(ApiKey::Fetch, 13, &request);
    assert_eq!(response.error_code, FETCH_SESSION_TOPIC_ID_ERROR);
    // Epoch -1 with the id closes the session; the request is served without one.
    let response: m::FetchResponse = consumer.call(
        ApiKey::Fetch,
        VERSION,
        &session_fetch("s", &[(0, 0)], id, -1, 0),
    );
    assert_eq!((response.error_code, response.session_id), (0, 0));
    assert_eq!(answered(&response), vec![(0, vec![0], 1)]);
    let response: m::FetchResponse =
        consumer.call(ApiKey::Fetch, VERSION, &session_fetch("s", &[], id, 2, 0));
    assert_eq!(response.error_code, FETCH_SESSION_ID_NOT_FOUND, "closed");
    // A session by topic ids (v13) works the same way.
    let topic_id = topics
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == "s"))
        .expect("topic s")
        .topic_id;
    let mut request = session_fetch("s", &[(1, 0)], 0, 0, 0);
    request.topics[0].topic_id = topic_id;
    let response: m::FetchResponse = consumer.call(ApiKey::Fetch, 13, &request);
    assert_eq!(response.error_code, 0);
    assert_ne!(response.session_id, 0);
    let by_id = response.session_id;
    let mut request = session_fetch("s", &[(1, 1)], by_id, 1, 0);
    request.topics[0].topic_id = topic_id;
    let response: m::FetchResponse = consumer.call(ApiKey::Fetch, 13, &request);
    assert_eq!((response.error_code, response.session_id), (0, by_id));
    assert!(answered(&response).is_empty());
    // Another connection lands on either shard; the session is found only on its own, and
    // elsewhere the id is unknown (never a stranger's session).
    let mut other = Client::connect(&broker.bootstrap);
    let mut request = session_fetch("s", &[], by_id, 2, 0);
    request.topics.clear();
    let response: m::FetchResponse = other.call(ApiKey::Fetch, 13, &request);
    assert!(
        response.error_code == 0 || response.error_code == FETCH_SESSION_ID_NOT_FOUND,
        "{}",
        response.error_code
    );
}

#[test]
fn a_full_cache_answers_without_a_session_and_zero_slots_turn_sessions_off() {
    // One shard, one slot: the first session takes it; the second client is served in full
    // without one (session id 0) while the first is young and busy.
    let (_dir, broker, _producer, mut first) = setup(&[
        ("num.shards", "1"),
        ("max.incremental.fetch.session.cache.slots", "1"),
    ]);
    let id = open_session(&mut first);
    let mut second = Client::connect(&broker.bootstrap);
    let all: Vec<(i32, i64)> = (0..4).map(|p| (p, 0)).collect();
    let response: m::FetchResponse =
        second.call(ApiKey::Fetch, VERSION, &session_fetch("s", &all, 0, 0, 0));
    assert_eq!((response.error_code, response.session_id), (0, 0));
    assert_eq!(answered(&response).len(), 4, "a full answer all the same");
    let response: m::FetchResponse =
        first.call(ApiKey::Fetch, VERSION, &session_fetch("s", &[], id, 1, 0));
    assert_eq!((response.error_code, response.session_id), (0, id));

    let (_dir, _broker, _producer, mut consumer) =
        setup(&[("max.incremental.fetch.session.cache.slots", "0")]);
    let response: m::FetchResponse =
        consumer.call(ApiKey::Fetch, VERSION, &session_fetch("s", &all, 0, 0, 0));
    assert_eq!((response.error_code, response.session_id), (0, 0));
    assert_eq!(answered(&response).len(), 4);
}

#[test]
fn a_long_poll_in_a_session_wakes_when_data_arrives() {
    let (_dir, _broker, mut producer, mut consumer) = setup(&[]);
    let id = open_session(&mut consumer);
    // Far longer than the socket timeout: only a wake-up can answer in time.
    consumer
        .stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut offsets = [1i64; 4];
    let mut epoch = 1;
    for target in [3, 0, 2, 1] {
        let changed: Vec<(i32, i64)> = if epoch == 1 {
            (0..4).map(|p| (p, 1)).collect()
        } else {
            Vec::new()
        };
        let request = session_fetch("s", &changed, id, epoch, 25_000);
        let frame = consumer.frame(ApiKey::Fetch, VERSION, &request);
        consumer.send_raw(&frame);
        assert_eq!(
            produce(&mut producer, "s", target, batch(1, 10), -1),
            Some(0)
        );
        let mut response = consumer.read_frame().expect("the fetch was answered");
        ResponseHeader::decode(&mut response, 1).unwrap();
        let response = m::FetchResponse::decode(&mut response, VERSION).unwrap();
        assert_eq!((response.error_code, response.session_id), (0, id));
        assert_eq!(
            answered(&response),
            vec![(target, vec![offsets[target as usize]], 2)],
            "partition {target}"
        );
        offsets[target as usize] += 1;
        epoch += 1;
        // The next request tells the session the new offset.
        let request = session_fetch("s", &[(target, offsets[target as usize])], id, epoch, 0);
        let response: m::FetchResponse = consumer.call(ApiKey::Fetch, VERSION, &request);
        assert!(answered(&response).is_empty(), "{:?}", answered(&response));
        epoch += 1;
    }
}
