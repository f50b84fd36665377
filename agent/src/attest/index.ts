/**
 * Signed evidence (HW-EVD-1): device, nonce, firmware and agent version, boot id and the
 * measurement list, signed with the device key over canonical JSON. The evidence seq is taken from the
 * persisted state (incremented and written BEFORE the evidence leaves) so it never repeats across crashes.
 */
import { encodePayload, MAX_PAYLOAD_BYTES, PROTOCOL_VERSION, signObject, type Evidence, type Finding, type Observations } from "../../../shared/index.js";
import type { Logger } from "../log/index.js";
import { measure } from "../measure/index.js";
import type { Platform } from "../platform/index.js";
import type { StateStore } from "../state/index.js";

export { watchPaths, type WatchHandle, type WatchTarget } from "./watch.js";

export type EvidenceReason = Evidence["reason"];

export interface AttesterDeps {
  deviceId: string;
  privateKey: Uint8Array;
  state: StateStore;
  platform: Platform;
  measurePaths: readonly string[];
  includeAgentBinary: boolean;
  model: string;
  firmwareVersion: string;
  agentVersion: string;
  bootId: string;
  now: () => number;
  log: Logger;
  execPath?: string;
  /** The guards' current findings (HW-GUARD-1..9), carried in every evidence once the guards have run. */
  findings?: () => Finding[] | null;
  /** What the guards could observe in their last cycle (HW-APPRAISE-3); absent before the first cycle. */
  observations?: () => Observations | null;
}

/** Measurements taken before evidence is given up when an update keeps changing the firmware version under them. */
const MAX_MEASURE_ATTEMPTS = 3;

export class Attester {
  constructor(private readonly deps: AttesterDeps) {}

  async evidence(reason: EvidenceReason, nonce: string | null): Promise<Evidence> {
    const d = this.deps;
    if ((reason === "challenge") !== (nonce !== null)) {
      throw new TypeError(`evidence reason ${reason} ${nonce === null ? "needs" : "must not have"} a nonce`);
    }
    // The firmware version and the measurements must describe one state: an update that commits while the files
    // are read would pair the old slot's files with the new version (a false contraindication, then an
    // auto-quarantine). The version is read before and after; a measurement it changed under is taken again.
    let firmwareVersion = d.firmwareVersion;
    let measured = await this.measure();
    for (let attempt = 1; d.firmwareVersion !== firmwareVersion && attempt < MAX_MEASURE_ATTEMPTS; attempt += 1) {
      firmwareVersion = d.firmwareVersion;
      measured = await this.measure();
    }
    if (d.firmwareVersion !== firmwareVersion) throw new Error(`firmware version changed during ${MAX_MEASURE_ATTEMPTS} measurements; evidence not sent`);
    const { measurements, truncated } = measured;
    if (truncated > 0) d.log.error({ truncated }, "measurement list over the evidence cap; tail left out");
    const findings = d.findings?.() ?? null;
    const observations = d.observations?.() ?? null;
    const seq = d.state.nextEvidenceSeq();
    const evidence = signObject(
      {
        v: PROTOCOL_VERSION,
        type: "evidence" as const,
        deviceId: d.deviceId,
        seq,
        nonce,
        reason,
        ts: d.now(),
        model: d.model,
        firmwareVersion,
        agentVersion: d.agentVersion,
        bootId: d.bootId,
        measurements,
        ...(findings ? { findings } : {}),
        ...(observations ? { observations } : {}),
      },
      d.privateKey,
    );
    const bytes = encodePayload(evidence).byteLength;
    if (bytes > MAX_PAYLOAD_BYTES) d.log.error({ bytes, max: MAX_PAYLOAD_BYTES }, "evidence exceeds the payload cap; the broker will refuse it");
    return evidence;
  }

  private measure(): ReturnType<typeof measure> {
    const d = this.deps;
    return measure(d.measurePaths, {
      resolve: (p) => d.platform.resolve(p),
      includeAgentBinary: d.includeAgentBinary,
      ...(d.execPath ? { execPath: d.execPath } : {}),
    });
  }
}
