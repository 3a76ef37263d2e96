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
