/**
 * HW-BROKER-5 end to end, as far as it can run here: two plane replicas in EMQX mode (`HASHWARD_BROKER=emqx`) on one
 * PostgreSQL, ingesting through one MQTT 5 shared subscription. EMQX cannot be installed on this machine, so the
 * broker is Mosquitto 2 (same MQTT 5 shared subscriptions), run WITHOUT authentication or ACLs: the device rules
 * are EMQX's job through the plane's hooks, contract-tested in control-plane/src/broker/emqx/hooks.test.ts, not
 * here. Mosquitto publishes no EMQX client events, so a replica knows a device as connected from its own ingest
 * (docs/emqx.md). Needs HASHWARD_TEST_DATABASE_URL.
 */
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, expect, it } from "vitest";
import { createScratchDatabase } from "../../bench/support/plane.js";
import { freePort } from "../../scripts/scale/rabbitmq-node.js";
import { ApiClient } from "../support/api.js";
import { expectAckedEventsStored, loadDevice, publishEvents, takeCommands, type LoadDevice } from "../support/event-load.js";
import { mosquittoMissing, startMosquitto, type MosquittoBroker } from "../support/mosquitto.js";
import { startControlPlane, type ControlPlane } from "../support/processes.js";
import { describeUnless } from "../support/skip.js";
import { tempDir } from "../support/temp-dir.js";
import { waitFor } from "../support/wait.js";

const DATABASE_URL = process.env.HASHWARD_TEST_DATABASE_URL;
const missing = mosquittoMissing() ?? (DATABASE_URL ? null : "HASHWARD_TEST_DATABASE_URL is not set (postgres://postgres@127.0.0.1:5432/test)");
let broker: MosquittoBroker | undefined;
let database: { url: string; drop(): Promise<void> } | undefined;
const replicas: ControlPlane[] = [];
const devices: LoadDevice[] = [];

describeUnless(missing, "EMQX mode: two replicas ingesting through one MQTT 5 shared subscription (Mosquitto 2 standing in for EMQX)", () => {
  beforeAll(async () => {
    database = await createScratchDatabase(DATABASE_URL!);
    broker = await startMosquitto();
    const secret = randomBytes(24).toString("hex");
    const dataDir = tempDir("emqx-replicas").path;
    for (let index = 0; index < 2; index += 1) {
      const replica = await startControlPlane({
        dataDir,
        tls: false,
        env: {
          DATABASE_URL: database.url,
          HASHWARD_BROKER: "emqx",
          HASHWARD_EMQX_MQTT_URL: broker.url,
          HASHWARD_BROKER_HOOK_SECRET: secret,
          HASHWARD_BROKER_HOOK_PORT: String(await freePort()),
          HASHWARD_PUBLIC_MQTT_URL: broker.url,
        },
      });
      await replica.proc.waitForLine("ingesting", (line) => line.msg === "EMQX connected; consuming device messages", 120_000);
      replicas.push(replica);
    }
  }, 600_000);

  afterAll(async () => {
    for (const device of devices) device.client.end(true);
    await Promise.all(replicas.map((replica) => replica.proc.kill("SIGTERM")));
    await broker?.stop();
    await database?.drop();
  }, 120_000);

  it("every acknowledged event is stored once, both replicas ingest, and a command reaches every device", async () => {
    const admin = new ApiClient(replicas[1]!.httpUrl, replicas[1]!.adminToken);
    const other = new ApiClient(replicas[0]!.httpUrl, replicas[0]!.adminToken || replicas[1]!.adminToken);
    for (let index = 0; index < 6; index += 1) devices.push(await loadDevice(admin, [broker!.port]));
    await waitFor("every device connected", () => devices.every((d) => d.client.connected), { timeoutMs: 60_000 });
    for (const device of devices) await takeCommands(device);
    const stop = publishEvents(devices);
    await waitFor("events flowing", () => devices.every((d) => d.acked.length >= 10), { timeoutMs: 60_000 });
    await stop();
    await expectAckedEventsStored(admin, devices);

    // The shared subscription spread the events over both replicas (each handled its share, none twice: above).
    for (const api of [admin, other]) {
      const metrics = String((await api.request("GET", "/metrics")).body);
      const handled = Number(/hashward_mqtt_messages_total\{kind="event"\} (\d+)/.exec(metrics)?.[1] ?? 0);
      expect(handled).toBeGreaterThan(0);
    }

    // A quarantine through one replica: published at QoS 1 to each device's down topic, acknowledged, recorded once.
    const issued = new Map<string, number>();
    for (const device of devices) {
      const { commands } = await other.post(`/api/v1/devices/${device.id}/quarantine`, { reason: "emqx-mode e2e" });
      issued.set(device.id, (commands as { seq: number }[])[0]!.seq);
    }
    for (const device of devices) {
      await waitFor(`${device.id}'s quarantine acknowledged`, async () => {
        const { commands } = await admin.get(`/api/v1/devices/${device.id}/commands?limit=10`);
        return (commands as { seq: number; status: string }[]).some((c) => c.seq === issued.get(device.id) && c.status === "acked");
      }, { timeoutMs: 60_000 });
      expect([...device.deliveries.keys()]).toEqual([issued.get(device.id)]);
    }
  }, 600_000);
});
