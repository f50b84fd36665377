/**
 * Client for the cgminer/bmminer JSON API (TCP 4028): one request per connection,
 * `{"command":"summary"}` (plus `"parameter"`), the answer is JSON terminated by a NUL byte or by the close,
 * read as cgminer writes it (raw control and non-UTF-8 bytes in strings, `}{` in arrays: answer.ts).
 *
 * The miner is not trusted: every answer is bounded in time (`timeoutMs`, whole exchange) and size
 * (`maxResponseBytes`), parsed strictly for the fields we use, and every failure is a MinerApiError subclass
 * (callers branch on the class; HW-MINER-1). Nothing here throws anything else or crashes the agent.
 */
import { connect } from "node:net";
import { z } from "zod";
import { describeZodError } from "../../../shared/errors/index.js";
import { parseCgminerAnswer } from "./answer.js";
import { MinerApiCommandError, MinerApiError, MinerApiMalformedError, MinerApiOversizedError, MinerApiTimeoutError, MinerApiUnreachableError } from "./errors.js";

export { MinerApiError, MinerApiUnreachableError, MinerApiTimeoutError, MinerApiOversizedError, MinerApiMalformedError, MinerApiCommandError } from "./errors.js";
export { parseCgminerAnswer, MAX_ANSWER_DEPTH } from "./answer.js";

export interface MinerApiOptions {
  host: string;
  port: number;
  /** Whole exchange: connect, send, read to NUL/close. */
  timeoutMs?: number;
  maxResponseBytes?: number;
}

export const MINER_API_DEFAULTS = { host: "127.0.0.1", port: 4028, timeoutMs: 3_000, maxResponseBytes: 1024 * 1024 } as const;

/** bmminer prints many numbers as strings ("GHS 5s": "13512.34"). */
const num = z.union([z.number(), z.string().trim().regex(/^-?\d+(\.\d+)?([eE][-+]?\d+)?$/).transform(Number)]);
const int = num.pipe(z.number().int());

const statusSchema = z.array(
  z.looseObject({ STATUS: z.enum(["S", "I", "W", "E", "F"]), Code: z.number().int().optional(), Msg: z.string().max(4096).optional() }),
).min(1);

const summarySchema = z.looseObject({
  SUMMARY: z
    .array(
      z.looseObject({
        "GHS 5s": num.optional(),
        "GHS av": num.optional(),
        "MHS 5s": num.optional(),
        "MHS av": num.optional(),
        Accepted: int.optional(),
        Rejected: int.optional(),
        Elapsed: int.optional(),
      }),
    )
    .min(1),
});
export type MinerSummary = { hashrateGhs?: number; hashrateAvgGhs?: number; accepted?: number; rejected?: number; elapsedS?: number };

const poolSchema = z.looseObject({
  POOL: int,
  URL: z.string().max(1024),
  User: z.string().max(1024).default(""),
  Status: z.string().max(64).default(""),
  Priority: int.default(0),
  "Stratum Active": z.boolean().optional(),
});
const poolsSchema = z.looseObject({ POOLS: z.array(poolSchema).max(256).default([]) });
export interface MinerPool {
  index: number;
  url: string;
  user: string;
  status: string;
  priority: number;
  /** The pool the miner hashes for right now. */
  active: boolean;
}

const devsSchema = z.looseObject({ DEVS: z.array(z.looseObject({})).max(1024).default([]) });
const statsSchema = z.looseObject({ STATS: z.array(z.record(z.string(), z.unknown())).max(64).default([]) });
export interface MinerStats {
  temperaturesC: number[];
  fanRpm: number[];
}
const configSchema = z.looseObject({ CONFIG: z.array(z.looseObject({ "Pool Count": int.optional(), Strategy: z.string().max(64).optional() })).min(1) });

/** cgminer api.c message code of the `pools` answer when the miner has no pool. */
const MSG_NOPOOL = 8;

export type MinerCommand = "summary" | "pools" | "devs" | "stats" | "config" | "addpool" | "switchpool" | "removepool" | "enablepool" | "disablepool";

/** cgminer's joined request for the guard's three readings (API-README: JSON only, `+` between report commands). */
const JOINED_READINGS = "summary+stats+pools";

/** One command's result within a joined reading: its value, or the error a separate call would have thrown. */
export type MinerResult<T> = T | MinerApiError;
/** The guard's three readings of one cycle (`summaryStatsPools`). */
export interface MinerReadings {
  summary: MinerResult<MinerSummary>;
  stats: MinerResult<MinerStats>;
  pools: MinerResult<MinerPool[]>;
}

export class MinerApiClient {
  readonly host: string;
  readonly port: number;
  private readonly timeoutMs: number;
  private readonly maxResponseBytes: number;
  /** Set once the miner refused a joined request: `summaryStatsPools` asks with separate calls from then on. */
  private joinRefused = false;

  constructor(opts: MinerApiOptions) {
    this.host = opts.host;
    this.port = opts.port;
    this.timeoutMs = opts.timeoutMs ?? MINER_API_DEFAULTS.timeoutMs;
    this.maxResponseBytes = opts.maxResponseBytes ?? MINER_API_DEFAULTS.maxResponseBytes;
  }

  get endpoint(): string {
    return `${this.host}:${this.port}`;
  }

  /** Sends one command on a fresh connection and returns the parsed JSON object (STATUS checked). */
  async request(command: MinerCommand, parameter?: string): Promise<Record<string, unknown>> {
    const raw = await this.exchange(JSON.stringify(parameter === undefined ? { command } : { command, parameter }), this.maxResponseBytes);
    return checkStatus(parseCgminerAnswer(raw, command), command);
  }

  async summary(): Promise<MinerSummary> {
    return this.readSummary(await this.request("summary"));
  }

  async pools(): Promise<MinerPool[]> {
    try {
      return this.readPools(await this.request("pools"));
    } catch (error) {
      return noPools(error);
    }
  }

  /** Board temperatures and fan speeds from `stats` (bmminer: temp1..N, temp2_1..N chip temps, fan1..N). */
  async stats(): Promise<MinerStats> {
    return this.readStats(await this.request("stats"));
  }

  /**
   * summary, stats and pools in one exchange: cgminer's joined request `{"command":"summary+stats+pools"}`
   * answers one object keyed by command name, each holding a one-element array with that command's own answer
   * (STATUS checked per command, as `request` does). Each field is the command's result or the MinerApiError it
   * would have thrown alone; nothing is thrown. The answer may be up to three times `maxResponseBytes` (three answers).
   *
   * A miner that refuses the join (cgminer before joins, or a firmware that forbids them: a top-level STATUS "E")
   * is asked with separate calls from then on; a joined answer that is oversized, malformed or shaped otherwise is
   * asked again with separate calls this time, so every answer is judged as a separate call would judge it
   * (HW-MINER-1). Unreachable and timeout fail all three at once: the miner did not answer.
   * Separate calls follow the guard's order: stats only after a good summary, nothing more when unreachable.
   */
  async summaryStatsPools(): Promise<MinerReadings> {
    if (!this.joinRefused) {
      try {
        const raw = await this.exchange(JSON.stringify({ command: JOINED_READINGS }), this.maxResponseBytes * 3);
        const body = parseCgminerAnswer(raw, JOINED_READINGS);
        const part = (command: "summary" | "stats" | "pools") => {
          const answer = body[command];
          return Array.isArray(answer) && answer.length === 1 && typeof answer[0] === "object" && answer[0] !== null && !Array.isArray(answer[0])
            ? (answer[0] as Record<string, unknown>)
            : null;
        };
        const summary = part("summary");
        const stats = part("stats");
        const pools = part("pools");
        if (summary && stats && pools) {
          return {
            summary: settle(() => this.readSummary(checkStatus(summary, "summary"))),
            stats: settle(() => this.readStats(checkStatus(stats, "stats"))),
            pools: settle(() => {
              try {
                return this.readPools(checkStatus(pools, "pools"));
              } catch (error) {
                return noPools(error);
              }
            }),
          };
        }
        // Not a joined answer: a top-level STATUS "E"/"F" is the miner refusing joins (api.c "Invalid command",
        // "Invalid join command"); anything else is judged by the separate calls below.
        const status = statusSchema.safeParse(body["STATUS"]);
        if (status.success && (status.data[0]!.STATUS === "E" || status.data[0]!.STATUS === "F")) this.joinRefused = true;
      } catch (error) {
        if (error instanceof MinerApiUnreachableError || error instanceof MinerApiTimeoutError) return { summary: error, stats: error, pools: error };
        if (!(error instanceof MinerApiError)) throw error;
      }
    }
    const summary = await settleAsync(() => this.summary());
    if (summary instanceof MinerApiUnreachableError) return { summary, stats: summary, pools: summary };
    const stats = summary instanceof MinerApiError ? summary : await settleAsync(() => this.stats());
    return { summary, stats, pools: await settleAsync(() => this.pools()) };
  }

  private readSummary(body: Record<string, unknown>): MinerSummary {
    const s = this.parse(summarySchema, body, "summary").SUMMARY[0]!;
    const ghs = s["GHS 5s"] ?? (s["MHS 5s"] !== undefined ? s["MHS 5s"] / 1000 : undefined);
    const ghsAv = s["GHS av"] ?? (s["MHS av"] !== undefined ? s["MHS av"] / 1000 : undefined);
    return {
      ...(ghs !== undefined ? { hashrateGhs: nonNegative(ghs) } : {}),
      ...(ghsAv !== undefined ? { hashrateAvgGhs: nonNegative(ghsAv) } : {}),
      ...(s.Accepted !== undefined ? { accepted: Math.max(0, s.Accepted) } : {}),
      ...(s.Rejected !== undefined ? { rejected: Math.max(0, s.Rejected) } : {}),
      ...(s.Elapsed !== undefined ? { elapsedS: s.Elapsed } : {}),
    };
  }

  private readPools(body: Record<string, unknown>): MinerPool[] {
    const pools = this.parse(poolsSchema, body, "pools").POOLS;
    const flagged = pools.some((p) => p["Stratum Active"] === true);
    // Without "Stratum Active" (getwork-era cgminer) the live pool is the alive one with the best priority.
    const fallback = flagged ? undefined : [...pools].filter((p) => p.Status === "Alive").sort((a, b) => a.Priority - b.Priority)[0];
    return pools.map((p) => ({
      index: p.POOL,
      url: p.URL,
      user: p.User,
      status: p.Status,
      priority: p.Priority,
      active: flagged ? p["Stratum Active"] === true : p === fallback,
    }));
  }

  async devs(): Promise<Record<string, unknown>[]> {
    return this.parse(devsSchema, await this.request("devs"), "devs").DEVS;
  }

  private readStats(body: Record<string, unknown>): MinerStats {
    const stats = this.parse(statsSchema, body, "stats").STATS;
    const temperaturesC: number[] = [];
    const fanRpm: number[] = [];
    const number = (value: unknown) => (typeof value === "number" ? value : typeof value === "string" && /^\d+(\.\d+)?$/.test(value) ? Number(value) : NaN);
    for (const entry of stats) {
      // bmminer names its fitted fans in fan_num: fan1..fan<fan_num> are read even at 0 rpm (a stopped fan is the
      // sign of disabled cooling, HW-ALERT-1); without fan_num a 0 is an empty slot, as for the temperatures.
      const fanNum = number(entry["fan_num"]);
      const fitted = Number.isInteger(fanNum) && fanNum > 0 && fanNum <= 64 ? fanNum : null;
      for (const [key, value] of Object.entries(entry)) {
        const n = number(value);
        const fan = /^fan(\d+)$/.exec(key);
        if (fan && fitted !== null) {
          if (Number(fan[1]) >= 1 && Number(fan[1]) <= fitted && Number.isFinite(n) && n >= 0 && fanRpm.length < 64) fanRpm.push(n);
          continue;
        }
        if (!Number.isFinite(n) || n <= 0) continue; // 0 = sensor or fan slot not fitted
        if (/^temp(\d+|2_\d+|_chip\d*)$/.test(key) && temperaturesC.length < 64) temperaturesC.push(n);
        else if (fan && fanRpm.length < 64) fanRpm.push(n);
      }
    }
    return { temperaturesC, fanRpm };
  }

  async config(): Promise<{ poolCount?: number; strategy?: string }> {
    const c = this.parse(configSchema, await this.request("config"), "config").CONFIG[0]!;
    return { ...(c["Pool Count"] !== undefined ? { poolCount: c["Pool Count"] } : {}), ...(c.Strategy ? { strategy: c.Strategy } : {}) };
  }

  async addpool(url: string, user: string, pass: string): Promise<void> {
    // The API splits the parameter on commas; cgminer escapes them with a backslash.
    const esc = (s: string) => s.replace(/\\/g, "\\\\").replace(/,/g, "\\,");
    await this.request("addpool", `${esc(url)},${esc(user)},${esc(pass)}`);
  }

  async switchpool(index: number): Promise<void> {
    await this.request("switchpool", String(index));
  }

  async removepool(index: number): Promise<void> {
    await this.request("removepool", String(index));
  }

  async enablepool(index: number): Promise<void> {
    await this.request("enablepool", String(index));
  }

  private parse<T extends z.ZodType>(schema: T, body: Record<string, unknown>, command: string): z.output<T> {
    const parsed = schema.safeParse(body);
    if (!parsed.success) throw new MinerApiMalformedError(`${command}: ${describeZodError(parsed.error)}`);
    return parsed.data;
  }

  private exchange(request: string, maxResponseBytes: number): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let bytes = 0;
      let settled = false;
      const socket = connect({ host: this.host, port: this.port });
      const finish = (error: MinerApiError | null) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        socket.destroy();
        if (error) reject(error);
        else resolve(Buffer.concat(chunks));
      };
      const timer = setTimeout(() => finish(new MinerApiTimeoutError(`miner API ${this.endpoint}: no complete answer within ${this.timeoutMs} ms`)), this.timeoutMs);
      socket.on("connect", () => socket.end(request));
      socket.on("data", (chunk: Buffer) => {
        const nul = chunk.indexOf(0);
        const part = nul >= 0 ? chunk.subarray(0, nul) : chunk;
        bytes += part.length;
        if (bytes > maxResponseBytes) {
          finish(new MinerApiOversizedError(`miner API ${this.endpoint}: answer over ${maxResponseBytes} bytes`));
          return;
        }
        chunks.push(part);
        if (nul >= 0) finish(null);
      });
      socket.on("end", () => (bytes === 0 ? finish(new MinerApiUnreachableError(`miner API ${this.endpoint}: closed without an answer`)) : finish(null)));
      socket.on("close", () => finish(bytes === 0 ? new MinerApiUnreachableError(`miner API ${this.endpoint}: closed without an answer`) : null));
      socket.on("error", (error) => finish(new MinerApiUnreachableError(`miner API ${this.endpoint}: ${error.message}`)));
    });
  }
}

/** The body when its STATUS is "S"/"I"/"W"; throws MinerApiMalformedError without a STATUS, MinerApiCommandError on "E"/"F". */
function checkStatus(body: Record<string, unknown>, command: string): Record<string, unknown> {
  const status = statusSchema.safeParse(body["STATUS"]);
  if (!status.success) throw new MinerApiMalformedError(`${command}: answer has no valid STATUS (${describeZodError(status.error)})`);
  const first = status.data[0]!;
  if (first.STATUS === "E" || first.STATUS === "F") {
    throw new MinerApiCommandError(`${command}: miner refused: ${(first.Msg ?? "").slice(0, 200)}`, first.Code);
  }
  return body;
}

/** cgminer answers a miner without pools with STATUS "E", code 8 (api.c MSG_NOPOOL "No pools"): an empty list. Rethrows anything else. */
function noPools(error: unknown): MinerPool[] {
  if (error instanceof MinerApiCommandError && error.code === MSG_NOPOOL) return [];
  throw error;
}

function asMinerApiError(error: unknown): MinerApiError {
  return error instanceof MinerApiError ? error : new MinerApiError(String(error));
}

function settle<T>(read: () => T): MinerResult<T> {
  try {
    return read();
  } catch (error) {
    return asMinerApiError(error);
  }
}

async function settleAsync<T>(read: () => Promise<T>): Promise<MinerResult<T>> {
  try {
    return await read();
  } catch (error) {
    return asMinerApiError(error);
  }
}

function nonNegative(n: number): number {
  return Number.isFinite(n) && n > 0 ? Math.round(n * 100) / 100 : 0;
}
