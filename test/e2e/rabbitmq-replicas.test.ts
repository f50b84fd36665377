/**
 * HW-BROKER-4 with two plane replicas on one PostgreSQL and one RabbitMQ node: the replica that ingests (the single
 * active consumer of hashward.ingest: the first to connect) is SIGKILLed while devices publish signed events; the
 * other takes over, RabbitMQ redelivers what was not acknowledged, and every event RabbitMQ acknowledged to a device
 * is stored exactly once. RabbitMQ asks the surviving replica's hooks. Commands too: a quarantine issued through the
 * replica that is killed right after, then a release and a quarantine through the survivor, each reaches every
 * device and is recorded acknowledged once. Needs HASHWARD_TEST_DATABASE_URL.
 */
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { MAX_PAYLOAD_BYTES } from "../../shared/protocol/index.js";
import { createScratchDatabase } from "../../bench/support/plane.js";
import { freePort, freePorts, newCookie, RabbitNode, rabbitmqMissing } from "../../scripts/scale/rabbitmq-node.js";
import { rabbitPlaneEnv } from "../support/rabbitmq.js";
import { ApiClient } from "../support/api.js";
import { expectAckedEventsStored, loadDevice, publishEvents, takeCommands, type LoadDevice } from "../support/event-load.js";
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

describeUnless(missing, "two replicas on RabbitMQ and PostgreSQL, the ingesting one SIGKILLed under load with commands in flight", () => {
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

  it("the other replica takes over ingest: every acknowledged event stored once, no command lost or doubled", async () => {
    const admin = new ApiClient(replicas[1]!.httpUrl, replicas[1]!.adminToken);
    const doomed = new ApiClient(replicas[0]!.httpUrl, replicas[0]!.adminToken);
    for (let index = 0; index < 9; index += 1) devices.push(await loadDevice(admin, [node.spec.ports.mqtt]));
    await waitFor("every device connected", () => devices.every((d) => d.client.connected), { timeoutMs: 120_000 });
    for (const device of devices) await takeCommands(device);
    const stop = publishEvents(devices);
    await waitFor("events flowing", () => devices.every((d) => d.acked.length >= 5), { timeoutMs: 60_000 });
    const before = devices.map((d) => d.acked.length);

    // Commands issued through the replica that dies next: committed (202) before the kill, maybe not yet published.
    const issued = new Map<string, number[]>(devices.map((d) => [d.id, []]));
    const issue = async (api: ApiClient, action: "quarantine" | "release") => {
      for (const device of devices) {
        const { commands } = await api.post(`/api/v1/devices/${device.id}/${action}`, { reason: `replica kill test: ${action}` });
        issued.get(device.id)!.push((commands as { seq: number }[])[0]!.seq);
      }
    };
    const allAcked = (what: string) =>
      waitFor(what, async () => {
        for (const device of devices) {
          const { commands } = await admin.get(`/api/v1/devices/${device.id}/commands?limit=100`);
          if ((commands as { status: string }[]).some((c) => c.status !== "acked")) return false;
        }
        return true;
      }, { timeoutMs: 120_000 });
    await issue(doomed, "quarantine");
    await replicas[0]!.proc.kill("SIGKILL");
    await waitFor("events keep flowing", () => devices.every((d, i) => d.acked.length > before[i]! + 5), { timeoutMs: 60_000 });
    await allAcked("the quarantine issued through the killed replica acknowledged by every device");
    await issue(admin, "release");
    await allAcked("the release acknowledged by every device");
    await issue(admin, "quarantine");
    await allAcked("the second quarantine acknowledged by every device");
    await stop();
    await expectAckedEventsStored(admin, devices);

    // "No command lost or doubled", precisely: the plane holds exactly the commands the API issued (no request made
    // two), each recorded acknowledged once (status acked with its ack time; a redelivered ack changes nothing), and
    // each was delivered to its device at least once and no other seq was. A seq may be delivered more than once:
    // QoS 1 and the plane's retry timer re-publish until the ack is recorded; the agent executes a seq once and
    // re-sends its stored ack (HW-CMD-1), which is what this device does too.
    for (const device of devices) {
      const { commands } = await admin.get(`/api/v1/devices/${device.id}/commands?limit=100`);
      const recorded = (commands as { seq: number; status: string; ackedAt: string | null }[]).sort((a, b) => a.seq - b.seq);
      const seqs = issued.get(device.id)!;
      expect(recorded.map((c) => c.seq), device.id).toEqual(seqs);
      expect(recorded.every((c) => c.status === "acked" && c.ackedAt !== null), device.id).toBe(true);
      expect([...device.deliveries.keys()].sort((a, b) => a - b), device.id).toEqual(seqs);
    }
  }, 600_000);
});
