//! Idempotent producers: InitProducerId hands out ids that never repeat, retried batches are
//! acknowledged with their original offsets and not written again (also after kill -9 and after
//! a clean restart), gaps and stale epochs get Kafka's error codes.

mod common;

use common::raw::{create_topic, latest_offset, Client};
use common::Broker;
use kafka_protocol::messages::{self as m, ApiKey, ProducerId, TopicName, TransactionalId};
use kafka_protocol::protocol::StrBytes;
use shardlog::protocol::batch::sample;

fn init_producer_id(client: &mut Client, previous: Option<(i64, i16)>) -> (i16, i64, i16) {
    let mut request = m::InitProducerIdRequest::default();
    request.transaction_timeout_ms = 60_000;
    // Null, as idempotent (non-transactional) clients send it.
    request.transactional_id = None;
    if let Some((id, epoch)) = previous {
        request.producer_id = ProducerId(id);
        request.producer_epoch = epoch;
    }
    let response: m::InitProducerIdResponse = client.call(ApiKey::InitProducerId, 4, &request);
    (
        response.error_code,
        response.producer_id.0,
        response.producer_epoch,
    )
}

/// Produces one idempotent batch; returns (error code, base offset).
fn produce(
    client: &mut Client,
    topic: &str,
    records: usize,
    producer: (i64, i16, i32),
) -> (i16, i64) {
    let mut request = m::ProduceRequest::default();
    request.acks = -1;
    request.timeout_ms = 5000;
    let mut data = m::produce_request::TopicProduceData::default();
    data.name = TopicName(StrBytes::from_string(topic.into()));
    let mut p = m::produce_request::PartitionProduceData::default();
    p.index = 0;
    p.records = Some(sample::idempotent_batch(records, producer).into());
    data.partition_data.push(p);
    request.topic_data.push(data);
    let response: m::ProduceResponse = client.call(ApiKey::Produce, 9, &request);
    let partition = &response.responses[0].partition_responses[0];
    (partition.error_code, partition.base_offset)
}

#[test]
fn retries_are_deduplicated_and_gaps_and_old_epochs_refused_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(&dir.path().join("data"), &[]);
    let mut client = Client::connect(&broker.bootstrap);
    create_topic(&mut client, "idem", &[("segment.bytes", "2048")]);
    let (error, id, epoch) = init_producer_id(&mut client, None);
    assert_eq!((error, epoch), (0, 0));

    assert_eq!(produce(&mut client, "idem", 5, (id, 0, 0)), (0, 0));
    // The same batch again, as a client retries after a lost response: same offset, no append.
    assert_eq!(produce(&mut client, "idem", 5, (id, 0, 0)), (0, 0));
    assert_eq!(latest_offset(&mut client, "idem"), 5);
    // A gap in the sequence.
    assert_eq!(
        produce(&mut client, "idem", 1, (id, 0, 7)).0,
        45,
        "OUT_OF_ORDER_SEQUENCE_NUMBER"
    );
    assert_eq!(produce(&mut client, "idem", 5, (id, 0, 5)), (0, 5));
    assert_eq!(latest_offset(&mut client, "idem"), 10);

    // kill -9: the state is rebuilt from the log, and the retry is still recognised.
    broker.kill9();
    broker.restart();
    let mut client = Client::connect(&broker.bootstrap);
    assert_eq!(produce(&mut client, "idem", 5, (id, 0, 5)), (0, 5));
    assert_eq!(latest_offset(&mut client, "idem"), 10);

    // Enough batches to seal segments (2 KiB each), then a clean restart: the snapshot
    // written with the sealed segments carries the state.
    let mut sequence = 10;
    let mut offsets = Vec::new();
    for _ in 0..20 {
        let (error, offset) = produce(&mut client, "idem", 5, (id, 0, sequence));
        assert_eq!(error, 0);
        offsets.push((sequence, offset));
        sequence += 5;
    }
    assert!(broker.terminate().success());
    broker.restart();
    let mut client = Client::connect(&broker.bootstrap);
    let (last_sequence, last_offset) = *offsets.last().unwrap();
    assert_eq!(
        produce(&mut client, "idem", 5, (id, 0, last_sequence)),
        (0, last_offset)
    );
    assert_eq!(latest_offset(&mut client, "idem"), last_offset + 5);

    // A bumped epoch starts at sequence 0; once a partition has seen it, the old epoch is fenced.
    let (error, same_id, bumped) = init_producer_id(&mut client, Some((id, 0)));
    assert_eq!((error, same_id, bumped), (0, id, 1));
    assert_eq!(
        produce(&mut client, "idem", 1, (id, 1, 3)).0,
        45,
        "a new epoch starts at 0"
    );
    assert_eq!(produce(&mut client, "idem", 1, (id, 1, 0)).0, 0);
    assert_eq!(
        produce(&mut client, "idem", 1, (id, 0, sequence)).0,
        47,
        "INVALID_PRODUCER_EPOCH"
    );

    // Ids never repeat, across restarts either.
    let (_, second, _) = init_producer_id(&mut client, None);
    assert_ne!(second, id);
    broker.kill9();
    broker.restart();
    let mut client = Client::connect(&broker.bootstrap);
    let (_, third, _) = init_producer_id(&mut client, None);
    assert!(third > second, "{third} after {second}");

    // Transactions are not served: refused at once.
    let mut request = m::InitProducerIdRequest::default();
    request.transactional_id = Some(TransactionalId(StrBytes::from_static_str("tx-1")));
    request.transaction_timeout_ms = 60_000;
    let response: m::InitProducerIdResponse = client.call(ApiKey::InitProducerId, 4, &request);
    assert_eq!(response.error_code, 53);
    // An empty transactional id is a malformed request, not a request for an idempotent id.
    request.transactional_id = Some(TransactionalId(StrBytes::from_static_str("")));
    let response: m::InitProducerIdResponse = client.call(ApiKey::InitProducerId, 4, &request);
    assert_eq!(response.error_code, 42, "INVALID_REQUEST");
}

/// librdkafka's idempotent producer through a proxy that cuts every connection now and then,
/// and across a kill -9 and restart of the broker: every sequence number lands exactly once,
/// in order.
#[test]
fn cut_connections_and_a_broker_kill_leave_no_duplicates_and_no_gaps() {
    use common::proxy::Proxy;
    use futures::executor::block_on;
    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::Consumer;
    use rdkafka::message::Message;
    use rdkafka::producer::{FutureProducer, FutureRecord};
    use std::time::Duration;

    const MESSAGES: usize = 4000;
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start();
    let advertised = format!("PLAINTEXT://127.0.0.1:{}", proxy.port());
    let mut broker = Broker::start(
        &dir.path().join("data"),
        &[("advertised.listeners", &advertised)],
    );
    proxy.set_target(&broker.bootstrap);
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &proxy.address)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "2")
        .set("batch.num.messages", "50")
        .set("message.timeout.ms", "120000")
        .set("reconnect.backoff.ms", "10")
        .set("reconnect.backoff.max.ms", "100")
        .create()
        .unwrap();
    let mut deliveries: Vec<Option<rdkafka::producer::DeliveryFuture>> =
        Vec::with_capacity(MESSAGES);
    let settle = |deliveries: &mut Vec<Option<rdkafka::producer::DeliveryFuture>>, i: usize| {
        if let Some(delivery) = deliveries[i].take() {
            let delivered = block_on(delivery)
                .expect("delivery")
                .unwrap_or_else(|(e, _)| panic!("message {i}: {e}"));
            assert_eq!(delivered.partition, 0);
        }
    };
    for i in 0..MESSAGES {
        let value = format!("seq-{i}");
        loop {
            match producer.send_result(
                FutureRecord::<(), _>::to("exactly")
                    .payload(&value)
                    .partition(0),
            ) {
                Ok(delivery) => {
                    deliveries.push(Some(delivery));
                    break;
                }
                Err((e, _)) => {
                    // The local queue is full while the connection is down: let it drain.
                    assert!(
                        matches!(e, rdkafka::error::KafkaError::MessageProduction(_)),
                        "{e}"
                    );
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
        if i % 500 == 499 {
            // Cut while the last few hundred records are in flight, after earlier ones landed.
            settle(&mut deliveries, i - 300);
            proxy.cut();
        }
        if i == MESSAGES / 2 {
            settle(&mut deliveries, i - 300);
            broker.kill9();
            broker.restart();
            proxy.set_target(&broker.bootstrap);
            proxy.cut();
        }
    }
    for i in 0..MESSAGES {
        settle(&mut deliveries, i);
    }
    let consumer = common::assigned_consumer(&broker.bootstrap, "exactly", &[0]);
    let (_, high) = consumer
        .fetch_watermarks("exactly", 0, Duration::from_secs(30))
        .unwrap();
    assert_eq!(
        high, MESSAGES as i64,
        "no duplicates and no gaps in the log"
    );
    let mut seen = Vec::with_capacity(MESSAGES);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while seen.len() < MESSAGES {
        assert!(
            std::time::Instant::now() < deadline,
            "read {} of {MESSAGES}",
            seen.len()
        );
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message.unwrap();
            seen.push(String::from_utf8(message.payload().unwrap().to_vec()).unwrap());
        }
    }
    let expected: Vec<String> = (0..MESSAGES).map(|i| format!("seq-{i}")).collect();
    assert_eq!(seen, expected, "every sequence exactly once, in order");
}
