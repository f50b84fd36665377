/**
 * Farm alerts from heartbeat telemetry on the plane (HW-ALERT-1..4): the analyzer (./analyzer.ts) judges each
 * accepted heartbeat with the device's `farm-alerts` policy thresholds (./thresholds.ts, HW-ALERT-3), and what
 * starts or clears becomes part of the device's state:
 *
 * - HW-ALERT-1: only heartbeats the device side accepted (signed, HW-LIVE-1) are judged; each alert that starts is
 *   a `farm.alert` event (stream and webhook outbox) and an audit row, in the transaction that stores it.
 * - HW-ALERT-2: each active alert is a finding of guard `farm-alert` on the `runtime-opaque` claim, with its
 *   evidence (`expected` = the thresholds, `seen` = what the telemetry showed), kept in `devices.farm_findings` and
 *   folded into the attestation result (control-plane/src/appraisal `withFarmFindings`) now and at every later
 *   appraisal until telemetry clears it. zero-hashrate, fans-stopped and pool-switching are contraindicated (the
 *   device turns contraindicated and the auto-quarantine policy applies, as for a contraindicated guard finding),
 *   hashrate-drop is a warning. A verdict change is a stored appraisal transition (history) with the result.
 * - HW-ALERT-4: the heartbeat path never waits for the database: changes are queued in memory and written in one
 *   transaction per batch (every `flushIntervalMs`, or at once when `flushBatch` are waiting); a failed write is
 *   kept and retried, and `close()` writes what is left. A SIGKILL loses at most the queue; the analyzer's state is
 *   seeded from `devices.farm_findings` at start, so a condition still present is raised again by the telemetry.
 */
import { eq, ne, sql } from "drizzle-orm";
import type { Registry } from "prom-client";
import { Counter, Gauge } from "prom-client";
import type { Finding, Heartbeat } from "../../../shared/protocol/index.js";
import { FARM_ALERT_GUARD, verdictKey, withFarmFindings } from "../appraisal/index.js";
import { devices, policies } from "../db/index.js";
import { recordPlaneEvents } from "../events/record.js";
import { buildPolicyIndex, farmAlertThresholdsFor, type PolicyIndex, toRecord } from "../policy/index.js";
import { type Actor, type AppraisalState, type AttestationResult, type ContainmentState, createServiceContext, type DeviceRow, issueContainment, lockDevices, publishCommands, recordAudit, recordTransitions, type ServiceDeps, type TransitionRecord } from "../service/index.js";
import { appraisalEventFor, transition } from "../trust/index.js";
import { FARM_ALERT_KINDS, FarmAlertAnalyzer, type FarmAlertChange, type FarmAlertKind, type FarmFinding } from "./analyzer.js";
import type { FarmAlertThresholds } from "./thresholds.js";

export { FARM_ALERT_KINDS, FarmAlertAnalyzer, type FarmAlertChange, type FarmAlertKind, type FarmFinding } from "./analyzer.js";
export { DEFAULT_FARM_ALERT_THRESHOLDS, farmAlertThresholdsSchema, type FarmAlertThresholds } from "./thresholds.js";

const ACTOR: Actor = { kind: "system", id: "farm-alerts" };
/** Queued changes beyond this are dropped (counted and logged): a database down for long must not eat the heap. */
const MAX_QUEUED = 100_000;

export interface FarmAlertsOptions {
  /** How often queued alert changes are written (ms). Default 250. */
  flushIntervalMs?: number;
  /** Queued changes that trigger a write at once. Default 500. */
  flushBatch?: number;
  /** How often the thresholds are re-read for changes made by other planes (ms). Default 10,000. */
  thresholdsRefreshMs?: number;
}

export interface FarmAlerts {
  /** Reads the thresholds and seeds the analyzer with the stored active alerts. Call once before heartbeats arrive. */
  start(): Promise<void>;
  /**
   * Judges the telemetry of a heartbeat the device side accepted (HW-ALERT-1): the device side's `afterHeartbeat`
   * hook (control-plane/src/service DeviceSideHooks). Queues what starts or clears; never waits (HW-ALERT-4).
   */
  observeHeartbeat(heartbeat: Heartbeat): void;
  /** Re-reads the `farm-alerts` policies now (after a change in this process). */
  refreshThresholds(): Promise<void>;
  /** The thresholds a device is judged by now. */
  thresholdsFor(deviceId: string): FarmAlertThresholds;
  /** Writes every queued change now; resolves when written (or failed and re-queued). */
  flush(): Promise<void>;
  /** Stops the timers and writes what is queued. */
  close(): Promise<void>;
}

interface Queued {
  deviceId: string;
  atMs: number;
  change: FarmAlertChange;
  thresholds: FarmAlertThresholds;
}

function metric<T>(registry: Registry, name: string, make: () => T): T {
  return (registry.getSingleMetric(name) as T | undefined) ?? make();
}

/** A farm alert as a finding (HW-ALERT-2): guard `farm-alert`, subject the alert kind, expected vs seen. */
export function toFinding(f: FarmFinding): Finding {
  return { guard: FARM_ALERT_GUARD, claim: "runtime-opaque", tier: f.tier, subject: f.alert, expected: f.expected, seen: f.evidence, message: f.summary };
}

function isFarmAlertKind(value: string): value is FarmAlertKind {
  return (FARM_ALERT_KINDS as readonly string[]).includes(value);
}

export function createFarmAlerts(deps: ServiceDeps & { registry: Registry; farmAlerts?: FarmAlertsOptions }): FarmAlerts {
  const ctx = createServiceContext(deps);
  const { db, logger } = ctx;
  const flushIntervalMs = deps.farmAlerts?.flushIntervalMs ?? 250;
  const flushBatch = deps.farmAlerts?.flushBatch ?? 500;
  const refreshMs = deps.farmAlerts?.thresholdsRefreshMs ?? 10_000;
  const analyzer = new FarmAlertAnalyzer();
  const raised = metric(deps.registry, "hashward_farm_alerts_total", () => new Counter({ name: "hashward_farm_alerts_total", help: "Farm alerts raised from telemetry (HW-ALERT-1), by alert", labelNames: ["alert"], registers: [deps.registry] }));
  const clearedTotal = metric(deps.registry, "hashward_farm_alerts_cleared_total", () => new Counter({ name: "hashward_farm_alerts_cleared_total", help: "Farm alerts cleared by telemetry, by alert", labelNames: ["alert"], registers: [deps.registry] }));
  const writeFailures = metric(deps.registry, "hashward_farm_alert_write_failures_total", () => new Counter({ name: "hashward_farm_alert_write_failures_total", help: "Failed farm-alert batch writes (the batch is retried), and changes dropped for a full queue (reason)", labelNames: ["reason"], registers: [deps.registry] }));
  const queuedGauge = metric(deps.registry, "hashward_farm_alert_queue", () => new Gauge({ name: "hashward_farm_alert_queue", help: "Farm-alert changes waiting to be written", registers: [deps.registry] }));

  let index: PolicyIndex = buildPolicyIndex([]);
  let models = new Map<string, string>();
  let queue: Queued[] = [];
  let writing: Promise<void> = Promise.resolve();
  let flushTimer: NodeJS.Timeout | null = null;
  let refreshTimer: NodeJS.Timeout | null = null;
  let refreshing: Promise<void> | null = null;
  let closed = false;

  async function loadThresholds(): Promise<void> {
    const rows = await db.select().from(policies).where(eq(policies.kind, "farm-alerts"));
    const next = buildPolicyIndex(rows.map(toRecord));
    // Model-scoped thresholds need each device's model; read only when such a policy exists.
    const byModel = next["farm-alerts"].byModel.size > 0;
    const nextModels = byModel ? new Map((await db.select({ id: devices.id, model: devices.model }).from(devices)).map((d) => [d.id, d.model])) : new Map<string, string>();
    index = next;
    models = nextModels;
  }

  function refreshThresholds(): Promise<void> {
    refreshing ??= loadThresholds()
      .catch((error: unknown) => logger.error({ err: error }, "reading farm-alert thresholds failed; keeping the previous ones"))
      .finally(() => {
        refreshing = null;
      });
    return refreshing;
  }

  function thresholdsFor(deviceId: string): FarmAlertThresholds {
    const model = models.get(deviceId) ?? null;
    if (model === null && index["farm-alerts"].byModel.size > 0) void refreshThresholds(); // a device enrolled since
    return farmAlertThresholdsFor(index, { id: deviceId, model });
  }

  function enqueue(item: Queued): void {
    if (queue.length >= MAX_QUEUED) {
      queue.shift();
      writeFailures.inc({ reason: "queue-full" });
      logger.error({ max: MAX_QUEUED }, "farm-alert queue full: dropping the oldest change (is the database down?)");
    }
    queue.push(item);
    queuedGauge.set(queue.length);
    if (queue.length >= flushBatch) void flush();
    else if (!flushTimer) {
      flushTimer = setTimeout(() => {
        flushTimer = null;
        void flush();
      }, flushIntervalMs);
      flushTimer.unref();
    }
  }

  /** Applies a device's queued changes, in order, to its stored farm findings. */
  function applyChanges(current: readonly Finding[], items: readonly Queued[]): { findings: Finding[]; started: FarmFinding[]; cleared: FarmAlertKind[] } {
    const bySubject = new Map(current.filter((f) => f.guard === FARM_ALERT_GUARD).map((f) => [f.subject, f]));
    const started: FarmFinding[] = [];
    const cleared: FarmAlertKind[] = [];
    for (const { change } of items) {
      for (const f of change.started) {
        if (bySubject.has(f.alert)) continue; // already stored (raised before a plane restart): not new
        bySubject.set(f.alert, toFinding(f));
        started.push(f);
      }
      for (const kind of change.cleared) if (bySubject.delete(kind)) cleared.push(kind);
    }
    return { findings: [...bySubject.values()], started, cleared };
  }

  async function write(batch: Queued[]): Promise<void> {
    const now = ctx.now();
    const at = new Date(now);
    const byDevice = new Map<string, Queued[]>();
    for (const item of batch) byDevice.set(item.deviceId, [...(byDevice.get(item.deviceId) ?? []), item]);
    const outcome = await db.transaction(async (tx) => {
      const rows = await lockDevices(tx, [...byDevice.keys()]);
      const transitions: TransitionRecord[] = [];
      const events: Parameters<typeof recordPlaneEvents>[1] = [];
      const audits: Parameters<typeof recordAudit>[1] = [];
      const quarantine: { row: DeviceRow; reason: string }[] = [];
      const counted: { started: FarmAlertKind[]; cleared: FarmAlertKind[] } = { started: [], cleared: [] };
      for (const row of rows) {
        if (row.enrollment !== "accepted") continue;
        const { findings, started, cleared } = applyChanges(row.farmFindings as Finding[], byDevice.get(row.id)!);
        if (started.length === 0 && cleared.length === 0) continue;
        const previous = row.lastAppraisal as AttestationResult | null;
        const result = withFarmFindings(previous, findings, now); // HW-ALERT-2
        const from = row.appraisal as AppraisalState;
        // HW-EVD-2: while a sequence reset holds the verdict, an alert may only make it contraindicated.
        const held = row.sequenceResetAt !== null && result.status !== "contraindicated";
        const to = held ? from : transition("appraisal", from, appraisalEventFor(result.status));
        await tx.update(devices).set({ farmFindings: findings, lastAppraisal: result, appraisal: to, updatedAt: at }).where(eq(devices.id, row.id));
        const what = [...started.map((f) => `${f.alert}: ${f.summary}`), ...cleared.map((kind) => `${kind} cleared`)].join("; ");
        if (from !== to) transitions.push({ deviceId: row.id, machine: "appraisal", from, to, reason: `farm alert: ${what}`, actor: ACTOR, evidence: result });
        for (const f of started) {
          // HW-ALERT-1: one event per alert that starts, with its evidence and the thresholds it was judged by.
          const thresholds = byDevice.get(row.id)!.find((q) => q.change.started.includes(f))?.thresholds;
          events.push({ kind: "farm.alert", deviceId: row.id, data: { ...f, guard: FARM_ALERT_GUARD, claim: "runtime-opaque", ...(thresholds ? { thresholds } : {}) } });
          audits.push({ actor: ACTOR, action: `farm-alert.${f.alert}`, target: row.id, detail: toFinding(f) });
          counted.started.push(f.alert);
        }
        for (const kind of cleared) {
          audits.push({ actor: ACTOR, action: `farm-alert.${kind}.cleared`, target: row.id, detail: { alert: kind } });
          counted.cleared.push(kind);
        }
        // The auto-quarantine policy, as for evidence: a contraindicated verdict that is new (entered, or other
        // contraindicated findings), so an operator's release sticks until the reasons change.
        const verdictIsNew = from !== "contraindicated" || verdictKey(previous) !== verdictKey(result);
        const containment = row.containment as ContainmentState;
        if (ctx.options.autoQuarantine === "contraindicated" && to === "contraindicated" && verdictIsNew && (containment === "none" || containment === "release_requested")) {
          quarantine.push({ row, reason: `policy: farm alert: ${what}` });
        }
      }
      await recordTransitions(tx, transitions, at);
      await recordPlaneEvents(tx, events, at);
      await recordAudit(tx, audits, at);
      const toPublish = [];
      for (const { row, reason } of quarantine) toPublish.push(...(await issueContainment(ctx, tx, [row], "quarantine", { kind: "system", id: "policy" }, reason, now)).toPublish);
      return { toPublish, counted };
    });
    for (const kind of outcome.counted.started) raised.inc({ alert: kind });
    for (const kind of outcome.counted.cleared) clearedTotal.inc({ alert: kind });
    await publishCommands(ctx, outcome.toPublish);
  }

  /** One writer at a time; each takes everything queued when it starts. A failed batch goes back to the front. */
  function flush(): Promise<void> {
    if (flushTimer) {
      clearTimeout(flushTimer);
      flushTimer = null;
    }
    writing = writing.then(async () => {
      if (queue.length === 0) return;
      const batch = queue;
      queue = [];
      try {
        await write(batch);
      } catch (error) {
        writeFailures.inc({ reason: "write" });
        logger.error({ err: error, changes: batch.length }, "writing farm alerts failed; retrying");
        queue = [...batch, ...queue];
        if (!flushTimer && !closed) {
          flushTimer = setTimeout(() => {
            flushTimer = null;
            void flush();
          }, Math.max(flushIntervalMs, 1_000));
          flushTimer.unref();
        }
      } finally {
        queuedGauge.set(queue.length);
      }
    });
    return writing;
  }

  return {
    async start() {
      try {
        await loadThresholds();
        // The alerts active before a restart: not raised again, cleared when telemetry shows them gone.
        const stored = await db.select({ id: devices.id, farmFindings: devices.farmFindings }).from(devices).where(ne(devices.farmFindings, sql`'[]'::jsonb`));
        for (const row of stored) analyzer.seed(row.id, (row.farmFindings as Finding[]).map((f) => f.subject).filter(isFarmAlertKind));
      } catch (error) {
        // The plane still starts: the timer re-reads the thresholds, and a stored alert raised again is not new.
        logger.error({ err: error }, "reading farm-alert thresholds and active alerts failed at start; using the defaults until the next read");
      }
      refreshTimer = setInterval(() => void refreshThresholds(), refreshMs);
      refreshTimer.unref();
    },

    observeHeartbeat(heartbeat) {
      const atMs = ctx.now();
      const thresholds = thresholdsFor(heartbeat.deviceId);
      const change = analyzer.observe(heartbeat.deviceId, atMs, heartbeat.telemetry, thresholds, heartbeat.containment);
      // HW-ALERT-4: queued, never awaited here.
      if (change.started.length > 0 || change.cleared.length > 0) enqueue({ deviceId: heartbeat.deviceId, atMs, change, thresholds });
    },

    refreshThresholds,
    thresholdsFor,
    flush,

    async close() {
      closed = true;
      if (refreshTimer) clearInterval(refreshTimer);
      refreshTimer = null;
      await flush();
      if (flushTimer) clearTimeout(flushTimer);
      flushTimer = null;
    },
  };
}
