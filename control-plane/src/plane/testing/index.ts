/**
 * For tests: the whole plane in one process (real broker, PGlite, HTTP API; TLS with its own CA, trusted the way
 * agents trust it) on ephemeral ports in a fresh data folder.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { pino } from "pino";
import { trustPlaneCa } from "../../../../test/support/api.js";
import { loopbackPlaneEnv } from "../../../../test/support/processes.js";
import { tempDir } from "../../../../test/support/temp-dir.js";
import { loadConfig, type ControlPlaneConfig } from "../../config/index.js";
import { startPlane, type Plane } from "../index.js";

/** A running in-process plane, its CA (PEM, for MQTT clients) and `close`, which also deletes the data folder. */
export interface TestPlane {
  plane: Plane;
  caPem: string;
  close(): Promise<void>;
}

/** A plane's configuration for tests: loopback hosts, ports 0 (ephemeral), `dataDir`, then `env` (HASHWARD_*). */
export function testPlaneConfig(dataDir: string, env: Record<string, string> = {}): ControlPlaneConfig {
  return loadConfig({ ...loopbackPlaneEnv(dataDir), ...env });
}

/** Starts a plane with testPlaneConfig(`env`) in a fresh temp data folder named after `prefix`. */
export async function startTestPlane(prefix: string, env: Record<string, string> = {}): Promise<TestPlane> {
  const dir = tempDir(prefix.replace(/-$/, ""));
  const plane = await startPlane(testPlaneConfig(dir.path, env), pino({ level: "silent" }));
  // HW-TLS-1: the plane serves HTTPS and MQTTS with its own CA; the test trusts it as agents do.
  const caPem = await readFile(join(dir.path, "ca.pem"), "utf8");
  trustPlaneCa(plane.httpUrl, caPem);
  return {
    plane,
    caPem,
    async close() {
      await plane.close();
      dir.cleanup();
    },
  };
}
