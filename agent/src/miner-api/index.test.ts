import { writeFileSync } from "node:fs";
import { createServer, type AddressInfo, type Server } from "node:net";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { createSimulatedBoard } from "../platform/index.js";
import { SimMiner } from "../sim-miner/index.js";
import { tempDir } from "../testing/index.js";
import {
  MinerApiClient,
  MinerApiCommandError,
  MinerApiMalformedError,
  MinerApiOversizedError,
  MinerApiTimeoutError,
  MinerApiUnreachableError,
} from "./index.js";

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function simMiner(): Promise<{ miner: SimMiner; client: MinerApiClient; root: string }> {
  const dir = tempDir();
  cleanups.push(dir.cleanup);
  createSimulatedBoard(dir.path, { model: "S19" });
  const miner = new SimMiner({ root: dir.path });
  const port = await miner.start();
  cleanups.push(() => miner.close());
  return { miner, client: new MinerApiClient({ host: "127.0.0.1", port, timeoutMs: 1000 }), root: dir.path };
}

/** A raw server that answers every connection with `answer` (or nothing). */
async function rawServer(answer: string | null): Promise<number> {
  const server: Server = createServer((socket) => {
    socket.on("error", () => undefined);
    socket.once("data", () => (answer === null ? undefined : socket.end(answer)));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
  return (server.address() as AddressInfo).port;
}

describe("miner API client", () => {
  it("reads summary, stats, pools, devs and config in the real protocol", async () => {
    const { client } = await simMiner();
    expect(await client.summary()).toMatchObject({ hashrateGhs: 13512.34, hashrateAvgGhs: 13500.12, rejected: 1 });
    expect(await client.stats()).toEqual({ temperaturesC: [60, 61, 62, 75, 76, 77], fanRpm: [5400, 5460, 5520, 5580] });
    expect(await client.pools()).toEqual([{ index: 0, url: "stratum+tcp://pool.example.net:3333", user: "farm.worker1", status: "Alive", priority: 0, active: true }]);
    expect(await client.devs()).toHaveLength(3);
    expect(await client.config()).toEqual({ poolCount: 1, strategy: "Failover" });
  });

  it("addpool, switchpool and removepool change the live pools; removing the active pool is refused", async () => {
    const { client } = await simMiner();
    await client.addpool("stratum+tcp://evil.example:3333", "thief,1", "x");
    await client.switchpool(1);
    let pools = await client.pools();
    expect(pools.find((p) => p.active)).toMatchObject({ index: 1, url: "stratum+tcp://evil.example:3333", user: "thief,1" });
    await expect(client.removepool(1)).rejects.toBeInstanceOf(MinerApiCommandError);
    await client.switchpool(0);
    await client.removepool(1);
    pools = await client.pools();
    expect(pools.map((p) => p.url)).toEqual(["stratum+tcp://pool.example.net:3333"]);
  });

  it("turns malformed, oversized, silent and missing miners into MinerApiError subclasses", async () => {
    const { miner, client, root } = await simMiner();
    miner.fault = "malformed";
    await expect(client.pools()).rejects.toBeInstanceOf(MinerApiMalformedError);
    miner.fault = "wrong-shape";
    await expect(client.pools()).rejects.toBeInstanceOf(MinerApiMalformedError);
    await expect(client.summary()).rejects.toBeInstanceOf(MinerApiMalformedError);
    miner.fault = "oversized";
    await expect(client.pools()).rejects.toBeInstanceOf(MinerApiOversizedError);
    miner.fault = "hang";
    await expect(new MinerApiClient({ host: "127.0.0.1", port: client.port, timeoutMs: 200 }).summary()).rejects.toBeInstanceOf(MinerApiTimeoutError);
    miner.fault = null;
    writeFileSync(join(root, "run/miner.state"), "stopped\n");
    await expect(client.summary()).rejects.toBeInstanceOf(MinerApiUnreachableError);
    const closed = await rawServer(null);
    await cleanups.pop()!(); // close it: nothing listens there now
    await expect(new MinerApiClient({ host: "127.0.0.1", port: closed, timeoutMs: 500 }).summary()).rejects.toBeInstanceOf(MinerApiUnreachableError);
  });

  it("reads summary, stats and pools in one joined request, exactly as the separate calls read them", async () => {
    const { miner, client } = await simMiner();
    const separate = { summary: await client.summary(), stats: await client.stats(), pools: await client.pools() };
    const before = miner.log.length;
    expect(await client.summaryStatsPools()).toEqual(separate);
    expect(miner.log.slice(before)).toEqual(["summary+stats+pools"]);
  });

  it("a miner that refuses joins (cgminer before joins: Invalid command) is asked with separate calls, then and from then on", async () => {
    const asked: string[] = [];
    const answers: Record<string, string> = {
      summary: '{"STATUS":[{"STATUS":"S","Code":11}],"SUMMARY":[{"GHS 5s":"100.5","Accepted":3}],"id":1}',
      stats: '{"STATUS":[{"STATUS":"S","Code":70}],"STATS":[{"temp1":58,"fan1":3600}],"id":1}',
      pools: '{"STATUS":[{"STATUS":"S","Code":7}],"POOLS":[{"POOL":0,"URL":"stratum+tcp://pool.example.net:3333","Status":"Alive","Priority":0,"User":"w","Stratum Active":true}],"id":1}',
    };
    const server = createServer((socket) => {
      socket.on("error", () => undefined);
      socket.once("data", (data) => {
        const command = (JSON.parse(data.toString()) as { command: string }).command;
        asked.push(command);
        socket.end(`${answers[command] ?? '{"STATUS":[{"STATUS":"E","Code":14,"Msg":"Invalid command"}],"id":1}'}\0`);
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
    const client = new MinerApiClient({ host: "127.0.0.1", port: (server.address() as AddressInfo).port });
    const expected = {
      summary: { hashrateGhs: 100.5, accepted: 3 },
      stats: { temperaturesC: [58], fanRpm: [3600] },
      pools: [{ index: 0, url: "stratum+tcp://pool.example.net:3333", user: "w", status: "Alive", priority: 0, active: true }],
    };
    expect(await client.summaryStatsPools()).toEqual(expected);
    expect(await client.summaryStatsPools()).toEqual(expected);
    expect(asked).toEqual(["summary+stats+pools", "summary", "stats", "pools", "summary", "stats", "pools"]);
  });

  it("in a joined answer a command's own refusal fails that command alone; a pools refusal \"No pools\" is an empty list", async () => {
    const port = await rawServer(
      '{"summary":[{"STATUS":[{"STATUS":"S","Code":11}],"SUMMARY":[{"GHS 5s":1}],"id":1}],"stats":[{"STATUS":[{"STATUS":"E","Code":45,"Msg":"Access denied"}],"id":1}],"pools":[{"STATUS":[{"STATUS":"E","Code":8,"Msg":"No pools"}],"id":1}],"id":1}\0',
    );
    const readings = await new MinerApiClient({ host: "127.0.0.1", port }).summaryStatsPools();
    expect(readings.summary).toEqual({ hashrateGhs: 1 });
    expect(readings.stats).toBeInstanceOf(MinerApiCommandError);
    expect(readings.pools).toEqual([]);
  });

  it("joined readings of a misbehaving miner fail as the separate calls fail (malformed, wrong shape, oversized, silent, stopped)", async () => {
    const { miner, client, root } = await simMiner();
    for (const [fault, error] of [["malformed", MinerApiMalformedError], ["wrong-shape", MinerApiMalformedError], ["oversized", MinerApiOversizedError]] as const) {
      miner.fault = fault;
      const readings = await client.summaryStatsPools();
      expect(readings.summary).toBeInstanceOf(error);
      expect(readings.pools).toBeInstanceOf(error);
    }
    miner.fault = "hang";
    const hung = await new MinerApiClient({ host: "127.0.0.1", port: client.port, timeoutMs: 200 }).summaryStatsPools();
    expect([hung.summary, hung.stats, hung.pools].every((r) => r instanceof MinerApiTimeoutError)).toBe(true);
    miner.fault = null;
    writeFileSync(join(root, "run/miner.state"), "stopped\n");
    const stopped = await client.summaryStatsPools();
    expect([stopped.summary, stopped.stats, stopped.pools].every((r) => r instanceof MinerApiUnreachableError)).toBe(true);
    writeFileSync(join(root, "run/miner.state"), "running\n");
    const before = miner.log.length;
    expect((await client.summaryStatsPools()).pools).toHaveLength(1);
    expect(miner.log.slice(before)).toEqual(["summary+stats+pools"]); // faults of the answer never stop joining
  });

  it("accepts bmminer's string numbers, missing commas between stats objects and a NUL terminator", async () => {
    const port = await rawServer('{"STATUS":[{"STATUS":"S","Code":70}],"STATS":[{"Type":"S9"}{"fan1":"3600","temp1":"58","fan2":0}],"id":1}\0garbage');
    expect(await new MinerApiClient({ host: "127.0.0.1", port }).stats()).toEqual({ temperaturesC: [58], fanRpm: [3600] });
  });

  it("reads cgminer's raw bytes over TCP (a TAB and a 0xFF in a user), and refuses an answer cut by a NUL mid-way", async () => {
    const head = '{"STATUS":[{"STATUS":"S","When":1,"Code":7,"Msg":"1 Pool(s)","Description":"cgminer 4.11.1"}],"POOLS":[{"POOL":0,"URL":"stratum+tcp://pool.example.net:3333","Status":"Alive","Priority":0,"User":"';
    const tail = '","Stratum Active":true}],"id":1}';
    const rawAnswer = Buffer.concat([Buffer.from(`${head}x\ty`), Buffer.from([0xff]), Buffer.from(`${tail}\0`)]);
    const server = createServer((socket) => {
      socket.on("error", () => undefined);
      socket.once("data", () => socket.end(rawAnswer));
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
    const pools = await new MinerApiClient({ host: "127.0.0.1", port: (server.address() as AddressInfo).port }).pools();
    expect(pools).toEqual([{ index: 0, url: "stratum+tcp://pool.example.net:3333", user: "x\ty\uFFFD", status: "Alive", priority: 0, active: true }]);
    const cut = await rawServer(`${head}x\0y${tail}\0`);
    await expect(new MinerApiClient({ host: "127.0.0.1", port: cut }).pools()).rejects.toBeInstanceOf(MinerApiMalformedError);
  });

  it("a JSON answer without STATUS, or a non-object, is malformed", async () => {
    const noStatus = await rawServer('{"POOLS":[]}\0');
    await expect(new MinerApiClient({ host: "127.0.0.1", port: noStatus }).pools()).rejects.toBeInstanceOf(MinerApiMalformedError);
    const array = await rawServer("[1,2]");
    await expect(new MinerApiClient({ host: "127.0.0.1", port: array }).pools()).rejects.toBeInstanceOf(MinerApiMalformedError);
  });
});
