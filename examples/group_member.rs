//! A consumer-group member in its own process, so tests can kill it with SIGKILL (no
//! LeaveGroup, no goodbye) and watch the group recover. Prints `ASSIGNED p,p,...` after every
//! rebalance and `MSG <partition> <offset>` per record.
//!
//! Usage: group_member BOOTSTRAP TOPIC GROUP SESSION_TIMEOUT_MS

use std::io::Write;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::{ClientContext, Message};

struct Printer;

impl ClientContext for Printer {}

impl ConsumerContext for Printer {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(list) = rebalance {
            let partitions: Vec<String> = list
                .elements()
                .iter()
                .map(|e| e.partition().to_string())
                .collect();
            println!("ASSIGNED {}", partitions.join(","));
            let _ = std::io::stdout().flush();
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, bootstrap, topic, group, session] = &args[..] else {
        eprintln!("usage: group_member BOOTSTRAP TOPIC GROUP SESSION_TIMEOUT_MS");
        std::process::exit(2);
    };
    let consumer: BaseConsumer<Printer> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("session.timeout.ms", session)
        .set("heartbeat.interval.ms", "100")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create_with_context(Printer)
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    loop {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            println!("MSG {} {}", message.partition(), message.offset());
            let _ = std::io::stdout().flush();
        }
    }
}
