#!/usr/bin/env python3
"""Incremental fetch sessions (KIP-227) with kafka-python, which opens them by default.

    python3 tests/clients/kafka_python_fetch_sessions.py BOOTSTRAP      e.g. 127.0.0.1:9092

Creates a 200-partition topic, produces 10 records to each, then consumes every partition,
producing 10 more to each whenever it has caught up (three rounds), and checks that every record arrives exactly once and in
order, that the consumer fetched in a session (the broker gave it a session id and served
incremental requests, epoch after epoch) and that no fetch was answered with a session error.
Needs `pip install kafka-python` (3.x).
"""

import os
import sys
import time

try:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.consumer import fetcher
except ImportError:
    print("kafka-python fetch sessions FAILED: kafka-python is not installed "
          "(python3 -m pip install kafka-python)", file=sys.stderr)
    sys.exit(1)

PARTITIONS = 200
PER_ROUND = 10
ROUNDS = 3
TIMEOUT_S = 120

# What the broker answered, as the consumer's session handler saw it.
seen = {"session_ids": set(), "errors": [], "incremental": 0}
_handle_response = fetcher.FetchSessionHandler.handle_response


def _recording_handle_response(self, response):
    if response.error_code:
        seen["errors"].append(response.error_code)
    if response.session_id:
        seen["session_ids"].add(response.session_id)
    if not self.next_metadata.is_full:
        seen["incremental"] += 1
    return _handle_response(self, response)


fetcher.FetchSessionHandler.handle_response = _recording_handle_response


class Failure(Exception):
    pass


def produce(producer, topic, start):
    futures = []
    for p in range(PARTITIONS):
        for i in range(start, start + PER_ROUND):
            futures.append(producer.send(topic, partition=p, value=f"{p}/{i}".encode()))
    producer.flush()
    for future in futures:
        future.get(timeout=30)


def run(bootstrap):
    topic = f"kafka-python-sessions-{time.time_ns()}-{os.getpid()}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30000)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    consumer = None
    try:
        admin.create_topics([NewTopic(name=topic, num_partitions=PARTITIONS, replication_factor=1)])
        deadline = time.monotonic() + TIMEOUT_S
        while len(producer.partitions_for(topic) or ()) < PARTITIONS:
            if time.monotonic() > deadline:
                raise Failure(f"{topic} has no {PARTITIONS} partitions")
            time.sleep(0.2)
        produce(producer, topic, 0)

        consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                 auto_offset_reset="earliest", fetch_max_wait_ms=100)
        consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
        consumer.seek_to_beginning()
        expected = {p: 0 for p in range(PARTITIONS)}
        total = ROUNDS * PER_ROUND * PARTITIONS
        received = 0
        produced = PER_ROUND
        while received < total:
            if time.monotonic() > deadline:
                raise Failure(f"received {received} of {total}")
            for tp, records in consumer.poll(timeout_ms=500).items():
                for record in records:
                    want = f"{tp.partition}/{expected[tp.partition]}".encode()
                    if record.value != want or record.offset != expected[tp.partition]:
                        raise Failure(f"partition {tp.partition}: expected {want!r} at offset "
                                      f"{expected[tp.partition]}, got {record.value!r} at "
                                      f"{record.offset}")
                    expected[tp.partition] += 1
                    received += 1
            if received == produced * PARTITIONS and received < total:
                # More data while the session is open: incremental responses carry it.
                produce(producer, topic, produced)
                produced += PER_ROUND
        print(f"ok - {received} records from {PARTITIONS} partitions, each once and in order")
        if seen["errors"]:
            raise Failure(f"fetches answered with session errors {seen['errors']}")
        print("ok - no fetch session errors")
        if not seen["session_ids"]:
            raise Failure("the broker opened no fetch session")
        if seen["incremental"] < ROUNDS:
            raise Failure(f"only {seen['incremental']} incremental fetch responses")
        print(f"ok - {len(seen['session_ids'])} session(s), "
              f"{seen['incremental']} incremental fetch responses")
    finally:
        if consumer is not None:
            consumer.close()
        producer.close()
        try:
            admin.delete_topics([topic])
        finally:
            admin.close()


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        run(sys.argv[1])
    except Failure as failure:
        print(f"kafka-python fetch sessions FAILED: {failure}", file=sys.stderr)
        return 1
    print("kafka-python fetch sessions passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
