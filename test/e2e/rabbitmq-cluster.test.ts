/**
 * A three-node RabbitMQ cluster on this machine (distinct ports, one cookie, an epmd of its own; the machine's
 * RabbitMQ is never touched) and a plane told all three AMQP URLs. Devices (mqtt.js clients holding real device
 * keys, a fresh connect token per connection, the three MQTT listeners as their server list) publish signed events
 * while one node is SIGKILLed: they reconnect to the others, and every event RabbitMQ acknowledged (PUBACK) is
 * stored once (the ingest queue is a quorum queue replicated on the three nodes). Plaintext MQTT: the nodes start
 * before the plane, so they cannot serve its certificate (TLS is covered by the single-node suites).
 */
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import type { MqttClient } from "mqtt";
import { afterAll, beforeAll, expect, it } from "vitest";
import { MAX_PAYLOAD_BYTES } from "../../shared/protocol/index.js";
import { expectAckedEventsStored, loadDevice, publishEvents, type LoadDevice } from "../support/event-load.js";
import { freePort, freePorts, newCookie, RabbitNode, rabbitmqMissing } from "../../scripts/scale/rabbitmq-node.js";
import { rabbitPlaneEnv } from "../support/rabbitmq.js";
import { ApiClient } from "../support/api.js";
import { startControlPlane, type ControlPlane } from "../support/processes.js";
import { tempDir } from "../support/temp-dir.js";
import { describeUnless } from "../support/skip.js";
import { waitFor } from "../support/wait.js";

const DEVICES = 12;
const nodes: RabbitNode[] = [];
let plane: ControlPlane;
let admin: ApiClient;
const clients: MqttClient[] = [];

describeUnless(rabbitmqMissing(), "a three-node RabbitMQ cluster with one node killed under load", () => {
  beforeAll(async () => {
    const cookie = newCookie();
    const planePassword = randomBytes(16).toString("hex");
    const secret = randomBytes(24).toString("hex");
    const hookPort = await freePort();
    const specs = [];
    for (let index = 0; index < 3; index += 1) specs.push(await freePorts());
    const epmd = specs[0]!.epmd;
    const names = specs.map((ports) => `hwc${ports.amqp}@localhost`);
    const root = tempDir("rabbitmq-cluster").path;
    for (const [index, ports] of specs.entries()) {
      nodes.push(
        new RabbitNode({
          dir: join(root, `node${index + 1}`),
          name: names[index]!.split("@")[0]!,
          ports: { ...ports, epmd },
          planeUser: "hashward",
          planePassword,
          hookBaseUrl: `http://127.0.0.1:${hookPort}/${secret}`,
          tls: null,
          maxMessageBytes: MAX_PAYLOAD_BYTES + 1024,
          cookie,
          clusterNodes: names,
        }),
      );
    }
    // The first node forms the cluster; the others join it at their first boot.
    for (const node of nodes) await node.start();
    await waitFor("three running nodes", () => (JSON.parse(nodes[0]!.ctl(["cluster_status", "--formatter", "json"])) as { running_nodes: string[] }).running_nodes.length === 3, { timeoutMs: 120_000, intervalMs: 1000 });
    plane = await startControlPlane({
      tls: false,
      env: rabbitPlaneEnv(nodes, hookPort, secret),
    });
    await plane.proc.waitForLine("rabbitmq connected", (line) => line.msg === "rabbitmq connected; consuming device messages", 120_000);
    expect(JSON.stringify(nodes[0]!.ctl(["list_queues", "name", "type", "members", "--formatter", "json"]))).toMatch(/hashward\.ingest.*quorum/);
    admin = new ApiClient(plane.httpUrl, plane.adminToken);
  }, 600_000);

  afterAll(async () => {
    for (const client of clients) client.end(true);
    await plane?.proc.kill("SIGKILL");
    for (const node of nodes) await node.kill();
    await nodes[1]?.stopEpmd();
  }, 120_000);

  it("devices on a killed node reconnect to the others and every acknowledged event is stored once", async () => {
    const devices: LoadDevice[] = [];
    // Each device starts on "its" node and fails over to the next ones.
    for (let index = 0; index < DEVICES; index += 1) devices.push(await loadDevice(admin, [0, 1, 2].map((k) => nodes[(index + k) % 3]!.spec.ports.mqtt)));
    clients.push(...devices.map((d) => d.client));
    await waitFor("every device connected", () => devices.every((d) => d.client.connected), { timeoutMs: 120_000 });
    const stop = publishEvents(devices);
    // A bound, not a timing claim: under CI-like load on two shared cores this wait crossed 60 s (the whole test takes 51 s alone).
    await waitFor("events flowing", () => devices.every((d) => d.acked.length >= 3), { timeoutMs: 180_000 });

    // The first node: the plane's AMQP connection is there too (the first URL), so the plane fails over as well.
    const victim = nodes[0]!;
    const onVictim = devices.filter((_, index) => index % 3 === 0);
    const ackedBeforeKill = onVictim.map((d) => d.acked.length);
    await victim.kill();
    // The victim's devices come back through the other nodes and keep publishing.
    await waitFor("the killed node's devices publish again", () => onVictim.every((d, i) => d.client.connected && d.acked.length > ackedBeforeKill[i]! + 3), { timeoutMs: 120_000 });
    await stop();
    await expectAckedEventsStored(admin, devices);
  }, 600_000);
});
