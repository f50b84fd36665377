import { afterEach, describe, expect, it } from "vitest";
import { generateKeyPair, deviceIdFromPublicKey, type Command } from "../../../shared/index.js";
import { silentLogger } from "../log/index.js";
import { makeTestCertificates, PlaneSigner, TestBroker, tempDir, waitFor } from "../testing/index.js";
import { backoffDelayMs, MqttSession, NotConnectedError } from "./index.js";

describe("backoff", () => {
  it("grows exponentially with jitter between min and max", () => {
    expect(backoffDelayMs(0, 500, 30_000, () => 0)).toBe(500);
    expect(backoffDelayMs(3, 500, 30_000, () => 0.999)).toBeLessThanOrEqual(4000);
    expect(backoffDelayMs(3, 500, 30_000, () => 0)).toBe(2000);
    expect(backoffDelayMs(50, 500, 30_000, () => 0.999)).toBeLessThanOrEqual(30_000);
    expect(backoffDelayMs(50, 500, 30_000, () => 0)).toBe(15_000);
  });
});

describe("mqtt session against aedes", () => {
  const stops: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const stop of stops.splice(0).reverse()) await stop();
  });

  async function setup() {
    const broker = await new TestBroker().start();
    stops.push(() => broker.close());
    const key = generateKeyPair();
    const deviceId = deviceIdFromPublicKey(key.publicKey);
    broker.keys.set(deviceId, key.publicKey);
    const commands: Command[] = [];
    let connects = 0;
    const session = new MqttSession({
      url: broker.url,
      deviceId,
      privateKey: key.privateKey,
      reconnectMinMs: 20,
      reconnectMaxMs: 100,
      log: silentLogger(),
      onConnect: () => {
        connects += 1;
      },
      onChallenge: () => {},
      onCommand: (c) => {
        commands.push(c);
      },
    });
    stops.push(() => session.stop());
    return { broker, key, deviceId, session, commands, connects: () => connects };
  }

  it("connects with a fresh token each time, receives valid commands and drops invalid ones", async () => {
    const s = await setup();
    await expect(s.session.publish("hello", {})).rejects.toBeInstanceOf(NotConnectedError);
    s.session.start();
    await waitFor("connect", () => s.session.connected && s.connects() === 1);
    await s.session.publish("heartbeat", { hello: 1 }, 1);
    expect(s.broker.of("heartbeat")).toEqual([{ hello: 1 }]);

    const plane = new PlaneSigner();
    await s.broker.publishDown(s.deviceId, "command", plane.command(s.deviceId, 1, "release"));
    await s.broker.publishRaw(`asic/v1/${s.deviceId}/down/command`, Buffer.from("{garbage"));
    await s.broker.publishDown(s.deviceId, "command", { ...plane.command(s.deviceId, 2, "release"), extra: true });
    await s.broker.publishDown(s.deviceId, "command", plane.command(s.deviceId, 3, "quarantine"));
    await waitFor("two valid commands", () => s.commands.length === 2);
    expect(s.commands.map((c) => c.seq)).toEqual([1, 3]);
    await waitFor("two drops counted", () => Object.values(s.session.statistics.dropped).reduce((a, b) => a + b, 0) === 2);

    // Reconnect after the broker kicks us: a new token (the old nonce would be refused as a replay).
    const before = s.broker.connects;
    for (const client of Object.values((s.broker.broker as unknown as { clients: Record<string, { close(): void }> }).clients)) client.close();
    await waitFor("reconnect", () => s.broker.connects === before + 1 && s.session.connected && s.connects() === 2);
    expect(s.broker.refused).toBe(0);
  });

  it("keeps retrying while refused and gets in once the device is accepted", async () => {
    const s = await setup();
    s.broker.keys.delete(s.deviceId);
    s.session.start();
    await waitFor("refused twice", () => s.broker.refused >= 2);
    expect(s.session.connected).toBe(false);
    s.broker.keys.set(s.deviceId, s.key.publicKey);
    await waitFor("connected after acceptance", () => s.session.connected);
    expect(s.session.statistics.connectFailures).toBeGreaterThanOrEqual(2);
  });

  it("connects over mqtts with a private CA and refuses a server it cannot verify", async () => {
    const dir = tempDir();
    stops.push(async () => dir.cleanup());
    const certs = makeTestCertificates(dir.path);
    if (!certs) {
      console.warn("skipping mqtts test: openssl CLI not available");
      return;
    }
    const broker = await new TestBroker().start(0, { key: certs.key, cert: certs.cert });
    stops.push(() => broker.close());
    const key = generateKeyPair();
    const deviceId = deviceIdFromPublicKey(key.publicKey);
    broker.keys.set(deviceId, key.publicKey);
    const make = (ca?: string) => {
      const session = new MqttSession({
        url: broker.url, deviceId, privateKey: key.privateKey, reconnectMinMs: 20, reconnectMaxMs: 100, log: silentLogger(),
        ...(ca ? { ca } : {}), onConnect: () => {}, onChallenge: () => {}, onCommand: () => {},
      });
      stops.push(() => session.stop());
      return session;
    };
    const untrusting = make();
    untrusting.start();
    await waitFor("TLS refused without the CA", () => untrusting.statistics.connectFailures >= 2);
    expect(broker.connects).toBe(0);
    await untrusting.stop();
    const trusting = make(certs.ca);
    trusting.start();
    await waitFor("mqtts connect with the private CA", () => trusting.connected);
  });
});
