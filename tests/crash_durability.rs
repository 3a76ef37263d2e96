//! Acknowledged means durable: a producer in another process writes with acks=all while the
//! broker is killed with SIGKILL at random points; after every restart each acknowledged
//! record is at its offset, the log has no torn batch, and new offsets continue the log.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{example, Broker};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

const KILLS: usize = 20;
const PARTITIONS: i32 = 2;
const TOPIC: &str = "crash";

/// A small deterministic generator, so a failing run can be replayed from its printed seed.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % bound
    }
}

struct Ack {
    partition: i32,
    offset: i64,
    seq: u64,
}

/// Runs the producer until `acks_wanted` acknowledgements, then kills the broker under it.
fn produce_then_kill(broker: &mut Broker, first_seq: u64, acks_wanted: usize) -> Vec<Ack> {
    let mut child = Command::new(example("acked_producer"))
        .args([
            &broker.bootstrap,
            TOPIC,
            &PARTITIONS.to_string(),
            &first_seq.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start producer (built by cargo test as an example)");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acks = Vec::new();
    while acks.len() < acks_wanted {
        let Some(Ok(line)) = lines.next() else { break };
        acks.push(parse_ack(&line));
    }
    broker.kill9();
    let _ = child.kill();
    let _ = child.wait();
    // Acknowledgements already written to the pipe still count.
    for line in lines.map_while(Result::ok) {
        acks.push(parse_ack(&line));
    }
    acks
}

fn parse_ack(line: &str) -> Ack {
    let parts: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(parts[0], "ACK", "{line}");
    Ack {
        partition: parts[1].parse().unwrap(),
        offset: parts[2].parse().unwrap(),
        seq: parts[3].parse().unwrap(),
    }
}

/// Reads every record of a partition up to its high watermark: (offset, value).
fn read_partition(bootstrap: &str, partition: i32) -> Vec<(i64, String)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "crash-check")
        .set("enable.auto.commit", "false")
        .set("check.crcs", "true")
        .create()
        .unwrap();
    let (_, high) = consumer
        .fetch_watermarks(TOPIC, partition, Duration::from_secs(30))
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(TOPIC, partition, Offset::Beginning)
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let mut records = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while (records.len() as i64) < high {
        assert!(
            std::time::Instant::now() < deadline,
            "read {} of {high}",
            records.len()
        );
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message.expect("a valid record (CRC checked by the client)");
            let value = String::from_utf8(message.payload().unwrap().to_vec()).unwrap();
            records.push((message.offset(), value));
        }
    }
    records
}

/// Scans a partition's segment files: every batch before the zero padding of the last block
/// must have a valid CRC and continue the offsets of the one before.
fn check_segments(dir: &Path) -> i64 {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    files.sort();
    let mut next = 0;
    for file in files {
        let bytes = std::fs::read(&file).unwrap();
        let mut position = 0;
        while position < bytes.len() {
            if bytes[position..].iter().all(|&b| b == 0) {
                break;
            }
            let header = shardlog::protocol::batch::parse_checked(&bytes[position..])
                .unwrap_or_else(|e| panic!("{} at {position}: {e}", file.display()));
            assert_eq!(header.base_offset, next, "{} at {position}", file.display());
            next = header.last_offset() + 1;
            position += header.size;
        }
    }
    next
}

#[test]
fn acknowledged_records_survive_repeated_kill_9() {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    println!("crash test seed {seed}");
    let mut random = Lcg(seed);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut broker = Broker::start(&data, &[("num.partitions", &PARTITIONS.to_string())]);
    let mut acked: BTreeMap<(i32, i64), u64> = BTreeMap::new();
    let mut next_seq = 0u64;
    let mut ends: BTreeMap<i32, i64> = BTreeMap::new();
    for kill in 0..KILLS {
        let wanted = 1 + random.next(400) as usize;
        let acks = produce_then_kill(&mut broker, next_seq, wanted);
        assert!(
            !acks.is_empty(),
            "kill {kill}: the producer got no acknowledgement"
        );
        for ack in &acks {
            // New records continue the log where it stood after the previous restart.
            assert!(
                ack.offset >= ends.get(&ack.partition).copied().unwrap_or(0),
                "kill {kill}: offset {} reused on partition {}",
                ack.offset,
                ack.partition
            );
            let previous = acked.insert((ack.partition, ack.offset), ack.seq);
            assert!(previous.is_none(), "offset acknowledged twice");
            next_seq = next_seq.max(ack.seq + 1);
        }
        next_seq += IN_FLIGHT_GAP;
        broker.restart();
        for partition in 0..PARTITIONS {
            let records = read_partition(&broker.bootstrap, partition);
            for (index, (offset, _)) in records.iter().enumerate() {
                assert_eq!(*offset, index as i64, "kill {kill}: offsets are dense");
            }
            for ((p, offset), seq) in acked.range((partition, 0)..(partition + 1, 0)) {
                let (_, value) = records.get(*offset as usize).unwrap_or_else(|| {
                    panic!("kill {kill}: acknowledged offset {offset} of partition {p} is gone (seed {seed})")
                });
                assert_eq!(value, &format!("seq-{seq}"), "kill {kill}: offset {offset}");
            }
            let end = check_segments(&data.join(format!("{TOPIC}-{partition}")));
            assert_eq!(end, records.len() as i64);
            ends.insert(partition, end);
        }
    }
    println!(
        "{} acknowledged records checked across {KILLS} kills",
        acked.len()
    );
    assert!(acked.len() >= KILLS);
}

/// Sequence numbers the killed producer may have had in flight are not reused.
const IN_FLIGHT_GAP: u64 = 1000;
