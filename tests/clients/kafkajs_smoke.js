// Smoke test of a running broker with kafkajs (admin and producer; its consumer needs consumer
// groups, which the broker does not serve yet).
//
//   NODE_PATH=<dir with node_modules> node tests/clients/kafkajs_smoke.js BOOTSTRAP
//
// Prints `kafkajs: N passed, 0 failed` and exits 0 when every check holds.
const { Kafka, logLevel } = require("kafkajs");

const bootstrap = process.argv[2];
if (!bootstrap) {
  console.error("usage: kafkajs_smoke.js BOOTSTRAP");
  process.exit(2);
}

let passed = 0;
let failed = 0;
function expect(condition, what, detail) {
  if (condition) {
    passed += 1;
    console.log(`ok - ${what}`);
  } else {
    failed += 1;
    console.log(`FAIL - ${what}: ${detail}`);
  }
}

async function main() {
  const kafka = new Kafka({ clientId: "kafkajs-smoke", brokers: [bootstrap], logLevel: logLevel.ERROR });
  const admin = kafka.admin();
  await admin.connect();
  const topic = `kafkajs-${Date.now()}-${process.pid}`;
  const created = await admin.createTopics({ topics: [{ topic, numPartitions: 3 }], waitForLeaders: true });
  expect(created === true, `created ${topic}`, created);
  const metadata = await admin.fetchTopicMetadata({ topics: [topic] });
  expect(metadata.topics[0].partitions.length === 3, "metadata shows 3 partitions", JSON.stringify(metadata));

  for (const idempotent of [false, true]) {
    const producer = kafka.producer({ idempotent, maxInFlightRequests: idempotent ? 1 : 5 });
    await producer.connect();
    const messages = [];
    for (let i = 0; i < 100; i++) {
      messages.push({ key: `k${i}`, value: `v${i}`, partition: i % 3, headers: { n: `${i}` } });
    }
    const results = await producer.send({ topic, acks: -1, messages });
    const ok = results.every((r) => r.errorCode === 0);
    expect(ok, `produced 100 messages (idempotent=${idempotent})`, JSON.stringify(results));
    await producer.disconnect();
  }

  const offsets = await admin.fetchTopicOffsets(topic);
  const total = offsets.reduce((sum, p) => sum + Number(p.high) - Number(p.low), 0);
  expect(total === 200, "end offsets add up to 200", JSON.stringify(offsets));
  const early = await admin.fetchTopicOffsetsByTimestamp(topic, 0);
  expect(early.every((p) => Number(p.offset) === 0), "offsets by timestamp 0 are 0", JSON.stringify(early));

  // A consumer group reads all 200, commits, and a second member of the group starts after them.
  const groupId = `${topic}-group`;
  const readAll = async (expected) => {
    const consumer = kafka.consumer({ groupId, heartbeatInterval: 500, sessionTimeout: 10000 });
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    const seen = [];
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`read ${seen.length} of ${expected}`)), 60000);
      consumer.run({
        eachMessage: async ({ partition, message }) => {
          seen.push(`${partition}:${message.offset}`);
          if (seen.length >= expected) {
            clearTimeout(timer);
            resolve();
          }
        },
      }).catch(reject);
    });
    await consumer.disconnect();
    return seen;
  };
  const first = await readAll(200);
  expect(new Set(first).size === 200, "a group member reads all 200 messages once", `${first.length}`);
  const more = kafka.producer();
  await more.connect();
  await more.send({ topic, acks: -1, messages: [{ value: "after", partition: 0 }] });
  await more.disconnect();
  const second = await readAll(1);
  expect(second.length === 1 && second[0].startsWith("0:"), "the next member resumes at the group's commits",
    JSON.stringify(second));
  const groups = await admin.listGroups();
  expect(groups.groups.some((g) => g.groupId === groupId), "listGroups shows the group", JSON.stringify(groups));
  await admin.deleteGroups([groupId]);

  await admin.deleteTopics({ topics: [topic] });
  const topics = await admin.listTopics();
  expect(!topics.includes(topic), "deleted topic is gone", JSON.stringify(topics));
  await admin.disconnect();
}

main()
  .catch((error) => {
    failed += 1;
    console.log(`FAIL - unexpected error: ${error.stack || error}`);
  })
  .finally(() => {
    console.log(`kafkajs: ${passed} passed, ${failed} failed`);
    process.exit(failed === 0 ? 0 : 1);
  });
