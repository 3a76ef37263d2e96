//! Produces `seq-N` values with acks=all as fast as the broker takes them and prints one line
//! per acknowledged record: `ACK <partition> <offset> <N>`. Used by the crash tests, which kill
//! the broker under it: what this printed is what the broker promised to keep.
//!
//! Usage: acked_producer BOOTSTRAP TOPIC PARTITIONS FIRST_SEQ

use std::io::Write;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

const IN_FLIGHT_MAX: usize = 64;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, bootstrap, topic, partitions, first] = &args[..] else {
        eprintln!("usage: acked_producer BOOTSTRAP TOPIC PARTITIONS FIRST_SEQ");
        std::process::exit(2);
    };
    let partitions: i32 = partitions.parse().expect("partitions");
    let mut next: u64 = first.parse().expect("first seq");
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "false")
        .set("linger.ms", "1")
        .set("message.timeout.ms", "5000")
        .create()
        .expect("producer");
    let stdout = std::io::stdout();
    futures::executor::block_on(async {
        let mut in_flight = FuturesUnordered::new();
        loop {
            while in_flight.len() < IN_FLIGHT_MAX {
                let seq = next;
                next += 1;
                let value = format!("seq-{seq}");
                let partition = (seq % partitions as u64) as i32;
                let delivery = producer
                    .send_result(
                        FutureRecord::<(), _>::to(topic)
                            .payload(&value)
                            .partition(partition),
                    )
                    .expect("queue");
                in_flight.push(async move { (seq, delivery.await) });
            }
            match in_flight.next().await {
                Some((seq, Ok(Ok(delivery)))) => {
                    let mut out = stdout.lock();
                    writeln!(out, "ACK {} {} {seq}", delivery.partition, delivery.offset)
                        .expect("stdout");
                    out.flush().expect("stdout");
                }
                Some((_, _)) => {
                    std::thread::sleep(Duration::from_millis(1));
                    std::process::exit(1);
                }
                None => {}
            }
        }
    });
}
