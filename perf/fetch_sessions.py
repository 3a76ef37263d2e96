#!/usr/bin/env python3
"""Fetch sessions on vs off: one consumer of 1,000 partitions, against one running broker.

    python3 perf/fetch_sessions.py BOOTSTRAP BROKER_PID [PARTITIONS] [RECORDS] [TAIL_S]

Driven by perf/fetch-sessions.sh, which starts the broker. With kafka-python (which opens
KIP-227 sessions unless told not to), for each mode in turn, sessions off then on, on a topic
of its own:

  catch-up  PARTITIONS x RECORDS records of 100 B are there; the consumer reads them all.
  tail      the consumer has caught up; a producer sends 200 records/s spread over the
            partitions for TAIL_S seconds, and the consumer reads each as it comes.

For each phase it prints the fetch requests sent, the bytes of a fetch request and of its
response (counted as the client encodes and receives them), and the broker's CPU time
(utime + stime from /proc/BROKER_PID/stat) per fetch and per record consumed. The consumer
asks for at most 256 KiB per response, so the catch-up takes a few dozen fetches.
"""

import os
import sys
import threading
import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.protocol import parser

TICKS = os.sysconf("SC_CLK_TCK")
fetch_bytes = {"requests": 0, "bytes": 0, "responses": 0}
fetch_correlation_ids = set()
_send_request = parser.KafkaProtocol.send_request
_process_response = parser.KafkaProtocol._process_response


def _counting_send_request(self, request, correlation_id=None):
    result = _send_request(self, request, correlation_id)
    if request.API_KEY == 1:
        fetch_bytes["requests"] += 1
        fetch_bytes["bytes"] += len(self.bytes_to_send[-1])
        fetch_correlation_ids.add((id(self), result))
    return result


def _counting_process_response(self, read_buffer):
    if self.in_flight_requests:
        key = (id(self), self.in_flight_requests[0].correlation_id)
        if key in fetch_correlation_ids:
            fetch_correlation_ids.discard(key)
            fetch_bytes["responses"] += len(read_buffer)
    return _process_response(self, read_buffer)


parser.KafkaProtocol.send_request = _counting_send_request
parser.KafkaProtocol._process_response = _counting_process_response


def broker_cpu_s(pid):
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def snapshot(pid):
    return (time.monotonic(), broker_cpu_s(pid), fetch_bytes["requests"], fetch_bytes["bytes"],
            fetch_bytes["responses"])


def report(mode, phase, before, after, records):
    seconds = after[0] - before[0]
    cpu = after[1] - before[1]
    requests = max(after[2] - before[2], 1)
    request_bytes = after[3] - before[3]
    response_bytes = after[4] - before[4]
    print(f"{mode:<12} {phase:<8} {records:>6} records {seconds:6.2f} s  {requests:>5} fetches  "
          f"request {request_bytes / requests:>7.0f} B/fetch  "
          f"response {response_bytes / requests:>7.0f} B/fetch  "
          f"broker CPU {cpu:5.2f} s: {cpu * 1e6 / requests:6.0f} us/fetch, "
          f"{cpu * 1e6 / max(records, 1):6.1f} us/record", flush=True)


def consume(consumer, expected):
    got = 0
    deadline = time.monotonic() + 600
    while got < expected:
        if time.monotonic() > deadline:
            raise SystemExit(f"consumed {got} of {expected}")
        for records in consumer.poll(timeout_ms=200, max_records=100_000).values():
            got += len(records)
    return got


def run_mode(bootstrap, pid, sessions, partitions, records, tail_s):
    mode = "sessions-on" if sessions else "sessions-off"
    topic = f"fetch-sessions-{mode}-{time.time_ns()}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=60000)
    admin.create_topics([NewTopic(name=topic, num_partitions=partitions, replication_factor=1)])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=5,
                             batch_size=64 * 1024)
    while len(producer.partitions_for(topic) or ()) < partitions:
        time.sleep(0.2)
    value = b"x" * 100
    for p in range(partitions):
        for _ in range(records):
            producer.send(topic, partition=p, value=value)
    producer.flush()

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             fetch_max_wait_ms=500, max_partition_fetch_bytes=1 << 20,
                             fetch_max_bytes=256 * 1024,
                             enable_incremental_fetch_sessions=sessions)
    consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
    consumer.seek_to_beginning()
    before = snapshot(pid)
    got = consume(consumer, partitions * records)
    report(mode, "catch-up", before, snapshot(pid), got)

    rate = 200
    total = rate * tail_s

    def trickle():
        start = time.monotonic()
        for i in range(total):
            producer.send(topic, partition=(i * 7919) % partitions, value=value)
            delay = start + (i + 1) / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        producer.flush()

    before = snapshot(pid)
    thread = threading.Thread(target=trickle)
    thread.start()
    got = consume(consumer, total)
    thread.join()
    report(mode, "tail", before, snapshot(pid), got)
    consumer.close()
    producer.close()


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    bootstrap, pid = sys.argv[1], int(sys.argv[2])
    partitions = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
    records = int(sys.argv[4]) if len(sys.argv) > 4 else 50
    tail_s = int(sys.argv[5]) if len(sys.argv) > 5 else 10
    print(f"# {partitions} partitions, {records} records of 100 B each, tail {tail_s} s at 200/s")
    for sessions in (False, True):
        run_mode(bootstrap, pid, sessions, partitions, records, tail_s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
