import { readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ConfigError, generateKeyPair, ValidationError, type Ack } from "../../../shared/index.js";
import { CommandHandler } from "../commands/index.js";
import { silentLogger } from "../log/index.js";
import type { OutboxMessage } from "../outbox/index.js";
import { RecordingPlatform } from "../platform/testing/index.js";
import { StateStore } from "../state/index.js";
import { PlaneSigner, tempDirPool } from "../testing/index.js";
import { executeSetPolicy, PolicyStore, StalePolicyError, type GuardPolicy } from "./index.js";

const policy = (version: number, extra: Partial<GuardPolicy> = {}): GuardPolicy => ({
  version,
  pools: { allowedUrls: ["stratum+tcp://pool.example.net:3333"], workerPatterns: ["farm\\..+"] },
  network: { allowedHosts: ["ntp.example.net"] },
  indicators: [{ id: "preload", kind: "file-present", path: "/etc/ld.so.preload", severity: "critical", description: "Antbuild" }],
  ...extra,
});

const dirs = tempDirPool();
afterEach(dirs.cleanup);
const dir = () => dirs.make();

describe("PolicyStore", () => {
  it("persists atomically (0600), survives reopen, refuses a version not above the stored one (HW-POL-1)", () => {
    const path = dir();
    const store = PolicyStore.open(path);
    expect(store.policy).toBeNull();
    store.apply(policy(3), 1);
    expect(statSync(join(path, "policy.json")).mode & 0o777).toBe(0o600);
    const reopened = PolicyStore.open(path);
    expect(reopened.version).toBe(3);
    expect(() => reopened.apply(policy(3), 2)).toThrow(StalePolicyError);
    expect(() => reopened.apply(policy(2), 2)).toThrow(StalePolicyError);
    reopened.apply(policy(4), 2);
    expect(PolicyStore.open(path).version).toBe(4);
  });

  it("rejects invalid policies naming the field, and a corrupt file at start", () => {
    const path = dir();
    const store = PolicyStore.open(path);
    const bad = (p: unknown) => {
      try {
        store.apply(p, 1);
      } catch (error) {
        expect(error).toBeInstanceOf(ValidationError);
        return (error as ValidationError).field;
      }
      throw new Error("expected a ValidationError");
    };
    expect(bad({ ...policy(1), pools: { allowedUrls: [], workerPatterns: ["(unclosed"] } })).toBe("policy.pools.workerPatterns.0");
    expect(bad({ ...policy(1), indicators: [{ id: "x", kind: "rootkit", severity: "critical", description: "" }] })).toBe("policy.indicators.0.kind");
    expect(bad(undefined)).toBe("policy"); // the policy itself, not one of its fields
    expect(store.version).toBe(0);
    writeFileSync(join(path, "policy.json"), "{not json");
    expect(() => PolicyStore.open(path)).toThrow(ConfigError);
  });

  it("executeSetPolicy: done, stale, invalid and no-guards outcomes; onApplied only on success", () => {
    const store = PolicyStore.open(dir());
    const applied: number[] = [];
    const target = { store, now: () => 5, onApplied: (p: GuardPolicy) => applied.push(p.version) };
    expect(executeSetPolicy({ policy: policy(2) }, target)).toEqual({ status: "done" });
    expect(executeSetPolicy({ policy: policy(1) }, target)).toEqual({ status: "failed", reason: "stale policy version: policy version 1 is not above the stored 2" });
    expect(executeSetPolicy({ policy: { version: 9 } }, target).status).toBe("failed");
    expect(executeSetPolicy({ policy: policy(3) }, undefined)).toEqual({ status: "failed", reason: "guards are disabled on this device" });
    expect(applied).toEqual([2]);
  });

  it("through the CommandHandler: a signed set-policy is acked done, an older version failed, nothing else changes", async () => {
    const path = dir();
    const plane = new PlaneSigner();
    const deviceId = "hw-0123456789abcdef01234567";
    const state = StateStore.open(path, deviceId);
    state.pinCommandKey(plane.publicKey);
    const store = PolicyStore.open(path);
    const sent: OutboxMessage[] = [];
    const reruns: number[] = [];
    const handler = new CommandHandler({
      deviceId,
      privateKey: generateKeyPair().privateKey,
      state,
      platform: new RecordingPlatform(),
      controlPlaneHosts: () => [],
      send: (e) => sent.push(e),
      attestNow: async () => undefined,
      now: () => Date.now(),
      log: silentLogger(),
      policy: { store, now: () => Date.now(), onApplied: (p) => reruns.push(p.version) },
    });
    const first = await handler.handle(plane.command(deviceId, 1, "set-policy", { params: { policy: policy(5) } }));
    expect(first).toMatchObject({ result: "executed", ack: { status: "done", action: "set-policy", containment: "none" } });
    const stale = await handler.handle(plane.command(deviceId, 2, "set-policy", { params: { policy: policy(4) } }));
    expect(stale).toMatchObject({ result: "executed", ack: { status: "failed" } });
    expect((stale as { ack: Ack }).ack.reason).toMatch(/^stale policy version/);
    expect(store.version).toBe(5);
    expect(reruns).toEqual([5]);
    const forged = await handler.handle(plane.command(deviceId, 3, "set-policy", { params: { policy: policy(9) }, key: generateKeyPair() }));
    expect(forged.result).toBe("rejected");
    expect(JSON.parse(readFileSync(join(path, "policy.json"), "utf8")).policy.version).toBe(5);
  });
});
