/**
 * A stand-in control plane for attacks the real plane would never send: an open aedes broker (no auth hooks) and
 * an enrollment endpoint that accepts every device and pins a test command key. The test itself then plays the
 * attacker (or the plane) on the device's down/ topics, against the real compiled agent.
 */
import { createServer as createHttpServer, type Server as HttpServer } from "node:http";
import { createConnection, createServer as createNetServer, type AddressInfo, type Server as NetServer } from "node:net";
import { join } from "node:path";
import { Aedes } from "aedes";
import mqtt, { MqttClient } from "mqtt";
import { generateKeyPair, toBase64Url, type KeyPair } from "../../shared/crypto/index.js";
import { enrollmentRequestSchema } from "../../shared/protocol/index.js";
import { tempDir } from "./temp-dir.js";

export interface FakePlane {
  httpUrl: string;
  mqttUrl: string;
  commandKey: KeyPair;
  /** A client subscribed to every up/ topic; `received` collects [topic, parsed payload]. */
  observer: MqttClient;
  received: Array<{ topic: string; message: any }>;
  enrolled: string[];
  close(): Promise<void>;
}

/** The plane's two listening sockets when it listens on Unix sockets (paths). */
export interface FakePlaneSockets {
  http: string;
  mqtt: string;
}

/**
 * `host`: the address both servers listen on and the URLs name (default 127.0.0.1).
 * `expose`: instead, listen on Unix sockets in a fresh temp dir (no network address in this namespace at all) and
 * let `expose` publish them (e.g. a TCP forwarder inside a network namespace the test made); the URLs it returns
 * are what `httpUrl`/`mqttUrl` name. The observer then talks to the broker over the Unix socket.
 */
export async function startFakePlane({ host = "127.0.0.1", expose }: { host?: string; expose?: (sockets: FakePlaneSockets) => Promise<{ httpUrl: string; mqttUrl: string }> } = {}): Promise<FakePlane> {
  const commandKey = generateKeyPair();
  const enrolled: string[] = [];
  const socketDir = expose ? tempDir("plane-sock") : null;
  const sockets: FakePlaneSockets | null = socketDir ? { http: join(socketDir.path, "http.sock"), mqtt: join(socketDir.path, "mqtt.sock") } : null;
  const aedes = await Aedes.createBroker();
  const mqttServer: NetServer = createNetServer(aedes.handle);
  await new Promise<void>((resolve) => (sockets ? mqttServer.listen(sockets.mqtt, resolve) : mqttServer.listen(0, host, resolve)));
  let mqttUrl = sockets ? "" : `mqtt://${host}:${(mqttServer.address() as AddressInfo).port}`;

  const httpServer: HttpServer = createHttpServer((req, res) => {
    let body = "";
    req.on("data", (chunk) => (body += chunk));
    req.on("end", () => {
      const parsed = enrollmentRequestSchema.safeParse(JSON.parse(body || "{}"));
      if (req.url !== "/api/v1/enroll" || !parsed.success) {
        res.writeHead(400).end();
        return;
      }
      enrolled.push(parsed.data.deviceId);
      res.writeHead(200, { "content-type": "application/json" }).end(
        JSON.stringify({ deviceId: parsed.data.deviceId, enrollment: "accepted", commandPublicKey: toBase64Url(commandKey.publicKey) }),
      );
    });
  });
  await new Promise<void>((resolve) => (sockets ? httpServer.listen(sockets.http, resolve) : httpServer.listen(0, host, resolve)));
  let httpUrl = sockets ? "" : `http://${host}:${(httpServer.address() as AddressInfo).port}`;
  if (sockets && expose) ({ httpUrl, mqttUrl } = await expose(sockets));

  const received: FakePlane["received"] = [];
  const observerOptions = { protocolVersion: 4 as const, clientId: "test-observer" };
  const observer = sockets
    ? await new Promise<MqttClient>((resolve, reject) => {
        const client = new MqttClient(() => createConnection(sockets.mqtt), observerOptions);
        client.once("connect", () => resolve(client));
        client.once("error", reject);
      })
    : await mqtt.connectAsync(mqttUrl, observerOptions);
  await observer.subscribeAsync("asic/v1/+/up/+", { qos: 1 });
  observer.on("message", (topic, payload) => {
    try {
      received.push({ topic, message: JSON.parse(payload.toString("utf8")) });
    } catch {
      received.push({ topic, message: null });
    }
  });

  return {
    httpUrl,
    mqttUrl,
    commandKey,
    observer,
    received,
    enrolled,
    async close() {
      await observer.endAsync(true);
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
      await new Promise<void>((resolve) => mqttServer.close(() => resolve()));
      httpServer.closeAllConnections();
      await new Promise<void>((resolve) => httpServer.close(() => resolve()));
      socketDir?.cleanup();
    },
  };
}
