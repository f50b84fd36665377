/** The rollout API (control-plane/src/http/routes/rollouts.ts calls it) and its views. */
import type { Actor, AppraisalState, CommandView, ContainmentState } from "../service/index.js";
import type { UpdateProgressPhase } from "../../../shared/protocol/update.js";
import type { RolloutDeviceStatus, RolloutState } from "./machine.js";

export interface RolloutSelector {
  model?: string;
  deviceIds?: string[];
  appraisal?: AppraisalState[];
  containment?: ContainmentState[];
}

/** A group is a fixed number of devices or a percentage of all selected devices; leftovers form a last group. */
export type GroupSpec = { size: number } | { percent: number };

export interface CreateRolloutInput {
  targetName: string;
  selector: RolloutSelector;
  groups: GroupSpec[];
  /** Percent (1-100) of a group that must succeed before the next group starts. */
  successThreshold: number;
  /** Percent (1-100) of a group that, once failed, stops the whole rollout. */
  errorThreshold: number;
  /** Start at once (default true); otherwise the rollout waits in `created` for POST .../start. */
  start?: boolean;
}

export interface RolloutGroupView {
  index: number;
  size: number;
  waiting: number;
  inProgress: number;
  succeeded: number;
  failed: number;
  cancelled: number;
}

export interface RolloutView {
  id: string;
  targetName: string;
  version: string;
  selector: RolloutSelector;
  groups: GroupSpec[];
  successThreshold: number;
  errorThreshold: number;
  state: RolloutState;
  currentGroup: number;
  reason: string | null;
  createdBy: Actor;
  createdAt: string;
  updatedAt: string;
  total: number;
  groupStatus: RolloutGroupView[];
}

export interface RolloutDeviceView {
  deviceId: string;
  group: number;
  status: RolloutDeviceStatus;
  /** The last update-progress phase the device reported (shared/protocol/update.ts). */
  phase: UpdateProgressPhase | null;
  commandSeq: number | null;
  reason: string | null;
  updatedAt: string;
}

export interface RolloutDetail extends RolloutView {
  devices: RolloutDeviceView[];
}

export interface RolloutService {
  create(actor: Actor, input: CreateRolloutInput): Promise<RolloutDetail>;
  list(limit: number): Promise<RolloutView[]>;
  get(id: string): Promise<RolloutDetail>;
  start(actor: Actor, id: string): Promise<RolloutDetail>;
  pause(actor: Actor, id: string, reason?: string): Promise<RolloutDetail>;
  resume(actor: Actor, id: string): Promise<RolloutDetail>;
  /** Emergency stop: no further commands, pending update commands superseded, waiting devices cancelled. */
  cancel(actor: Actor, id: string, reason?: string): Promise<RolloutDetail>;
  /** One signed update command to one device, outside any rollout. */
  updateDevice(actor: Actor, deviceId: string, targetName: string): Promise<CommandView>;
  /** Timer work (safe across restarts and replicas: state in the database, rows locked): track, advance, stop. */
  tick(): Promise<void>;
}
