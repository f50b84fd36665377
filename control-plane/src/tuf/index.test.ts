/**
 * The plane's TUF repository: every upload is verified against the trusted root with @tufjs/models, and what is
 * published verifies for a client (checked here with @tufjs/models, and end to end with tuf-js in the e2e tests).
 */
import { createPublicKey } from "node:crypto";
import { join } from "node:path";
import { Metadata, MetadataKind } from "@tufjs/models";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateKeyPair } from "../../../shared/crypto/index.js";
import { tufKeyIdOf } from "../../../shared/tuf/keys.js";
import { ValidationError, VerificationError } from "../../../shared/errors/index.js";
import type { Database } from "../db/index.js";
import { onEveryDatabase, type TestDatabase } from "../db/test-postgres.js";
import { ConflictError, NotFoundError } from "../errors.js";
import { nextRoot, signWith, expiresIn } from "../release/metadata.js";
import { createTufRepository, ImageTooLargeError, tufKeyId, type TufRepository } from "./index.js";
import { chunksOf, offlineKeys, rootDocument, SAMPLE_CUSTOM, targetFor, targetsDocument } from "./testing/index.js";
import { tempDirPool } from "../../../test/support/temp-dir.js";

const DAY_MS = 86_400_000;

function contract(backend: string, open: () => Promise<TestDatabase>) {
  describe(`TUF repository (${backend})`, () => {
    const dirs = tempDirPool("tuf");
    let dir: string;
    let db: Database;
    let close: () => Promise<void>;
    let repo: TufRepository;
    let clock = Date.UTC(2030, 0, 1);
    const online = { snapshot: generateKeyPair(), timestamp: generateKeyPair() };
    const keys = offlineKeys();
    const image = new TextEncoder().encode("firmware image v2 ".repeat(1000));
    const image3 = new TextEncoder().encode("firmware image v3 ".repeat(1000));

    beforeAll(async () => {
      dir = dirs.make();
      const opened = await open();
      db = opened.db;
      close = opened.close;
      repo = createTufRepository({
        db,
        dataDir: dir,
        keys: online,
        options: { timestampTtlMs: DAY_MS, snapshotTtlMs: 7 * DAY_MS, maxImageBytes: 1024 * 1024 },
        logger: pino({ level: "silent" }),
        now: () => clock,
      });
    });
    afterAll(async () => {
      await close();
      dirs.cleanup();
    });

    const doc = (opts: Parameters<typeof rootDocument>[2] = {}) => rootDocument(keys, repo.onlineKeys, { now: clock, ...opts });

    it("refuses targets before any root, and a first root that is not version 1 or not self-signed to threshold", async () => {
      await expect(repo.uploadTargets(targetsDocument([], keys.targets, { now: clock }))).rejects.toBeInstanceOf(ConflictError);
      await expect(repo.uploadRoot(doc({ version: 2 }))).rejects.toBeInstanceOf(ConflictError);
      await expect(repo.uploadRoot(doc({ signers: keys.root.slice(0, 1) }))).rejects.toBeInstanceOf(VerificationError);
      await expect(repo.uploadRoot(doc({ expiresMs: -DAY_MS }))).rejects.toBeInstanceOf(VerificationError);
      expect((await repo.status()).rootVersion).toBeNull();
    });

    it("refuses a root that does not list the plane's online keys", async () => {
      const otherOnline = rootDocument(keys, { ...repo.onlineKeys, snapshot: repo.onlineKeys.timestamp }, { now: clock });
      await expect(repo.uploadRoot(otherOnline)).rejects.toThrow(/online snapshot key/);
    });

    // HW-TUF-4: @tufjs/models counts distinct key IDS; one key under two ids would meet a threshold of 2 alone.
    it("refuses a root that lists one public key twice in a role, or a key under an id that is not its own", async () => {
      const pemOf = (publicKey: Uint8Array) =>
        createPublicKey({ key: Buffer.concat([Buffer.from("302a300506032b6570032100", "hex"), Buffer.from(publicKey)]), format: "der", type: "spki" })
          .export({ type: "spki", format: "pem" })
          .toString();
      const resigned = (change: (signed: { keys: Record<string, unknown>; roles: Record<string, { keyids: string[]; threshold: number }> }) => void) => {
        const json = structuredClone(doc()) as { signed: never; signatures: unknown[] };
        change(json.signed);
        json.signatures = [];
        return signWith(Metadata.fromJSON(MetadataKind.Root, json as never), keys.root).toJSON();
      };
      const targetsKey = keys.targets[0]!.publicKey;
      const forged = resigned((signed) => {
        signed.keys["f".repeat(64)] = signed.keys[tufKeyId(targetsKey)];
        signed.roles.targets = { keyids: [tufKeyId(targetsKey), "f".repeat(64)], threshold: 2 };
      });
      await expect(repo.uploadRoot(forged)).rejects.toThrow(/key id f{64} is not the id of its key/);
      // Siblings: the same key in another encoding under its own id, in the targets, root, snapshot and timestamp roles.
      const byRole = { targets: targetsKey, root: keys.root[0]!.publicKey, snapshot: online.snapshot.publicKey, timestamp: online.timestamp.publicKey };
      for (const [role, publicKey] of Object.entries(byRole)) {
        const pem = { keytype: "ed25519", scheme: "ed25519", keyval: { public: pemOf(publicKey) } };
        const aliased = resigned((signed) => {
          signed.keys[tufKeyIdOf(pem)] = pem;
          signed.roles[role]!.keyids.push(tufKeyIdOf(pem));
        });
        await expect(repo.uploadRoot(aliased), role).rejects.toThrow(/lists one public key twice/);
      }
      expect((await repo.status()).rootVersion).toBeNull();
    });

    it("accepts root v1 and serves it as root.json and 1.root.json", async () => {
      await expect(repo.uploadRoot(doc())).resolves.toEqual({ version: 1 });
      expect(JSON.parse((await repo.metadata("root.json")) ?? "null").signed.version).toBe(1);
      expect(await repo.metadata("1.root.json")).toBe(await repo.metadata("root.json"));
      expect(await repo.metadata("2.root.json")).toBeNull();
      expect(await repo.metadata("../etc/passwd")).toBeNull();
    });

    it("stores an image only when it hashes to its name, and caps the size", async () => {
      const hash = targetFor("x", image).sha256;
      await expect(repo.storeImage(chunksOf(image), "0".repeat(64))).rejects.toBeInstanceOf(VerificationError);
      await expect(repo.storeImage(chunksOf(new Uint8Array(2 * 1024 * 1024)), "1".repeat(64))).rejects.toBeInstanceOf(ImageTooLargeError);
      await expect(repo.storeImage(chunksOf(image), hash)).resolves.toEqual({ sha256: hash, length: image.length, created: true });
      await expect(repo.storeImage(chunksOf(image), hash)).resolves.toMatchObject({ created: false });
    });

    it("refuses targets below the targets threshold, signed by a wrong key, or by the online keys only", async () => {
      const target = targetFor("fw-s19", image);
      await expect(repo.uploadTargets(targetsDocument([target], keys.targets.slice(0, 1), { now: clock }))).rejects.toThrow(/threshold/);
      await expect(repo.uploadTargets(targetsDocument([target], [generateKeyPair(), generateKeyPair()], { now: clock }))).rejects.toBeInstanceOf(VerificationError);
      await expect(repo.uploadTargets(targetsDocument([target], [online.snapshot, online.timestamp], { now: clock }))).rejects.toBeInstanceOf(VerificationError);
      await expect(repo.uploadTargets(targetsDocument([target], [...keys.root], { now: clock }))).rejects.toBeInstanceOf(VerificationError);
      expect((await repo.status()).targetsVersion).toBeNull();
    });

    it("refuses expired targets, a missing image, a length that differs, and bad custom metadata", async () => {
      const target = targetFor("fw-s19", image);
      await expect(repo.uploadTargets(targetsDocument([target], keys.targets, { now: clock, expiresMs: -1000 }))).rejects.toThrow(/expired/);
      await expect(repo.uploadTargets(targetsDocument([targetFor("fw-s19", image3)], keys.targets, { now: clock }))).rejects.toThrow(/not uploaded/);
      await expect(repo.uploadTargets(targetsDocument([{ ...target, length: target.length + 1 }], keys.targets, { now: clock }))).rejects.toThrow(/length/);
      // HW-UPD-3: the agents' version definition (shared/semver); each of these was published once and refused by every agent.
      for (const version of ["two", "1.0.0-01", "1.0.0-a..b", "1.0.0-rc.", "01.0.0", "1.0.0+", "v1.0.0"]) {
        const bad = { ...target, custom: { ...SAMPLE_CUSTOM, version } };
        await expect(repo.uploadTargets(targetsDocument([bad], keys.targets, { now: clock })), version).rejects.toMatchObject({ field: "signed.targets.fw-s19.custom.version" });
      }
      const noMeasurements = { ...target, custom: { hardwareModels: ["S19"], version: "2.0.0" } as never };
      await expect(repo.uploadTargets(targetsDocument([noMeasurements], keys.targets, { now: clock }))).rejects.toMatchObject({ field: "signed.targets.fw-s19.custom.referenceMeasurements" });
      // A path listed twice could not become reference values, so the release is refused before publishing.
      const twice = { ...target, custom: { ...SAMPLE_CUSTOM, referenceMeasurements: [...SAMPLE_CUSTOM.referenceMeasurements, ...SAMPLE_CUSTOM.referenceMeasurements] } };
      await expect(repo.uploadTargets(targetsDocument([twice], keys.targets, { now: clock }))).rejects.toThrow(/listed twice/);
      expect((await repo.status()).targetsVersion).toBeNull();
      await expect(repo.uploadTargets({ signed: { _type: "snapshot" } })).rejects.toBeInstanceOf(ValidationError);
    });

    it("publishes valid targets with a snapshot and timestamp signed by the online keys, verifiable from root", async () => {
      const published = await repo.uploadTargets(targetsDocument([targetFor("fw-s19", image)], keys.targets, { now: clock }));
      expect(published).toMatchObject({ targetsVersion: 1, snapshotVersion: 1, timestampVersion: 1 });
      expect(published.changed.map((t) => t.name)).toEqual(["fw-s19"]);

      const root = Metadata.fromJSON(MetadataKind.Root, JSON.parse((await repo.metadata("root.json")) as string));
      const timestampText = (await repo.metadata("timestamp.json")) as string;
      const timestamp = Metadata.fromJSON(MetadataKind.Timestamp, JSON.parse(timestampText));
      root.verifyDelegate("timestamp", timestamp);
      const snapshotText = (await repo.metadata(`${timestamp.signed.snapshotMeta.version}.snapshot.json`)) as string;
      timestamp.signed.snapshotMeta.verify(Buffer.from(snapshotText));
      const snapshot = Metadata.fromJSON(MetadataKind.Snapshot, JSON.parse(snapshotText));
      root.verifyDelegate("snapshot", snapshot);
      const targetsText = (await repo.metadata(`${snapshot.signed.meta["targets.json"]?.version}.targets.json`)) as string;
      const targets = Metadata.fromJSON(MetadataKind.Targets, JSON.parse(targetsText));
      root.verifyDelegate("targets", targets);

      const sha = targets.signed.targets["fw-s19"]?.hashes.sha256 as string;
      await expect(repo.targetFile(`${sha}.fw-s19`)).resolves.toMatchObject({ length: image.length });
      await expect(repo.targetFile(`${sha}.other`)).resolves.toBeNull();
      await expect(repo.targetFile(`${"0".repeat(64)}.fw-s19`)).resolves.toBeNull();
      await expect(repo.getTarget("fw-s19")).resolves.toMatchObject({ version: "2.0.0", hardwareModels: ["S19"] });
      await expect(repo.getTarget("nope")).rejects.toBeInstanceOf(NotFoundError);
      // Names of Object.prototype's members are just unknown names, not a crash (public route).
      for (const name of ["constructor", "__proto__", "toString"]) {
        await expect(repo.getTarget(name)).rejects.toBeInstanceOf(NotFoundError);
        await expect(repo.targetFile(`${sha}.${name}`)).resolves.toBeNull();
      }
    });

    it("refuses a rollback to the same or an older targets version", async () => {
      await expect(repo.uploadTargets(targetsDocument([targetFor("fw-s19", image)], keys.targets, { now: clock, version: 1 }))).rejects.toThrow(/rollback/);
    });

    it("publishes the next targets version on top of the previous one", async () => {
      await repo.storeImage(chunksOf(image3), targetFor("x", image3).sha256);
      const previous = Metadata.fromJSON(MetadataKind.Targets, JSON.parse((await repo.metadata("targets.json")) as string));
      const custom = { ...SAMPLE_CUSTOM, version: "3.0.0" };
      const published = await repo.uploadTargets(targetsDocument([targetFor("fw-s19-v3", image3, custom)], keys.targets, { now: clock, previous }));
      expect(published.targetsVersion).toBe(2);
      expect(published.changed.map((t) => t.name)).toEqual(["fw-s19-v3"]);
      expect((await repo.listTargets()).map((t) => t.name).sort()).toEqual(["fw-s19", "fw-s19-v3"]);
    });

    it("rotates root: v2 needs the old AND the new thresholds", async () => {
      const current = Metadata.fromJSON(MetadataKind.Root, JSON.parse((await repo.metadata("root.json")) as string));
      const newKeys = offlineKeys();
      const next = () => nextRoot(current, { rootKeys: newKeys.root.map((k) => k.publicKey), rootThreshold: 2, expires: expiresIn(365 * DAY_MS, clock) });
      await expect(repo.uploadRoot(signWith(next(), newKeys.root).toJSON())).rejects.toThrow(/root v1's keys/);
      await expect(repo.uploadRoot(signWith(next(), keys.root).toJSON())).rejects.toThrow(/its own root keys/);
      await expect(repo.uploadRoot(signWith(next(), [...keys.root.slice(0, 2), ...newKeys.root.slice(0, 2)]).toJSON())).resolves.toEqual({ version: 2 });
      expect(JSON.parse((await repo.metadata("1.root.json")) as string).signed.version).toBe(1);
      expect(JSON.parse((await repo.metadata("root.json")) as string).signed.version).toBe(2);
    });

    it("renews the timestamp when less than a third of its lifetime is left, and the snapshot likewise", async () => {
      const before = await repo.status();
      await expect(repo.renewIfDue()).resolves.toEqual({ renewed: [] });
      clock += DAY_MS - DAY_MS / 4;
      await expect(repo.renewIfDue()).resolves.toEqual({ renewed: ["timestamp"] });
      const after = await repo.status();
      expect(after.timestampVersion).toBe((before.timestampVersion as number) + 1);
      expect(after.snapshotVersion).toBe(before.snapshotVersion);
      clock += 5 * DAY_MS;
      await expect(repo.renewIfDue()).resolves.toEqual({ renewed: ["snapshot", "timestamp"] });
      expect((await repo.status()).snapshotVersion).toBe((before.snapshotVersion as number) + 1);
    });

    it("HW-FAULT-11: metadata signed while the plane's clock was ahead is re-signed once it is back (the freeze window is one lifetime)", async () => {
      clock += 3 * DAY_MS; // the plane's clock steps forward: the timestamp is re-signed on that clock
      await expect(repo.renewIfDue()).resolves.toEqual({ renewed: ["timestamp"] });
      const ahead = await repo.status();
      clock -= 3 * DAY_MS; // and back: its expiry is now about 4 days away, for a 1-day lifetime
      await expect(repo.renewIfDue()).resolves.toEqual({ renewed: ["timestamp"] });
      expect((await repo.status()).timestampVersion).toBe((ahead.timestampVersion as number) + 1);
      await expect(repo.renewIfDue()).resolves.toEqual({ renewed: [] }); // once
    });
  });
}

onEveryDatabase("TUF repository", contract);
