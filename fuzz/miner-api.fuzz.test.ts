/**
 * HW-FUZZ-1 / HW-MINER-1 on the miner API answers (agent/src/miner-api): cgminer/bmminer JSON as real miners emit it
 * (raw control bytes and non-UTF-8 bytes inside strings, `}{` between stats objects, the trailing NUL), then
 * truncated, NUL-split, oversized and deeply nested. Two layers:
 *  - parseCgminerAnswer on the bytes: refusal is MinerApiMalformedError; what parses re-parses to the same meaning;
 *  - the real MinerApiClient over TCP against a local miner that answers the fuzzed bytes (whole, in pieces, cut
 *    by a close): every call resolves or rejects with a MinerApiError subclass, within the case budget.
 */
import { createServer, type Server, type Socket } from "node:net";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MinerApiClient, MinerApiError, MinerApiMalformedError, parseCgminerAnswer, MAX_ANSWER_DEPTH } from "../agent/src/miner-api/index.js";
import { bounded, boundedAsync, deeplyNested, fuzz, fuzzAsync, mutatedBytes, sameMeaning } from "./support.js";

const NUL = Buffer.from([0]);
const status = (msg: string) => `"STATUS":[{"STATUS":"S","When":1700000000,"Code":7,"Msg":"${msg}","Description":"cgminer 4.11.1"}]`;
/** What cgminer really sends: a worker name with a raw TAB, a URL with a raw byte that is not UTF-8. */
const POOLS = Buffer.concat([
  Buffer.from(`{${status("2 Pool(s)")},"POOLS":[{"POOL":0,"URL":"stratum+tcp://pool.example.net:3333","Status":"Alive","Priority":0,"Quota":1,"Long Poll":"N","Getworks":120,"Accepted":4510,"Rejected":12,"User":"farm.rig1\tx","Stratum Active":true,"Stratum URL":"pool.example.net","Difficulty Accepted":1.2e+06},{"POOL":1,"URL":"stratum+tcp://backup.example.net:443/`),
  Buffer.from([0xff, 0x01]),
  Buffer.from(`","Status":"Alive","Priority":1,"User":"C:\\\\miner\\x","Stratum Active":false}],"id":1}`),
  NUL,
]);
const SUMMARY = Buffer.from(`{${status("Summary")},"SUMMARY":[{"Elapsed":86400,"GHS 5s":"95012.34","GHS av":95000.1,"Found Blocks":0,"Accepted":4510,"Rejected":12,"Hardware Errors":3}],"id":1}\u0000`);
const STATS = Buffer.from(`{${status("CGMiner stats")},"STATS":[{"CGMiner":"4.11.1","Miner":"16.8.1.3","Type":"Antminer S19"}{"STATS":0,"ID":"BC50","Elapsed":86400,"fan_num":4,"fan1":5400,"fan2":5520,"temp1":61,"temp2_1":75,"temp_chip1":"65.5"}],"id":1}\u0000`);
const CONFIG = Buffer.from(`{${status("1 GPU(s) - 3 ASC(s) - 0 PGA(s) - ")},"CONFIG":[{"ASC Count":3,"Pool Count":2,"Strategy":"Failover","Log Interval":5,"Device Code":"","OS":"Linux"}],"id":1}\u0000`);
const SEEDS = { pools: POOLS, summary: SUMMARY, stats: STATS, config: CONFIG } as const;
type Command = keyof typeof SEEDS;

/** The bytes the client reads: up to the first NUL (that is what MinerApiClient hands to the parser). */
const beforeNul = (b: Uint8Array) => {
  const i = Buffer.from(b).indexOf(0);
  return i >= 0 ? b.subarray(0, i) : b;
};

const answers = fc.constantFrom<Command>("pools", "summary", "stats", "config").chain((command) =>
  fc.tuple(
    fc.constant(command),
    fc.oneof(
      { weight: 6, arbitrary: mutatedBytes(SEEDS[command]) },
      { weight: 1, arbitrary: fc.integer({ min: 1, max: SEEDS[command].length }).map((n) => new Uint8Array(SEEDS[command].subarray(0, n))) }, // truncated
      { weight: 1, arbitrary: fc.integer({ min: 0, max: SEEDS[command].length - 1 }).map((n) => new Uint8Array(Buffer.concat([SEEDS[command].subarray(0, n), NUL, SEEDS[command].subarray(n)]))) }, // NUL-split
      { weight: 1, arbitrary: fc.integer({ min: 1, max: 100_000 }).map((d) => new Uint8Array(Buffer.from(`{${status("x")},"POOLS":${deeplyNested(d)}}\u0000`))) }, // deeply nested
      { weight: 1, arbitrary: fc.uint8Array({ maxLength: 300 }) },
      { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 4 }).map((v) => new Uint8Array(Buffer.from(`${JSON.stringify(v)}\u0000`))) },
    ),
  ),
);

describe("HW-FUZZ-1: cgminer answers (parseCgminerAnswer)", () => {
  it("the seeds are what real miners send and parse", () => {
    for (const [command, seed] of Object.entries(SEEDS)) expect(parseCgminerAnswer(beforeNul(seed), command)).toHaveProperty("STATUS");
  });
  it("mutated, truncated, NUL-split, nested and arbitrary answers: MinerApiMalformedError or a value that re-parses the same", () => {
    fuzz(
      "miner API answer (parseCgminerAnswer)",
      fc.property(answers, ([command, bytes]) => {
        const first = bounded(() => parseCgminerAnswer(beforeNul(bytes), command), [MinerApiMalformedError]);
        if (!first.ok) return;
        const again = parseCgminerAnswer(Buffer.from(JSON.stringify(first.value)), command);
        expect(sameMeaning(again, first.value)).toBe(true);
      }),
    );
  });
  it(`regression: nesting deeper than ${MAX_ANSWER_DEPTH} is refused before JSON.parse`, () => {
    expect(() => parseCgminerAnswer(Buffer.from(`{"STATUS":${deeplyNested(200_000)}}`), "pools")).toThrow(MinerApiMalformedError);
  });
});

/** A miner on a free port that answers the next case's bytes, whole or in pieces, or cut by a close. */
let server: Server;
let port = 0;
let next: { bytes: Uint8Array; pieces: number; close: boolean } = { bytes: new Uint8Array(), pieces: 1, close: false };
const sockets = new Set<Socket>();

beforeAll(async () => {
  server = createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => undefined);
    const { bytes, pieces, close } = next;
    socket.once("data", () => {
      const size = Math.max(1, Math.ceil(bytes.length / pieces));
      for (let at = 0; at < bytes.length; at += size) socket.write(bytes.subarray(at, at + size));
      if (close) socket.destroy();
      else socket.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  port = (server.address() as { port: number }).port;
});
afterAll(async () => {
  for (const s of sockets) s.destroy();
  await new Promise((resolve) => server.close(resolve));
});

describe("HW-FUZZ-1: the miner API client over TCP (HW-MINER-1)", () => {
  it("every call on a fuzzed answer resolves or rejects with a MinerApiError subclass; a resolved one is well-typed", async () => {
    await fuzzAsync(
      "miner API client (TCP)",
      fc.asyncProperty(answers, fc.integer({ min: 1, max: 8 }), fc.boolean(), async ([command, bytes], pieces, close) => {
        next = { bytes, pieces, close };
        // A small cap makes the oversized path reachable with small cases (the real cap is 1 MiB).
        const client = new MinerApiClient({ host: "127.0.0.1", port, timeoutMs: 5_000, maxResponseBytes: 600 });
        const outcome = await boundedAsync<unknown>(() => client[command](), [MinerApiError]);
        if (!outcome.ok) return;
        const value = outcome.value as unknown;
        if (command === "pools") {
          for (const p of value as { index: number; url: string; active: boolean }[]) {
            expect(Number.isInteger(p.index)).toBe(true);
            expect(typeof p.url).toBe("string");
            expect(typeof p.active).toBe("boolean");
          }
        } else if (command === "summary") {
          for (const n of Object.values(value as Record<string, number>)) expect(Number.isFinite(n)).toBe(true);
        } else if (command === "stats") {
          const s = value as { temperaturesC: number[]; fanRpm: number[] };
          expect(s.temperaturesC.length).toBeLessThanOrEqual(64);
          expect(s.fanRpm.length).toBeLessThanOrEqual(64);
        }
      }),
    );
  });
});
