/** Compiled agents on simulated boards for the fault campaigns (the real binary where execution matters). */
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { createSimulatedBoard } from "../../../agent/src/platform/index.js";
import { loadDeviceKey } from "../../support/device-key.js";
import { simulatedAgentConfig, startAgent, writeAgentConfig, type ControlPlane, type ManagedProcess } from "../../support/processes.js";
import { tempDir } from "../../support/temp-dir.js";
import { waitFor } from "../../support/wait.js";

export const AGENT_MODEL = "S19";
export const AGENT_FIRMWARE = "2024.06.1";

export interface FaultAgent {
  name: string;
  /** The agent's own temp folder (board, state, config): removed after the campaign. */
  dir: string;
  proc: ManagedProcess;
  boardRoot: string;
  stateDir: string;
  deviceId: string;
}

/** Starts a compiled agent that enrolls with `token` (accepted at once) and waits for its device id. */
export async function startFaultAgent(plane: ControlPlane, name: string, token: string): Promise<FaultAgent> {
  const dir = tempDir(name).path;
  const boardRoot = join(dir, "board");
  await createSimulatedBoard(boardRoot, { model: AGENT_MODEL });
  const stateDir = join(dir, "state");
  const configFile = writeAgentConfig(
    dir,
    simulatedAgentConfig(plane, { stateDir, boardRoot, model: AGENT_MODEL, firmwareVersion: AGENT_FIRMWARE }, { enrollmentToken: token }),
  );
  const proc = startAgent(name, configFile);
  const deviceId = await waitFor(`${name}'s key`, () => loadDeviceKey(stateDir)?.deviceId, { timeoutMs: 60_000 });
  return { name, dir, proc, boardRoot, stateDir, deviceId };
}

/** What the simulated miner does now (`run/miner.state`): `stopped` once a quarantine was enforced. */
export function minerState(agent: FaultAgent): string {
  return readFileSync(join(agent.boardRoot, "run/miner.state"), "utf8").trim();
}

/** Commands of `action` the agent executed (its "command executed" log lines): a doubled command shows as 2. */
export function executions(agent: FaultAgent, action: string): number[] {
  return agent.proc.lines.filter((line) => line.msg === "command executed" && line.action === action).map((line) => Number(line.seq));
}

/**
 * Ends a plane-side fault campaign (nothing is left behind in /tmp: a 2,000-device plane's data dir and the boards
 * are tens of MB): the event stream, the fleet, every agent and the plane (SIGKILL), their directories, then
 * `beforeCluster` (e.g. closing a client pool) and the PostgreSQL cluster. Each part may be missing (a failed start).
 */
export async function endCampaign(parts: {
  stream: { close(): Promise<void> } | undefined;
  fleet: { stop(): Promise<void> } | undefined;
  agents: readonly FaultAgent[];
  plane: ControlPlane | undefined;
  cluster: { destroy(): Promise<void> } | undefined;
  beforeCluster?: () => Promise<unknown>;
}): Promise<void> {
  const { stream, fleet, agents, plane, cluster } = parts;
  await stream?.close();
  await fleet?.stop();
  await Promise.all(agents.map((agent) => agent.proc.kill("SIGKILL")));
  await plane?.proc.kill("SIGKILL");
  for (const dir of [plane?.dataDir, ...agents.map((agent) => agent.dir)]) if (dir) rmSync(dir, { recursive: true, force: true });
  await parts.beforeCluster?.();
  await cluster?.destroy();
}
