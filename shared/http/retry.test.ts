import { describe, expect, it } from "vitest";
import { fetchRetryingReset, isConnectionReset } from "./retry.js";

/** What undici's fetch throws when the server closed the pooled connection under the request. */
const undiciReset = () => new TypeError("fetch failed", { cause: Object.assign(new Error("other side closed"), { code: "UND_ERR_SOCKET" }) });
/** What Bun's fetch throws in the same case. */
const bunReset = () => Object.assign(new Error("The socket connection was closed unexpectedly."), { code: "ECONNRESET" });

function flaky(failures: Array<() => unknown>) {
  const calls: RequestInit[] = [];
  const fetchFn = async (_url: string, init: RequestInit): Promise<Response> => {
    calls.push(init);
    const failure = failures.shift();
    if (failure) throw failure();
    return new Response("ok");
  };
  return { calls, fetchFn };
}

describe("fetchRetryingReset (HW-HTTP-4)", () => {
  it.each([
    ["undici", undiciReset],
    ["bun", bunReset],
  ])("retries an idempotent GET once after a %s connection reset", async (_name, reset) => {
    const { calls, fetchFn } = flaky([reset]);
    const response = await fetchRetryingReset(fetchFn, "http://plane/api/v1/devices");
    expect(await response.text()).toBe("ok");
    expect(calls).toHaveLength(2);
  });

  it("retries a POST only when the caller says the route is idempotent (enrollment)", async () => {
    const plain = flaky([undiciReset]);
    await expect(fetchRetryingReset(plain.fetchFn, "http://plane/api/v1/quarantine", { method: "POST", body: "{}" })).rejects.toThrow("fetch failed");
    expect(plain.calls).toHaveLength(1);
    const enroll = flaky([undiciReset]);
    await fetchRetryingReset(enroll.fetchFn, "http://plane/api/v1/enroll", { method: "POST", body: "{}" }, { idempotent: true });
    expect(enroll.calls).toHaveLength(2);
  });

  it("retries at most once, and never other failures or one-shot stream bodies", async () => {
    const twice = flaky([undiciReset, undiciReset]);
    await expect(fetchRetryingReset(twice.fetchFn, "http://plane/x")).rejects.toThrow("fetch failed");
    expect(twice.calls).toHaveLength(2);
    const refused = flaky([() => new TypeError("fetch failed", { cause: Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" }) })]);
    await expect(fetchRetryingReset(refused.fetchFn, "http://plane/x")).rejects.toThrow("fetch failed");
    expect(refused.calls).toHaveLength(1);
    const stream = flaky([undiciReset]);
    await expect(fetchRetryingReset(stream.fetchFn, "http://plane/x", { method: "PUT", body: new ReadableStream() })).rejects.toThrow("fetch failed");
    expect(stream.calls).toHaveLength(1);
  });

  it("recognises resets by code or message, through causes", () => {
    expect(isConnectionReset(undiciReset())).toBe(true);
    expect(isConnectionReset(bunReset())).toBe(true);
    expect(isConnectionReset(new Error("socket hang up"))).toBe(true);
    expect(isConnectionReset(new Error("HTTP 500"))).toBe(false);
    expect(isConnectionReset(undefined)).toBe(false);
  });
});
