#!/usr/bin/env python3
"""Smoke test of a running broker with kafka-python.

    python3 tests/clients/kafka_python_smoke.py BOOTSTRAP      e.g. 127.0.0.1:9092

Creates a 3-partition topic with the admin client, produces 300 keyed messages
with headers (acks=all, idempotent), reads them back by assigning all partitions, checks
offsets, timestamps lookups and end/beginning offsets, then deletes the topic.
Needs `pip install kafka-python`.
"""

import os
import sys
import time

try:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import KafkaAdminClient, NewTopic
except ImportError:
    print("kafka-python smoke test FAILED: kafka-python is not installed "
          "(python3 -m pip install kafka-python)", file=sys.stderr)
    sys.exit(1)

PARTITIONS = 3
MESSAGES = 300
TIMEOUT_S = 60


class Failure(Exception):
    pass


class Checks:
    def __init__(self):
        self.passed = 0

    def ok(self, what):
        self.passed += 1
        print(f"ok - {what}", flush=True)

    def expect(self, condition, what, detail=""):
        if not condition:
            raise Failure(f"{what}{': ' + detail if detail else ''}")
        self.ok(what)


def expected_message(i):
    key = f"key-{i:03d}".encode()
    value = f"value {i:03d} from kafka-python".encode()
    headers = [("trace", f"t-{i:03d}".encode()), ("origin", b"kafka-python")]
    return key, value, headers


def run(bootstrap, checks):
    topic = f"kafka-python-{time.time_ns()}-{os.getpid()}"
    partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    client_id = "shardlog-smoke"

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id=client_id,
                             request_timeout_ms=30000)
    try:
        admin.create_topics([NewTopic(name=topic, num_partitions=PARTITIONS, replication_factor=1)])
        described = {}
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            described = {t["topic" if "topic" in t else "name"]: t for t in admin.describe_topics([topic])}
            info = described.get(topic)
            if info and not info.get("error_code") and len(info.get("partitions", [])) == PARTITIONS:
                break
            time.sleep(0.2)
        info = described.get(topic) or {}
        checks.expect(len(info.get("partitions", [])) == PARTITIONS,
                      f"admin created {topic} with {PARTITIONS} partitions",
                      f"metadata shows {info}")

        # kafka-python's default: an idempotent producer (InitProducerId, sequence numbers).
        producer = KafkaProducer(bootstrap_servers=bootstrap, client_id=client_id, acks="all",
                                 linger_ms=5, request_timeout_ms=30000)
        try:
            futures = []
            for i in range(MESSAGES):
                key, value, headers = expected_message(i)
                futures.append((i, producer.send(topic, key=key, value=value, headers=headers,
                                                 partition=i % PARTITIONS)))
            producer.flush(timeout=TIMEOUT_S)
            acked = {}
            for i, future in futures:
                metadata = future.get(timeout=TIMEOUT_S)
                if metadata.offset is None or metadata.offset < 0:
                    raise Failure(f"message {i} was acknowledged without an offset: {metadata}")
                acked[i] = (metadata.partition, metadata.offset)
            checks.expect(len(acked) == MESSAGES,
                          f"{MESSAGES} sends with acks=all resolved with an offset")
        finally:
            producer.close(timeout=10)

        consumer = KafkaConsumer(bootstrap_servers=bootstrap, client_id=client_id, group_id=None,
                                 enable_auto_commit=False, auto_offset_reset="earliest",
                                 request_timeout_ms=30000, consumer_timeout_ms=1000)
        try:
            consumer.assign(partitions)
            consumer.seek_to_beginning(*partitions)
            received = []
            deadline = time.monotonic() + TIMEOUT_S
            while len(received) < MESSAGES and time.monotonic() < deadline:
                for records in consumer.poll(timeout_ms=500).values():
                    received.extend(records)
            checks.expect(len(received) == MESSAGES, f"consumed {MESSAGES} messages",
                          f"got {len(received)} within {TIMEOUT_S}s")

            by_key = {}
            for record in received:
                if record.key in by_key:
                    raise Failure(f"key {record.key!r} was delivered twice")
                by_key[record.key] = record
            mismatches = []
            for i in range(MESSAGES):
                key, value, headers = expected_message(i)
                record = by_key.get(key)
                if record is None:
                    mismatches.append(f"{key!r} missing")
                    continue
                if record.value != value:
                    mismatches.append(f"{key!r}: value {record.value!r}, expected {value!r}")
                if list(map(tuple, record.headers)) != headers:
                    mismatches.append(f"{key!r}: headers {record.headers!r}, expected {headers!r}")
                if (record.partition, record.offset) != acked[i]:
                    mismatches.append(f"{key!r}: at {record.partition}/{record.offset}, "
                                      f"acknowledged at {acked[i][0]}/{acked[i][1]}")
            checks.expect(not mismatches, "keys, values, headers and offsets round-trip",
                          "; ".join(mismatches[:10]))

            per_partition = {p: [] for p in range(PARTITIONS)}
            for record in received:
                per_partition[record.partition].append(record.offset)
            for p, offsets in per_partition.items():
                checks.expect(offsets == list(range(len(offsets))),
                              f"partition {p}: {len(offsets)} offsets dense from 0",
                              f"offsets {offsets[:20]}...")

            end = consumer.end_offsets(partitions)
            checks.expect(sum(end.values()) == MESSAGES, f"end_offsets sum to {MESSAGES}",
                          f"{end}")
            for tp in partitions:
                checks.expect(end[tp] == len(per_partition[tp.partition]),
                              f"partition {tp.partition}: end offset {end[tp]} matches messages read",
                              f"read {len(per_partition[tp.partition])}")
            beginning = consumer.beginning_offsets(partitions)
            checks.expect(all(offset == 0 for offset in beginning.values()),
                          "beginning_offsets are 0", f"{beginning}")

            by_time = consumer.offsets_for_times({tp: 0 for tp in partitions})
            for tp in partitions:
                found = by_time.get(tp)
                if end[tp] > 0:
                    checks.expect(found is not None and found.offset == 0,
                                  f"partition {tp.partition}: offsets_for_times(0) gives offset 0",
                                  f"got {found}")
        finally:
            consumer.close()

        admin.delete_topics([topic])
        deadline = time.monotonic() + TIMEOUT_S
        topics = admin.list_topics()
        while topic in topics and time.monotonic() < deadline:
            time.sleep(0.2)
            topics = admin.list_topics()
        checks.expect(topic not in topics, f"deleted {topic} is gone from list_topics()")
    finally:
        admin.close()


def main():
    if len(sys.argv) != 2:
        print(f"usage: {sys.argv[0]} BOOTSTRAP", file=sys.stderr)
        return 2
    checks = Checks()
    try:
        run(sys.argv[1], checks)
    except Failure as failure:
        print(f"kafka-python smoke test FAILED: {failure}", file=sys.stderr)
        return 1
    except Exception as error:  # a client error is a failure of the test, reported as such
        print(f"kafka-python smoke test FAILED: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print(f"kafka-python: {checks.passed} passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
