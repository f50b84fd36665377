/** Starts bench/support/bare-aedes.ts as a child process under Bun and talks to its small control endpoint. */
import { spawn } from "node:child_process";
import { BUN, ManagedProcess, REPO_ROOT } from "../../test/support/processes.js";

export interface BareBroker {
  mqttUrl: string;
  proc: ManagedProcess;
  /** Messages delivered to the internal up/ subscriber so far. */
  delivered(): Promise<number>;
  /** One QoS 1 publish to each device's down/command; resolves when aedes has dispatched them all. */
  fanout(deviceIds: readonly string[]): Promise<void>;
  close(): Promise<void>;
}

export async function startBareBroker(): Promise<BareBroker> {
  const child = spawn(BUN, ["bench/support/bare-aedes.ts"], { cwd: REPO_ROOT, stdio: ["ignore", "pipe", "pipe"] });
  const proc = new ManagedProcess("bare-aedes", child);
  const ready = await proc.waitForLine("bare broker ready", (line) => line.msg === "bare broker ready", 30_000);
  const control = `http://127.0.0.1:${Number(ready.httpPort)}`;
  return {
    mqttUrl: `mqtt://127.0.0.1:${Number(ready.mqttPort)}`,
    proc,
    async delivered() {
      const response = await fetch(`${control}/count`);
      return ((await response.json()) as { delivered: number }).delivered;
    },
    async fanout(deviceIds) {
      const response = await fetch(`${control}/fanout`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ deviceIds }),
      });
      if (!response.ok) throw new Error(`bare broker fanout -> ${response.status}`);
    },
    async close() {
      await proc.kill("SIGTERM");
    },
  };
}
