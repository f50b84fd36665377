/**
 * The agent tests' stand-in plane (agent/src/testing: FakeEnrollmentServer and TestBroker, wired by
 * startStandInPlane) and the real plane (in one process: HTTP API, broker, PGlite) run one contract: what the
 * agent relies on when it enrolls (it pins the command key, HW-PIN-1) and connects (HW-AUTH-1). An accepted
 * device's signed request is answered `accepted` with the plane's command key; a request whose signature does not
 * match is refused; a fresh connect token of an accepted device connects; the same token again, or one signed by
 * another key, is refused.
 */
import mqtt, { type MqttClient } from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { silentLogger } from "../../agent/src/log/index.js";
import { loadOrCreateIdentity, type DeviceIdentity } from "../../agent/src/identity/index.js";
import { postEnrollment, type EnrollDeps } from "../../agent/src/enroll/index.js";
import { StateStore } from "../../agent/src/state/index.js";
import { startStandInPlane } from "../../agent/src/testing/index.js";
import { startTestPlane } from "../../control-plane/src/plane/testing/index.js";
import { createConnectToken } from "../../shared/auth/connect-token.js";
import { generateKeyPair } from "../../shared/crypto/index.js";
import { ApiClient, planeFetch } from "../support/api.js";
import { tempDirPool } from "../support/temp-dir.js";

/** A running plane as the contract sees it: its URLs, the CA an agent pins (null: plain), `accept`, `close`. */
interface PlaneUnderContract {
  httpUrl: string;
  mqttUrl: string;
  caPem: string | null;
  /** Makes the device with this identity one the plane accepts (enrollment answers `accepted`). */
  accept(identity: DeviceIdentity): Promise<void>;
  close(): Promise<void>;
}

function standInPlaneContract(name: string, start: () => Promise<PlaneUnderContract>): void {
  describe(`stand-in plane contract: ${name}`, () => {
    const dirs = tempDirPool("plane-contract");
    const clients: MqttClient[] = [];
    let plane: PlaneUnderContract;

    beforeAll(async () => {
      plane = await start();
    }, 180_000);

    afterAll(async () => {
      for (const client of clients) client.end(true);
      await plane?.close();
      dirs.cleanup();
    });

    /** An agent's enrollment dependencies for a fresh identity (its state in a fresh temp dir). */
    function agentDeps(): EnrollDeps {
      const dir = dirs.make();
      const identity = loadOrCreateIdentity(`${dir}/device.key`);
      return {
        controlPlaneUrl: plane.httpUrl,
        identity,
        model: "S19",
        firmwareVersion: "1.0.0",
        agentVersion: "0.1.0",
        state: StateStore.open(dir, identity.deviceId),
        pollMs: 50,
        log: silentLogger(),
        fetch: planeFetch,
      };
    }

    /** Connects as `deviceId` with `password`; resolves whether the broker let it in. */
    function connects(deviceId: string, password: string): Promise<boolean> {
      return new Promise((resolve) => {
        const client = mqtt.connect(plane.mqttUrl, {
          protocolVersion: 4,
          clientId: deviceId,
          username: deviceId,
          password,
          reconnectPeriod: 0,
          connectTimeout: 30_000,
          ...(plane.caPem ? { ca: plane.caPem } : {}),
        });
        clients.push(client);
        client.once("connect", () => resolve(true));
        client.once("error", () => resolve(false));
        client.once("close", () => resolve(false));
      });
    }

    it("answers an accepted device's signed enrollment `accepted`, for that device, with the plane's command key", async () => {
      const deps = agentDeps();
      await plane.accept(deps.identity);
      const attempt = await postEnrollment(deps);
      expect(attempt).toMatchObject({ outcome: "response", status: 200, response: { deviceId: deps.identity.deviceId, enrollment: "accepted" } });
      if (attempt.outcome === "response") expect(attempt.response.commandPublicKey.length).toBeGreaterThan(0);
    });

    it("refuses an enrollment request whose signature does not match its body", async () => {
      const deps = agentDeps();
      await plane.accept(deps.identity);
      const tampered: typeof fetch = (input, init) => planeFetch(input, { ...init, body: String(init?.body).replace('"model":"S19"', '"model":"S21"') });
      const attempt = await postEnrollment({ ...deps, fetch: tampered });
      expect(attempt).toMatchObject({ outcome: "error", reason: expect.stringMatching(/^HTTP 4\d\d/) });
    });

    it("lets an enrolled device in with a fresh connect token, and refuses that token again and another key's token", async () => {
      const deps = agentDeps();
      await plane.accept(deps.identity);
      expect(await postEnrollment(deps)).toMatchObject({ outcome: "response", status: 200 });
      const { deviceId, keyPair } = deps.identity;
      const token = createConnectToken(deviceId, keyPair.privateKey, Date.now());
      expect(await connects(deviceId, token)).toBe(true);
      expect(await connects(deviceId, token)).toBe(false);
      expect(await connects(deviceId, createConnectToken(deviceId, generateKeyPair().privateKey, Date.now()))).toBe(false);
    }, 60_000);
  });
}

standInPlaneContract("agent tests' stand-in (FakeEnrollmentServer, TestBroker)", async () => {
  const cleanups: (() => void | Promise<void>)[] = [];
  const { broker, enrollment } = await startStandInPlane(cleanups);
  return {
    httpUrl: enrollment.url,
    mqttUrl: broker.url,
    caPem: null,
    accept: async () => {}, // the stand-in accepts every device by default
    close: async () => {
      for (const cleanup of cleanups.reverse()) await cleanup();
    },
  };
});

standInPlaneContract("the real plane (in one process)", async () => {
  const running = await startTestPlane("plane-contract");
  const admin = new ApiClient(running.plane.httpUrl, running.plane.adminToken);
  return {
    httpUrl: running.plane.httpUrl,
    mqttUrl: running.plane.mqttUrl,
    caPem: running.caPem,
    accept: async (identity) => void (await admin.post("/api/v1/devices/preauthorize", { publicKey: identity.publicKey, model: "S19" })),
    close: () => running.close(),
  };
});
