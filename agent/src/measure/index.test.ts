import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { tempDir } from "../testing/index.js";
import { AGENT_BINARY_PATH, isInterpreter, measure } from "./index.js";

const sha = (s: string | Buffer) => createHash("sha256").update(s).digest("hex");

describe("measure", () => {
  const dirs: (() => void)[] = [];
  afterEach(() => dirs.splice(0).forEach((c) => c()));
  function board() {
    const d = tempDir();
    dirs.push(d.cleanup);
    const root = d.path;
    const put = (rel: string, content: string | Buffer) => {
      mkdirSync(join(root, rel, ".."), { recursive: true });
      writeFileSync(join(root, rel), content);
    };
    put("firmware/z-last", "z");
    put("firmware/a-first", "a");
    put("firmware/lib/B.so", "B");
    put("firmware/lib/a.so", "a2");
    put("config/cgminer.conf", "{}");
    put("dev/mtd2", Buffer.alloc(3 * 1024 * 1024 + 7, 1));
    return { root, resolve: (p: string) => resolve(root, `.${p}`) };
  }

  it("walks directories sorted, one entry per file with its device path", async () => {
    const b = board();
    const { measurements } = await measure(["/firmware"], { resolve: b.resolve, includeAgentBinary: false });
    expect(measurements.map((m) => m.path)).toEqual(["/firmware/a-first", "/firmware/lib/B.so", "/firmware/lib/a.so", "/firmware/z-last"]);
    expect(measurements[0]).toEqual({ path: "/firmware/a-first", kind: "file", size: 1, sha256: sha("a") });
  });

  it("reports missing paths, partitions as block, and is stable", async () => {
    const b = board();
    const paths = ["/dev/mtd2", "/etc/ld.so.preload", "/config/cgminer.conf"];
    const { measurements } = await measure(paths, { resolve: b.resolve, includeAgentBinary: false });
    expect(measurements).toEqual([
      { path: "/config/cgminer.conf", kind: "file", size: 2, sha256: sha("{}") },
      { path: "/dev/mtd2", kind: "block", size: 3 * 1024 * 1024 + 7, sha256: sha(Buffer.alloc(3 * 1024 * 1024 + 7, 1)) },
      { path: "/etc/ld.so.preload", kind: "missing", size: 0, sha256: "" },
    ]);
    const again = await measure([...paths].reverse(), { resolve: b.resolve, includeAgentBinary: false, concurrency: 1 });
    expect(again.measurements).toEqual(measurements);
  });

  it("does not follow directory symlinks inside a walk", async () => {
    const b = board();
    symlinkSync(join(b.root, "firmware"), join(b.root, "firmware", "loop"));
    const { measurements } = await measure(["/firmware"], { resolve: b.resolve, includeAgentBinary: false });
    expect(measurements.some((m) => m.path.includes("loop"))).toBe(false);
  });

  it("measures the agent binary as @agent unless running under an interpreter", async () => {
    const b = board();
    const fakeBinary = join(b.root, "hashward-agent");
    writeFileSync(fakeBinary, "ELF");
    const withBinary = await measure(["/config/cgminer.conf"], { resolve: b.resolve, execPath: fakeBinary });
    expect(withBinary.measurements.at(-1)).toEqual({ path: AGENT_BINARY_PATH, kind: "file", size: 3, sha256: sha("ELF") });
    const underNode = await measure(["/config/cgminer.conf"], { resolve: b.resolve, execPath: "/usr/bin/node" });
    expect(underNode.measurements.map((m) => m.path)).toEqual(["/config/cgminer.conf"]);
    expect(isInterpreter("/home/u/.bun/bin/bun")).toBe(true);
    expect(isInterpreter("/usr/local/bin/node20")).toBe(true);
    expect(isInterpreter("/usr/bin/hashward-agent")).toBe(false);
  });

  it("gives every file its own digest when reads of several files interleave, at every chunk boundary and concurrency", async () => {
    const b = board();
    const MiB = 1024 * 1024;
    // Random bytes: a read buffer shared or reused too early between files would change some digest.
    const sizes = [0, 1, MiB - 1, MiB, MiB + 1, 2 * MiB, 3 * MiB + 5, 17];
    const contents = sizes.map((size) => randomBytes(size));
    const dir = join(b.root, "blobs");
    mkdirSync(dir);
    contents.forEach((content, i) => writeFileSync(join(dir, `f${i}`), content));
    const expected = contents.map((content, i) => ({ path: `/blobs/f${i}`, kind: "file", size: content.byteLength, sha256: sha(content) }));
    for (const concurrency of [1, 2, 3, 8]) {
      const { measurements } = await measure(["/blobs"], { resolve: b.resolve, includeAgentBinary: false, concurrency });
      expect(measurements).toEqual(expected);
    }
  });
});
