/**
 * Replicas on one PostgreSQL, in one process with one connection pool per "replica" (the process-level proof with
 * real planes is test/e2e/replicas.test.ts): shared keys made once (HW-HA-1), one bootstrap admin token
 * (HW-HA-2), one lease holder and takeover after expiry (HW-HA-3), and a pending command claimed by one replica
 * per retry period even when every replica can reach the device (HW-HA-4, the external-broker case).
 */
import { randomBytes } from "node:crypto";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { eq, sql } from "drizzle-orm";
import pino from "pino";
import { Registry } from "prom-client";
import { afterAll, beforeAll, expect, it, vi } from "vitest";
import { deviceIdFromPublicKey, generateKeyPair, toBase64Url } from "../../../shared/crypto/index.js";
import { ConfigError } from "../../../shared/errors/index.js";
import type { Challenge, Command } from "../../../shared/protocol/index.js";
import { describeUnless } from "../../../test/support/skip.js";
import { tempDirPool } from "../../../test/support/temp-dir.js";
import { apiTokens, devices, leases, openDatabase, planeSecrets, type OpenedDatabase } from "../db/index.js";
import { createTemporaryPostgres } from "../db/test-postgres.js";
import { loadOrCreateCommandKey } from "../keys/index.js";
import { createServices, type DevicePublisher, type Services } from "../service/index.js";
import { loadOrCreateCa } from "../tls/index.js";
import { loadOrCreateOnlineKeys } from "../tuf/index.js";
import { createSharedSecrets, SECRETS_KEY_OPTION, startLeaderLease, type SharedSecrets } from "./index.js";

const baseUrl = process.env.HASHWARD_TEST_DATABASE_URL;
const silent = pino({ level: "silent" });
const OPERATOR = { kind: "operator", id: "tok_test", role: "operator" } as const;
const RETRY_MS = 1_000;

/** Reaches every device, as a publisher through an external broker does: the case where replicas could double. */
class FleetPublisher implements DevicePublisher {
  sent: Command[] = [];
  async publish(_deviceId: string, kind: "challenge" | "command", message: Challenge | Command): Promise<void> {
    if (kind === "command") this.sent.push(message as Command);
  }
  isConnected(): boolean {
    return true;
  }
}

const folders = tempDirPool("replicas");
const tempDir = (name: string) => folders.make(`replicas-${name}`);

describeUnless(baseUrl ? null : "set HASHWARD_TEST_DATABASE_URL to a PostgreSQL URL to run", "replicas on one PostgreSQL", () => {
  let database: { url: string; drop(): Promise<void> };
  /** One pool per simulated replica, like separate processes. */
  const pools: OpenedDatabase[] = [];

  beforeAll(async () => {
    database = await createTemporaryPostgres(baseUrl!);
    for (let i = 0; i < 3; i += 1) pools.push(await openDatabase({ dataDir: "unused", databaseUrl: database.url }));
  });
  afterAll(async () => {
    for (const pool of pools) await pool.close();
    await database?.drop();
    folders.cleanup();
  });

  const stores = (secretsKey: Buffer | null = null): SharedSecrets[] => pools.map((pool, i) => createSharedSecrets({ db: pool.db, dataDir: `/replica-${i}`, secretsKey }));

  it("HW-HA-1: replicas starting together on an empty database make one command key, one TUF key pair and one CA, and write no private key file", async () => {
    const dirs = pools.map((_, i) => tempDir(`r${i}`));
    const shared = stores();
    const commandKeys = await Promise.all(dirs.map((dir, i) => loadOrCreateCommandKey(dir, shared[i]!)));
    const onlineKeys = await Promise.all(dirs.map((dir, i) => loadOrCreateOnlineKeys(dir, shared[i]!)));
    const cas = await Promise.all(dirs.map((dir, i) => loadOrCreateCa(dir, Date.now(), shared[i]!)));

    expect(new Set(commandKeys.map((k) => toBase64Url(k.keyPair.publicKey))).size).toBe(1);
    expect(commandKeys.filter((k) => k.created)).toHaveLength(1);
    expect(new Set(onlineKeys.map((k) => toBase64Url(k.snapshot.publicKey) + toBase64Url(k.timestamp.publicKey))).size).toBe(1);
    // Snapshot and timestamp key are two rows: one replica may have made one and another the other.
    expect(onlineKeys.some((k) => k.created)).toBe(true);
    expect(new Set(cas.map((c) => c.ca.caCertHash)).size).toBe(1);
    expect(cas.filter((c) => c.created)).toHaveLength(1);
    for (const dir of dirs) {
      // The CA certificate is copied for the CLI; private keys stay in the database only.
      expect(existsSync(join(dir, "ca.pem"))).toBe(true);
      for (const file of ["ca.key", "command-signing.key", "tuf-snapshot.key", "tuf-timestamp.key"]) expect(existsSync(join(dir, file))).toBe(false);
    }
    // A restart with the copied ca.pem (and no ca.key) loads the same CA.
    expect((await loadOrCreateCa(dirs[0]!, Date.now(), shared[0]!)).ca.caCertHash).toBe(cas[0]!.ca.caCertHash);
    const rows = await pools[0]!.db.select({ name: planeSecrets.name }).from(planeSecrets);
    expect(rows.map((r) => r.name).sort()).toEqual(["command-signing-key", "tls-ca", "tuf-snapshot-key", "tuf-timestamp-key"]);
  });

  it("HW-HA-1: a replica's own key file is the shared key; a replica whose file differs refuses to start and changes nothing", async () => {
    await pools[0]!.db.delete(planeSecrets);
    const [first, second, third] = stores();
    const own = tempDir("own");
    const single = await loadOrCreateCommandKey(own); // what a single plane made before it became a replica
    const published = await loadOrCreateCommandKey(own, first!);
    expect(published.origin).toBe("local");
    expect(published.keyPair.publicKey).toEqual(single.keyPair.publicKey);
    expect((await loadOrCreateCommandKey(tempDir("fresh"), second!)).keyPair.publicKey).toEqual(single.keyPair.publicKey);

    const other = tempDir("other");
    writeFileSync(join(other, "command-signing.key"), `${toBase64Url(generateKeyPair().privateKey)}\n`, { mode: 0o600 });
    const error = await loadOrCreateCommandKey(other, third!).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).option).toBe("HASHWARD_DATA_DIR");
    expect((error as Error).message).toContain(join(other, "command-signing.key"));
    expect((await loadOrCreateCommandKey(tempDir("later"), third!)).keyPair.publicKey).toEqual(single.keyPair.publicKey);
  });

  it("HW-HA-1: with HASHWARD_SECRETS_KEY_FILE the stored rows are sealed: the same key opens them, no key, another key or a changed row is refused", async () => {
    await pools[0]!.db.delete(planeSecrets);
    const key = randomBytes(32);
    const [writer, reader] = stores(key);
    const made = await loadOrCreateCommandKey(tempDir("sealed"), writer!);
    const [row] = await pools[0]!.db.select().from(planeSecrets).where(eq(planeSecrets.name, "command-signing-key"));
    expect(row!.encryption).toBe("aes-256-gcm");
    expect(row!.value).not.toContain(toBase64Url(made.keyPair.privateKey));
    expect((await loadOrCreateCommandKey(tempDir("sealed-2"), reader!)).keyPair.publicKey).toEqual(made.keyPair.publicKey);

    for (const secretsKey of [null, randomBytes(32)]) {
      const refused = await loadOrCreateCommandKey(tempDir("refused"), createSharedSecrets({ db: pools[2]!.db, dataDir: "/x", secretsKey })).catch((e: unknown) => e);
      expect(refused).toBeInstanceOf(ConfigError);
      expect((refused as ConfigError).option).toBe(SECRETS_KEY_OPTION);
    }
    const flipped = row!.value.replace(/^./, (c) => (c === "A" ? "B" : "A"));
    await pools[0]!.db.update(planeSecrets).set({ value: flipped }).where(eq(planeSecrets.name, "command-signing-key"));
    await expect(loadOrCreateCommandKey(tempDir("tampered"), reader!)).rejects.toBeInstanceOf(ConfigError);
  });

  it("HW-HA-2: three replicas bootstrapping at once make exactly one admin token", async () => {
    const planes: Services[] = pools.map((pool) => createServices({ db: pool.db, publisher: new FleetPublisher(), commandKey: generateKeyPair(), logger: silent, options: { commandTtlMs: 60_000, challengeTtlMs: 30_000, staleAfterMs: 90_000, autoQuarantine: "off" } }));
    try {
      await pools[0]!.db.delete(planeSecrets);
      const notes = stores();
      // As the plane does it: the note saying where the token file goes is written with the token.
      const started = await Promise.all(
        planes.map(async (plane, i) => {
          const token = await plane.ensureAdminToken((tx) => notes[i]!.writeNote("admin-token-file", { host: "h", path: `/replica-${i}/admin.token` }, tx));
          return { token, note: token === null ? await notes[i]!.readNote("admin-token-file") : null };
        }),
      );
      const tokens = started.map((s) => s.token);
      expect(tokens.filter((t) => t !== null)).toHaveLength(1);
      // A replica that finds the token already made always finds where its file is (no window in between).
      const creator = tokens.findIndex((t) => t !== null);
      for (const s of started.filter((s) => s.token === null)) expect(s.note).toEqual({ host: "h", path: `/replica-${creator}/admin.token` });
      expect(await pools[0]!.db.select().from(apiTokens).where(eq(apiTokens.role, "admin"))).toHaveLength(1);
      expect(await planes[1]!.ensureAdminToken()).toBeNull();
    } finally {
      for (const plane of planes) await plane.close();
    }
  });

  it("HW-HA-3: one replica holds the lease; a graceful stop hands it over at once, a dead holder's lease is taken only after it expired", async () => {
    await pools[0]!.db.delete(leases);
    const name = `test-${randomBytes(3).toString("hex")}`;
    const ttlMs = 900;
    const [a, b] = await Promise.all(pools.slice(0, 2).map((pool) => startLeaderLease({ db: pool.db, name, ttlMs, logger: silent, registry: new Registry() })));
    try {
      expect([a!.isLeader(), b!.isLeader()].filter(Boolean)).toHaveLength(1);
      const [leader, follower] = a!.isLeader() ? [a!, b!] : [b!, a!];
      await leader.close();
      await vi.waitFor(() => expect(follower.isLeader()).toBe(true), { timeout: 30_000, interval: 50 });
      await follower.close();

      // A holder that died without giving up: the row stays until it expires, then the next attempt takes it.
      await pools[0]!.db.execute(sql`insert into leases (name, holder, term, acquired_at, expires_at) values (${name}, 'dead-replica', 7, now(), now() + interval '1500 milliseconds')
        on conflict (name) do update set holder = 'dead-replica', term = 7, expires_at = now() + interval '1500 milliseconds'`);
      const [dead] = await pools[0]!.db.select().from(leases).where(eq(leases.name, name));
      const successor = await startLeaderLease({ db: pools[2]!.db, name, ttlMs, logger: silent, registry: new Registry() });
      try {
        expect(successor.isLeader()).toBe(false);
        await vi.waitFor(() => expect(successor.isLeader()).toBe(true), { timeout: 30_000, interval: 50 });
        const [taken] = await pools[0]!.db.select().from(leases).where(eq(leases.name, name));
        expect(taken).toMatchObject({ holder: successor.holder, term: 8 });
        // Never before the dead holder's lease ran out (both times on the database's clock).
        expect(taken!.acquiredAt.getTime()).toBeGreaterThanOrEqual(dead!.expiresAt.getTime());
      } finally {
        await successor.close();
      }
    } finally {
      await a!.close();
      await b!.close();
    }
  });

  it("HW-HA-4: replicas that all reach the device re-publish each pending command once per retry period, never twice", async () => {
    let clock = Date.now();
    const publishers = pools.map(() => new FleetPublisher());
    const planes = pools.map((pool, i) =>
      createServices({
        db: pool.db,
        publisher: publishers[i]!,
        commandKey: generateKeyPair(),
        logger: silent,
        now: () => clock,
        options: { commandTtlMs: 60_000, challengeTtlMs: 30_000, staleAfterMs: 90_000, autoQuarantine: "off", commandRetryMs: RETRY_MS },
      }),
    );
    try {
      const ids = Array.from({ length: 40 }, () => {
        const keys = generateKeyPair();
        return { id: deviceIdFromPublicKey(keys.publicKey), publicKey: toBase64Url(keys.publicKey), model: "S19", enrollment: "accepted" };
      });
      await pools[0]!.db.insert(devices).values(ids);
      const issued = await planes[0]!.service.quarantine(OPERATOR, ids.map((d) => d.id), "replica test");
      const seqs = new Set(issued.map((c) => `${c.deviceId}#${c.seq}`));
      expect(seqs.size).toBe(ids.length);
      const republished = () => publishers.flatMap((p) => p.sent.splice(0)).map((c) => `${c.deviceId}#${c.seq}`);
      republished(); // the issuing replica's own first publish

      const perPeriod: string[][] = [];
      for (let period = 0; period < 6; period += 1) {
        // Every replica ticks at the same moment, twice: no command goes out twice in one period.
        await Promise.all(planes.map((plane) => plane.deviceSide.retryPendingCommands()));
        await Promise.all(planes.map((plane) => plane.deviceSide.retryPendingCommands()));
        const sent = republished();
        expect(new Set(sent).size).toBe(sent.length);
        for (const key of sent) expect(seqs.has(key)).toBe(true);
        perPeriod.push(sent);
        clock += RETRY_MS;
      }
      // The first tick that sees them re-publishes every command once (HW-TRUST-3), and the backoff later ones.
      expect(perPeriod[0]!.sort()).toEqual([...seqs].sort());
      expect(perPeriod.slice(1).some((sent) => sent.length === seqs.size)).toBe(true);
    } finally {
      for (const plane of planes) await plane.close();
    }
  });
});
