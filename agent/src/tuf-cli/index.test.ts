import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { tempDir } from "../testing/index.js";
import { TestTufRepo } from "../update/testing/index.js";
import { parseTufArgs, runTufCli } from "./index.js";

describe("hashward-agent tuf (conformance CLI)", () => {
  let dir: { path: string; cleanup: () => void };
  let repo: TestTufRepo;
  let out: string[];
  let err: string[];
  const io = () => ({ stdout: (t: string) => out.push(t), stderr: (t: string) => err.push(t), env: {} });
  const run = (...argv: string[]) => runTufCli(argv, io());

  beforeEach(async () => {
    dir = tempDir("hw-tufcli-");
    repo = await new TestTufRepo(join(dir.path, "repo")).start();
    out = [];
    err = [];
  });
  afterEach(async () => {
    await repo.stop();
    dir.cleanup();
  });

  const md = () => join(dir.path, "md");
  const targetsDir = () => join(dir.path, "out");
  const download = (...names: string[]) =>
    run("--metadata-dir", md(), "--metadata-url", repo.metadataUrl, ...names.flatMap((n) => ["--target-name", n]), "--target-base-url", repo.targetsUrl, "--target-dir", targetsDir(), "download");

  it("init copies the trusted root; refresh keeps metadata under non-versioned names", async () => {
    repo.publish();
    expect(await run("--metadata-dir", md(), "init", repo.rootFile)).toBe(0);
    expect(readdirSync(md())).toEqual(["root.json"]);
    expect(await run("--metadata-dir", md(), "--metadata-url", repo.metadataUrl, "refresh")).toBe(0);
    expect(readdirSync(md()).sort()).toEqual(["root.json", "snapshot.json", "targets.json", "timestamp.json"]);
    expect(JSON.parse(readFileSync(join(md(), "timestamp.json"), "utf8")).signed.version).toBe(1);
  });

  it("downloads targets in order and does not fetch an artifact already present with matching hashes", async () => {
    repo.addTarget("a.bin", Buffer.from("first"), { hardwareModels: ["S19"], version: "1.0.0" });
    repo.addTarget("dir/b.bin", Buffer.from("second"), { hardwareModels: ["S19"], version: "1.0.0" });
    repo.publish();
    expect(await run("--metadata-dir", md(), "init", repo.rootFile)).toBe(0);
    expect(await download("a.bin", "dir/b.bin")).toBe(0);
    expect(readFileSync(join(targetsDir(), "a.bin"), "utf8")).toBe("first");
    expect(readFileSync(join(targetsDir(), encodeURIComponent("dir/b.bin")), "utf8")).toBe("second");
    const fetched = () => repo.requests.filter((p) => p.startsWith("/tuf/targets/"));
    expect(fetched()).toHaveLength(2);
    expect(await download("a.bin", "dir/b.bin")).toBe(0);
    expect(fetched()).toHaveLength(2);
    // a local copy that no longer matches is fetched again
    writeFileSync(join(targetsDir(), "a.bin"), "tampered");
    expect(await download("a.bin")).toBe(0);
    expect(fetched()).toHaveLength(3);
    expect(readFileSync(join(targetsDir(), "a.bin"), "utf8")).toBe("first");
  });

  it("stops at the first failing target and exits 1", async () => {
    repo.addTarget("good.bin", Buffer.from("good"), { hardwareModels: ["S19"], version: "1.0.0" });
    repo.publish();
    await run("--metadata-dir", md(), "init", repo.rootFile);
    expect(await download("missing.bin", "good.bin")).toBe(1);
    expect(err.join("")).toMatch(/missing.bin.*not in the signed targets/);
    expect(repo.requests.filter((p) => p.startsWith("/tuf/targets/"))).toEqual([]);
    // a served artifact that differs from the signed hash fails too
    writeFileSync(join(repo.dir, repo.targetPath("good.bin").slice("/tuf/".length)), "evil");
    expect(await download("good.bin")).toBe(1);
    expect(readdirSync(targetsDir())).toEqual([]);
  });

  it("fails closed on an expired timestamp and on unreachable repositories", async () => {
    repo.publish({ timestampExpiresInMs: -1000 });
    await run("--metadata-dir", md(), "init", repo.rootFile);
    expect(await run("--metadata-dir", md(), "--metadata-url", repo.metadataUrl, "refresh")).toBe(1);
    expect(err.join("")).toMatch(/expired/);
    expect(await run("--metadata-dir", md(), "--metadata-url", "http://127.0.0.1:9/", "refresh")).toBe(1);
    expect(await run("--metadata-dir", join(dir.path, "empty"), "--metadata-url", repo.metadataUrl, "refresh")).toBe(1);
    expect(err.join("")).toMatch(/no trusted root/);
  });

  it("usage errors exit 1 with the usage text", async () => {
    for (const argv of [[], ["refresh"], ["--metadata-dir", "d", "refresh"], ["--metadata-dir", "d", "init"], ["--metadata-dir", "d", "--metadata-url", "u", "download"], ["--bogus", "x", "init", "r"]]) {
      err = [];
      expect(await runTufCli(argv, io()), JSON.stringify(argv)).toBe(1);
      expect(err.join("")).toContain("Usage:");
    }
    writeFileSync(join(dir.path, "not-root.json"), JSON.stringify({ signed: { _type: "targets" } }));
    expect(await run("--metadata-dir", md(), "init", join(dir.path, "not-root.json"))).toBe(1);
  });

  it("accepts options in any order and --opt=value", () => {
    expect(parseTufArgs(["download", "--target-dir=o", "--target-name", "a", "--metadata-url=u", "--target-name=b", "--target-base-url", "t", "--metadata-dir", "d"])).toEqual({
      command: "download",
      metadataDir: "d",
      metadataUrl: "u",
      targetNames: ["a", "b"],
      targetBaseUrl: "t",
      targetDir: "o",
    });
  });
});
