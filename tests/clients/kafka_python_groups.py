#!/usr/bin/env python3
"""Consumer groups with kafka-python against a running broker.

    python3 tests/clients/kafka_python_groups.py BOOTSTRAP

Two members of one group split a 3-partition topic with no overlap and together read every
message; when one closes, the other takes all partitions; a second group reads everything
again; offsets committed by one member are where a new member resumes; the admin client
lists, describes and deletes the groups. Needs `pip install kafka-python`.
"""

import os
import sys
import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.structs import OffsetAndMetadata

PARTITIONS = 3
PER_PARTITION = 30
TIMEOUT_S = 90


class Failure(Exception):
    pass


def expect(condition, what, detail=""):
    if not condition:
        raise Failure(f"{what}{': ' + detail if detail else ''}")
    print(f"ok - {what}", flush=True)
    expect.passed += 1


expect.passed = 0


def member(bootstrap, group, topic):
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=10000,
        heartbeat_interval_ms=300,
    )
    consumer.subscribe([topic])
    return consumer


def poll_until(consumers, seen, what, done):
    deadline = time.time() + TIMEOUT_S
    while not done():
        if time.time() > deadline:
            raise Failure(f"timed out waiting for {what}")
        for consumer, records in zip(consumers, seen):
            for batch in consumer.poll(timeout_ms=50).values():
                for record in batch:
                    key = (record.partition, record.offset)
                    if key in records:
                        raise Failure(f"{key} delivered twice to one member")
                    records.add(key)


def assigned(consumer):
    return {tp.partition for tp in consumer.assignment()}


def produce(bootstrap, topic):
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    written = set()
    futures = [producer.send(topic, value=f"{p}-{i}".encode(), partition=p)
               for p in range(PARTITIONS) for i in range(PER_PARTITION)]
    producer.flush()
    for future in futures:
        metadata = future.get(timeout=30)
        written.add((metadata.partition, metadata.offset))
    producer.close()
    return written


def run(bootstrap):
    topic = f"py-groups-{time.time_ns()}-{os.getpid()}"
    split, other = f"{topic}-split", f"{topic}-other"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30000)
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])

    a = member(bootstrap, split, topic)
    b = member(bootstrap, split, topic)
    seen = [set(), set()]
    poll_until([a, b], seen, "a split assignment", lambda: (
        assigned(a) and assigned(b) and not (assigned(a) & assigned(b))
        and len(assigned(a)) + len(assigned(b)) == PARTITIONS))
    expect(True, f"two members split the partitions: {sorted(assigned(a))} / {sorted(assigned(b))}")
    mine, theirs = assigned(a), assigned(b)
    written = produce(bootstrap, topic)
    poll_until([a, b], seen, "every record", lambda: len(seen[0]) + len(seen[1]) >= len(written))
    expect(all(p in mine for p, _ in seen[0]) and all(p in theirs for p, _ in seen[1]),
           "each member read only its own partitions")
    expect(seen[0] | seen[1] == written and not (seen[0] & seen[1]),
           f"together they read all {len(written)} records exactly once")

    b.close()
    poll_until([a], [seen[0]], "the remaining member to take every partition",
               lambda: len(assigned(a)) == PARTITIONS)
    expect(True, "after one member left, the other holds every partition")

    # Commit mid-way positions, close, and resume in a new member.
    positions = {TopicPartition(topic, p): OffsetAndMetadata(5 + p, "", -1)
                 for p in range(PARTITIONS)}
    a.commit(positions)
    a.close()
    c = member(bootstrap, split, topic)
    resumed = [set()]
    remaining = sum(PER_PARTITION - (5 + p) for p in range(PARTITIONS))
    poll_until([c], resumed, "the resumed member", lambda: len(resumed[0]) >= remaining)
    firsts = {p: min(o for q, o in resumed[0] if q == p) for p in range(PARTITIONS)}
    expect(firsts == {p: 5 + p for p in range(PARTITIONS)} and len(resumed[0]) == remaining,
           "a new member resumes exactly at the committed offsets", str(firsts))
    c.close()

    d = member(bootstrap, other, topic)
    everything = [set()]
    poll_until([d], everything, "the second group", lambda: len(everything[0]) >= len(written))
    expect(everything[0] == written, "a second group reads every record again")
    d.close()

    groups = {g["group_id"] if isinstance(g, dict) else g[0] for g in admin.list_groups()}
    expect({split, other} <= groups, "list_groups shows both groups")
    described = admin.describe_groups([split])
    state = described[split]["group_state"] if isinstance(described, dict) else described[0].state
    expect(state == "Empty", "describe_groups: a group with no members is Empty", str(state))
    offsets = admin.list_group_offsets(split)
    offsets = offsets.get(split, offsets) if isinstance(offsets, dict) else offsets
    got = {tp.partition: meta.offset for tp, meta in offsets.items()}
    expect(got == {p: 5 + p for p in range(PARTITIONS)}, "list_group_offsets", str(got))
    admin.delete_groups([split, other])
    groups = {g["group_id"] if isinstance(g, dict) else g[0] for g in admin.list_groups()}
    expect(not ({split, other} & groups), "delete_groups removes both groups")
    admin.delete_topics([topic])
    admin.close()


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        run(sys.argv[1])
    except Failure as failure:
        print(f"kafka-python groups FAILED: {failure}", file=sys.stderr)
        return 1
    print(f"kafka-python groups: {expect.passed} passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
