/**
 * For tests: the whole plane in one process (real broker, PGlite, HTTP API; TLS with its own CA, trusted the way
 * agents trust it) on ephemeral ports in a fresh data folder.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { pino } from "pino";
import { trustPlaneCa } from "../../../../test/support/api.js";
import { tempDir } from "../../../../test/support/temp-dir.js";
import { loadConfig } from "../../config/index.js";
import { startPlane, type Plane } from "../index.js";

/** A running in-process plane, its CA (PEM, for MQTT clients) and `close`, which also deletes the data folder. */
export interface TestPlane {
  plane: Plane;
  caPem: string;
  close(): Promise<void>;
}

/** Starts a plane with `env` (HASHWARD_* variables) on top of loopback hosts, port 0 and a temp data folder. */
export async function startTestPlane(prefix: string, env: Record<string, string> = {}): Promise<TestPlane> {
  const dir = tempDir(prefix.replace(/-$/, ""));
  const dataDir = dir.path;
  const config = loadConfig({
    HASHWARD_HTTP_HOST: "127.0.0.1",
    HASHWARD_MQTT_HOST: "127.0.0.1",
    HASHWARD_HTTP_PORT: "0",
    HASHWARD_MQTT_PORT: "0",
    HASHWARD_DATA_DIR: dataDir,
    ...env,
  });
  const plane = await startPlane(config, pino({ level: "silent" }));
  // HW-TLS-1: the plane serves HTTPS and MQTTS with its own CA; the test trusts it as agents do.
  const caPem = await readFile(join(dataDir, "ca.pem"), "utf8");
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
