//! Our client's connection and admin operations against the real broker: version
//! negotiation, pipelined requests, topic create/describe/delete, and Kafka errors as typed,
//! classified errors.

mod common;

use common::Broker;
use shardlog::client::admin::Admin;
use shardlog::client::blocking;

#[test]
fn admin_creates_describes_and_deletes_topics_and_reports_kafka_errors() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), &[]);
    let bootstrap = broker.bootstrap.clone();
    blocking::run(move || async move {
        let admin = Admin::connect(&bootstrap).await.expect("connect");
        admin
            .create_topic("orders", 3, 1, &[("cleanup.policy", "compact")])
            .await
            .expect("create");
        let topics = admin.topics(Some(&["orders"])).await.expect("describe");
        assert_eq!(topics.len(), 1);
        assert_eq!(topics[0].name, "orders");
        assert_eq!(topics[0].partitions.len(), 3);
        assert!(topics[0].partitions.iter().all(|p| p.leader == 0));
        assert_ne!(topics[0].id, [0; 16]);

        // Kafka's own error codes come back typed and classified.
        let exists = admin.create_topic("orders", 3, 1, &[]).await.unwrap_err();
        assert_eq!(exists.code(), Some(36), "TOPIC_ALREADY_EXISTS: {exists}");
        assert!(!exists.is_retriable());
        let bad_name = admin
            .create_topic("no/slashes", 1, 1, &[])
            .await
            .unwrap_err();
        assert_eq!(
            bad_name.code(),
            Some(17),
            "INVALID_TOPIC_EXCEPTION: {bad_name}"
        );
        let missing = admin.topics(Some(&["nowhere"])).await.unwrap_err();
        assert_eq!(missing.code(), Some(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert!(missing.is_retriable() && missing.needs_metadata_refresh());

        // Requests are pipelined on one connection: many in flight at once.
        let describes = (0..32).map(|_| admin.topics(Some(&["orders"])));
        for result in futures::future::join_all(describes).await {
            assert_eq!(result.expect("describe")[0].partitions.len(), 3);
        }

        admin.delete_topic("orders").await.expect("delete");
        let all = admin.topics(None).await.expect("list");
        assert!(all.iter().all(|t| t.name != "orders"));
    })
    .expect("client executor");
}

#[test]
fn connecting_to_nothing_is_a_retriable_io_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // The listener above is dropped: nothing listens on that port now.
    let error =
        blocking::run(
            move || async move { Admin::connect(&format!("127.0.0.1:{port}")).await.err() },
        )
        .expect("client executor")
        .expect("no broker there");
    assert!(error.is_retriable(), "{error}");
    assert!(error.to_string().contains(&port.to_string()), "{error}");
}

#[test]
fn admin_manages_configs_partitions_offsets_groups_and_describes_the_cluster() {
    use shardlog::client::admin::{ConfigChange, OffsetSpec};
    use shardlog::client::producer::{Producer, ProducerConfig};
    use std::collections::BTreeMap;

    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(&dir.path().join("data"), &[]);
    let bootstrap = broker.bootstrap.clone();
    blocking::run(move || async move {
        let admin = Admin::connect(&bootstrap).await.expect("connect");
        admin.create_topic("logs", 2, 1, &[]).await.expect("create");

        // Configs: a set value reports its source; a deleted one is back to its default.
        admin
            .alter_configs(
                "logs",
                &[ConfigChange::Set("retention.ms".into(), "120000".into())],
            )
            .await
            .expect("alter");
        let configs = admin.describe_configs("logs").await.expect("configs");
        let retention = configs.iter().find(|c| c.name == "retention.ms").unwrap();
        assert_eq!(retention.value.as_deref(), Some("120000"));
        assert_eq!(retention.source, "DYNAMIC_TOPIC_CONFIG");
        admin
            .alter_configs("logs", &[ConfigChange::Delete("retention.ms".into())])
            .await
            .expect("delete setting");
        let configs = admin.describe_configs("logs").await.expect("configs");
        let retention = configs.iter().find(|c| c.name == "retention.ms").unwrap();
        assert_ne!(retention.source, "DYNAMIC_TOPIC_CONFIG");
        let refused = admin
            .alter_configs(
                "logs",
                &[ConfigChange::Set("retention.ms".into(), "soon".into())],
            )
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Some(40), "INVALID_CONFIG: {refused}");

        // Partitions grow; shrinking is refused.
        admin.create_partitions("logs", 4).await.expect("grow");
        assert_eq!(
            admin.topics(Some(&["logs"])).await.unwrap()[0]
                .partitions
                .len(),
            4
        );
        let shrink = admin.create_partitions("logs", 2).await.unwrap_err();
        assert_eq!(shrink.code(), Some(37), "INVALID_PARTITIONS: {shrink}");

        // Offsets: earliest, latest, and by timestamp (past the last record: the end).
        let producer = Producer::connect(ProducerConfig::new(&bootstrap))
            .await
            .expect("producer");
        let mut deliveries = Vec::new();
        for i in 0..5 {
            let value = bytes::Bytes::from(format!("v{i}"));
            deliveries.push(
                producer
                    .send("logs", None, Some(value), Some(1))
                    .await
                    .unwrap(),
            );
        }
        producer.flush().await;
        for d in deliveries {
            d.await.unwrap().expect("delivered");
        }
        let slots = vec![("logs".to_owned(), 0), ("logs".to_owned(), 1)];
        let earliest = admin
            .list_offsets(&slots, OffsetSpec::Earliest)
            .await
            .unwrap();
        let latest = admin
            .list_offsets(&slots, OffsetSpec::Latest)
            .await
            .unwrap();
        assert_eq!(earliest.values().collect::<Vec<_>>(), [&0, &0]);
        assert_eq!(latest[&slots[0]], 0);
        assert_eq!(latest[&slots[1]], 5);
        let future = shardlog::broker::ops::now_ms() + 3_600_000;
        let by_time = admin
            .list_offsets(&slots[1..], OffsetSpec::Timestamp(future))
            .await
            .unwrap();
        assert_eq!(by_time[&slots[1]], 5);
        let by_time = admin
            .list_offsets(&slots[1..], OffsetSpec::Timestamp(0))
            .await
            .unwrap();
        assert_eq!(by_time[&slots[1]], 0);

        // Groups: offsets committed from outside, described, listed, deleted.
        let offsets: BTreeMap<_, _> = [(slots[1].clone(), 3)].into();
        admin
            .commit_offsets("audit", &offsets)
            .await
            .expect("commit");
        assert_eq!(admin.committed_offsets("audit").await.unwrap(), offsets);
        let group = admin.describe_group("audit").await.expect("describe group");
        assert_eq!(group.state, "Empty");
        assert!(group.members.is_empty());
        assert!(admin
            .list_groups()
            .await
            .unwrap()
            .iter()
            .any(|g| g.group_id == "audit"));
        admin.delete_group("audit").await.expect("delete group");
        assert_eq!(admin.describe_group("audit").await.unwrap().state, "Dead");
        let gone = admin.delete_group("audit").await.unwrap_err();
        assert_eq!(gone.code(), Some(69), "GROUP_ID_NOT_FOUND: {gone}");

        let cluster = admin.describe_cluster().await.expect("cluster");
        assert_eq!(cluster.brokers.len(), 1);
        assert_eq!(cluster.controller, cluster.brokers[0].id);
        assert_eq!(
            cluster.brokers[0].address(),
            bootstrap,
            "the broker advertises the address we reached it on"
        );
    })
    .expect("client executor");
}
