/**
 * Baseline broker for the benches: a bare aedes (no hooks, default in-memory persistence), run as its own process
 * under the same runtime as the control plane (Bun), so "plane vs bare broker" compares like with like.
 *
 * - One internal subscriber on the up/ filter counts deliveries (GET /count -> {"delivered": n}).
 * - POST /fanout {"deviceIds": [...]} publishes one QoS 1 message to each device's down/command topic and answers
 *   once aedes has handed every one to its subscribers.
 * Prints one JSON ready line `{"msg":"bare broker ready","mqttPort":..,"httpPort":..}`; binds 127.0.0.1 only.
 */
import { createServer as createHttpServer } from "node:http";
import { createServer as createNetServer, type AddressInfo } from "node:net";
import { Aedes } from "aedes";
import { UP_FILTER, downTopic } from "../../shared/protocol/index.js";

const broker = await Aedes.createBroker();
let delivered = 0;
await new Promise<void>((resolve) =>
  broker.subscribe(
    UP_FILTER,
    (_packet, done) => {
      delivered++;
      done();
    },
    resolve,
  ),
);

const mqttServer = createNetServer(broker.handle);
await new Promise<void>((resolve) => mqttServer.listen(0, "127.0.0.1", resolve));

function commandLike(deviceId: string, seq: number): Buffer {
  // Same shape and size as a signed plane command, so the baseline moves the same bytes.
  return Buffer.from(
    JSON.stringify({
      v: 1, type: "command", deviceId, seq, issuedAt: Date.now(), expiresAt: Date.now() + 300_000,
      action: "quarantine", params: { reason: "bench baseline" }, sig: "A".repeat(86),
    }),
  );
}

let fanoutSeq = 0;
const httpServer = createHttpServer((req, res) => {
  const reply = (status: number, body: unknown) => res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
  if (req.method === "GET" && req.url === "/count") return reply(200, { delivered });
  if (req.method === "POST" && req.url === "/fanout") {
    let body = "";
    req.on("data", (chunk) => (body += chunk));
    req.on("end", () => {
      const { deviceIds } = JSON.parse(body) as { deviceIds: string[] };
      const seq = ++fanoutSeq;
      let pending = deviceIds.length;
      if (pending === 0) return reply(200, { published: 0 });
      for (const deviceId of deviceIds) {
        broker.publish(
          { cmd: "publish", topic: downTopic(deviceId, "command"), payload: commandLike(deviceId, seq), qos: 1, retain: false, dup: false },
          () => {
            if (--pending === 0) reply(200, { published: deviceIds.length });
          },
        );
      }
    });
    return;
  }
  reply(404, { error: "not found" });
});
await new Promise<void>((resolve) => httpServer.listen(0, "127.0.0.1", resolve));

const shutdown = () => {
  httpServer.close();
  broker.close(() => mqttServer.close(() => process.exit(0)));
};
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);

process.stdout.write(
  `${JSON.stringify({
    msg: "bare broker ready",
    mqttPort: (mqttServer.address() as AddressInfo).port,
    httpPort: (httpServer.address() as AddressInfo).port,
  })}\n`,
);
