/**
 * HW-AUTH-2 on every database: each MQTT session takeover is a stored device event (visible in the device's events),
 * and the configured number of takeovers within the window moves the device's appraisal to `warning` with the
 * reason "session takeover" in its history; a contraindicated device is not lowered.
 */
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { deviceIdFromPublicKey, generateKeyPair, toBase64Url } from "../../../shared/crypto/index.js";
import { onEveryDatabase } from "../db/test-postgres.js";
import { createServices, type Services } from "./index.js";

const OPERATOR = { kind: "operator", id: "tok_test", role: "operator" } as const;
const PEERS = { previousPeer: "10.0.0.5", newPeer: "10.0.9.9" };

onEveryDatabase("session takeover", (backend, open) => {
  describe(`session takeover counts against the device (HW-AUTH-2, ${backend})`, () => {
    let services: Services;
    let close: () => Promise<void>;
    let clock = Date.UTC(2026, 0, 1);

    beforeAll(async () => {
      const harness = await open();
      const publisher = { publish: async () => undefined, isConnected: () => false };
      services = createServices({
        db: harness.db,
        publisher,
        commandKey: generateKeyPair(),
        logger: pino({ level: "silent" }),
        now: () => clock,
        options: { commandTtlMs: 60_000, challengeTtlMs: 30_000, staleAfterMs: 120_000, autoQuarantine: "off", sessionTakeoverThreshold: 3, sessionTakeoverWindowMs: 10_000 },
      });
      close = async () => {
        await services.close();
        await harness.close();
      };
    });
    afterAll(async () => {
      await close?.();
    });

    async function newDevice(): Promise<string> {
      const keys = generateKeyPair();
      await services.service.preauthorizeDevice(OPERATOR, { publicKey: toBase64Url(keys.publicKey), model: "S19" });
      return deviceIdFromPublicKey(keys.publicKey);
    }

    it("stores each takeover as a device event; the third within 10 s makes the device `warning`", async () => {
      const id = await newDevice();
      const takeover = services.deviceSide.onSessionTakeover!.bind(services.deviceSide);
      await takeover(id, PEERS);
      clock += 1_000;
      await takeover(id, PEERS);
      expect((await services.service.getDevice(id)).appraisal).toBe("unknown");
      clock += 1_000;
      await takeover(id, PEERS);
      const device = await services.service.getDevice(id);
      expect(device.appraisal).toBe("warning");
      const events = await services.service.listEvents(id, 10);
      expect(events.filter((e) => e.kind === "session-takeover")).toHaveLength(3);
      expect(events[0]).toMatchObject({ kind: "session-takeover", severity: "warning", detail: expect.objectContaining({ ...PEERS, takeoversInWindow: 3 }) });
      const [latest] = await services.service.history(id, 5);
      expect(latest).toMatchObject({ machine: "appraisal", to: "warning", reason: expect.stringContaining("session takeover: 3 in 10000 ms") });
    });

    it("takeovers spread wider than the window do not add up", async () => {
      const id = await newDevice();
      for (let i = 0; i < 4; i++) {
        await services.deviceSide.onSessionTakeover!(id, PEERS);
        clock += 6_000;
      }
      expect((await services.service.getDevice(id)).appraisal).toBe("unknown");
      expect((await services.service.listEvents(id, 10)).filter((e) => e.kind === "session-takeover")).toHaveLength(4);
    });
  });
});
