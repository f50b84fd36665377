/**
 * A stand-in control plane for attacks the real plane would never send: an open aedes broker (no auth hooks) and
 * an enrollment endpoint that accepts every device and pins a test command key. The test itself then plays the
 * attacker (or the plane) on the device's down/ topics, against the real compiled agent.
 */
import { createServer as createHttpServer, type Server as HttpServer } from "node:http";
import { createServer as createNetServer, type AddressInfo, type Server as NetServer } from "node:net";
import { Aedes } from "aedes";
import mqtt, { type MqttClient } from "mqtt";
import { generateKeyPair, toBase64Url, type KeyPair } from "../../shared/crypto/index.js";
import { enrollmentRequestSchema } from "../../shared/protocol/index.js";

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

/** `host`: the address both servers listen on and the URLs name (default 127.0.0.1; a veth address for a namespaced board). */
export async function startFakePlane({ host = "127.0.0.1" }: { host?: string } = {}): Promise<FakePlane> {
  const commandKey = generateKeyPair();
  const enrolled: string[] = [];
  const aedes = await Aedes.createBroker();
  const mqttServer: NetServer = createNetServer(aedes.handle);
  await new Promise<void>((resolve) => mqttServer.listen(0, host, resolve));
  const mqttUrl = `mqtt://${host}:${(mqttServer.address() as AddressInfo).port}`;

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
  await new Promise<void>((resolve) => httpServer.listen(0, host, resolve));
  const httpUrl = `http://${host}:${(httpServer.address() as AddressInfo).port}`;

  const received: FakePlane["received"] = [];
  const observer = await mqtt.connectAsync(mqttUrl, { protocolVersion: 4, clientId: "test-observer" });
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
    },
  };
}
