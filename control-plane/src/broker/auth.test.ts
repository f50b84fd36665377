import { describe, expect, it } from "vitest";
import type { ConnectIdentity } from "../service/types.js";
import { IdentityCache, MAX_IDENTITY_BATCH, type IdentityBatchFetch } from "./auth.js";

const identity = (deviceId: string, enrollment: ConnectIdentity["enrollment"] = "accepted"): ConnectIdentity => ({ deviceId, publicKey: `key-${deviceId}`, enrollment });

/** A store of identities that records every batch read it answers. */
function recordingStore(known: ConnectIdentity[]): { fetchMany: IdentityBatchFetch; batches: string[][]; fail: { next: Error | null } } {
  const byId = new Map(known.map((entry) => [entry.deviceId, entry]));
  const batches: string[][] = [];
  const fail = { next: null as Error | null };
  return {
    batches,
    fail,
    async fetchMany(deviceIds) {
      batches.push([...deviceIds]);
      if (fail.next) {
        const error = fail.next;
        fail.next = null;
        throw error;
      }
      return new Map(deviceIds.flatMap((id) => (byId.has(id) ? [[id, byId.get(id)!] as const] : [])));
    },
  };
}

describe("IdentityCache: one store read for the lookups of one turn, revocation bound unchanged (HW-AUTH-1)", () => {
  it("answers lookups of many devices made together with one batch read, each with its own identity or null", async () => {
    const store = recordingStore([identity("hw-a"), identity("hw-b", "revoked")]);
    const cache = new IdentityCache(store.fetchMany, () => 0, 10_000, 100);
    const answers = await Promise.all([cache.get("hw-a", "cached"), cache.get("hw-b", "fresh"), cache.get("hw-unknown", "cached"), cache.get("hw-a", "fresh")]);
    expect(answers).toEqual([identity("hw-a"), identity("hw-b", "revoked"), null, identity("hw-a")]);
    expect(store.batches).toEqual([["hw-a", "hw-b", "hw-unknown"]]);
  });

  it("splits a burst larger than MAX_IDENTITY_BATCH into reads of at most that many devices", async () => {
    const ids = Array.from({ length: MAX_IDENTITY_BATCH + 10 }, (_, i) => `hw-${i}`);
    const store = recordingStore(ids.map((id) => identity(id)));
    const cache = new IdentityCache(store.fetchMany, () => 0, 10_000, 2 * ids.length);
    const answers = await Promise.all(ids.map((id) => cache.get(id, "cached")));
    expect(answers.every((answer, i) => answer?.deviceId === ids[i])).toBe(true);
    expect(store.batches.map((batch) => batch.length)).toEqual([MAX_IDENTITY_BATCH, 10]);
  });

  it("serves `cached` lookups from memory within the TTL, asks again after it, after forget, and for `fresh`", async () => {
    let now = 1_000;
    const store = recordingStore([identity("hw-a")]);
    const cache = new IdentityCache(store.fetchMany, () => now, 10_000, 100);
    await cache.get("hw-a", "cached");
    now += 9_999;
    await cache.get("hw-a", "cached");
    expect(store.batches).toHaveLength(1);
    now += 1;
    await cache.get("hw-a", "cached"); // the TTL bounds how long a revocation on another path goes unseen
    cache.forget("hw-a");
    await cache.get("hw-a", "cached");
    await cache.get("hw-a", "fresh");
    expect(store.batches).toHaveLength(4);
  });

  it("asks again for `cached-if-accepted` unless the cached answer is accepted", async () => {
    const store = recordingStore([identity("hw-a"), identity("hw-p", "pending")]);
    const cache = new IdentityCache(store.fetchMany, () => 0, 10_000, 100);
    await Promise.all([cache.get("hw-a", "cached"), cache.get("hw-p", "cached")]);
    await cache.get("hw-a", "cached-if-accepted");
    await cache.get("hw-p", "cached-if-accepted");
    expect(store.batches).toEqual([["hw-a", "hw-p"], ["hw-p"]]);
  });

  it("a failed read fails every lookup of its batch and caches nothing; the next lookup asks again", async () => {
    const store = recordingStore([identity("hw-a"), identity("hw-b")]);
    const cache = new IdentityCache(store.fetchMany, () => 0, 10_000, 100);
    store.fail.next = new Error("database unreachable");
    const settled = await Promise.allSettled([cache.get("hw-a", "cached"), cache.get("hw-b", "cached")]);
    expect(settled.map((result) => result.status)).toEqual(["rejected", "rejected"]);
    expect(await cache.get("hw-a", "cached")).toEqual(identity("hw-a"));
    expect(store.batches).toHaveLength(2);
  });
});
