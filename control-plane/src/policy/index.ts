/**
 * Guard policy: pool policies, network allowlists and malware indicator sets per fleet, model or device group,
 * delivered to devices as signed `set-policy` commands (the command mechanism of control-plane/src/service:
 * per-device seq, expiry, retried until acked). See README.md beside this file.
 *
 * HW-POLICY-2: every change takes a new version from policy_version_seq and, in the same transaction as the
 * change and its audit row, issues the new policy to every accepted device whose effective policy changed (one
 * bulk transaction). A device that was offline gets it on its next hello when its acked version is older.
 */
import { and, eq, gt, inArray, isNull, lt, or, sql } from "drizzle-orm";
import { validationErrorFromZod } from "../../../shared/errors/index.js";
import type { Ack, Command } from "../../../shared/protocol/index.js";
import { commands, devicePolicies, devices, policies, referenceValueSets } from "../db/index.js";
import { ConflictError, NotFoundError } from "../errors.js";
import { type Actor, chunks, createServiceContext, type DeviceRow, type DeviceSideHooks, issueCommands, lockDevice, lockDevices, newId, publishCommands, recordAudit, type ServiceDeps, type Tx } from "../service/index.js";
import { BUILT_IN_INDICATORS, BUILT_IN_NETWORK } from "./defaults.js";
import { buildPolicyIndex, firstSharedDevice, normalizeScope, type PolicyRecord, type ReferenceDigests, referenceDigests, resolvePolicy, scopeKey, scopeLevel } from "./effective.js";
import { DEFAULT_FARM_ALERT_THRESHOLDS } from "../alerts/thresholds.js";
import { PLANE_SIDE_POLICY_KINDS, type PolicyBodies, type PolicyKind, type PolicyScope, type PoolPolicyBody, policyInputSchemas, type SetPolicyParams } from "./schemas.js";
import type { DevicePolicyView, PolicyChange, PolicyDelivery, PolicyList, PolicyService, PolicyView } from "./types.js";

export * from "./types.js";
export { BUILT_IN_INDICATORS, BUILT_IN_NETWORK } from "./defaults.js";
export { guardPolicySchema, type GuardPolicy, PLANE_SIDE_POLICY_KINDS, POLICY_KINDS, policyInputSchemas, setPolicyParamsSchema, type SetPolicyParams } from "./schemas.js";
export { buildPolicyIndex, farmAlertThresholdsFor, type PolicyIndex, type PolicyRecord } from "./effective.js";

const POLICY_ACTOR: Actor = { kind: "system", id: "policy" };
/** pg_advisory_xact_lock key: policy writers take turns (group overlap checks and version order). */
const POLICY_WRITE_LOCK = 0x4857_504c;
const LEVEL_ORDER = { default: 0, model: 1, devices: 2 } as const;

/** The same dependencies as the domain services (options.commandTtlMs is the set-policy command's lifetime). */
export type PolicyServiceDeps = ServiceDeps;

type PolicyRow = typeof policies.$inferSelect;

export function toRecord(row: PolicyRow): PolicyRecord {
  return { id: row.id, kind: row.kind as PolicyKind, scope: row.scope as PolicyScope, body: row.body as PolicyBodies[PolicyKind], version: row.version };
}

function toView(row: PolicyRow): PolicyView {
  return {
    id: row.id,
    kind: row.kind,
    scope: row.scope as PolicyScope,
    version: row.version,
    createdAt: row.createdAt.toISOString(),
    updatedAt: row.updatedAt.toISOString(),
    updatedBy: row.updatedBy as Actor,
    ...(row.body as object),
  } as PolicyView;
}

/** The first zod issue as a ValidationError naming the field (unknown keys name the key). */
function parseInput<K extends PolicyKind>(kind: K, input: unknown) {
  const result = policyInputSchemas[kind].safeParse(input);
  if (result.success) return result.data;
  throw validationErrorFromZod(result.error, `${kind} policy`);
}

async function nextVersion(tx: Tx): Promise<number> {
  const result = await tx.execute(sql`select nextval('policy_version_seq')::text as v`);
  return Number((result.rows[0] as { v: string }).v);
}

export function createPolicyService(deps: PolicyServiceDeps): PolicyService {
  const ctx = createServiceContext(deps);
  const { db } = ctx;

  async function loadIndex(tx: Tx) {
    return buildPolicyIndex((await tx.select().from(policies)).map(toRecord));
  }

  /**
   * HW-GUARD-8: the approved reference digests per model + firmware version of the given devices, loaded only
   * when some indicator asks for them (one query per change, not one per device).
   */
  async function loadReferences(tx: Tx, index: ReturnType<typeof buildPolicyIndex>, rows: readonly { model: string; firmwareVersion: string }[]) {
    const byKey = new Map<string, string[]>();
    const records = [...index.indicators.byDevice.values(), ...index.indicators.byModel.values(), ...(index.indicators.fleet ? [index.indicators.fleet] : [])];
    const wanted = records.some((r) => (r.body as PolicyBodies["indicators"]).indicators.some((i) => i.allowReferenceValues));
    const key = (model: string, firmwareVersion: string) => `${model}\u0000${firmwareVersion}`;
    if (wanted && rows.length > 0) {
      const models = [...new Set(rows.map((r) => r.model))];
      for (const part of chunks(models, 1000)) {
        const sets = await tx
          .select({ model: referenceValueSets.model, firmwareVersion: referenceValueSets.firmwareVersion, measurements: referenceValueSets.measurements })
          .from(referenceValueSets)
          .where(and(eq(referenceValueSets.status, "approved"), inArray(referenceValueSets.model, part)));
        for (const set of sets) byKey.set(key(set.model, set.firmwareVersion), referenceDigests(set.measurements));
      }
    }
    return (device: { model: string; firmwareVersion: string }): ReferenceDigests => byKey.get(key(device.model, device.firmwareVersion)) ?? null;
  }

  // Hello storms (a farm reconnecting) should not cost a transaction per device when no pool policy exists at all.
  // The cached answer is only a shortcut for "nothing to send": a change made on another replica reaches the
  // accepted devices through that replica's bulk delivery; only a device accepted within the TTL window and
  // saying hello here waits for its next hello.
  const POOL_CHECK_TTL_MS = 2_000;
  let anyPoolPolicy: { value: boolean; at: number } | null = null;
  async function hasAnyPoolPolicy(): Promise<boolean> {
    if (anyPoolPolicy && performance.now() - anyPoolPolicy.at < POOL_CHECK_TTL_MS) return anyPoolPolicy.value;
    const [row] = await db.select({ id: policies.id }).from(policies).where(eq(policies.kind, "pools")).limit(1);
    anyPoolPolicy = { value: row !== undefined, at: performance.now() };
    return anyPoolPolicy.value;
  }

  /**
   * Issues a set-policy to each locked, accepted device whose effective policy differs from what it was last
   * sent (all of them with `force`): one version for the whole change, one issueCommands call per distinct
   * content, the delivered version recorded per device. Publish `toPublish` after commit.
   */
  async function issuePolicies(tx: Tx, rows: DeviceRow[], actor: Actor, version: number | null, now: number, force = false) {
    const none = { toPublish: [] as Command[], devices: 0, version: null as number | null };
    if (rows.length === 0) return none;
    const index = await loadIndex(tx);
    const referenceOf = await loadReferences(tx, index, rows);
    const delivered = new Map<string, string>();
    for (const ids of chunks(rows.map((row) => row.id), 5000)) {
      const found = await tx
        .select({ deviceId: devicePolicies.deviceId, hash: devicePolicies.deliveredHash })
        .from(devicePolicies)
        .where(inArray(devicePolicies.deviceId, ids));
      for (const row of found) delivered.set(row.deviceId, row.hash);
    }
    const groups = new Map<string, { effective: ReturnType<typeof resolvePolicy>; members: DeviceRow[] }>();
    for (const row of rows) {
      const effective = resolvePolicy(index, { id: row.id, model: row.model }, referenceOf(row));
      if (!effective.deliverable) continue;
      if (!force && delivered.get(row.id) === effective.hash) continue;
      const group = groups.get(effective.hash) ?? { effective, members: [] };
      group.members.push(row);
      groups.set(effective.hash, group);
    }
    if (groups.size === 0) return none;

    const issuedVersion = version ?? (await nextVersion(tx));
    const at = new Date(now);
    const toPublish: Command[] = [];
    const deliveries: (typeof devicePolicies.$inferInsert)[] = [];
    for (const { effective, members } of groups.values()) {
      const { pools, network, indicators } = effective.content;
      const params: SetPolicyParams = { policy: { version: issuedVersion, pools: pools as PoolPolicyBody, network, indicators } };
      // supersede: an older pending set-policy is never worth delivering once a newer one exists.
      const issued = await issueCommands(ctx, tx, members, { action: "set-policy", params, actor, supersede: true }, now);
      toPublish.push(...issued.toPublish);
      for (const member of members) {
        deliveries.push({ deviceId: member.id, deliveredVersion: issuedVersion, deliveredHash: effective.hash, deliveredSeq: member.nextCommandSeq, deliveredAt: at });
      }
    }
    for (const part of chunks(deliveries)) {
      await tx
        .insert(devicePolicies)
        .values(part)
        .onConflictDoUpdate({
          target: devicePolicies.deviceId,
          set: {
            deliveredVersion: sql`excluded.delivered_version`,
            deliveredHash: sql`excluded.delivered_hash`,
            deliveredSeq: sql`excluded.delivered_seq`,
            deliveredAt: sql`excluded.delivered_at`,
          },
        });
    }
    return { toPublish, devices: deliveries.length, version: issuedVersion };
  }

  /** Locks the accepted devices a scope covers and sends those whose effective policy changed a new one. */
  async function deliverToScope(tx: Tx, scope: PolicyScope, actor: Actor, version: number | null, now: number) {
    const accepted = eq(devices.enrollment, "accepted");
    const ids: string[] = [];
    if (scope.deviceIds !== undefined) {
      for (const part of chunks(scope.deviceIds, 5000)) {
        const found = await tx.select({ id: devices.id }).from(devices).where(and(accepted, inArray(devices.id, part)));
        ids.push(...found.map((row) => row.id));
      }
    } else {
      const where = scope.model !== undefined ? and(accepted, eq(devices.model, scope.model)) : accepted;
      ids.push(...(await tx.select({ id: devices.id }).from(devices).where(where)).map((row) => row.id));
    }
    const rows = (await lockDevices(tx, ids)).filter((row) => row.enrollment === "accepted");
    return issuePolicies(tx, rows, actor, version, now);
  }

  /**
   * A device cannot be told "no pool policy" (the agent keeps its last one), so deleting the pool policy that is
   * the last one covering an accepted device is refused: replace it instead. Runs after the delete, in its tx.
   */
  async function refuseOrphanedDevices(tx: Tx, deleted: PolicyRow): Promise<void> {
    const scope = deleted.scope as PolicyScope;
    const accepted = eq(devices.enrollment, "accepted");
    const where = scope.deviceIds !== undefined ? and(accepted, inArray(devices.id, scope.deviceIds)) : scope.model !== undefined ? and(accepted, eq(devices.model, scope.model)) : accepted;
    const covered = await tx.select({ id: devices.id, model: devices.model }).from(devices).where(where);
    const index = await loadIndex(tx);
    const orphan = covered.find((device) => !resolvePolicy(index, device).deliverable);
    if (orphan) {
      throw new ConflictError(`pools policy ${deleted.id} is the only pool policy of device ${orphan.id} (and maybe others); replace it with PUT instead of deleting it`);
    }
  }

  const changeListeners = new Set<(kind: PolicyKind) => void>();

  async function change(actor: Actor, kind: PolicyKind, write: (tx: Tx, now: number) => Promise<{ row: PolicyRow; scope: PolicyScope; version: number | null }>) {
    const now = ctx.now();
    const outcome = await db.transaction(async (tx) => {
      await tx.execute(sql`select pg_advisory_xact_lock(${POLICY_WRITE_LOCK})`);
      const { row, scope, version } = await write(tx, now);
      // A plane-side kind changes nothing a device is sent: no device is locked, no set-policy issued.
      const delivery = PLANE_SIDE_POLICY_KINDS.includes(kind) ? { toPublish: [], devices: 0, version: null } : await deliverToScope(tx, scope, actor, version, now);
      return { row, delivery };
    });
    anyPoolPolicy = null;
    for (const listener of changeListeners) {
      try {
        listener(kind);
      } catch (error) {
        ctx.logger.error({ err: error, kind }, "policy change listener failed");
      }
    }
    await publishCommands(ctx, outcome.delivery.toPublish);
    ctx.logger.info({ kind, policyId: outcome.row.id, version: outcome.delivery.version, devices: outcome.delivery.devices }, "policy changed");
    const delivery: PolicyDelivery = { version: outcome.delivery.version, devices: outcome.delivery.devices };
    return { policy: toView(outcome.row), delivery };
  }

  return {
    onChange(listener) {
      changeListeners.add(listener);
      return () => changeListeners.delete(listener);
    },

    async listPolicies<K extends PolicyKind>(kind: K): Promise<PolicyList<K>> {
      const rows = await db.select().from(policies).where(eq(policies.kind, kind));
      const level = (row: PolicyRow) => LEVEL_ORDER[scopeLevel(row.scope as PolicyScope)];
      rows.sort((a, b) => level(a) - level(b) || (a.scopeKey < b.scopeKey ? -1 : a.scopeKey > b.scopeKey ? 1 : 0));
      const builtIn: { [P in PolicyKind]: PolicyBodies[P] | null } = {
        pools: null,
        network: BUILT_IN_NETWORK,
        indicators: { indicators: [...BUILT_IN_INDICATORS] },
        "farm-alerts": DEFAULT_FARM_ALERT_THRESHOLDS,
      };
      return { kind, policies: rows.map(toView) as PolicyView<K>[], builtInDefault: builtIn[kind] as PolicyBodies[K] | null };
    },

    async putPolicy<K extends PolicyKind>(actor: Actor, kind: K, input: unknown): Promise<PolicyChange<K>> {
      const { scope: givenScope, ...body } = parseInput(kind, input); // HW-POLICY-1
      const scope = normalizeScope(givenScope);
      const key = scopeKey(scope);
      return change(actor, kind, async (tx, now) => {
        const at = new Date(now);
        const existing = await tx.select().from(policies).where(eq(policies.kind, kind));
        for (const row of existing) {
          if (row.scopeKey === key) continue;
          // A device in two groups would have two "most specific" policies: refuse rather than guess.
          const shared = firstSharedDevice(scope, row.scope as PolicyScope);
          if (shared) throw new ConflictError(`device ${shared} is already in ${kind} policy ${row.id}; delete that policy or leave the device out`);
        }
        const version = await nextVersion(tx);
        const previous = existing.find((row) => row.scopeKey === key);
        let row: PolicyRow;
        if (previous) {
          [row] = (await tx
            .update(policies)
            .set({ scope, body, version, updatedAt: at, updatedBy: actor })
            .where(eq(policies.id, previous.id))
            .returning()) as [PolicyRow];
        } else {
          [row] = (await tx
            .insert(policies)
            .values({ id: newId("pol"), kind, scopeKey: key, scope, body, version, createdAt: at, updatedAt: at, updatedBy: actor })
            .returning()) as [PolicyRow];
        }
        await recordAudit(tx, [{ actor, action: `policy.${kind}.put`, target: row.id, detail: { scope, version, previousVersion: previous?.version ?? null, body } }], at);
        return { row, scope, version };
      }) as Promise<PolicyChange<K>>;
    },

    async deletePolicy(actor, kind, id) {
      return change(actor, kind, async (tx, now) => {
        const [row] = await tx.delete(policies).where(and(eq(policies.id, id), eq(policies.kind, kind))).returning();
        if (!row) throw new NotFoundError(`${kind} policy`, id);
        if (kind === "pools") await refuseOrphanedDevices(tx, row);
        const version = await nextVersion(tx);
        await recordAudit(tx, [{ actor, action: `policy.${kind}.delete`, target: row.id, detail: { scope: row.scope, version, deletedVersion: row.version } }], new Date(now));
        return { row, scope: row.scope as PolicyScope, version };
      });
    },

    async devicePolicy(deviceId): Promise<DevicePolicyView> {
      const [device] = await db.select({ id: devices.id, model: devices.model, firmwareVersion: devices.firmwareVersion }).from(devices).where(eq(devices.id, deviceId));
      if (!device) throw new NotFoundError("device", deviceId);
      const index = await loadIndex(db);
      const effective = resolvePolicy(index, device, (await loadReferences(db, index, [device]))(device));
      const [delivered] = await db.select().from(devicePolicies).where(eq(devicePolicies.deviceId, deviceId));
      const current = delivered?.deliveredHash === effective.hash;
      return {
        deviceId,
        model: device.model,
        policy: effective.content,
        farmAlerts: effective.farmAlerts,
        deliverable: effective.deliverable,
        sources: effective.sources,
        hash: effective.hash,
        delivered: delivered
          ? { version: delivered.deliveredVersion, seq: delivered.deliveredSeq, at: delivered.deliveredAt.toISOString(), current }
          : null,
        acked: delivered?.ackedVersion != null ? { version: delivered.ackedVersion, at: delivered.ackedAt?.toISOString() ?? null } : null,
        lastFailure: delivered?.lastFailure ?? null,
        upToDate: current && delivered !== undefined && (delivered.ackedVersion ?? 0) >= delivered.deliveredVersion,
      };
    },

    async deliverOnHello(deviceId) {
      if (!(await hasAnyPoolPolicy())) return false; // HW-POLICY-3: nothing is sent without a pool policy
      const now = ctx.now();
      const issued = await db.transaction(async (tx) => {
        const row = await lockDevice(tx, deviceId);
        if (!row || row.enrollment !== "accepted") return false;
        const index = await loadIndex(tx);
        const effective = resolvePolicy(index, row, (await loadReferences(tx, index, [row]))(row));
        if (!effective.deliverable) return false;
        const [delivered] = await tx.select().from(devicePolicies).where(eq(devicePolicies.deviceId, deviceId));
        let due = !delivered || delivered.deliveredHash !== effective.hash;
        if (!due && delivered && (delivered.ackedVersion ?? 0) < delivered.deliveredVersion) {
          // Sent but never acknowledged (expired, or failed): send again unless a live command is on its way.
          const [pending] = await tx
            .select({ seq: commands.seq })
            .from(commands)
            .where(and(eq(commands.deviceId, deviceId), eq(commands.action, "set-policy"), eq(commands.status, "pending"), gt(commands.expiresAt, new Date(now))))
            .limit(1);
          due = !pending;
        }
        if (!due) return false;
        // A fresh version even for the same content: the agent refuses a version <= the one it stores.
        return (await issuePolicies(tx, [row], POLICY_ACTOR, null, now, true)).devices > 0;
      });
      return issued;
    },

    async recordAck(ack: Ack) {
      if (ack.action !== "set-policy") return;
      const [command] = await db
        .select({ params: commands.params })
        .from(commands)
        .where(and(eq(commands.deviceId, ack.deviceId), eq(commands.seq, ack.seq)));
      const version = (command?.params as { policy?: { version?: unknown } } | undefined)?.policy?.version;
      if (typeof version !== "number" || !Number.isSafeInteger(version)) return;
      const at = new Date(ctx.now());
      if (ack.status === "done") {
        await db
          .update(devicePolicies)
          .set({ ackedVersion: version, ackedAt: at, lastFailure: null })
          .where(and(eq(devicePolicies.deviceId, ack.deviceId), or(isNull(devicePolicies.ackedVersion), lt(devicePolicies.ackedVersion, version))));
      } else {
        await db
          .update(devicePolicies)
          .set({ lastFailure: `version ${version}: ${ack.reason ?? "failed without a reason"}` })
          .where(eq(devicePolicies.deviceId, ack.deviceId));
      }
    },
  };
}

/**
 * Policy delivery as device-side hooks (control-plane/src/service DeviceSideHooks), registered where the device side
 * is created: before a verified hello is handled, a due set-policy is issued (so the hello handler publishes it with
 * the other pending commands, before the challenge; HW-LIVE-1: a hello that is not the device's issues nothing);
 * after a verified set-policy ack is recorded, the acked version is recorded. A failure is logged by the device
 * side and never blocks the device.
 */
export function policyDeliveryHooks(policy: Pick<PolicyService, "deliverOnHello" | "recordAck">): Required<Pick<DeviceSideHooks, "beforeHello" | "afterAck">> {
  return {
    beforeHello: async (hello) => {
      await policy.deliverOnHello(hello.deviceId);
    },
    afterAck: (ack) => policy.recordAck(ack),
  };
}
