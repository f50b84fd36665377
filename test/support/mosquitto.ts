/**
 * A Mosquitto 2 broker of the test's own (its own config, port and data folder under a temp dir; the machine's
 * Mosquitto service is never touched), for tests of the plane's MQTT 5 client side (the EMQX mode's ingest over
 * shared subscriptions). Anonymous and without ACLs: the security checks are EMQX's job in production, contract-
 * tested separately (control-plane/src/broker/emqx/hooks.test.ts).
 */
import { spawn, spawnSync } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { connect } from "node:net";
import { join } from "node:path";
import { freePort } from "../../scripts/scale/rabbitmq-node.js";
import { tempDir } from "./temp-dir.js";
import { waitFor } from "./wait.js";

const MOSQUITTO = "/usr/sbin/mosquitto";

/** Why Mosquitto cannot run here (for describeUnless), or null. */
export function mosquittoMissing(): string | null {
  const probe = spawnSync(MOSQUITTO, ["-h"], { encoding: "utf8" });
  if (probe.error) return `${MOSQUITTO} not found (apt-get install mosquitto)`;
  return /mosquitto version 2\./.test(`${probe.stdout}${probe.stderr}`) ? null : "Mosquitto 2 is needed (MQTT 5 shared subscriptions)";
}

export interface MosquittoBroker {
  url: string;
  port: number;
  /** Stops the broker (SIGTERM, then waits for it) and removes its folder. */
  stop(): Promise<void>;
}

/** Starts Mosquitto on a free loopback port; resolves once it accepts TCP connections (throws after 10 s). */
export async function startMosquitto(): Promise<MosquittoBroker> {
  const dir = tempDir("mosquitto");
  const port = await freePort();
  const conf = join(dir.path, "mosquitto.conf");
  await writeFile(conf, [`listener ${port} 127.0.0.1`, "allow_anonymous true", "persistence false", "max_inflight_messages 64", "log_type error", ""].join("\n"));
  const child = spawn(MOSQUITTO, ["-c", conf], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const accepting = () =>
    new Promise<boolean>((resolve) => {
      if (child.exitCode !== null) throw new Error(`mosquitto exited: ${stderr.slice(-500)}`);
      const socket = connect(port, "127.0.0.1", () => {
        socket.end();
        resolve(true);
      });
      socket.once("error", () => resolve(false));
    });
  try {
    await waitFor(`mosquitto accepting on port ${port}`, accepting, { timeoutMs: 10_000 });
  } catch (error) {
    child.kill("SIGKILL");
    throw error;
  }
  return {
    url: `mqtt://127.0.0.1:${port}`,
    port,
    async stop() {
      if (child.exitCode === null) child.kill("SIGTERM");
      await exited;
      dir.cleanup();
    },
  };
}
