/**
 * HW-BROKER-4 with two plane replicas on one PostgreSQL and one RabbitMQ node: the replica that ingests (the single
 * active consumer of hashward.ingest: the first to connect) is SIGKILLed while devices publish signed events; the
 * other takes over, RabbitMQ redelivers what was not acknowledged, and every event RabbitMQ acknowledged to a device
 * is stored exactly once. RabbitMQ asks the surviving replica's hooks. Needs HASHWARD_TEST_DATABASE_URL.
 */
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { afterAll, beforeAll, it } from "vitest";
import { MAX_PAYLOAD_BYTES } from "../../shared/protocol/index.js";
import { createScratchDatabase } from "../../bench/support/plane.js";
import { freePort, freePorts, newCookie, RabbitNode, rabbitmqMissing } from "../../scripts/scale/rabbitmq-node.js";
import { rabbitPlaneEnv } from "../support/rabbitmq.js";
import { ApiClient } from "../support/api.js";
import { expectAckedEventsStored, loadDevice, publishEvents, type LoadDevice } from "../support/event-load.js";
import { startControlPlane, type ControlPlane } from "../support/processes.js";
import { tempDir } from "../support/temp-dir.js";
import { describeUnless } from "../support/skip.js";
import { waitFor } from "../support/wait.js";

const DATABASE_URL = process.env.HASHWARD_TEST_DATABASE_URL;
const missing = rabbitmqMissing() ?? (DATABASE_URL ? null : "HASHWARD_TEST_DATABASE_URL is not set (postgres://postgres@127.0.0.1:5432/test)");
let node: RabbitNode;
let database: { url: string; drop(): Promise<void> } | undefined;
const replicas: ControlPlane[] = [];
const devices: LoadDevice[] = [];

describeUnless(missing, "two replicas on RabbitMQ and PostgreSQL, the ingesting one SIGKILLed under load", () => {
  beforeAll(async () => {
    database = await createScratchDatabase(DATABASE_URL!);
    const ports = await freePorts();
    const hookPorts = [await freePort(), await freePort()];
    const planePassword = randomBytes(16).toString("hex");
    const secret = randomBytes(24).toString("hex");
    node = new RabbitNode({
      dir: join(tempDir("rabbitmq-replicas").path, "node"),
      name: `hwr${ports.amqp}`,
      ports,
      planeUser: "hashward",
      planePassword,
      hookBaseUrl: `http://127.0.0.1:${hookPorts[1]}/${secret}`, // the survivor's hooks
      tls: null,
      maxMessageBytes: MAX_PAYLOAD_BYTES + 1024,
      cookie: newCookie(),
    });
    await node.start();
    const dataDir = tempDir("replicas-plane").path;
    for (const hookPort of hookPorts) {
      const replica = await startControlPlane({
        dataDir,
        tls: false,
        env: { DATABASE_URL: database.url, ...rabbitPlaneEnv([node], hookPort, secret) },
      });
      // In order: the first replica to consume is the queue's single active consumer.
      await replica.proc.waitForLine("rabbitmq connected", (line) => line.msg === "rabbitmq connected; consuming device messages", 120_000);
      replicas.push(replica);
    }
  }, 600_000);

  afterAll(async () => {
    for (const device of devices) device.client.end(true);
    await Promise.all(replicas.map((replica) => replica.proc.kill("SIGKILL")));
    await node?.kill();
    await node?.stopEpmd();
    await database?.drop();
  }, 120_000);

  it("the other replica takes over ingest and every acknowledged event is stored once", async () => {
    const admin = new ApiClient(replicas[1]!.httpUrl, replicas[1]!.adminToken);
    for (let index = 0; index < 9; index += 1) devices.push(await loadDevice(admin, [node.spec.ports.mqtt]));
    await waitFor("every device connected", () => devices.every((d) => d.client.connected), { timeoutMs: 120_000 });
    const stop = publishEvents(devices);
    await waitFor("events flowing", () => devices.every((d) => d.acked.length >= 5), { timeoutMs: 60_000 });
    const before = devices.map((d) => d.acked.length);
    await replicas[0]!.proc.kill("SIGKILL");
    await waitFor("events keep flowing", () => devices.every((d, i) => d.acked.length > before[i]! + 5), { timeoutMs: 60_000 });
    await stop();
    await expectAckedEventsStored(admin, devices);
  }, 600_000);
});
