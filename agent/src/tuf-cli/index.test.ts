import { createHash, createPublicKey } from "node:crypto";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Key, Metadata, MetadataKind, Signature, Targets, type Root } from "@tufjs/models";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { tufKeyIdOf } from "../../../shared/tuf/keys.js";
import { tempDir } from "../testing/index.js";
import { generateTufKey, isoIn, TestTufRepo, type TestKey } from "../update/testing/index.js";
import { parseTufArgs, runTufCli } from "./index.js";

const DAY = 86_400_000;

/** The same ed25519 key as `key`, PEM-encoded, under its own (correct) TUF key id: an alias of one key. */
function pemAlias(key: TestKey): { id: string; key: Key; signer: TestKey } {
  const raw = Buffer.from(key.key.keyVal.public!, "hex");
  const pem = createPublicKey({ key: Buffer.concat([Buffer.from("302a300506032b6570032100", "hex"), raw]), format: "der", type: "spki" })
    .export({ type: "spki", format: "pem" })
    .toString();
  const id = tufKeyIdOf({ keytype: "ed25519", scheme: "ed25519", keyval: { public: pem } });
  return { id, key: new Key({ keyID: id, keyType: "ed25519", scheme: "ed25519", keyVal: { public: pem } }), signer: { ...key, keyId: id } };
}

interface Delegation {
  name: string;
  keys: TestKey[];
  threshold?: number;
  paths: string[];
  terminating?: boolean;
}

/** `base` with a delegations block: roles in order, each with its keys (key objects listed once by id). */
function withDelegations(base: Targets, roles: Delegation[], extraKeys: Key[] = []): Targets {
  const keys: Record<string, unknown> = {};
  for (const role of roles) for (const k of role.keys) keys[k.keyId] = k.key.toJSON();
  for (const k of extraKeys) keys[k.keyID] = k.toJSON();
  return Targets.fromJSON({
    ...(base.toJSON() as object),
    delegations: {
      keys,
      roles: roles.map((r) => ({ name: r.name, keyids: r.keys.map((k) => k.keyId), threshold: r.threshold ?? 1, terminating: r.terminating ?? false, paths: r.paths })),
    },
  } as never);
}

function roleTargets(version: number, entries: Record<string, Buffer> = {}, delegations?: Delegation[]): Targets {
  let targets = new Targets({ version, specVersion: "1.0.31", expires: isoIn(30 * DAY) });
  if (delegations) targets = withDelegations(targets, delegations);
  for (const [name, image] of Object.entries(entries)) {
    const sha256 = createHashHex(image);
    targets = Targets.fromJSON({ ...(targets.toJSON() as { targets: object }), targets: { ...(targets.toJSON() as { targets: object }).targets, [name]: { length: image.byteLength, hashes: { sha256 } } } } as never);
  }
  return targets;
}

function createHashHex(bytes: Buffer): string {
  return createHash("sha256").update(bytes).digest("hex");
}

describe("hashward-agent tuf (conformance CLI)", () => {
  let dir: { path: string; cleanup: () => void };
  let repo: TestTufRepo;
  let out: string[];
  let err: string[];
  const io = () => ({ stdout: (t: string) => out.push(t), stderr: (t: string) => err.push(t), env: {} });
  const run = (...argv: string[]) => runTufCli(argv, io());

  beforeEach(async () => {
    dir = tempDir("tufcli");
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

  /** Stores an image where the repository serves it (`<sha256>.<name>`) without listing it in top-level targets. */
  const storeImage = (name: string, image: Buffer) => writeFileSync(join(repo.dir, "targets", `${createHashHex(image)}.${name}`), image);

  describe("HW-TUF-4: thresholds count distinct keys", () => {
    it("refuses a rotated root whose targets role lists one key twice (threshold 2 met by one key), keeping root v1", async () => {
      repo.addTarget("fw.bin", Buffer.from("firmware"), { hardwareModels: ["S19"], version: "1.0.0" });
      repo.publish();
      expect(await run("--metadata-dir", md(), "init", repo.rootFile)).toBe(0);
      expect(await run("--metadata-dir", md(), "--metadata-url", repo.metadataUrl, "refresh")).toBe(0);
      // The attacker holds one targets key and lists it twice: as hex and as PEM, each under its own key id.
      const single = repo.keys.targets[0]!;
      const alias = pemAlias(single);
      repo.rotateRoot((root: Root) => {
        root.addKey(alias.key, "targets");
        root.roles["targets"] = Object.assign(root.roles["targets"]!, { threshold: 2 });
      });
      repo.addTarget("evil.bin", Buffer.from("evil"), { hardwareModels: ["S19"], version: "9.0.0" });
      repo.publish({ targetsSigners: [single, alias.signer] });
      err = [];
      expect(await download("evil.bin")).toBe(1);
      expect(err.join("")).toMatch(/lists one public key twice.*HW-TUF-4/);
      expect(JSON.parse(readFileSync(join(md(), "root.json"), "utf8")).signed.version).toBe(1);
      expect(existsSync(join(targetsDir(), "evil.bin"))).toBe(false);
    });

    it("refuses a provisioned root with a key under an id that is not its own", async () => {
      repo.publish();
      const root = JSON.parse(readFileSync(repo.rootFile, "utf8")) as { signed: { keys: Record<string, unknown>; roles: Record<string, { keyids: string[] }> } };
      const targetsId = repo.keys.targets[0]!.keyId;
      root.signed.keys["f".repeat(64)] = root.signed.keys[targetsId];
      root.signed.roles["targets"]!.keyids.push("f".repeat(64));
      writeFileSync(join(dir.path, "forged-root.json"), JSON.stringify(root));
      expect(await run("--metadata-dir", md(), "init", join(dir.path, "forged-root.json"))).toBe(0);
      err = [];
      expect(await run("--metadata-dir", md(), "--metadata-url", repo.metadataUrl, "refresh")).toBe(1);
      expect(err.join("")).toMatch(/key id f{64} is not the id of its key.*HW-TUF-4/);
    });

    it("refuses a delegation that lists one key twice for a role", async () => {
      const delegate = generateTufKey();
      const alias = pemAlias(delegate);
      const image = Buffer.from("delegated firmware");
      storeImage("d.bin", image);
      const roleA = roleTargets(1, { "d.bin": image });
      repo.writeDelegatedRole("A", roleA, [delegate, alias.signer]);
      repo.publish({
        configureTargets: (t) => {
          const json = withDelegations(t, [{ name: "A", keys: [delegate], paths: ["*"] }], [alias.key]).toJSON() as { delegations: { roles: Array<{ keyids: string[]; threshold: number }> } };
          json.delegations.roles[0]!.keyids.push(alias.id);
          json.delegations.roles[0]!.threshold = 2;
          return Targets.fromJSON(json as never);
        },
        delegated: new Map([["A", 1]]),
      });
      await run("--metadata-dir", md(), "init", repo.rootFile);
      err = [];
      expect(await download("d.bin")).toBe(1);
      expect(err.join("")).toMatch(/role A lists one public key twice/);
    });
  });

  describe("HW-UPD-7: a delegated role is verified against the delegator it is reached through", () => {
    // targets -> A (t1*) -> C (key KA);  targets -> B (t2*) -> C (key KB). C is signed by KA only and lists both.
    function diamond() {
      const [ka, kb, kA, kB] = [generateTufKey(), generateTufKey(), generateTufKey(), generateTufKey()];
      const t1 = Buffer.from("one");
      const t2 = Buffer.from("two");
      storeImage("t1.bin", t1);
      storeImage("t2.bin", t2);
      repo.writeDelegatedRole("A", roleTargets(1, {}, [{ name: "C", keys: [ka], paths: ["t1*"] }]), [kA]);
      repo.writeDelegatedRole("B", roleTargets(1, {}, [{ name: "C", keys: [kb], paths: ["t2*"] }]), [kB]);
      repo.writeDelegatedRole("C", roleTargets(1, { "t1.bin": t1, "t2.bin": t2 }), [ka]);
      repo.publish({
        configureTargets: (t) => withDelegations(t, [{ name: "A", keys: [kA], paths: ["t1*"] }, { name: "B", keys: [kB], paths: ["t2*"] }]),
        delegated: new Map([["A", 1], ["B", 1], ["C", 1]]),
      });
    }

    it("does not reuse C, verified through A, for a target reached through B (one session, two targets)", async () => {
      diamond();
      await run("--metadata-dir", md(), "init", repo.rootFile);
      err = [];
      expect(await download("t1.bin", "t2.bin")).toBe(1);
      expect(readFileSync(join(targetsDir(), "t1.bin"), "utf8")).toBe("one");
      expect(existsSync(join(targetsDir(), "t2.bin"))).toBe(false);
      expect(err.join("")).toMatch(/"C" is not signed by the keys "B" delegates it to/);
    });

    it("refuses the B path in a session of its own too, and still serves the A path", async () => {
      diamond();
      await run("--metadata-dir", md(), "init", repo.rootFile);
      expect(await download("t2.bin")).toBe(1);
      expect(await download("t1.bin")).toBe(0);
      expect(await download("t2.bin")).toBe(1); // C is cached now (verified through A): still refused through B
      expect(existsSync(join(targetsDir(), "t2.bin"))).toBe(false);
    });
  });

  describe("HW-UPD-8: delegated roles with unusual names are kept, never as hidden or relative files", () => {
    for (const name of ["../delegatedrole", ".hidden", "?", "#", "/delegatedrole"]) {
      it(`persists the verified role ${JSON.stringify(name)} under a safe name (tuf-conformance test_unusual_role_name)`, async () => {
        const key = generateTufKey();
        repo.writeDelegatedRole(name, roleTargets(1), [key]);
        repo.publish({ configureTargets: (t) => withDelegations(t, [{ name, keys: [key], paths: ["*"] }]), delegated: new Map([[name, 1]]) });
        await run("--metadata-dir", md(), "init", repo.rootFile);
        expect(await download("nonexistent target")).toBe(1);
        // The role was requested by its URL-encoded name (the conformance suite checks this too)...
        expect(repo.requests).toContain(`/tuf/metadata/1.${name}.json`);
        // ...and is one of 5 trusted roles, none of them a hidden file or a path outside the directory.
        const files = readdirSync(md()).filter((f) => f.endsWith(".json"));
        expect(files).toHaveLength(5);
        expect(files.filter((f) => f.startsWith("."))).toEqual([]);
        expect(readdirSync(join(md(), ".."))).not.toContain("delegatedrole.json");
        const stored = files.find((f) => !["root.json", "timestamp.json", "snapshot.json", "targets.json"].includes(f))!;
        expect(decodeURIComponent(stored.replace(/^%2E/, "."))).toBe(`${name}.json`);
        const md1 = Metadata.fromJSON(MetadataKind.Targets, JSON.parse(readFileSync(join(md(), stored), "utf8")));
        expect(md1.signed.version).toBe(1);
        // A second session over the kept files works the same.
        expect(await download("nonexistent target")).toBe(1);
        expect(err.join("")).not.toMatch(/HW-UPD|HW-TUF/);
      });
    }
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
