/**
 * HW-FAULT-12 in-process: the fetcher's stall timeout and restarted image downloads, against a real HTTP server
 * that stops sending mid-body (a partition drops packets: the socket stays open, nothing arrives).
 */
import { readFileSync } from "node:fs";
import { createServer, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { BoundedFetcher, downloadRetryDelayMs } from "./fetcher.js";

const BODY = Buffer.alloc(256 * 1024, 7);

let server: Server | null = null;
const stalled: ServerResponse[] = [];
afterEach(async () => {
  for (const res of stalled.splice(0)) res.destroy();
  await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)));
  server = null;
});

/** Serves BODY at /targets/img; `behaviour(n)` decides request n (1-based): whole, stall half-way, or a status. */
async function serve(behaviour: (n: number) => "whole" | "stall" | number): Promise<string> {
  let n = 0;
  server = createServer((req, res) => {
    const what = behaviour(++n);
    if (typeof what === "number") return void res.writeHead(what).end();
    res.writeHead(200, { "content-length": String(BODY.byteLength) });
    if (what === "whole") return void res.end(BODY);
    res.write(BODY.subarray(0, BODY.byteLength / 2)); // then nothing: the rest never comes
    stalled.push(res);
  });
  await new Promise<void>((resolve) => server!.listen(0, "127.0.0.1", resolve));
  return `http://127.0.0.1:${(server!.address() as AddressInfo).port}/targets/`;
}

function fetcher(targetsUrl: string, retries: string[]) {
  return new BoundedFetcher({
    metadataTimeoutMs: 5_000,
    targetTimeoutMs: 60_000,
    targetsUrl,
    stallTimeoutMs: 300,
    downloadAttempts: 3,
    onRetry: ({ attempt, reason }) => retries.push(`${attempt}: ${reason}`),
  });
}

describe("image downloads over a partitioned network (HW-FAULT-12)", () => {
  it("a body that stops arriving is aborted after stallTimeoutMs and downloaded again from byte 0", async () => {
    const base = await serve((n) => (n === 1 ? "stall" : "whole"));
    const retries: string[] = [];
    const bytes = await fetcher(base, retries).downloadFile(`${base}img`, BODY.byteLength, async (file) => readFileSync(file));
    expect(bytes.equals(BODY)).toBe(true); // the half of attempt 1 is gone, not prepended
    expect(retries).toEqual([expect.stringMatching(/^1: .*no data for 300 ms/)]);
  });

  it("metadata is fetched again the same way (a partition during the TUF refresh)", async () => {
    const base = await serve((n) => (n === 1 ? "stall" : "whole"));
    const retries: string[] = [];
    const bytes = await fetcher(`${base}elsewhere/`, retries).downloadBytes(`${base}timestamp.json`, BODY.byteLength);
    expect(bytes.equals(BODY)).toBe(true);
    expect(retries).toHaveLength(1);
  });

  it("gives up after downloadAttempts and never hands a partial file to the verifier", async () => {
    const base = await serve(() => "stall");
    const retries: string[] = [];
    let handled = false;
    const result = fetcher(base, retries).downloadFile(`${base}img`, BODY.byteLength, async () => (handled = true));
    await expect(result).rejects.toThrow(/no data for 300 ms/);
    expect(handled).toBe(false);
    expect(retries.map((r) => r.slice(0, 2))).toEqual(["1:", "2:"]);
  });

  it("retries a 5xx, never a 4xx", async () => {
    const base5 = await serve((n) => (n === 1 ? 503 : "whole"));
    const retries: string[] = [];
    await fetcher(base5, retries).downloadFile(`${base5}img`, BODY.byteLength, async () => undefined);
    expect(retries).toHaveLength(1);
    await new Promise((resolve) => server!.close(resolve));
    const base4 = await serve(() => 404);
    const none: string[] = [];
    await expect(fetcher(base4, none).downloadFile(`${base4}img`, BODY.byteLength, async () => undefined)).rejects.toThrow(/404/);
    expect(none).toEqual([]);
  });

  it("backs off 1 s, 2 s, 4 s ... up to 30 s", () => {
    expect([1, 2, 3, 4, 5, 6, 7].map(downloadRetryDelayMs)).toEqual([1000, 2000, 4000, 8000, 16000, 30000, 30000]);
  });
});
