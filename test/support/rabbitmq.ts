/**
 * A control plane in the external broker mode (HASHWARD_BROKER=rabbitmq) with a RabbitMQ node of its own
 * (scripts/scale/rabbitmq-node.ts: own node name, ports, epmd and cookie under a temp folder; the machine's
 * RabbitMQ is never touched). The plane starts first (it writes the TLS files RabbitMQ's MQTT listener serves),
 * then the node, then the plane's "rabbitmq connected" line is awaited.
 */
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { brokerTlsFiles } from "../../control-plane/src/broker/rabbitmq/tls-files.js";
import { MAX_PAYLOAD_BYTES } from "../../shared/protocol/index.js";
import { freePort, freePorts, newCookie, RabbitNode, rabbitmqMissing } from "../../scripts/scale/rabbitmq-node.js";
import { restartControlPlane, startControlPlane, type ControlPlane, type ControlPlaneOptions } from "./processes.js";
import { tempDir } from "./temp-dir.js";

export { rabbitmqMissing, RabbitNode };

export interface RabbitPlane extends ControlPlane {
  node: RabbitNode;
  hookUrl: string;
}

/**
 * The environment of a plane in rabbitmq mode against running node(s): AMQP URL(s) (comma-separated for a
 * cluster), the first node's management API and MQTT listener, the hook listener's port and shared secret.
 */
export function rabbitPlaneEnv(nodes: readonly Pick<RabbitNode, "amqpUrl" | "managementUrl" | "mqttUrl">[], hookPort: number, secret: string): Record<string, string> {
  return {
    HASHWARD_BROKER: "rabbitmq",
    HASHWARD_RABBITMQ_URL: nodes.map((node) => node.amqpUrl).join(","),
    HASHWARD_RABBITMQ_MANAGEMENT_URL: nodes[0]!.managementUrl,
    HASHWARD_BROKER_HOOK_PORT: String(hookPort),
    HASHWARD_BROKER_HOOK_SECRET: secret,
    HASHWARD_PUBLIC_MQTT_URL: nodes[0]!.mqttUrl,
  };
}

/** Starts a RabbitMQ node and a plane using it (TLS on unless `options.tls` is false). */
export async function startRabbitPlane(options: ControlPlaneOptions = {}): Promise<RabbitPlane> {
  const ports = await freePorts();
  const hookPort = await freePort();
  const secret = randomBytes(24).toString("hex");
  const planePassword = randomBytes(16).toString("hex");
  const amqpUrl = `amqp://hashward:${planePassword}@127.0.0.1:${ports.amqp}`;
  const tls = options.tls !== false;
  const plane = await startControlPlane({
    ...options,
    env: {
      HASHWARD_BROKER: "rabbitmq",
      HASHWARD_RABBITMQ_URL: amqpUrl,
      HASHWARD_RABBITMQ_MANAGEMENT_URL: `http://hashward:${planePassword}@127.0.0.1:${ports.management}`,
      HASHWARD_BROKER_HOOK_PORT: String(hookPort),
      HASHWARD_BROKER_HOOK_SECRET: secret,
      HASHWARD_PUBLIC_MQTT_URL: `${tls ? "mqtts" : "mqtt"}://127.0.0.1:${ports.mqtt}`,
      ...options.env,
    },
  });
  const hookUrl = `http://127.0.0.1:${hookPort}/${secret}`;
  const node = new RabbitNode({
    dir: join(tempDir("rabbitmq").path, "node"),
    name: `hw${ports.amqp}`,
    ports,
    planeUser: "hashward",
    planePassword,
    hookBaseUrl: hookUrl,
    tls: tls ? brokerTlsFiles(plane.dataDir) : null,
    maxMessageBytes: MAX_PAYLOAD_BYTES + 1024,
    cookie: newCookie(),
  });
  try {
    await node.start();
    await plane.proc.waitForLine("rabbitmq connected", (line) => line.msg === "rabbitmq connected; consuming device messages", 120_000);
  } catch (error) {
    await plane.proc.kill("SIGKILL");
    await node.kill();
    await node.stopEpmd();
    throw error;
  }
  return { ...plane, node, hookUrl };
}

/** Restarts the plane on the same data folder, ports and broker (the node keeps running). */
export async function restartRabbitPlane(plane: RabbitPlane): Promise<RabbitPlane> {
  const restarted = await restartControlPlane(plane);
  await restarted.proc.waitForLine("rabbitmq connected", (line) => line.msg === "rabbitmq connected; consuming device messages", 120_000);
  return { ...restarted, node: plane.node, hookUrl: plane.hookUrl };
}

/** Stops the node and its epmd (the plane is the caller's). */
export async function stopRabbitNode(plane: RabbitPlane | undefined): Promise<void> {
  if (!plane) return;
  await plane.node.kill();
  await plane.node.stopEpmd();
}
