/**
 * HW-FUZZ-1 on the agent's parsers of board content: /proc/net/tcp and tcp6, IP and endpoint spellings, /etc/hosts
 * (the hosts-entry indicator), the miner config files (bmminer.conf / cgminer.conf) and the `hashward-firmware/1`
 * image header. Each is fed real-looking content mutated byte-wise plus arbitrary text, within the case budget.
 * Documented outcomes: parseProcNetTcp, parseEndpoint and indicatorGuard never throw (a bad line or
 * file is skipped or reported as data); normalizeIp/ipv6Groups throw only TypeError; readImageHeader only
 * ImageFormatError.
 */
import { closeSync, openSync, writeFileSync } from "node:fs";
import { isIP } from "node:net";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import type { BoardReader } from "../agent/src/guards/board.js";
import { IndicatorMemory, indicatorGuard } from "../agent/src/guards/indicators.js";
import { normalizeIp, parseEndpoint, parseProcNetTcp, type SocketEntry } from "../agent/src/guards/net.js";
import { parseMinerConfig, poolConfigGuard } from "../agent/src/guards/pools.js";
import type { Indicator } from "../agent/src/policy/index.js";
import { buildFirmwareImage, ImageFormatError, readImageHeader } from "../agent/src/update/image.js";
import { findingSchema, MAX_PAYLOAD_BYTES } from "../shared/protocol/index.js";
import { tempDir } from "../test/support/temp-dir.js";
import { bounded, deeplyNested, fuzz, mutatedBytes, sameMeaning } from "./support.js";

const text = (bytes: Uint8Array) => Buffer.from(bytes).toString("utf8");

// --- /proc/net/tcp and tcp6 ----------------------------------------------------------------------------------

const hex = (n: number, width: number) => n.toString(16).toUpperCase().padStart(width, "0");
/** The kernel's spelling: IPv4 as one little-endian 32-bit word, IPv6 as four, each byte-reversed. */
function procAddress(entry: { family: 4 | 6; ip: number[] }): string {
  const bytes = entry.ip;
  const words: string[] = [];
  for (let w = 0; w < bytes.length; w += 4) words.push(bytes.slice(w, w + 4).reverse().map((b) => hex(b, 2)).join(""));
  return words.join("");
}
const ipBytes = (family: 4 | 6) => fc.array(fc.integer({ min: 0, max: 255 }), { minLength: family === 4 ? 4 : 16, maxLength: family === 4 ? 4 : 16 });
const procLine = fc.constantFrom<4 | 6>(4, 6).chain((family) =>
  fc.record({
    family: fc.constant(family),
    local: ipBytes(family),
    localPort: fc.integer({ min: 0, max: 65535 }),
    remote: ipBytes(family),
    remotePort: fc.integer({ min: 0, max: 65535 }),
    state: fc.integer({ min: 1, max: 12 }),
  }),
);
type ProcLine = { family: 4 | 6; local: number[]; localPort: number; remote: number[]; remotePort: number; state: number };
const HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";
function procText(lines: ProcLine[]): string {
  return (
    HEADER +
    lines
      .map((l, i) => `  ${i}: ${procAddress({ family: l.family, ip: l.local })}:${hex(l.localPort, 4)} ${procAddress({ family: l.family, ip: l.remote })}:${hex(l.remotePort, 4)} ${hex(l.state, 2)} 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0\n`)
      .join("")
  );
}
const stateName = (s: number): SocketEntry["state"] => (s === 0x0a ? "LISTEN" : s === 1 ? "ESTABLISHED" : s === 2 ? "SYN_SENT" : "OTHER");
/** Back to the kernel's spelling, for the round trip. */
function entryLine(e: SocketEntry): ProcLine {
  const bytesOf = (ip: string): number[] => {
    if (e.family === 4) return ip.split(".").map(Number);
    const g = ip.includes(".") ? [0, 0, 0, 0, 0, 0xffff, ...ip.split(".").map(Number).reduce<number[]>((acc, b, i) => (i % 2 ? [...acc.slice(0, -1), (acc[acc.length - 1]! << 8) | b] : [...acc, b]), [])] : ip.split(":").map((x) => parseInt(x, 16));
    return g.flatMap((x) => [x >> 8, x & 0xff]);
  };
  const code = { LISTEN: 0x0a, ESTABLISHED: 1, SYN_SENT: 2, OTHER: 7 }[e.state];
  return { family: e.family, local: bytesOf(e.localIp), localPort: e.localPort, remote: bytesOf(e.remoteIp), remotePort: e.remotePort, state: code };
}

describe("HW-FUZZ-1: /proc/net/tcp and tcp6", () => {
  it("generated socket tables parse to exactly their sockets, and re-serialise to the same entries", () => {
    fuzz(
      "proc-net-tcp (generated)",
      fc.property(fc.array(procLine, { maxLength: 20 }), (lines) => {
        const parsed = bounded(() => parseProcNetTcp(procText(lines)), []);
        if (!parsed.ok) return;
        expect(parsed.value.map((e) => [e.family, e.localPort, e.remotePort, e.state])).toEqual(lines.map((l) => [l.family, l.localPort, l.remotePort, stateName(l.state)]));
        expect(parseProcNetTcp(procText(parsed.value.map(entryLine)))).toEqual(parsed.value);
      }),
    );
  });

  it("byte-mutated tables never throw; every entry is well formed; what parses round-trips", () => {
    const seed = Buffer.from(procText([{ family: 4, local: [127, 0, 0, 1], localPort: 4028, remote: [0, 0, 0, 0], remotePort: 0, state: 10 }, { family: 6, local: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 5], localPort: 50000, remote: [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], remotePort: 3333, state: 1 }]));
    fuzz(
      "proc-net-tcp (mutated bytes)",
      fc.property(fc.oneof(mutatedBytes(seed), fc.uint8Array({ maxLength: 400 })), (bytes) => {
        const parsed = bounded(() => parseProcNetTcp(text(bytes)), []);
        if (!parsed.ok) return;
        for (const e of parsed.value) {
          expect(e.localPort).toBeGreaterThanOrEqual(0);
          expect(e.localPort).toBeLessThanOrEqual(65535);
          expect(normalizeIp(e.localIp)).toBe(e.localIp);
          expect(normalizeIp(e.remoteIp)).toBe(e.remoteIp);
        }
        expect(parseProcNetTcp(procText(parsed.value.map(entryLine)))).toEqual(parsed.value);
      }),
    );
  });

  it("a table longer than maxEntries stops at maxEntries", () => {
    const line = { family: 4 as const, local: [10, 0, 0, 2], localPort: 1, remote: [10, 0, 0, 3], remotePort: 2, state: 1 };
    expect(parseProcNetTcp(procText(Array.from({ length: 50 }, () => line)), 10)).toHaveLength(10);
  });
});

describe("HW-FUZZ-1: IP and endpoint spellings (DNS answers, policy hosts, socket tables)", () => {
  const ipLike = fc.oneof(
    fc.ipV4(),
    fc.ipV6(),
    fc.ipV4Extended(),
    fc.string({ unit: fc.constantFrom(..."0123456789abcdefABCDEF:.%[]"), maxLength: 50 }),
    fc.string({ maxLength: 60 }),
  );
  it("normalizeIp throws only TypeError; an address it returns is already in its one spelling", () => {
    fuzz(
      "normalizeIp",
      fc.property(ipLike, (ip) => {
        const first = bounded(() => normalizeIp(ip), [TypeError]);
        // Non-addresses are only lowercased (documented); the one-spelling promise is for addresses.
        if (first.ok && isIP(first.value)) expect(normalizeIp(first.value)).toBe(first.value);
      }),
    );
  });
  it("parseEndpoint never throws; a port is 1-5 digits; host:port round-trips", () => {
    fuzz(
      "parseEndpoint",
      fc.property(fc.oneof(ipLike, fc.webUrl(), fc.domain().map((d) => `${d}:3333`), fc.string({ maxLength: 80 })), (t) => {
        const first = bounded(() => parseEndpoint(t), []);
        if (!first.ok || first.value === null) return;
        const { host, port } = first.value;
        if (port !== undefined) expect(Number.isInteger(port)).toBe(true);
        if (!host.includes(":") && !/[\s/]/.test(host) && host.trim() === host) {
          expect(parseEndpoint(port === undefined ? host : `${host}:${port}`)).toEqual(first.value);
        }
      }),
    );
  });
});

// Found by this campaign (10,000 cases): "[B]" gave host "B" while "B" gives "b", so one host had two spellings.
it.each([
  ["[B]", { host: "b" }],
  ["[FE80::1]:3333", { host: "fe80::1", port: 3333 }],
  ["FE80::1", { host: "fe80::1" }],
  ["POOL.Example.NET:3333", { host: "pool.example.net", port: 3333 }],
])("regression: parseEndpoint(%s) is lowercased like every other spelling", (input, expected) => {
  expect(parseEndpoint(input)).toEqual(expected);
});

// --- /etc/hosts ------------------------------------------------------------------------------------------------

const HOSTS_INDICATOR: Indicator = { id: "hosts-any", kind: "hosts-entry", severity: "critical", description: "hosts entry" } as Indicator;
function hostsBoard(content: string): BoardReader {
  return { readText: () => content, stat: () => null, list: () => null };
}

describe("HW-FUZZ-1: /etc/hosts (hosts-entry indicator)", () => {
  const seed = Buffer.from("127.0.0.1\tlocalhost localhost.localdomain\n::1 ip6-localhost ip6-loopback\n# Antbleed\n10.0.0.9 auth.minerlink.com  # phone home\n1.2.3.4 pool.evil.example\n");
  const hostsText = fc.oneof(
    mutatedBytes(seed).map(text),
    fc.array(fc.tuple(fc.oneof(fc.ipV4(), fc.ipV6()), fc.array(fc.domain(), { maxLength: 4 }), fc.constantFrom(" ", "\t", "  \t"), fc.boolean()), { maxLength: 10 }).map((lines) =>
      lines.map(([ip, names, ws, comment]) => `${ip}${ws}${names.join(ws)}${comment ? " # c" : ""}`).join("\n"),
    ),
    fc.string({ unit: "binary", maxLength: 300 }),
    fc.integer({ min: 1, max: 200_000 }).map((n) => `1.2.3.4 ${"a".repeat(n)}`),
  );
  it("never throws; every finding is schema-valid and small enough to travel in evidence; one finding per non-local name", () => {
    fuzz(
      "hosts-entry (/etc/hosts)",
      fc.property(hostsText, (content) => {
        const findings = bounded(() => indicatorGuard([HOSTS_INDICATOR], hostsBoard(content), new IndicatorMemory(null)), []);
        if (!findings.ok) return;
        const names = content.split("\n").flatMap((line) => line.replace(/#.*/, "").trim().split(/\s+/).slice(1).filter(Boolean));
        expect(findings.value.length).toBeLessThanOrEqual(names.length);
        for (const f of findings.value) {
          expect(findingSchema.safeParse(f).success).toBe(true);
          // HW-MSG-1: evidence is capped at 256 KiB; one finding is bounded whatever the file holds (<= 16 KiB
          // encoded, even when every character is a \u escape), not proportional to a name's length.
          expect(JSON.stringify(f).length).toBeLessThanOrEqual(16 * 1024);
        }
      }),
    );
  });
});

// --- hashward-firmware/1 image ---------------------------------------------------------------------------------

describe("HW-FUZZ-1: hashward-firmware/1 image header", () => {
  const { path: dir, cleanup } = tempDir("fuzz-image");
  afterAll(cleanup);
  const file = join(dir, "image.bin");
  const readHeader = (bytes: Uint8Array) => {
    writeFileSync(file, bytes);
    const fd = openSync(file, "r");
    try {
      return readImageHeader(fd, bytes.byteLength);
    } finally {
      closeSync(fd);
    }
  };
  const valid = buildFirmwareImage([
    { path: "bmminer", content: "#!/bin/sh\necho miner\n", mode: 0o755 },
    { path: "etc/version", content: "2.0.0\n" },
    { path: "lib/libfoo.so", content: new Uint8Array([0, 1, 2, 3, 255]) },
  ]);
  const headerOf = (h: object) => {
    const json = Buffer.from(JSON.stringify(h));
    const len = Buffer.alloc(4);
    len.writeUInt32BE(json.byteLength);
    return Buffer.concat([Buffer.from("HWFW1\n", "latin1"), len, json]);
  };
  const images = fc.oneof(
    mutatedBytes(valid),
    fc.uint8Array({ maxLength: 64 }),
    fc.record({
      format: fc.constantFrom("hashward-firmware/1", "hashward-firmware/2"),
      files: fc.array(fc.record({ path: fc.oneof(fc.constantFrom("a", "a/b", "../x", "./a", "a//b", "/abs", "a/", "a\u0000b", "\\x"), fc.string({ maxLength: 20 })), mode: fc.oneof(fc.integer({ min: -1, max: 0o7777 }), fc.double()), size: fc.oneof(fc.nat(8), fc.constantFrom(-1, 2 ** 53, 1e308, 0.5)) }), { maxLength: 5 }),
    }).map((h) => new Uint8Array(Buffer.concat([headerOf(h), Buffer.alloc(h.files.reduce((n, f) => n + (Number.isSafeInteger(f.size) && f.size > 0 && f.size < 9 ? f.size : 0), 0))]))),
  );
  it("refusals are ImageFormatError; an accepted header rebuilds to an image with the same header", () => {
    fuzz(
      "hashward-firmware/1 image",
      fc.property(images, (bytes) => {
        const first = bounded(() => readHeader(bytes), [ImageFormatError]);
        if (!first.ok) return;
        const { header, dataOffset } = first.value;
        let at = dataOffset;
        const files = header.files.map((f) => {
          const content = bytes.subarray(at, at + f.size);
          at += f.size;
          return { path: f.path, mode: f.mode, content };
        });
        expect(readHeader(buildFirmwareImage(files)).header).toEqual(header);
      }),
    );
  });
});

// Crash found by this campaign: a 200,000-character host name (or pool URL) became a finding larger than the whole
// evidence payload cap, so the plane would refuse every later evidence of the device. Fixed in finding() (HW-MSG-1).
describe("regression: board content cannot make a finding outgrow the evidence payload", () => {
  const huge = "a".repeat(200_000);
  it("a 200,000-character host name in /etc/hosts", () => {
    const [f] = indicatorGuard([HOSTS_INDICATOR], hostsBoard(`1.2.3.4 ${huge}\n`), new IndicatorMemory(null));
    expect(f).toBeDefined();
    expect(JSON.stringify(f).length).toBeLessThan(4096);
  });
  it("a 200,000-character pool URL and worker in a miner config file", () => {
    const policy = { pools: { allowedUrls: ["stratum+tcp://pool.example.net:3333"], workerPatterns: [] } } as never;
    const config = parseMinerConfig("/config/bmminer.conf", JSON.stringify({ pools: [{ url: `stratum+tcp://${huge}:3333`, user: huge, pass: "x" }] }));
    const findings = poolConfigGuard([config], policy);
    expect(findings).toHaveLength(1);
    expect(JSON.stringify(findings[0]).length).toBeLessThan(4096);
    expect(JSON.stringify(findings).length * 256).toBeLessThan(MAX_PAYLOAD_BYTES * 16);
  });
});
