import { afterEach, describe, expect, it } from "vitest";
import { silentLogger } from "../log/index.js";
import { loadOrCreateIdentity } from "../identity/index.js";
import { StateStore } from "../state/index.js";
import { FakeEnrollmentServer, PlaneSigner, tempDir } from "../testing/index.js";
import { enroll, EnrollmentRevokedError, type EnrollDeps } from "./index.js";

describe("enrollment", () => {
  const cleanups: (() => void | Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0)) await c();
  });

  async function setup() {
    const dir = tempDir();
    cleanups.push(dir.cleanup);
    const plane = new PlaneSigner();
    const server = await new FakeEnrollmentServer(plane.publicKey).start();
    cleanups.push(() => server.close());
    const identity = loadOrCreateIdentity(`${dir.path}/device.key`);
    const state = StateStore.open(dir.path, identity.deviceId);
    const sleeps: number[] = [];
    const deps: EnrollDeps = {
      controlPlaneUrl: server.url,
      identity,
      model: "S19",
      firmwareVersion: "1.0.0",
      agentVersion: "0.1.0",
      enrollmentToken: "tok-123",
      state,
      pollMs: 50,
      log: silentLogger(),
      sleep: async (ms) => {
        sleeps.push(ms);
        return true;
      },
    };
    return { plane, server, identity, state, deps, sleeps };
  }

  it("polls while pending, then pins the command key on acceptance", async () => {
    const s = await setup();
    let calls = 0;
    s.server.decide = () => (++calls < 3 ? { status: 200, enrollment: "pending" } : { status: 200, enrollment: "accepted", mqttUrl: "mqtt://broker.example:1883" });
    const response = await enroll(s.deps);
    expect(response).toMatchObject({ enrollment: "accepted", deviceId: s.identity.deviceId });
    expect(s.server.requests).toHaveLength(3);
    expect(s.server.requests[0]).toMatchObject({ deviceId: s.identity.deviceId, enrollmentToken: "tok-123" });
    expect(s.sleeps).toEqual([50, 50]);
    expect(s.state.snapshot).toMatchObject({ commandPublicKey: s.plane.publicKey, enrollment: "accepted", mqttUrl: "mqtt://broker.example:1883" });
  });

  it("throws EnrollmentRevokedError on a 403 revoked and polls slowly while rejected", async () => {
    const s = await setup();
    let calls = 0;
    s.server.decide = () => (++calls < 2 ? { status: 403, enrollment: "rejected" } : { status: 403, enrollment: "revoked" });
    await expect(enroll(s.deps)).rejects.toBeInstanceOf(EnrollmentRevokedError);
    expect(s.sleeps).toEqual([50 * 12]);
    expect(s.state.commandPublicKey).toBeNull();
  });

  it("never replaces a pinned key: a different one is refused and polling continues", async () => {
    const s = await setup();
    const pinned = new PlaneSigner().publicKey;
    s.state.pinCommandKey(pinned);
    const controller = new AbortController();
    s.deps.sleep = async (ms) => {
      s.sleeps.push(ms);
      if (s.sleeps.length === 2) controller.abort();
      return !controller.signal.aborted;
    };
    s.deps.signal = controller.signal;
    expect(await enroll(s.deps)).toBeNull();
    expect(s.state.commandPublicKey).toBe(pinned);
    expect(s.state.snapshot.enrollment).toBe("unknown");
  });

  it("retries network errors, and gives up after one try when already accepted", async () => {
    const s = await setup();
    await s.server.close();
    expect(await enroll(s.deps, { alreadyAccepted: true })).toBeNull();
    expect(s.sleeps).toEqual([]);
  });
});
