import { writeFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { createSimulatedBoard } from "../platform/index.js";
import { tempDir } from "../testing/index.js";
import { MinerApiClient } from "../miner-api/index.js";
import { SimMiner, writeSimulatedTelemetry } from "./index.js";

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function miner(config?: unknown): Promise<{ port: number; root: string }> {
  const dir = tempDir();
  cleanups.push(dir.cleanup);
  createSimulatedBoard(dir.path, { model: "S19" });
  if (config !== undefined) writeFileSync(join(dir.path, "config/cgminer.conf"), JSON.stringify(config));
  const sim = new SimMiner({ root: dir.path, now: () => 1_700_000_000_000 });
  const port = await sim.start();
  cleanups.push(() => sim.close());
  return { port, root: dir.path };
}

/** One request on a fresh connection, the raw answer bytes back. */
function ask(port: number, request: string | Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = connect({ host: "127.0.0.1", port }, () => socket.end(request));
    socket.on("data", (c: Buffer) => chunks.push(c));
    socket.on("end", () => resolve(Buffer.concat(chunks)));
    socket.on("error", reject);
  });
}

describe("simulated miner: cgminer's bytes", () => {
  it("answers JSON requests in cgminer's layout, NUL-terminated, escaping only \" and \\ in pool fields", async () => {
    const { port } = await miner({ pools: [{ url: "stratum+tcp://pool.example.net:3333", user: 'a"b\\c', pass: "x" }] });
    const answer = await ask(port, '{"command":"pools"}');
    expect(answer.at(-1)).toBe(0);
    const text = answer.subarray(0, -1).toString("latin1");
    expect(text).toMatch(/^\{"STATUS":\[\{"STATUS":"S","When":1700000000,"Code":7,"Msg":"1 Pool\(s\)","Description":"[^"]*"\}\],"POOLS":\[\{"POOL":0,"URL":"stratum\+tcp:\/\/pool\.example\.net:3333",/);
    expect(text).toContain('"User":"a\\"b\\\\c"');
    expect(text.endsWith(',"id":1}')).toBe(true);
  });

  it("sends raw TAB, control and non-UTF-8 bytes of an addpool user unescaped", async () => {
    const { port } = await miner();
    await ask(port, Buffer.concat([Buffer.from("addpool|stratum+tcp://pool.example.net:3333,x\ty"), Buffer.from([0x01, 0xff]), Buffer.from(",x")]));
    const answer = await ask(port, '{"command":"pools"}');
    expect(answer.includes(Buffer.concat([Buffer.from('"User":"x\ty'), Buffer.from([0x01, 0xff]), Buffer.from('"')]))).toBe(true);
    expect(() => JSON.parse(answer.subarray(0, -1).toString("utf8"))).toThrow(); // not strict JSON, as on a real miner
  });

  it("answers the plain command|parameter form, escaping , | = and \\", async () => {
    const { port } = await miner();
    const added = await ask(port, "addpool|stratum+tcp://pool.example.net:3333,farm\\,rig=1,x");
    expect(added.toString("latin1")).toMatch(/^STATUS=S,When=\d+,Code=55,Msg=Added pool 1: 'stratum\+tcp:\/\/pool\.example\.net:3333',Description=[^|]*\|\0$/);
    const pools = (await ask(port, "pools")).toString("latin1");
    expect(pools).toMatch(/^STATUS=S,When=\d+,Code=7,Msg=2 Pool\(s\),Description=[^|]*\|POOL=0,URL=stratum\+tcp:\/\/pool\.example\.net:3333,.*\|POOL=1,.*User=farm\\,rig\\=1,.*\|\0$/);
  });

  it("joins query commands under their names (JSON only) and refuses joining a privileged one", async () => {
    const { port } = await miner();
    const joined = (await ask(port, '{"command":"summary+pools"}')).toString("latin1");
    expect(JSON.parse(joined.slice(0, -1))).toMatchObject({ summary: [{ STATUS: [{ Code: 11 }], SUMMARY: [{}] }], pools: [{ STATUS: [{ Code: 7 }], POOLS: [{}] }], id: 1 });
    expect((await ask(port, '{"command":"pools+addpool","parameter":"x"}')).toString("latin1")).toContain('"STATUS":"E"');
  });

  it("a miner without pools answers STATUS E code 8 \"No pools\", which the client reads as an empty list", async () => {
    const { port } = await miner({ pools: [] });
    expect((await ask(port, '{"command":"pools"}')).toString("latin1")).toMatch(/^\{"STATUS":\[\{"STATUS":"E","When":\d+,"Code":8,"Msg":"No pools",/);
    expect(await new MinerApiClient({ host: "127.0.0.1", port }).pools()).toEqual([]);
  });

  it("reads its config as cgminer does: a scheme-less URL gets stratum+tcp://, top-level url/user pools come first", async () => {
    const { port } = await miner({ url: ["pool.example.net:3333#xnsub"], user: "farm.worker1", pass: "x", pools: [{ url: "stratum+tcp://b.example.net:3333", user: "farm.worker2", pass: "x" }] });
    const answer = JSON.parse((await ask(port, '{"command":"pools"}')).toString("utf8").slice(0, -1)) as { POOLS: { URL: string; User: string }[] };
    expect(answer.POOLS.map((p) => [p.URL, p.User])).toEqual([
      ["stratum+tcp://pool.example.net:3333", "farm.worker1"],
      ["stratum+tcp://b.example.net:3333", "farm.worker2"],
    ]);
  });
});

describe("simulated miner: staged farm-alert attacks (HW-ALERT-1)", () => {
  it("reports a kill switch, stopped fans (read at 0 rpm through fan_num) with climbing temperatures, and a time-sliced dev fee", async () => {
    const dir = tempDir();
    cleanups.push(dir.cleanup);
    createSimulatedBoard(dir.path, { model: "S19" });
    let now = 1_700_000_000_000;
    const sim = new SimMiner({ root: dir.path, now: () => now });
    const port = await sim.start();
    cleanups.push(() => sim.close());
    const client = new MinerApiClient({ host: "127.0.0.1", port });
    expect(await client.stats()).toEqual({ temperaturesC: [60, 61, 62, 75, 76, 77], fanRpm: [5400, 5460, 5520, 5580] });

    writeSimulatedTelemetry(dir.path, { hashrateGhs: 0, fanRpm: [0, 0, 5520, 5580], temperatureClimbCPerMin: 6 });
    now = Date.now() + 60_000; // a minute after the file was written
    expect((await client.summary()).hashrateGhs).toBe(0);
    const stats = await client.stats();
    expect(stats.fanRpm).toEqual([0, 0, 5520, 5580]);
    expect(stats.temperaturesC[0]).toBeGreaterThanOrEqual(65.9);

    const fee = "stratum+tcp://devfee.example.org:443";
    writeSimulatedTelemetry(dir.path, { devFee: { url: fee, periodMs: 10_000, sliceMs: 2_000 } });
    now = 1_700_000_000_000; // a multiple of the period: inside the slice
    expect((await client.pools()).find((p) => p.active)?.url).toBe(fee);
    now += 5_000;
    expect((await client.pools()).find((p) => p.active)?.url).toBe("stratum+tcp://pool.example.net:3333");
    writeSimulatedTelemetry(dir.path, {});
    expect((await client.summary()).hashrateGhs).toBeCloseTo(13512.34);
  });
});
